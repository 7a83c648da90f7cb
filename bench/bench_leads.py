"""Leads intake benchmark: N ``crm.lead.create`` commands already on the topic, stored and announced.

Compares, in one run on the local stack, each contender on its own copy of the commands:
  warm-up   first, unmeasured: the service and the bare consumer on a tenth as many commands (the
            brokers' JIT compiler and FerretDB's caches warm up there, not in the first contender);
  service   ``python -m services.leads``, as deployed (duplicate check off): every lead stored, its
            events published;
  bare      the unavoidable work of the job, as one aiokafka consumer: consume the same records,
            bulk-insert the very documents the service stored and produce the very event records it
            published (both read back from the service's run before the clock starts) into a collection
            with the service's own indexes (the read side needs them), commit; and the same without the
            indexes (``unindexed_bare``: the floor of the figures before 2026-12-02);
  service+dup  the service process with the duplicate check on;
  service xN   with --instances N (repeatable): N service processes in one consumer group on six partitions.

For every contender, over its steady span (from the first commit seen to the last: the processes'
start and group join left out; the whole run's figures beside it): the wall rate and the CPU per lead
of each process (the contender's own, Kafka and FerretDB, from /proc/<pid>/stat; the stack's pids from
crmctl's pid files), Kafka's by thread group (bench/kafka_threads.py). The bench process polls the
committed offsets seldom (common.until_committed): it costs the broker next to nothing.

Run: .venv/bin/python bench/bench_leads.py [--leads 100000] [--instances 2 --instances 3] [--warm-up 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py: connections, CPU meter)
from common import Endpoints, EndOffsets, new_prefix, stack_meter, until_committed  # noqa: E402
from kafka_threads import KafkaThreads  # noqa: E402  (bench/kafka_threads.py)

from contracts import build_message  # noqa: E402
from contracts.leads import CreateLead  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS, LEADS_EVENTS  # noqa: E402
from crmkit.topics import ensure_topics  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402

from processes import start_service, stop_all  # noqa: E402  (bench/processes.py)

BATCH = int(os.environ.get("BENCH_BATCH", "1000"))


def command_data(i: int, names: int = 50_000) -> dict:
    """Create ``i``'s data: contact names repeat every ``names`` leads (the duplicate check finds those)."""
    return {
        "title": f"Lead {i}", "source": "bench", "utm_source": "bench", "need_maturity": "interested",
        "contact": {"name": f"Contact {i % names}", "phone": f"+7912{i % 9000000:07d}", "email": f"c{i}@example.com"},
    }


def create_records(prefix: str, count: int, start: int = 0, names: int = 50_000):
    for i in range(start, start + count):
        payload = CreateLead(lead_id=f"L{i:07d}", **command_data(i, names))
        message = build_message(payload, source="bench/load", actorid="bench")
        yield prefix + LEADS_COMMANDS, payload.lead_id.encode(), message.to_json_bytes()


