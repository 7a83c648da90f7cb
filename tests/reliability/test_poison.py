"""Scenario 4: malformed records interleaved with valid creates: every valid one applied, every bad one parked."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from contracts.topics import LEADS_COMMANDS, LEADS_EVENTS, dlq_topic
from crmctl.dlq import dlq_app
from tests.reliability.harness import Outgoing, Scenario, scaled, until
from tests.reliability.leads_load import LEADS_CONSUMES, LEADS_TOPICS, creates, lead_ids

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

HUGE_BYTES = 920_000  # above the 900 KB a DLQ copy keeps, so the cut is exercised too


def envelope(type_name: str, data: object, **drop: bool) -> dict:
    body = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "type": type_name, "source": "test/poison",
        "time": datetime.now(UTC).isoformat(), "actorid": "loadgen", "data": data,
    }
    for name in drop:
        body.pop(name, None)
    return body


def poison(index: int) -> tuple[str, bytes]:
    """One bad record of a kind picked by ``index``: (kind, value)."""
    lead_id = f"P{index:06d}"
    kinds = [
        ("not json", lambda: f"<not json {index}> {{".encode()),
        ("not an object", lambda: json.dumps([index, "create"]).encode()),
        ("event on the commands topic", lambda: json.dumps(envelope("crm.lead.created", {"lead_id": lead_id})).encode()),
        ("unknown type", lambda: json.dumps(envelope("crm.lead.explode", {"lead_id": lead_id})).encode()),
        ("envelope without id and time", lambda: json.dumps(envelope("crm.lead.create", {"title": f"x{index}"}, id=True, time=True)).encode()),
        ("payload missing title", lambda: json.dumps(envelope("crm.lead.create", {"lead_id": lead_id})).encode()),
        ("payload of wrong types", lambda: json.dumps(envelope("crm.lead.move", {"lead_id": lead_id, "stage_id": ["new"]})).encode()),
        ("empty title", lambda: json.dumps(envelope("crm.lead.create", {"lead_id": lead_id, "title": ""})).encode()),
        ("empty value", lambda: b" " * index),  # b"" once, then blanks of distinct lengths
    ]
    kind, make = kinds[index % len(kinds)]
    return kind, make()


def huge() -> bytes:
    body = envelope("crm.lead.create", {"lead_id": "P-huge", "title": 42, "description": ""})
    text = json.dumps(body)
    body["data"]["description"] = "x" * (HUGE_BYTES - len(text))
    return json.dumps(body).encode()


async def test_poison_messages(scenario: Scenario) -> None:
    valid_count, bad_count = scaled(10_000), scaled(1_000, minimum=20)
    await scenario.create_topics(LEADS_TOPICS)
    events = await scenario.events(LEADS_EVENTS)
    dlq = await scenario.dlq(LEADS_CONSUMES)
    await scenario.start_service("leads")

    ids = lead_ids(valid_count)
    records = creates(ids)
    bad: dict[bytes, str] = {}
    for i in range(bad_count - 1):
        kind, value = poison(i)
        bad[value] = kind  # each bad record is distinct, to find it in the DLQ
    bad[huge()] = "huge record"
    assert len(bad) == bad_count
    rng = random.Random(7)
    for value in bad:
        records.insert(rng.randrange(len(records) + 1), Outgoing(LEADS_COMMANDS, f"P{rng.randrange(10**6)}".encode(), value))
    await scenario.producer.send(records, rate=4000)

    await until(lambda: len(events.created) >= valid_count and len(dlq.records) >= bad_count, timeout=240,
                what=f"{valid_count} leads created and {bad_count} records dead-lettered")
    stored = await scenario.ids_in("leads", "leads")
    by_kind = Counter(bad.get(r.value, "huge record" if len(r.value) >= 900_000 else "?") for r in dlq.records)
    scenario.report(
        sent=len(records), applied=len(stored), duplicates=events.duplicates, lost=valid_count - len(set(stored) & set(ids)),
        dlq=len(dlq.records), extra="dlq by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(by_kind.items())),
    )
    assert set(stored) == set(ids), "every valid create is applied, none of the bad ones"
    assert set(events.created) == set(ids)
    assert len(dlq.records) == bad_count and dlq.unique_origins == bad_count, "each bad record parked exactly once"
    assert all(r.reason for r in dlq.records), "every DLQ record says why"
    assert all(r.origin[0] == scenario.topic(LEADS_COMMANDS) for r in dlq.records), "and where it came from"
    parked = {r.value for r in dlq.records}
    small = {v for v in bad if len(v) < 900_000}
    assert small <= parked, "the DLQ keeps the bad record's bytes"
    cut = [r for r in dlq.records if len(r.value) >= 800_000]
    assert len(cut) == 1 and "cut" in cut[0].reason
    assert "?" not in by_kind, "nothing else was dead-lettered"
    assert not events.rejections, events.rejections[:3]

    # The operator's tool: a dry run sends nothing; a replay puts records back on their topic, and
    # those still bad come back to the DLQ (with a new origin), while the valid leads stay as they are.
    dlq_name = dlq_topic(scenario.topic(LEADS_COMMANDS))
    cli = lambda *args: asyncio.to_thread(CliRunner().invoke, dlq_app, [*args, "--bootstrap", scenario.stack.kafka], env=scenario.stack.cli_env())  # noqa: E731
    dry = await cli("replay", dlq_name, "--dry-run", "--reason-contains", "not valid JSON")
    assert dry.exit_code == 0 and "would re-publish" in dry.output, dry.output
    listed = await cli("list", dlq_name, "--reasons")
    assert listed.exit_code == 0 and str(bad_count) in listed.output, listed.output
    replayed = await cli("replay", dlq_name, "--reason-contains", "message is not a JSON object")
    assert replayed.exit_code == 0, replayed.output
    again = by_kind["not an object"]
    await until(lambda: len(dlq.records) >= bad_count + again, timeout=60, what="replayed bad records back in the DLQ")
    assert len(dlq.records) == bad_count + again and len(await scenario.ids_in("leads", "leads")) == valid_count
