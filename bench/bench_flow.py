"""Qualification and activity throughput: N commands sent in one burst to running services, as deployed.

In one run on the local stack, with leads, qualification and activity as separate processes:
  creates        N crm.lead.create for the leads to work on (the leads service's rate, for reference);
  bare insert    insert_many of the very documents the leads service stored, into a scratch collection:
                 the database floor of the same run;
  activity       T crm.task.create on the first T/10 leads: seconds until the activity group has
                 committed all of them (each task stored and its events acknowledged);
  qualification  N crm.lead.qualify (deal_and_company, each a new company): seconds until every
                 command is committed (every crm.lead.qualified published) and every lead card in the
                 leads service shows ``qualified``.
The services run before the burst starts (their start is not timed); the burst itself takes a fraction
of the time measured, and its length is reported. CPU per command of each process comes from /proc.

Run: .venv/bin/python bench/bench_flow.py [--leads 1000] [--tasks 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
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
from contracts.topics import ACTIVITY_COMMANDS, ALL_TOPICS, LEADS_COMMANDS, LEADS_EVENTS, QUALIFICATION_COMMANDS  # noqa: E402
from crmkit.topics import ensure_topics  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402

from processes import start_service, stop_all  # noqa: E402  (bench/processes.py)

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


def alive(procs: dict[str, subprocess.Popen]) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} process exited during the benchmark (its stderr is above)")


async def measure(endpoints: Endpoints, leads: int, tasks: int) -> dict:
    prefix = common.new_prefix("flow")
    databases = {name: f"{prefix.strip('.')}_{name}" for name in SERVICES}
    groups = {name: f"{prefix}{name}" for name in SERVICES}
    await ensure_topics(KafkaSettings(kafka_bootstrap_servers=endpoints.kafka), [prefix + t for t in ALL_TOPICS], 6)
    await common.send_all(endpoints.kafka, [common.grant_record(prefix)])
    procs: dict[str, subprocess.Popen] = {}
    client = common.mongo(endpoints.mongodb)
    admin = common.admin(endpoints.kafka)
    await admin.start()
    try:
        for name in SERVICES:
            extra = {"DUE_PASS_INTERVAL_S": "0"} if name == "activity" else {}
            extra |= {"DUPLICATE_CHECK": "false"} if name == "leads" else {}
            procs[name] = start_service(name, {
                **common.service_connection(endpoints), "TOPIC_PREFIX": prefix, "DATABASE": databases[name],
                "GROUP_ID": groups[name], "SERVICE_PRINCIPALS": '["bench"]', **extra})
        meter = common.stack_meter(endpoints, **{name: proc.pid for name, proc in procs.items()})
        print(f"creating {leads:,} leads ...", file=sys.stderr)
        creates = await burst(endpoints, create_records(prefix, leads), groups["leads"], prefix + LEADS_COMMANDS, leads, procs, meter)
        async with EndOffsets(endpoints.kafka, prefix + LEADS_EVENTS) as offsets:
            lead_events = await offsets.total()
        for name in ("qualification", "activity"):  # both have projected every lead
            await until_committed(admin, groups[name], prefix + LEADS_EVENTS, lead_events, lambda: alive(procs))
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
            activity = await burst(endpoints, task_records(prefix, tasks, task_leads), groups["activity"],
                                   prefix + ACTIVITY_COMMANDS, tasks, procs, meter)
            stored_tasks = await client[databases["activity"]]["tasks"].count_documents({})
            if stored_tasks != tasks:
                raise RuntimeError(f"{stored_tasks} tasks stored, expected {tasks}")
            activity["cpu_us"] = meter.per_item_us(tasks)

        print(f"qualifying {leads:,} leads ...", file=sys.stderr)
        qualification = await burst(endpoints, qualify_records(prefix, leads), groups["qualification"],
                                    prefix + QUALIFICATION_COMMANDS, leads, procs, meter)
        cards = client[databases["leads"]]["leads"]
        while (shown := await cards.count_documents({"status": "qualified"})) < leads:
            alive(procs)
            await asyncio.sleep(0.2)  # each count reads the cards: not so often that it loads FerretDB
        cards_s = time.perf_counter() - qualification.pop("started")
        meter.sample()
        qualification["cpu_us"] = meter.per_item_us(leads)
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
        },
    }
    if activity is not None:
        figures["activity"] = {
            "tasks": tasks, "leads": task_leads, "seconds": activity["seconds"], "tasks_per_second": tasks / activity["seconds"],
            "burst_s": activity["burst_s"], "cpu_us_per_task": activity["cpu_us"],
        }
    return figures


def print_table(figures: dict) -> None:
    q, a = figures["qualification"], figures.get("activity")
    print(f"\nqualification, {q['leads']:,} leads (deal_and_company), sent in {q['burst_s']:.2f} s to running services")
    print(f"  every crm.lead.qualified published: {q['published_s']:.2f} s; every card shows it: {q['cards_s']:.2f} s "
          f"-> {q['per_second']:,.0f} qualifications/s")
    print(f"  same run: creates {q['creates_per_second']:,.0f}/s (the services start inside that clock), bare insert_many {q['bare_insert_per_second']:,.0f}/s")
    print("  CPU µs per qualification: " + ", ".join(f"{k} {v:,.0f}" for k, v in q["cpu_us_per_qualification"].items()))
    if a is None:
        return
    print(f"activity, {a['tasks']:,} crm.task.create on {a['leads']:,} leads: {a['seconds']:.2f} s -> {a['tasks_per_second']:,.0f} tasks/s")
    print("  CPU µs per task: " + ", ".join(f"{k} {v:,.0f}" for k, v in a["cpu_us_per_task"].items()))
    print("targets (issue 21): >= 1,000 qualifications/s, >= 2,000 tasks/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1000, help="leads created, then qualified (default 1000)")
    parser.add_argument("--tasks", type=int, default=10_000, help="crm.task.create on a tenth as many leads (default 10000)")
    args = parser.parse_args()
    common.quiet_logs()
    print_table(await measure(common.stack_endpoints(), args.leads, args.tasks))


if __name__ == "__main__":
    asyncio.run(main())