async def produce_commands(bootstrap: str, prefix: str, count: int) -> None:
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [prefix + LEADS_COMMANDS, prefix + LEADS_EVENTS, prefix + DIRECTORY_EVENTS], 6)
    await common.send_all(bootstrap, [common.grant_record(prefix)])
    # Half the creates share a contact name with an earlier lead, at any size (as 50,000 names do at
    # 100,000 leads): the duplicate check then records duplicates, not only looks for them.
    await common.send_all(bootstrap, create_records(prefix, count, names=max(1, count // 2)))


def result(name: str, count: int, elapsed: float, meter: common.CpuMeter, service: list[str]) -> dict:
    """One contender's figures; ``service`` names the processes whose CPU is the contender's own."""
    per_lead = meter.per_item_us(count)
    return {
        "name": name, "leads": count, "seconds": elapsed, "per_second": count / elapsed,
        "cpu_us_per_lead": per_lead, "own_cpu_us_per_lead": sum(per_lead.get(p, 0.0) for p in service),
    }


class Steady:
    """The steady part of a run: from the first commit seen (the processes' start, group join and first
    fetch left out) to the last; CPU per lead and rate over that span only, Kafka's threads by group."""

    def __init__(self, endpoints: Endpoints, meter: common.CpuMeter) -> None:
        self.endpoints, self.meter = endpoints, meter
        self.done_at_start = 0
        self.started = 0.0
        self.window: common.CpuMeter | None = None
        self.threads: KafkaThreads | None = None

    def progress(self, done: int) -> None:
        if self.window is None and done > 0:
            self.threads = KafkaThreads(self.endpoints.kafka_pid).start()
            self.window = self.meter.fork()
            self.started, self.done_at_start = time.perf_counter(), done

    def figures(self, name: str, count: int, service: list[str], whole: dict, ended: float) -> dict:
        """The span's figures (it ended at ``ended``, a perf_counter reading), the whole run's beside them
        under ``with_start``; a run done by its first commit seen has no span: its whole figures then."""
        leads = count - self.done_at_start
        if self.window is None or self.threads is None or leads <= 0:
            return {**whole, "with_start": dict(whole)}
        self.window.sample()
        self.threads.sample()  # reads the threads' CPU first, then their names (jstack: after the span)
        row = result(name, leads, ended - self.started, self.window, service)
        row["kafka_threads_us_per_lead"] = self.threads.per_item_us(leads)
        row["with_start"] = {k: whole[k] for k in ("seconds", "per_second", "own_cpu_us_per_lead", "cpu_us_per_lead")}
        return row


async def count_stored(endpoints: Endpoints, database: str, count: int, drop: bool = True) -> None:
    """Check every lead was stored; drop the contender's database unless kept for the bare run.

    Counted by reading the ids in batches: FerretDB answers one count over 100,000 documents slower
    than the client's 30 s socket timeout on a busy machine, each batch well within it.
    """
    client = common.mongo(endpoints.mongodb)
    try:
        stored = 0
        async for _ in client[database]["leads"].find({}, {"_id": 1}, batch_size=5000):
            stored += 1
        if stored != count:
            raise RuntimeError(f"{stored} leads stored in {database}, expected {count}")
    finally:
        if drop:
            await client.drop_database(database)
        await client.close()


async def service_output(endpoints: Endpoints, prefix: str, database: str) -> tuple[dict[str, dict], dict[bytes, list]]:
    """What the service run stored (lead documents by id) and published (event records by key)."""
    client = common.mongo(endpoints.mongodb)
    try:
        documents = {doc["_id"]: doc async for doc in client[database]["leads"].find({}, batch_size=2000)}
        await client.drop_database(database)
    finally:
        await client.close()
    events: dict[bytes, list] = defaultdict(list)
    async with EndOffsets(endpoints.kafka, prefix + LEADS_EVENTS) as offsets:
        total = await offsets.total()
    reader = common.consumer(endpoints.kafka, prefix + LEADS_EVENTS, auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    try:
        seen = 0
        while seen < total:
            for records in (await reader.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    events[record.key].append((record.value, list(record.headers or ())))
                    seen += 1
    finally:
        await reader.stop()
    return documents, events


async def bare(endpoints: Endpoints, prefix: str, count: int, documents: dict[str, dict], events: dict[bytes, list],
               *, indexed: bool = True) -> dict:
    """The floor: consume, insert_many the stored documents, produce the event records, commit; no rules.

    ``indexed``: into a collection with the read side's indexes, as the service stores them
    (LeadRepository.ensure_indexes): lists, search and the duplicate check read through them, so keeping
    them is part of storing a lead. They cost FerretDB ~40 µs a document (11 B-trees ~2 µs each, the
    search words' full-text table ~18: lane 12's insert runs). Without: the bare floor the figures
    before 2026-12-02 were measured against, kept beside it.
    """
    client = common.mongo(endpoints.mongodb)
    database = f"{prefix.strip('.')}_bare"
    col = client[database]["leads"]
    if indexed:
        from crmkit.mongo import is_ferretdb
        from services.leads.repository import LeadRepository

        await LeadRepository(client[database]).ensure_indexes(ferretdb=await is_ferretdb(client[database]))
    reader = common.consumer(endpoints.kafka, prefix + LEADS_COMMANDS, group_id=prefix + "bare",
                             auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=BATCH)
    writer = common.producer(endpoints.kafka, linger_ms=5)
    await reader.start()
    await writer.start()
    done = 0
    meter = stack_meter(endpoints).start()
    steady = Steady(endpoints, meter)
    started = time.perf_counter()
    try:
        while done < count:
            batch = await reader.getmany(timeout_ms=200, max_records=BATCH)
            keys = [record.key for records in batch.values() for record in records]
            if not keys:
                continue
            await col.insert_many([documents[key.decode()] for key in keys], ordered=False)
            acks = [await writer.send(prefix + LEADS_EVENTS, value, key=key, headers=headers)
                    for key in keys for value, headers in events.get(key, ())]
            await asyncio.gather(*acks)
            await reader.commit()
            done += len(keys)
            steady.progress(done)
        ended = time.perf_counter()
        meter.sample()
        name = "bare consume + insert_many + produce" + ("" if indexed else ", no indexes")
        return steady.figures(name, count, ["bench"], result(name, count, ended - started, meter, ["bench"]), ended)
    finally:
        await reader.stop()
        await writer.stop()
        await client.drop_database(database)
        await client.close()


async def processes_run(endpoints: Endpoints, prefix: str, count: int, instances: int, duplicate_check: bool = False,
                        keep: bool = False, name: str = "") -> dict:
    """``instances`` leads services started as ``python -m services.leads``, as deployed; the figures of
    the steady span (``Steady``), the whole run's under ``with_start``. ``keep``: the database is left
    for the bare run (its name in ``database``)."""
    database = f"{prefix.strip('.')}_procs"
    group_id = f"{prefix}procs.leads"
    settings = {
        **common.service_connection(endpoints), "TOPIC_PREFIX": prefix,
        "DATABASE": database, "GROUP_ID": group_id, "DUPLICATE_CHECK": str(duplicate_check).lower(),
        "BATCH_MAX_RECORDS": str(BATCH),
        "SERVICE_PRINCIPALS": '["bench"]',  # a trusted load generator: no race with the licence grant
    }
    if "BENCH_WRITE_CHUNK" in os.environ:  # else the service's own default
        settings["WRITE_CHUNK"] = os.environ["BENCH_WRITE_CHUNK"]
    client = common.admin(endpoints.kafka)
    await client.start()
    procs: list[subprocess.Popen] = []
    meter = stack_meter(endpoints)
    steady = Steady(endpoints, meter)
    try:
        async with EndOffsets(endpoints.kafka, prefix + LEADS_COMMANDS) as commands:
            target = await commands.total()
            meter.start()
            started = time.perf_counter()
            for n in range(instances):
                procs.append(start_service("leads", settings))
                meter.add(f"leads{n + 1}", procs[-1].pid)

            def alive() -> None:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a leads process exited during the benchmark (its stderr is above)")

            polls = await until_committed(client, group_id, prefix + LEADS_COMMANDS, target, alive, progress=steady.progress)
            ended = time.perf_counter()
            meter.sample()
            names = [f"leads{n + 1}" for n in range(instances)]
            label = name or f"leads service x{instances} process{'es' if instances > 1 else ''}" + (" + duplicate check" if duplicate_check else "")
            figures = steady.figures(label, count, names, result(label, count, ended - started, meter, names), ended)
    finally:
        stop_all(procs)
        await client.close()
    await count_stored(endpoints, database, count, drop=not keep)
    figures["instances"] = instances
    figures["offset_polls"] = polls
    if keep:
        figures["database"] = database
    return figures


async def measure(endpoints: Endpoints, leads: int, duplicate_check: bool = True, instances: tuple[int, ...] = (),
                  warm_up: int | None = None) -> dict:
    """Every contender on its own copy of the commands, after an unmeasured warm-up; the figures the harness keeps.

    The warm-up (a tenth of ``leads`` unless given; 0: none) runs the service process and the bare consumer
    once, unmeasured: right after the stack starts, the brokers' JIT compiler alone cost ~50 µs of Kafka
    CPU per lead in the first 20,000 (bench/kafka_threads.py), and whichever contender came first paid it.
    """
    rows: list[dict] = []

    async def fresh(name: str, count: int = leads) -> str:
        prefix = new_prefix(name)
        print(f"producing {count:,} commands for: {name} ...", file=sys.stderr)
        await produce_commands(endpoints.kafka, prefix, count)
        return prefix

    async def service_and_bare(name: str, count: int, *, unindexed: bool = False) -> tuple[dict, ...]:
        prefix = await fresh(name, count)
        print(f"running: leads service ({name}) ...", file=sys.stderr)
        service = await processes_run(endpoints, prefix, count, 1, keep=True, name="leads service (1 process)")
        documents, events = await service_output(endpoints, prefix, service.pop("database"))
        await common.drop_prefix(endpoints, prefix)
        bares = []
        for indexed in (True, False) if unindexed else (True,):
            bare_prefix = await fresh(f"{name}bare", count)
            print(f"running: bare ({name}{'' if indexed else ', no indexes'}) ...", file=sys.stderr)
            bares.append(await bare(endpoints, bare_prefix, count, documents, events, indexed=indexed))
            await common.drop_prefix(endpoints, bare_prefix)
        return service, *bares

    warm = leads // 10 if warm_up is None else warm_up
    warm_rows = await service_and_bare("warm", warm) if warm else ()
    service, bare_row, unindexed_row = await service_and_bare("svc", leads, unindexed=True)
    rows += [bare_row, service]
    if duplicate_check:
        prefix = await fresh("dup")
        print("running: leads service + duplicate check ...", file=sys.stderr)
        rows.append(await processes_run(endpoints, prefix, leads, 1, duplicate_check=True))
        await common.drop_prefix(endpoints, prefix)
    for n in instances:
        prefix = await fresh(f"x{n}")
        print(f"running: {n} leads processes ...", file=sys.stderr)
        rows.append(await processes_run(endpoints, prefix, leads, n))
        await common.drop_prefix(endpoints, prefix)
    figures = {
        "leads": leads,
        "warm_up": {"leads": warm, "contenders": list(warm_rows)},
        "contenders": rows,
        "per_second": service["per_second"],
        "bare_per_second": bare_row["per_second"],
        "ratio_to_bare": service["per_second"] / bare_row["per_second"],
        # The floor of the figures before 2026-12-02: the same work into a collection without indexes.
        "unindexed_bare": unindexed_row,
        "ratio_to_unindexed_bare": service["per_second"] / unindexed_row["per_second"],
        "service_cpu_us_per_lead": service["own_cpu_us_per_lead"],
        "service_kafka_us_per_lead": service["cpu_us_per_lead"].get("kafka", 0.0),
        "bare_cpu_us_per_lead": bare_row["own_cpu_us_per_lead"],
    }
    if duplicate_check:
        figures["dup_check_us_per_lead"] = rows[2]["own_cpu_us_per_lead"] - service["own_cpu_us_per_lead"]
    scale = [r for r in rows if r.get("instances") and r is not service and "duplicate" not in r["name"]]
    if scale:
        figures["scale_out"] = {str(r["instances"]): {"per_second": r["per_second"], "ratio_to_bare": r["per_second"] / bare_row["per_second"],
                                                      "service_cpu_us_per_lead": r["own_cpu_us_per_lead"],
                                                      "kafka_us_per_lead": r["cpu_us_per_lead"].get("kafka", 0.0)} for r in scale}
    return figures


def print_table(figures: dict) -> None:
    bare_rate = figures["contenders"][0]["per_second"]  # the same run's bare (the median may be another run's)
    print(f"\nleads intake, {figures['leads']:,} creates already on the topic (6 partitions), "
          f"after an unmeasured warm-up of {figures.get('warm_up', {}).get('leads', 0):,}")
    print(f"{'contender (steady span)':52} {'seconds':>8} {'leads/s':>9} {'vs bare':>8} {'own µs':>8} {'kafka µs':>9} {'ferret µs':>10}  with start: leads/s, own µs")
    unindexed = [figures["unindexed_bare"]] if "unindexed_bare" in figures else []
    for row in [*figures["contenders"], *unindexed]:
        cpu, whole = row["cpu_us_per_lead"], row.get("with_start", {})
        print(f"{row['name']:52} {row['seconds']:8.2f} {row['per_second']:9,.0f} {row['per_second'] / bare_rate:8.2f} "
              f"{row['own_cpu_us_per_lead']:8.0f} {cpu.get('kafka', 0):9.0f} {cpu.get('ferretdb', 0):10.0f}  "
              f"{whole.get('per_second', 0):9,.0f} {whole.get('own_cpu_us_per_lead', 0):6.0f}")
    print("(µs = CPU per lead, user + system, of the contender's own process(es), Kafka and FerretDB, from its first\n"
          " commit to its last; 'with start': from the processes' start; the bare stores into a collection with the\n"
          " service's indexes, 'no indexes' is the floor of the figures before 2026-12-02)")
    print("Kafka CPU per lead by thread group:")
    for row in [*figures.get("warm_up", {}).get("contenders", ()), *figures["contenders"], *unindexed]:
        label = row["name"] + (" [warm-up]" if row in figures.get("warm_up", {}).get("contenders", ()) else "")
        print(f"  {label:48} " + ", ".join(f"{k} {v:.0f}" for k, v in row.get("kafka_threads_us_per_lead", {}).items()))
    if "dup_check_us_per_lead" in figures:
        print(f"duplicate check: {figures['dup_check_us_per_lead']:+.0f} µs CPU per create")
    print("targets (issue 21): service CPU <= 100 µs per create, duplicate check <= +25 µs, intake >= 0.6 of bare")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000, help="commands to put on the topic (default 100000)")
    parser.add_argument("--warm-up", type=int, default=None, help="commands of the unmeasured warm-up pass (default: a tenth of --leads)")
    parser.add_argument("--skip-dup", action="store_true", help="skip the duplicate-check run")
    parser.add_argument("--instances", type=int, action="append", default=[],
                        help="also run N leads services as separate processes in one group (repeatable; default: skip)")
    args = parser.parse_args()
    common.quiet_logs()
    figures = await measure(common.stack_endpoints(), args.leads, not args.skip_dup, tuple(args.instances), args.warm_up)
    print_table(figures)


if __name__ == "__main__":
    asyncio.run(main())
