"""``crm dlq``: what the dead-letter topics hold, per consumer group and reason; replay to the group that parked it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from contracts import ContractError, parse_message
from contracts.topics import (
    DLQ_GROUP,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_REASON_CODE,
    DLQ_REPLAY_GROUP,
    DLQ_SERVICE,
    DLQ_SUFFIX,
    DLQ_TOPIC,
)
from crmctl.kafka import operator_options

console = Console()

dlq_app = typer.Typer(
    help="Dead-letter topics (<topic>.dlq): what was parked there, by which consumer group and why; replay after a fix.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_DLQ_HEADERS = {DLQ_REASON, DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET, DLQ_GROUP, DLQ_SERVICE, DLQ_REASON_CODE, DLQ_REPLAY_GROUP}
REPLAYED_FROM = "dlq-replayed-from"


def bootstrap_of(value: str | None) -> dict:
    """The operator's connection: to ``value`` when given, else the local stack (CRM_KAFKA_PORT)."""
    return operator_options(value)


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


@dataclass(frozen=True)
class Filter:
    """Which DLQ records a command is about: a group, a reason (code or words of the text), DLQ offsets."""

    group: str | None = None
    reason: str | None = None
    offsets: frozenset[int] | None = None

    def matches(self, record: Any) -> bool:
        h = headers_of(record)
        if self.group is not None and h.get(DLQ_GROUP) != self.group:
            return False
        if self.reason is not None and self.reason != h.get(DLQ_REASON_CODE) and self.reason not in h.get(DLQ_REASON, ""):
            return False
        return self.offsets is None or record.offset in self.offsets


def parse_offsets(text: str | None) -> frozenset[int] | None:
    """``3,5,10-20`` into a set of offsets; None when absent."""
    if not text:
        return None
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise typer.BadParameter(f"offsets must look like 3,5,10-20; got {part!r}")
        found.update(range(int(low), int(high or low) + 1))
    return frozenset(found)


