"""Leads intake benchmark: N ``crm.lead.create`` commands already on the topic, stored and announced.

Compares, in one run on the local stack:
  bare      an aiokafka consumer that parses each record and bulk-inserts the document the service
            would store for it (built before the clock starts): the Kafka + database floor;
  service   the leads service (duplicate check off): every lead stored and its crm.lead.created published;
  service+dup  the same with the duplicate check on (issue 4: cost of the check per create);
  service xN   with --instances N: N leads services as separate processes in one consumer group,
               as an operator scales it (the clock includes their start, as it does in-process).

Run: .venv/bin/python bench/bench_leads.py [--leads 100000] [--instances 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.directory import UserLicenceGranted  # noqa: E402
from contracts.leads import CreateLead  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS  # noqa: E402
from crmctl.stack import Stack  # noqa: E402
from crmkit.messaging import ensure_topics  # noqa: E402
from crmkit.mongo import make_client  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402
from services.leads.app import create_app  # noqa: E402
from services.leads.settings import LeadsSettings  # noqa: E402
from tests.support import kafka_options  # noqa: E402

from processes import start_service, stop_all, use_local_stack_credentials  # noqa: E402  (bench/processes.py)


async def produce_commands(bootstrap: str, prefix: str, count: int) -> None:
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [prefix + LEADS_COMMANDS, prefix + LEADS_EVENTS, prefix + DIRECTORY_EVENTS], 6)
    producer = AIOKafkaProducer(**kafka_options(bootstrap), linger_ms=20, acks="all", max_batch_size=256 * 1024)
    await producer.start()
    try:
        grant = build_message(UserLicenceGranted(user_id="bench", licence="crm"), source="bench")
        await producer.send_and_wait(prefix + DIRECTORY_EVENTS, grant.to_json_bytes(), key=b"bench")
        futures = []
        for i in range(count):
            payload = CreateLead(lead_id=f"L{i:07d}", **_command_data(i))
            message = build_message(payload, source="bench/load", actorid="bench")
            futures.append(await producer.send(prefix + LEADS_COMMANDS, message.to_json_bytes(), key=payload.lead_id.encode()))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def stored_documents(count: int) -> dict[str, dict]:
    """The documents the leads service stores for these commands, built before the clock starts."""
    from datetime import UTC, datetime

    from services.leads import domain as d
    from services.leads.repository import LeadWrite, Recent, lead_document

    now = datetime.now(UTC)
    pipeline = d.default_pipeline(now)
    actor = d.Actor(user_id="bench", licensed=True, service=True)
    docs = {}
    for i in range(count):
        lead = d.create_lead(actor, f"L{i:07d}", _command_data(i), pipeline, now).lead
        docs[lead.lead_id] = lead_document(LeadWrite(lead, [Recent("m", [lead.model_dump_json()])], None))
    return docs


def _command_data(i: int) -> dict:
    return {
        "title": f"Lead {i}", "source": "bench", "utm_source": "bench", "need_maturity": "interested",
        "contact": {"name": f"Contact {i % 50000}", "phone": f"+7912{i % 9000000:07d}", "email": f"c{i}@example.com"},
    }


async def bare(bootstrap: str, mongodb: str, prefix: str, count: int) -> float:
    """The floor: consume the same records and bulk-insert the same documents; no rules, no events."""
    documents = stored_documents(count)
    client = make_client(mongodb)
    col = client[f"{prefix.strip('.')}_bare"]["leads"]
    consumer = AIOKafkaConsumer(
        prefix + LEADS_COMMANDS, **kafka_options(bootstrap), group_id=prefix + "bare",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=1000,
    )
    await consumer.start()
    done = 0
    started = time.perf_counter()
    try:
        while done < count:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            docs = []
            for records in batch.values():
                for record in records:
                    message = json.loads(record.value)
                    docs.append(documents[message["data"]["lead_id"]])
            if docs:
                await col.insert_many(docs, ordered=False)
                await consumer.commit()
                done += len(docs)
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await client.drop_database(f"{prefix.strip('.')}_bare")
        await client.close()


class EndOffsets:
    """Counts what a topic holds (sum of end offsets), with one long-lived consumer."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 6) -> None:
        self._consumer = AIOKafkaConsumer(**kafka_options(bootstrap))
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> "EndOffsets":
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def total(self) -> int:
        return sum((await self._consumer.end_offsets(self._partitions)).values())


async def until_committed(admin: AIOKafkaAdminClient, group_id: str, topic: str, target: int,
                          check: Callable[[], None] = lambda: None) -> None:
    """Poll the group's committed offsets on ``topic`` until they add up to ``target``.

    A service commits a batch only after its leads are stored and its events acknowledged, so
    committed == end offsets means every command is done. ``check`` raises to stop early.
    """
    while True:
        check()
        committed = await admin.list_consumer_group_offsets(group_id)
        done = sum(m.offset for tp, m in committed.items() if tp.topic == topic and m.offset > 0)
        if done >= target:
            return
        await asyncio.sleep(0.2)


async def count_and_drop(mongodb: str, database: str, count: int) -> None:
    """Check every lead was stored, then drop the contender's database."""
    client = make_client(mongodb)
    try:
        stored = await client[database]["leads"].count_documents({})
        assert stored == count, f"{stored} leads stored, expected {count}"
    finally:
        await client.drop_database(database)
        await client.close()


