"""Qualification and activity throughput: N commands sent in one burst to running services, as deployed.

In one run on the local stack, with leads, qualification and activity as separate processes:
  creates        N crm.lead.create for the leads to work on (the leads service's rate, for reference);
  bare insert    insert_many of the very documents the leads service stored, into a scratch collection:
                 the database floor of the same run;
  activity       T crm.task.create on the first T/10 leads: seconds until the activity group has
                 committed all of them (each task stored and its events acknowledged), and until the
                 leads group has committed every summary (each on its lead's card);
  qualification  N crm.lead.qualify (deal_and_company, each a new company): seconds until every
                 command is committed (every crm.lead.qualified published) and every lead card in the
                 leads service shows ``qualified`` (the leads group committed every qualification event;
                 the cards are counted once after).
Per stage, each service's batches (how many, records a batch, share of the time in a handler) come from
its /metrics, with the records each published by topic and type; ``--profile DIR`` also samples each service
with py-spy and prints its heaviest functions, ``--count-ops`` counts each service's database commands per stage.
The services run before the burst starts (their start is not timed); the burst itself takes a fraction
of the time measured, and its length is reported. CPU per command of each process comes from /proc.

Run: .venv/bin/python bench/bench_flow.py [--leads 1000] [--tasks 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
from bench_leads import create_records  # noqa: E402
from common import Endpoints, EndOffsets, until_committed  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.activity import CreateTask  # noqa: E402
from contracts.qualification import NewCompany, QualifyLead  # noqa: E402
from contracts.topics import (  # noqa: E402
    ACTIVITY_COMMANDS, ACTIVITY_EVENTS, ALL_TOPICS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_COMMANDS, QUALIFICATION_EVENTS,
)
from aiokafka import TopicPartition  # noqa: E402

from crmkit.topics import ensure_topics  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402

from bench_import_cli import count_db_ops, db_ops  # noqa: E402
from processes import free_port, start_service, stop_all  # noqa: E402  (bench/processes.py)
from stages import BatchProbe, Profiles, print_stages  # noqa: E402  (bench/stages.py)

SERVICES = ("leads", "qualification", "activity")


def qualify_records(prefix: str, count: int):
    for i in range(count):
        lead_id = f"L{i:07d}"
        payload = QualifyLead(lead_id=lead_id, qualification_type="deal_and_company", deal_pipeline_id="default",
                              new_company=NewCompany(name=f"ООО Ромашка {i}", inn="7701234567"))
        yield prefix + QUALIFICATION_COMMANDS, lead_id.encode(), build_message(payload, source="bench/load", actorid="bench").to_json_bytes()


def task_records(prefix: str, count: int, leads: int):
    start = datetime.now(UTC) + timedelta(days=1)
    for i in range(count):
        lead_id = f"L{i % leads:07d}"
        payload = CreateTask(lead_id=lead_id, type="call", title=f"Call {i}", start_at=start,
                             due_at=start + timedelta(hours=1), assignee_id=f"user{i % 20}")
        yield prefix + ACTIVITY_COMMANDS, lead_id.encode(), build_message(payload, source="bench/load", actorid="bench").to_json_bytes()


async def burst(endpoints: Endpoints, records, group: str, topic: str, target: int, procs, meter: common.CpuMeter) -> dict:
    """Send the records, wait until ``group`` committed ``target`` on ``topic``; seconds and CPU."""
    client = common.admin(endpoints.kafka)
    await client.start()
    try:
        meter.start()
        started = time.perf_counter()
        await common.send_all(endpoints.kafka, records)
        sent_s = time.perf_counter() - started
        await until_committed(client, group, topic, target, lambda: alive(procs))
        elapsed = time.perf_counter() - started
        meter.sample()
    finally:
        await client.close()
    return {"seconds": elapsed, "burst_s": sent_s, "started": started}


async def until_applied(endpoints: Endpoints, admin, group: str, topic: str, procs) -> int:
    """Wait until ``group`` has committed everything ``topic`` holds now; how many records that is.

    A service commits only what it stored: the leads group at the end of the qualification events has
    every card showing its qualification (read from Kafka, so the wait costs the database nothing;
    counting cards in a loop scanned every lead on FerretDB, a core's worth at 10,000 leads)."""
    async with EndOffsets(endpoints.kafka, topic) as offsets:
        total = await offsets.total()
    await until_committed(admin, group, topic, total, lambda: alive(procs))
    return total


async def timeline(endpoints: Endpoints, topics: list[str], since: float, partitions: int = 6) -> dict[str, list[tuple[float, float, int]]]:
    """When each topic's records of each type were produced since ``since`` (time.time()), in runs of records
    less than 20 ms apart: (first s, last s, records), from the records' own timestamps (``--timeline``).

    Read from Kafka after the stage, so the services are not disturbed: a service publishes a batch's events
    right before it commits it, so the runs are its batches as the next service receives them."""
    client = common.consumer(endpoints.kafka, enable_auto_commit=False)
    await client.start()
    stamps: dict[str, list[float]] = {}
    try:
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in range(partitions)]
            client.assign(parts)
            await client.seek_to_beginning(*parts)
            ends = await client.end_offsets(parts)
            left = {tp for tp in parts if ends[tp] > 0}
            while left:
                for records in (await client.getmany(*left, timeout_ms=1000)).values():
                    for r in records:
                        if r.timestamp / 1000 >= since:
                            kind = dict(r.headers or ()).get("ce-type", b"?").decode()
                            stamps.setdefault(f"{topic.split('.')[-3]}|{kind}", []).append(r.timestamp / 1000 - since)
                # The position, not the last record: a partition may end in control records.
                left = {tp for tp in left if await client.position(tp) < ends[tp]}
    finally:
        await client.stop()
    runs: dict[str, list[tuple[float, float, int]]] = {}
    for key, found in stamps.items():
        found.sort()
        out: list[list[float]] = []
        for t in found:
            if out and t - out[-1][1] < 0.02:
                out[-1][1], out[-1][2] = t, out[-1][2] + 1
            else:
                out.append([t, t, 1])
        runs[key] = [(a, b, int(n)) for a, b, n in out]
    return runs


