"""Load, ledgers and the kill of the crash scenarios of the importer, qualification and activity services."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.activity import CreateTask
from contracts.imports import StartImport
from contracts.qualification import QualifyLead
from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    IMPORTS_COMMANDS,
    IMPORTS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
)
from services.activity.app import CONSUMES as ACTIVITY_CONSUMES_T
from services.importer.app import CONSUMES as IMPORTER_CONSUMES_T
from services.importer.domain import derive_lead_id
from services.qualification.app import CONSUMES as QUALIFICATION_CONSUMES_T
from services.qualification.domain import company_id_for, deal_id_for
from tests.reliability.harness import (
    LOADGEN,
    EventLedger,
    Fault,
    Outgoing,
    Scenario,
    ServiceInstance,
    envelope_record,
    until,
)
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS
from tests.support import command

# What each service consumes (and so has a DLQ for); the topics a scenario creates up front.
IMPORTER_CONSUMES = list(IMPORTER_CONSUMES_T)
QUALIFICATION_CONSUMES = list(QUALIFICATION_CONSUMES_T)
ACTIVITY_CONSUMES = list(ACTIVITY_CONSUMES_T)


def topics_of(*groups: list[str]) -> list[str]:
    return list(dict.fromkeys(t for group in groups for t in group))


IMPORT_TOPICS = topics_of(LEADS_TOPICS, IMPORTER_CONSUMES, [IMPORTS_EVENTS])
QUALIFICATION_TOPICS = topics_of(LEADS_TOPICS, QUALIFICATION_CONSUMES, [QUALIFICATION_EVENTS])
ACTIVITY_TOPICS = topics_of(LEADS_TOPICS, ACTIVITY_CONSUMES, [ACTIVITY_EVENTS])
IMPORT_DLQ = topics_of(LEADS_CONSUMES, IMPORTER_CONSUMES)
QUALIFICATION_DLQ = topics_of(LEADS_CONSUMES, QUALIFICATION_CONSUMES)
ACTIVITY_DLQ = topics_of(LEADS_CONSUMES, ACTIVITY_CONSUMES)


# --- what arrived, per message type and per thing -------------------------------------------


@dataclass
class TypedLedger(EventLedger):
    """An EventLedger that also keeps, per type and per thing (task, lead or import), the distinct event ids and the newest data.

    Two distinct ids for one thing's ``crm.task.created`` (or ``crm.lead.qualified``) are a double
    that no consumer deduping by event id can catch; a redelivery with the same id is not.
    """

    distinct: dict[str, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    latest: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, record: Any) -> None:
        before = self.unique
        super().add(record)
        if self.unique == before:
            return  # unreadable, or a redelivery of an event already seen
        event = json.loads(record.value)
        data = event.get("data") or {}
        key = data.get("task_id") or data.get("lead_id") or data.get("import_id") or event.get("subject") or ""
        kind = event.get("type", "")
        self.distinct[kind][key].add(event["id"])
        self.latest[kind][key] = data  # one thing's events share a key, so a partition: newest last

    def things(self, kind: str) -> set[str]:
        return set(self.distinct.get(kind, {}))

    def doubled(self, kind: str) -> dict[str, int]:
        """Things with more than one distinct event of ``kind``, with how many."""
        return {k: len(ids) for k, ids in self.distinct.get(kind, {}).items() if len(ids) > 1}


async def typed_events(scenario: Scenario, topic: str) -> TypedLedger:
    """Tail ``topic`` from the beginning into a TypedLedger (stopped with the scenario)."""
    ledger = TypedLedger()
    await scenario.tail([scenario.topic(topic)], ledger.add)
    return ledger


# --- the kill -------------------------------------------------------------------------------


class Tripwire:
    """A tail's record callback: feeds a ledger and, once armed, SIGKILLs a process the moment the ledger passes a mark.

    Polling would let the process run on for up to a poll interval; killed from the callback, it
    dies as soon as the tail reads the record that passes the mark (the tail itself lags the
    process by a fetch, so the process may be a little further on).
    """

    def __init__(self, ledger: EventLedger) -> None:
        self.ledger = ledger
        self._instance: ServiceInstance | None = None
        self._mark = 0
        self.fired: tuple[float, float, int] | None = None  # monotonic and wall time of the kill, ledger.unique then

    def arm(self, instance: ServiceInstance, mark: int) -> None:
        self._instance, self._mark = instance, mark
        self._check()

    def __call__(self, record: Any) -> None:
        self.ledger.add(record)
        self._check()

    def _check(self) -> None:
        if self._instance is not None and self.fired is None and self.ledger.unique >= self._mark:
            self._instance.kill()
            self.fired = (time.monotonic(), time.time(), self.ledger.unique)


async def tripwire_events(scenario: Scenario, topic: str) -> Tripwire:
    """Tail ``topic`` into an EventLedger behind a Tripwire (stopped with the scenario)."""
    tripwire = Tripwire(EventLedger())
    await scenario.tail([scenario.topic(topic)], tripwire)
    return tripwire


async def kill_half_way(
    scenario: Scenario,
    instance: ServiceInstance,
    progress: Callable[[], Awaitable[int] | int] | Tripwire,
    total: int,
    ledger: EventLedger,
    done: Callable[[], bool],
    *,
    what: str,
    rng: random.Random,
    low: float = 0.4,
    high: float = 0.6,
    align: int = 1,
    timeout: float = 150.0,
    after_kill: Callable[[], Awaitable[str]] | None = None,
) -> str:
    """Once ``progress`` passes a random mark between ``low`` and ``high`` of ``total``: SIGKILL, restart at once.

    ``progress`` is polled, or is a Tripwire that kills from its tail; ``align`` puts the mark on
    the first item of a block of that size (the importer's chunk). The fault's down time runs from
    the kill until the new process is ready; its recovery from the kill until every partition of
    ``ledger``'s topic carries an event made after the kill. Returns where the work stood then
    (with what ``after_kill``, run while the process is down, says).
    """
    mark = max(1, int(total * rng.uniform(low, high)))
    if align > 1:
        mark = max(1, round(mark / align)) * align + 1
    if isinstance(progress, Tripwire):
        progress.arm(instance, mark)
        await until(lambda: progress.fired, timeout=timeout, what=f"{mark} of {total} {what}", interval=0.1)
        assert progress.fired is not None
        killed_at, killed_wall, at = progress.fired
    else:
        async def reached() -> int | None:
            value = progress()
            if asyncio.iscoroutine(value):
                value = await value
            return value if value >= mark else None

        at = await until(reached, timeout=timeout, what=f"{mark} of {total} {what}", interval=0.1)
        killed_at, killed_wall = time.monotonic(), time.time()
        instance.kill()
    note = f"killed at {at}/{total} {what}"
    if after_kill is not None:
        note += f" ({await after_kill()})"
    await scenario.restart(instance)
    ready_after = time.monotonic() - killed_at
    recovered = await scenario.recovery(ledger, killed_wall, done, timeout=150.0)
    scenario.faults.append(Fault(f"SIGKILL {instance.label}", ready_after, recovered))
    return note


# --- importer -------------------------------------------------------------------------------

IMPORT_HEADER = "Название,Имя,Телефон,Эл. почта,Компания,ИНН,Источник,Внешний ID"
IMPORTER_SOURCE = "crm/importer"


def write_import_csv(path: Path, count: int, tag: str) -> list[tuple[int, str]]:
    """A CSV of ``count`` valid, distinct rows; returns (spreadsheet row number, external id) of each."""
    rows, lines = [], [IMPORT_HEADER]
    for i in range(count):
        external = f"{tag}-{i:06d}"
        lines.append(
            f"Лид {i},Иван Петров {i},+7912{i:07d},ivan{i}@example.ru,ООО Ромашка {i},77{i:08d},website,{external}"
        )
        rows.append((i + 2, external))  # row 1 is the header
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return rows


def imported_lead_ids(import_id: str, rows: list[tuple[int, str]]) -> list[str]:
    return [derive_lead_id(import_id, row, external, IMPORTER_SOURCE) for row, external in rows]


def start_import(import_id: str, path: Path) -> Outgoing:
    return envelope_record(
        IMPORTS_COMMANDS, command(StartImport(import_id=import_id, file_uri=str(path)), actor=LOADGEN, subject=import_id)
    )


# --- qualification --------------------------------------------------------------------------


def qualify(lead_id: str) -> Outgoing:
    data = QualifyLead(
        lead_id=lead_id, qualification_type="deal_and_company", new_company={"name": f"ООО {lead_id}"},
        deal_pipeline_id="default",
    )
    return envelope_record(QUALIFICATION_COMMANDS, command(data, actor=LOADGEN))


def expected_deal(lead_id: str) -> tuple[str, str]:
    return deal_id_for(lead_id), company_id_for(lead_id)


# --- activity -------------------------------------------------------------------------------


def task_ids(count: int) -> list[str]:
    return [f"T{i:06d}" for i in range(count)]


def create_tasks(ids: list[str], lead_ids: list[str]) -> tuple[list[Outgoing], dict[str, int]]:
    """A create command per task, the tasks dealt round the leads; returns the records and tasks per lead.

    Due in two to nine days, so the due pass announces none of them while the scenario runs.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    records, per_lead = [], defaultdict(int)
    for i, task_id in enumerate(ids):
        lead_id = lead_ids[i % len(lead_ids)]
        start = now + timedelta(days=2 + i % 7, hours=i % 24)
        data = CreateTask(
            task_id=task_id, lead_id=lead_id, type="call", title=f"Call {task_id}", start_at=start,
            due_at=start + timedelta(hours=1), assignee_id=LOADGEN,
        )
        records.append(envelope_record(ACTIVITY_COMMANDS, command(data, actor=LOADGEN)))
        per_lead[lead_id] += 1
    return records, dict(per_lead)