async def service_run(bootstrap: str, mongodb: str, prefix: str, count: int, duplicate_check: bool) -> float:
    name = "dup" if duplicate_check else "nodup"
    out_prefix = f"{prefix}{name}."
    # The service reads the shared command topic through its own prefix-free view: give it the
    # commands by copying them under its prefix would cost time, so point its prefix at the input.
    settings = LeadsSettings(
        kafka_bootstrap_servers=bootstrap, mongodb_url=mongodb, topic_prefix=prefix,
        database=f"{prefix.strip('.')}_{name}", group_id=f"{out_prefix}leads", duplicate_check=duplicate_check,
        batch_max_records=int(os.environ.get("BENCH_BATCH", "1000")), batch_timeout_ms=50, log_level="WARNING", write_chunk=int(os.environ.get("BENCH_WRITE_CHUNK", "250")),
        service_principals=["bench"],  # a trusted load generator: no race with the licence grant
    )
    service = create_app(settings)
    commands = EndOffsets(bootstrap, prefix + LEADS_COMMANDS)
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        async with commands:
            target = await commands.total()
            started = time.perf_counter()
            await service.start()
            try:
                await until_committed(admin, settings.group_id, prefix + LEADS_COMMANDS, target)
                elapsed = time.perf_counter() - started
            finally:
                await service.stop()
        await count_and_drop(mongodb, settings.database, count)
        return elapsed
    finally:
        await admin.close()


async def processes_run(bootstrap: str, mongodb: str, prefix: str, count: int, instances: int) -> float:
    """``instances`` leads services started as ``python -m services.leads`` (duplicate check off)."""
    database = f"{prefix.strip('.')}_procs"
    group_id = f"{prefix}procs.leads"
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MONGODB_URL": mongodb, "TOPIC_PREFIX": prefix,
        "DATABASE": database, "GROUP_ID": group_id, "DUPLICATE_CHECK": "false",
        "BATCH_MAX_RECORDS": os.environ.get("BENCH_BATCH", "1000"), "BATCH_TIMEOUT_MS": "50",
        "WRITE_CHUNK": os.environ.get("BENCH_WRITE_CHUNK", "250"), "SERVICE_PRINCIPALS": '["bench"]',
    }
    commands = EndOffsets(bootstrap, prefix + LEADS_COMMANDS)
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    procs: list[subprocess.Popen] = []
    try:
        async with commands:
            target = await commands.total()
            started = time.perf_counter()
            procs.extend(start_service("leads", settings) for _ in range(instances))

            def alive() -> None:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a leads process exited during the benchmark (its stderr is above)")

            await until_committed(admin, group_id, prefix + LEADS_COMMANDS, target, alive)
            elapsed = time.perf_counter() - started
    finally:
        stop_all(procs)
        await admin.close()
    await count_and_drop(mongodb, database, count)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000, help="commands to put on the topic (default 100000)")
    parser.add_argument("--skip-dup", action="store_true", help="skip the duplicate-check run")
    parser.add_argument("--instances", type=int, default=0,
                        help="also run N leads services as separate processes in one group (default: skip)")
    args = parser.parse_args()
    stack = Stack()
    stack.up()
    use_local_stack_credentials(stack)
    bootstrap, mongodb = stack.config.kafka_bootstrap, stack.config.mongodb_url
    results = []
    # Each contender gets its own copy of the input so none reads a warm page cache of the others' writes.
    n = args.leads
    contenders: list[tuple[str, Callable[[str], Awaitable[float]]]] = [
        ("bare aiokafka + insert_many", lambda prefix: bare(bootstrap, mongodb, prefix, n)),
        ("leads service", lambda prefix: service_run(bootstrap, mongodb, prefix, n, False)),
    ]
    if not args.skip_dup:
        contenders.append(("leads service + duplicate check", lambda prefix: service_run(bootstrap, mongodb, prefix, n, True)))
    if args.instances:
        contenders.append((f"leads service x{args.instances} processes",
                           lambda prefix: processes_run(bootstrap, mongodb, prefix, n, args.instances)))
    for name, run in contenders:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        print(f"producing {n} commands for: {name} ...", file=sys.stderr)
        await produce_commands(bootstrap, prefix, n)
        print(f"running: {name} ...", file=sys.stderr)
        results.append((name, await run(prefix)))
    base_rate = args.leads / results[0][1]
    print()
    print(f"{'contender':34} {'seconds':>9} {'leads/s':>10} {'vs bare':>8}")
    for name, elapsed in results:
        rate = args.leads / elapsed
        print(f"{name:34} {elapsed:9.2f} {rate:10.0f} {rate / base_rate:8.2f}")
    if not args.skip_dup:
        per_create_off = results[1][1] / args.leads * 1e6
        per_create_on = results[2][1] / args.leads * 1e6
        print(f"\nduplicate check: {per_create_on - per_create_off:+.1f} µs per create "
              f"({per_create_on:.1f} µs with, {per_create_off:.1f} µs without)")
    print("target (issue 3): leads service >= 0.70 of bare")


if __name__ == "__main__":
    asyncio.run(main())