def alive(procs: dict[str, subprocess.Popen]) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} process exited during the benchmark (its stderr is above)")


class OpsProbe:
    """Each service's database commands by kind and collection (bench/dbops), when counted (``--count-ops``)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.pids: dict[str, int] = {}

    def counting(self) -> contextlib.AbstractContextManager[None]:
        return count_db_ops(self.folder) if self.folder is not None else contextlib.nullcontext()

    async def snapshot(self) -> dict[str, dict[str, int]]:
        if self.folder is None:
            return {}
        return {name: await db_ops(self.folder, pid) for name, pid in self.pids.items()}

    @staticmethod
    def between(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """Per service, the commands run in between; a cursor's pages (named by the cursor id) counted together."""
        found: dict[str, dict[str, int]] = {}
        for name, ops in after.items():
            delta: dict[str, int] = {}
            for kind, n in ops.items():
                if n := n - before.get(name, {}).get(kind, 0):
                    kind = "getMore" if kind.startswith("getMore ") else "_us getMore" if kind.startswith("_us getMore ") else kind
                    delta[kind] = delta.get(kind, 0) + n
            found[name] = delta
        return found


async def measure(endpoints: Endpoints, leads: int, tasks: int, profile: Path | None = None, ops_dir: Path | None = None,
                  runs: bool = False, services_tree: str | None = None) -> dict:
    prefix = common.new_prefix("flow")
    databases = {name: f"{prefix.strip('.')}_{name}" for name in SERVICES}
    groups = {name: f"{prefix}{name}" for name in SERVICES}
    ports = {name: free_port() for name in SERVICES}
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=endpoints.kafka), [prefix + t for t in ALL_TOPICS], 6)
    await common.send_all(endpoints.kafka, [common.grant_record(prefix)])
    procs: dict[str, subprocess.Popen] = {}
    client = common.mongo(endpoints.mongodb)
    admin = common.admin(endpoints.kafka)
    await admin.start()
    probe = BatchProbe(ports)
    ops = OpsProbe(ops_dir)

    async def settled() -> None:
        """Every lead event projected by qualification and activity: the next stage starts on a quiet stack."""
        for name in ("qualification", "activity"):
            await until_applied(endpoints, admin, groups[name], prefix + LEADS_EVENTS, procs)

    try:
        for name in SERVICES:
            extra = {"DUE_PASS_INTERVAL_S": "0"} if name == "activity" else {}
            extra |= {"DUPLICATE_CHECK": "false"} if name == "leads" else {}
            with ops.counting():
                procs[name] = start_service(name, {
                    **common.service_connection(endpoints), "TOPIC_PREFIX": prefix, "DATABASE": databases[name],
                    "GROUP_ID": groups[name], "SERVICE_PRINCIPALS": '["bench"]', "HTTP_PORT": str(ports[name]), **extra},
                    cwd=services_tree)
            ops.pids[name] = procs[name].pid
        meter = common.stack_meter(endpoints, **{name: proc.pid for name, proc in procs.items()})
        profiles = Profiles(profile, {name: proc.pid for name, proc in procs.items()})
        print(f"creating {leads:,} leads ...", file=sys.stderr)
        creates = await burst(endpoints, create_records(prefix, leads), groups["leads"], prefix + LEADS_COMMANDS, leads, procs, meter)
        await settled()
        documents = [doc async for doc in client[databases["leads"]]["leads"].find({})]
        scratch = client[prefix.strip(".") + "_bare"]["leads"]
        started = time.perf_counter()
        for start in range(0, len(documents), 1000):
            await scratch.insert_many(documents[start:start + 1000], ordered=False)
        bare_s = time.perf_counter() - started
        await scratch.drop()

        task_leads = max(1, min(leads, tasks // 10))
        activity = None
        if tasks:
            print(f"creating {tasks:,} tasks on {task_leads:,} leads ...", file=sys.stderr)
            before, ops_before = await probe.snapshot(), await ops.snapshot()
            profiles.start("activity")
            since = time.time()
            activity = await burst(endpoints, task_records(prefix, tasks, task_leads), groups["activity"],
                                   prefix + ACTIVITY_COMMANDS, tasks, procs, meter)
            activity["cpu_us"] = meter.per_item_us(tasks)
            await until_applied(endpoints, admin, groups["leads"], prefix + ACTIVITY_EVENTS, procs)
            activity["cards_s"] = time.perf_counter() - activity.pop("started")
            meter.sample()
            activity["cpu_us_with_cards"] = meter.per_item_us(tasks)
            profiles.stop()
            activity["stages"] = BatchProbe.between(before, await probe.snapshot(), activity["cards_s"])
            activity["db_ops"] = OpsProbe.between(ops_before, await ops.snapshot())
            if runs:
                activity["timeline"] = await timeline(endpoints, [prefix + t for t in (ACTIVITY_EVENTS, LEADS_EVENTS)], since)
            stored_tasks = await client[databases["activity"]]["tasks"].count_documents({})
            if stored_tasks != tasks:
                raise RuntimeError(f"{stored_tasks} tasks stored, expected {tasks}")
            await settled()

        print(f"qualifying {leads:,} leads ...", file=sys.stderr)
        before, ops_before = await probe.snapshot(), await ops.snapshot()
        profiles.start("qualification")
        since = time.time()
        qualification = await burst(endpoints, qualify_records(prefix, leads), groups["qualification"],
                                    prefix + QUALIFICATION_COMMANDS, leads, procs, meter)
        qualification["cpu_us_published"] = meter.per_item_us(leads)
        await until_applied(endpoints, admin, groups["leads"], prefix + QUALIFICATION_EVENTS, procs)
        cards_s = time.perf_counter() - qualification.pop("started")
        meter.sample()
        qualification["cpu_us"] = meter.per_item_us(leads)
        profiles.stop()
        qualification["stages"] = BatchProbe.between(before, await probe.snapshot(), cards_s)
        qualification["db_ops"] = OpsProbe.between(ops_before, await ops.snapshot())
        if runs:
            qualification["timeline"] = await timeline(endpoints, [prefix + t for t in (QUALIFICATION_EVENTS, LEADS_EVENTS)], since)
        shown = await client[databases["leads"]]["leads"].count_documents({"status": "qualified"})
        if shown != leads:
            raise RuntimeError(f"{shown} lead cards show qualified, expected {leads}")
        qualification |= {"cards_s": cards_s, "cards_shown": shown}
    finally:
        stop_all(list(procs.values()))
        await admin.close()
        await client.close()
        await common.drop_prefix(endpoints, prefix)
    total = max(qualification["seconds"], qualification["cards_s"])
    figures = {
        "qualification": {
            "leads": leads, "seconds": total, "per_second": leads / total,
            "published_s": qualification["seconds"], "cards_s": qualification["cards_s"], "burst_s": qualification["burst_s"],
            "creates_per_second": leads / creates["seconds"], "bare_insert_per_second": leads / bare_s,
            "cpu_us_per_qualification": qualification["cpu_us"],
            "cpu_us_per_qualification_published": qualification["cpu_us_published"],
            "stages": qualification["stages"], "db_ops": qualification["db_ops"],
            **({"timeline": qualification["timeline"]} if "timeline" in qualification else {}),
        },
    }
    if activity is not None:
        figures["activity"] = {
            "tasks": tasks, "leads": task_leads, "seconds": activity["seconds"], "tasks_per_second": tasks / activity["seconds"],
            "cards_s": activity["cards_s"], "burst_s": activity["burst_s"], "cpu_us_per_task": activity["cpu_us"],
            "cpu_us_per_task_with_cards": activity["cpu_us_with_cards"], "stages": activity["stages"], "db_ops": activity["db_ops"],
            "bare_insert_per_second": leads / bare_s,
            **({"timeline": activity["timeline"]} if "timeline" in activity else {}),
        }
    return figures


def print_table(figures: dict) -> None:
    q, a = figures["qualification"], figures.get("activity")
    print(f"\nqualification, {q['leads']:,} leads (deal_and_company), sent in {q['burst_s']:.2f} s to running services")
    print(f"  every crm.lead.qualified published: {q['published_s']:.2f} s; every card shows it: {q['cards_s']:.2f} s "
          f"-> {q['per_second']:,.0f} qualifications/s")
    print(f"  same run: creates {q['creates_per_second']:,.0f}/s (the services start inside that clock), bare insert_many {q['bare_insert_per_second']:,.0f}/s")
    print("  CPU µs per qualification until published: " + _cpu(q.get("cpu_us_per_qualification_published", {})))
    print("  CPU µs per qualification until every card shows it: " + _cpu(q["cpu_us_per_qualification"]))
    print_stages(q.get("stages", {}))
    _counts(q, q["leads"], "qualification")
    _runs(q)
    if a is None:
        return
    print(f"activity, {a['tasks']:,} crm.task.create on {a['leads']:,} leads: {a['seconds']:.2f} s -> {a['tasks_per_second']:,.0f} tasks/s"
          f" (every summary on its card: {a.get('cards_s', 0):.2f} s)")
    print("  CPU µs per task until committed: " + _cpu(a["cpu_us_per_task"]))
    print("  CPU µs per task until every summary is on its card: " + _cpu(a.get("cpu_us_per_task_with_cards", {})))
    print_stages(a.get("stages", {}))
    _counts(a, a["tasks"], "task")
    _runs(a)
    print("targets (issue 21): >= 1,000 qualifications/s, >= 2,000 tasks/s")


def _counts(figures: dict, items: int, unit: str) -> None:
    """Records each service published and database commands it ran, per item of the stage."""
    for name, row in sorted(figures.get("stages", {}).items()):
        published = {k.split(".", 1)[-1] if k.startswith("bench") else k: n for k, n in row.get("published", {}).items()}
        if published:
            print(f"    {name} published per {unit}: " + ", ".join(f"{k} {n / items:.2f}" for k, n in published.items()))
    for name, found in sorted(figures.get("db_ops", {}).items()):
        print(f"    {name} database: {found.get('_commands', 0):,} commands, {found.get('_writes', 0):,} writes of "
              f"{found.get('_write_items', 0) / items:.2f} documents/statements per {unit}: "
              + ", ".join(f"{k} {n:,}" for k, n in sorted(found.items(), key=lambda kv: -kv[1]) if not k.startswith("_")))
        took = {k.removeprefix("_us "): n for k, n in found.items() if k.startswith("_us ")}
        if took:
            print(f"      its commands' time per {unit} (µs, as the client saw it): "
                  + ", ".join(f"{k} {n / items:,.0f}" for k, n in sorted(took.items(), key=lambda kv: -kv[1])))


def _runs(figures: dict) -> None:
    """Each type's records as published in runs (first-last s after the burst started: records)."""
    for key, found in sorted(figures.get("timeline", {}).items()):
        print(f"    {key} published: " + ", ".join(f"{a:.2f}-{b:.2f}: {n}" for a, b, n in found))


def _cpu(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1000, help="leads created, then qualified (default 1000)")
    parser.add_argument("--tasks", type=int, default=10_000, help="crm.task.create on a tenth as many leads (default 10000)")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of each service per stage to this folder")
    parser.add_argument("--count-ops", action="store_true", help="count each service's database commands per stage")
    parser.add_argument("--timeline", action="store_true", help="when each stage's events were published, read back from Kafka")
    parser.add_argument("--services-tree", help="run the three services from this source tree (e.g. a `git worktree` of the code "
                                                "before a change), for alternating A/B runs on the same stack")
    args = parser.parse_args()
    common.quiet_logs()
    with tempfile.TemporaryDirectory() if args.count_ops else contextlib.nullcontext() as folder:
        print_table(await measure(common.stack_endpoints(), args.leads, args.tasks, args.profile, Path(folder) if folder else None,
                                    args.timeline, args.services_tree))


if __name__ == "__main__":
    asyncio.run(main())