class DlqReader:
    """Reads DLQ topics without a consumer group (nothing is committed); sizes come from offsets alone."""

    def __init__(self, kafka: dict[str, Any]) -> None:
        self._consumer = AIOKafkaConsumer(
            **kafka, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
        )

    async def __aenter__(self) -> DlqReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._consumer.stop()

    async def topics(self, prefix: str = "") -> list[str]:
        return sorted(t for t in await self._consumer.topics() if t.endswith(DLQ_SUFFIX) and t.startswith(prefix))

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in await self._consumer.topics():
            raise typer.BadParameter(f"topic {topic} does not exist; 'crm dlq list' shows the DLQ topics")
        if not self._consumer.partitions_for_topic(topic):
            await self._consumer._client.force_metadata_update()  # noqa: SLF001  (topics() does not fill this cache)
        return [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    async def size(self, topic: str) -> int:
        """Records the topic holds now: log end minus log start, per partition (reads no record)."""
        tps = await self._partitions(topic)
        starts, ends = await self._consumer.beginning_offsets(tps), await self._consumer.end_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)

    async def read(self, topic: str) -> list[Any]:
        """Every record of ``topic`` from its start up to its end now."""
        tps = await self._partitions(topic)
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        ends = await self._consumer.end_offsets(tps)
        records: list[Any] = []
        while any([await self._consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await self._consumer.getmany(timeout_ms=1000, max_records=5000)
            for part in batch.values():
                records.extend(r for r in part if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return records


async def summary(bootstrap: dict[str, Any], topics: list[str] | None = None, prefix: str = "", breakdown: bool = True) -> list[dict[str, Any]]:
    """Per DLQ topic its size (from offsets) and, with ``breakdown``, counts by group, service and reason code."""
    rows = []
    async with DlqReader(bootstrap) as reader:
        for topic in topics or await reader.topics(prefix):
            row: dict[str, Any] = {"topic": topic, "original_topic": topic.removesuffix(DLQ_SUFFIX), "records": await reader.size(topic)}
            if breakdown and row["records"]:
                counts = Counter(
                    (h.get(DLQ_GROUP, "?"), h.get(DLQ_SERVICE, "?"), h.get(DLQ_REASON_CODE, "?"), h.get(DLQ_REASON, "?")[:100])
                    for h in map(headers_of, await reader.read(topic))
                )
                row["by"] = [
                    {"group": g, "service": s, "reason_code": c, "reason": r, "records": n}
                    for (g, s, c, r), n in counts.most_common()
                ]
            rows.append(row)
    return rows


def describe(record: Any) -> dict[str, Any]:
    """One DLQ record for people: where it came from, who parked it, why, and its value decoded where it parses."""
    h = headers_of(record)
    origin = h.get(DLQ_TOPIC, record.topic.removesuffix(DLQ_SUFFIX))
    value = record.value or b""
    shown: dict[str, Any] = {
        "dlq_offset": f"{record.topic}[{record.partition}]@{record.offset}",
        "origin": f"{origin}[{h.get(DLQ_PARTITION)}]@{h.get(DLQ_OFFSET)}",
        "group": h.get(DLQ_GROUP), "service": h.get(DLQ_SERVICE),
        "reason_code": h.get(DLQ_REASON_CODE), "reason": h.get(DLQ_REASON),
        "key": (record.key or b"").decode(errors="replace"),
    }
    try:
        message = parse_message(_contract_topic(origin), value)
        shown["message"] = json.loads(message.to_json_bytes())
    except (ContractError, ValueError):
        shown["value"] = value[:2000].decode(errors="replace")
    return shown


def _contract_topic(physical: str) -> str:
    """The contract name inside a prefixed topic name (``t123.crm.leads.events.v1`` → ``crm.leads.events.v1``)."""
    at = physical.find("crm.")
    return physical[at:] if at >= 0 else physical


async def replay_records(
    bootstrap: dict[str, Any], topic: str, chosen_by: Filter, *, dry_run: bool = False, limit: int | None = None
) -> dict[str, Any]:
    """Put the chosen DLQ records back on their original topic, each for the group that parked it only.

    The copy carries ``dlq-replay-group``: the consumers of that group apply it, those of every other
    group reading the topic skip it (they applied the original, or parked a copy of their own).
    """
    async with DlqReader(bootstrap) as reader:
        records = await reader.read(topic)
    chosen = [r for r in records if chosen_by.matches(r)][:limit]
    targets = Counter((headers_of(r).get(DLQ_TOPIC) or topic.removesuffix(DLQ_SUFFIX), headers_of(r).get(DLQ_GROUP, "every group")) for r in chosen)
    report = {
        "dlq_topic": topic, "records": len(records), "chosen": len(chosen), "dry_run": dry_run,
        "to": [{"topic": t, "group": g, "records": n} for (t, g), n in sorted(targets.items())],
        "offsets": [r.offset for r in chosen],
    }
    if dry_run or not chosen:
        return report
    producer = AIOKafkaProducer(**bootstrap, acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = []
        for record in chosen:
            h = headers_of(record)
            headers = [(k, v.encode()) for k, v in h.items() if k not in _DLQ_HEADERS]
            headers.append((REPLAYED_FROM, f"{record.topic}[{record.partition}]@{record.offset}".encode()))
            if h.get(DLQ_GROUP):
                headers.append((DLQ_REPLAY_GROUP, h[DLQ_GROUP].encode()))
            target = h.get(DLQ_TOPIC) or topic.removesuffix(DLQ_SUFFIX)
            futures.append(await producer.send(target, record.value, key=record.key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return report


# --- commands ---------------------------------------------------------------------------------

_BOOTSTRAP = typer.Option(None, help="Kafka bootstrap servers; CRM_KAFKA_PORT's local stack when absent.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@dlq_app.command("list")
def list_dlq(
    topic: str = typer.Argument(None, help="A DLQ topic (e.g. crm.leads.commands.v1.dlq); all DLQ topics when absent."),
    prefix: str = typer.Option("", help="Only DLQ topics starting with this (a deployment's topic prefix)."),
    breakdown: bool = typer.Option(True, "--breakdown/--no-breakdown", help="Count by group, service and reason (reads the records)."),
    reasons: bool = typer.Option(False, "--reasons", hidden=True, help="Kept for old scripts: the breakdown is shown anyway."),
    as_json: bool = _JSON,
    bootstrap: str = _BOOTSTRAP,
) -> None:
    """How many records each DLQ holds (from offsets), by consumer group and reason."""
    rows = asyncio.run(summary(bootstrap_of(bootstrap), [topic] if topic else None, prefix, breakdown))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("DLQ topic / group", "service", "reason", "records")
    for row in rows:
        table.add_row(row["topic"], "", "", str(row["records"]))
        for part in row.get("by", ()):
            table.add_row(f"  {part['group']}", part["service"], f"{part['reason_code']}: {part['reason']}", str(part["records"]))
    console.print(table)


@dlq_app.command("show")
def show(
    topic: str = typer.Argument(..., help="The DLQ topic, e.g. crm.leads.events.v1.dlq"),
    group: str = typer.Option(None, help="Only records parked by this consumer group."),
    reason: str = typer.Option(None, help="Only records with this reason code, or whose reason contains this text."),
    offsets: str = typer.Option(None, help="Only these DLQ offsets, e.g. 3,5,10-20."),
    limit: int = typer.Option(5, help="Show at most this many records (oldest first)."),
    bootstrap: str = _BOOTSTRAP,
) -> None:
    """Print a sample of DLQ records decoded: origin, group, reason and the message through the contracts."""

    async def run() -> list[Any]:
        async with DlqReader(bootstrap_of(bootstrap)) as reader:
            return await reader.read(topic)

    chosen_by = Filter(group, reason, parse_offsets(offsets))
    chosen = [r for r in asyncio.run(run()) if chosen_by.matches(r)][:limit]
    print(json.dumps([describe(r) for r in chosen], indent=2, ensure_ascii=False, default=str))


@dlq_app.command("replay")
def replay(
    topic: str = typer.Argument(..., help="The DLQ topic to replay, e.g. crm.leads.commands.v1.dlq"),
    group: str = typer.Option(None, help="Only records parked by this consumer group (the others stay parked)."),
    reason: str = typer.Option(None, help="Only records with this reason code, or whose reason contains this text."),
    reason_contains: str = typer.Option(None, "--reason-contains", hidden=True, help="Same as --reason (older name)."),
    offsets: str = typer.Option(None, help="Only these DLQ offsets, e.g. 3,5,10-20."),
    limit: int = typer.Option(None, help="Replay at most this many of the chosen records (oldest first)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be re-published; send nothing."),
    as_json: bool = _JSON,
    bootstrap: str = _BOOTSTRAP,
) -> None:
    """Re-publish DLQ records to their original topic, each only for the consumer group that parked it.

    Safe to repeat: the services dedupe by message id, so a record applied twice acts once. The DLQ
    keeps its records (Kafka topics are append-only); one that fails again is parked again afresh.
    """
    chosen_by = Filter(group, reason or reason_contains, parse_offsets(offsets))
    report = asyncio.run(replay_records(bootstrap_of(bootstrap), topic, chosen_by, dry_run=dry_run, limit=limit))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    verb = "would re-publish" if dry_run else "re-published"
    console.print(f"{verb} {report['chosen']} of {report['records']} records of {topic}")
    for target in report["to"]:
        console.print(f"  {target['records']} to {target['topic']} for group {target['group']}")
