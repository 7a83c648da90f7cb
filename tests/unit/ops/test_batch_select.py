"""A batch subscription's type selection: records of types its handler does not want now are passed over unparsed."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import ContractError, build_message, parse_message
from contracts.leads import UpdateLead
from contracts.topics import LEADS_COMMANDS
from crmkit.messaging import BatchProcessor, Health, Inbound
from crmkit.metrics import Metrics
from crmkit.settings import ServiceSettings


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]]
    key: bytes | None = None


class FakeBus:
    def __init__(self) -> None:
        self.parked: list[tuple[int, str]] = []
        self.published: list = []

    async def publish(self, outbound) -> None:
        self.published += list(outbound)

    async def dead_letter(self, bad, group) -> None:
        self.parked += [(record.offset, code) for record, code, _ in bad]


async def selected(select, records: list[Record]) -> tuple[list[str], list[tuple[int, str]]]:
    """What a processor with this selector hands its handler (message types) and parks (offset, reason)."""
    seen: list[Inbound] = []

    async def handler(batch: list[Inbound]):
        seen.extend(batch)
        return []

    bus = FakeBus()
    await BatchProcessor(ServiceSettings(), bus, handler, Metrics("test"), Health(), "t", select=select).process(records)  # type: ignore[arg-type]
    return [item.message.type for item in seen], bus.parked


def _record(offset: int, kind: str | None, value: bytes) -> Record:
    headers = [("ce-type", kind.encode())] if kind else []
    return Record(LEADS_COMMANDS, 0, offset, value, headers)


def _update(lead_id: str) -> bytes:
    return build_message(UpdateLead(lead_id=lead_id, title="t"), source="test", actorid="alice").to_json_bytes()


async def test_unwanted_types_are_passed_over_unparsed_and_the_rest_handled_or_parked():
    seen: list[Inbound] = []
    asked: list[int] = []
    wanted: set[str] | None = {"crm.lead.update"}

    async def handler(batch: list[Inbound]):
        seen.extend(batch)
        return []

    async def select():
        asked.append(1)
        return wanted

    bus = FakeBus()
    processor = BatchProcessor(ServiceSettings(), bus, handler, Metrics("test"), Health(), "t", select=select)  # type: ignore[arg-type]
    await processor.process([
        _record(0, "crm.lead.update", _update("L1")),
        _record(1, "crm.lead.move", b"not json at all"),  # not wanted: never parsed, so not parked either
        _record(2, None, _update("L2")),  # no header (another producer): parsed as always
        _record(3, "crm.lead.update", b"{broken"),  # wanted and unreadable: parked
    ])
    assert [item.message.data.lead_id for item in seen] == ["L1", "L2"]
    assert bus.parked == [(3, "invalid_message")]
    assert asked == [1]  # once per batch

    wanted = None  # every type again: the record passed over before is now parsed (and parked)
    await processor.process([_record(4, "crm.lead.move", b"not json at all")])
    assert bus.parked[-1] == (4, "invalid_message")


async def test_a_handler_s_own_parser_reads_its_records_and_what_it_cannot_read_is_parked():
    seen: list[Inbound] = []

    async def handler(batch: list[Inbound]):
        seen.extend(batch)
        return []

    def parse(topic: str, value: bytes):
        if value.startswith(b"!"):
            raise ContractError("this parser reads no record starting with !")
        return parse_message(topic, value).model_copy(update={"subject": "read-by-the-handler-s-parser"})

    bus = FakeBus()
    processor = BatchProcessor(ServiceSettings(), bus, handler, Metrics("test"), Health(), "t", parse=parse)  # type: ignore[arg-type]
    await processor.process([_record(0, "crm.lead.update", _update("L1")), _record(1, "crm.lead.update", b"!" + _update("L2"))])
    assert [(item.message.data.lead_id, item.message.subject) for item in seen] == [("L1", "read-by-the-handler-s-parser")]
    assert bus.parked == [(1, "invalid_message")]
