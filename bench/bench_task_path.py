"""The activity write path alone: CPU per task created, of the handlers and of FerretDB, without Kafka.

The service's handlers (``ActivityHandlers.on_batch``, the collector tuned as the service tunes it) run in
this process on the local stack's FerretDB: records are parsed from their bytes as the consumer parses them
(``parse_record``, the card events through their view) and handed over as it hands them. First the leads'
``crm.lead.created`` card events (made by the leads service's own code) and a licence grant, unmeasured;
then ``--tasks`` ``crm.task.create`` on ``--leads`` leads (bench_flow's commands), ``--batch`` a batch (the
1,600-1,900 records a batch the service gets in bench_flow). What the handlers publish (each task's event,
each lead's summary) is serialised as the bus would and dropped, so the leads service's side (the summary on
the card) is not here. Per round: this process's CPU, FerretDB's (from /proc) and the wall time, per task.

Less noisy than bench_flow's activity step (no Kafka, no other services): compare two trees of the code by
running this file from a ``git worktree`` of the other commit too, alternating, there with ``--mongodb`` and
``--ferretdb-pid`` of this stack (``crm stack status``).

Run: .venv/bin/python bench/bench_task_path.py [--tasks 10000] [--leads 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/common.py)
from bench_flow import task_records  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.leads import CreateLead  # noqa: E402
from contracts.topics import ACTIVITY_COMMANDS, DIRECTORY_EVENTS, LEADS_EVENTS  # noqa: E402
from crmkit.messaging import Inbound  # noqa: E402
from crmkit.principals import PrincipalRepository  # noqa: E402
from crmkit.service import tune_gc  # noqa: E402
from services.activity.handlers import ActivityHandlers  # noqa: E402
from services.activity.messages import parse_record  # noqa: E402
from services.activity.projection import LeadProjection  # noqa: E402
from services.activity.repository import TaskRepository, TaskTypeRepository  # noqa: E402
from services.activity.settings import ActivitySettings  # noqa: E402
from services.leads import domain as leads_domain  # noqa: E402
from services.leads.messages import Cards  # noqa: E402


def lead_events(count: int) -> list[bytes]:
    """``crm.lead.created`` of ``count`` leads as the leads service publishes them."""
    now = datetime.now(UTC)
    pipeline = leads_domain.default_pipeline(now)
    actor = leads_domain.Actor(user_id="bench", licensed=True)
    values = []
    for i in range(count):
        lead_id = f"L{i:07d}"
        cause = build_message(CreateLead(lead_id=lead_id, title=f"Lead {i}"), source="bench/load", actorid="bench")
        outcome = leads_domain.create_lead(actor, lead_id, {"title": f"Lead {i}"}, pipeline, now)
        (event,) = Cards().messages(outcome.events, cause, "crm/leads", lead_id, now)
        values.append(event.value())
    return values


async def one_round(url: str, ferretdb_pid: int, tasks: int, leads: int, batch: int) -> dict[str, float]:
    settings = ActivitySettings(kafka_bootstrap_servers="127.0.0.1:1", mongodb_url=url)
    client = common.mongo(url)
    name = f"benchtask{uuid.uuid4().hex[:6]}"
    db = client[name]
    published: list[int] = []

    def sent(outbound) -> None:  # serialised as the bus does, then dropped
        published.extend(len(item.value or item.message.to_json_bytes()) for item in outbound)

    async def publish(outbound) -> None:  # the due pass's own publishing (not run here)
        sent(outbound)

    try:
        repo = TaskRepository(db, settings.recent_messages_kept)
        await repo.ensure_indexes()
        await repo.mark_list_keys_done()
        handlers = ActivityHandlers(settings, repo, LeadProjection(db), TaskTypeRepository(db),
                                    PrincipalRepository(db, settings.service_principals), source="crm/activity", publish=publish)
        offsets = iter(range(1, 10**9))

        def inbound(topic: str, value: bytes) -> Inbound:
            return Inbound(topic, 0, next(offsets), parse_record(topic, value))

        _, _, grant = common.grant_record("")
        await handlers.on_batch([inbound(DIRECTORY_EVENTS, grant)])
        cards = [inbound(LEADS_EVENTS, value) for value in lead_events(leads)]
        for start in range(0, len(cards), 1000):
            await handlers.on_batch(cards[start:start + 1000])
        commands = [inbound(ACTIVITY_COMMANDS, value) for _, _, value in task_records("", tasks, leads)]
        tune_gc(freeze=True)
        meter = common.CpuMeter({"handlers": os.getpid(), "ferretdb": ferretdb_pid})
        meter.start()
        started = time.perf_counter()
        for start in range(0, len(commands), batch):
            sent(await handlers.on_batch(commands[start:start + batch]))
        seconds = time.perf_counter() - started
        meter.sample()
        if await db["tasks"].count_documents({}) != tasks:
            raise SystemExit("not every task was stored: the run is not valid")
        return {**meter.per_item_us(tasks), "wall": seconds / tasks * 1e6, "records": len(published) / tasks}
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="crm.task.create a round (default 10000)")
    parser.add_argument("--leads", type=int, default=1_000, help="leads the tasks are spread over (default 1000)")
    parser.add_argument("--batch", type=int, default=1_700, help="records a batch (default 1700)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh database (default 3)")
    parser.add_argument("--mongodb", help="a running FerretDB's URL, with --ferretdb-pid (default: the local stack's); "
                                          "for a run from another tree, whose crmctl does not take this stack for its own")
    parser.add_argument("--ferretdb-pid", type=int, help="that FerretDB's pid, whose CPU is measured")
    args = parser.parse_args()
    common.quiet_logs()
    if args.mongodb and args.ferretdb_pid:
        url, pid = args.mongodb, args.ferretdb_pid
    else:
        endpoints = common.stack_endpoints()
        if endpoints.ferretdb_pid is None:
            sys.exit("FerretDB's pid is unknown: start the local stack (.venv/bin/crm stack up)")
        url, pid = endpoints.mongodb, endpoints.ferretdb_pid
    rounds = [asyncio.run(one_round(url, pid, args.tasks, args.leads, args.batch)) for _ in range(args.rounds)]
    print(f"activity write path alone, {args.tasks:,} tasks on {args.leads:,} leads, {args.batch:,} a batch "
          f"(µs a task, median of {args.rounds} rounds)")
    print(f"{'handlers CPU':>14}{'FerretDB CPU':>14}{'wall':>10}   rounds (handlers / FerretDB)")
    med = {k: statistics.median(r[k] for r in rounds) for k in ("handlers", "ferretdb", "wall")}
    spread = ", ".join(f"{r['handlers']:.0f}/{r['ferretdb']:.0f}" for r in rounds)
    print(f"{med['handlers']:>14.0f}{med['ferretdb']:>14.0f}{med['wall']:>10.0f}   {spread}")
    print(f"records published a task (its event, its lead's summary once a batch): {rounds[0]['records']:.2f}")


if __name__ == "__main__":
    main()
