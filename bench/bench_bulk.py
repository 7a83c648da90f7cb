"""Mass action against its baseline: N leads moved by one crm.leads.bulk-update vs N single crm.lead.move.

Both run in the same process on the same in-process leads service and stack, one after the other;
the figures are CPU per lead (this process, which holds the service and the sender, plus Kafka and
FerretDB, from /proc) and their ratio, so load elsewhere on the machine does not change them.
The bulk names its leads by `lead_ids` up to the contract's 1,000, by a filter (the stage they are
in) past that, or as `--by` says. The waits poll slowly or from a child process, so their CPU is
not counted as the service's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import EndOffsets, stack_meter, until_committed_elsewhere  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.bulk import BulkUpdateLeads, LeadFilter  # noqa: E402
from contracts.leads import CreateLead, MoveLead  # noqa: E402
from contracts.topics import LEADS_COMMANDS  # noqa: E402
from services.leads.app import create_app  # noqa: E402
from services.leads.bulk.repository import BulkRepository  # noqa: E402
from services.leads.settings import LeadsSettings  # noqa: E402


def _record(prefix: str, payload, key: str) -> tuple[str, bytes, bytes]:
    message = build_message(payload, source="bench", actorid="bench")
    return prefix + LEADS_COMMANDS, key.encode(), message.to_json_bytes()


# The most `lead_ids` one crm.leads.bulk-update takes (contracts/bulk.py); more are refused `validation`.
MAX_LEAD_IDS = 1_000


async def _until(predicate, what: str, timeout: float = 600, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(every)


def _bulk_move(lead_ids: list[str], by: str) -> BulkUpdateLeads:
    if by == "ids":
        return BulkUpdateLeads(bulk_id="bench-move", action="move", lead_ids=lead_ids, stage_id="processing")
    # The leads the single commands did not move are exactly those still in New.
    return BulkUpdateLeads(bulk_id="bench-move", action="move", filter=LeadFilter(pipeline_id="default", stage_id="new"),
                           stage_id="processing")


async def measure(leads: int, by: str = "auto") -> dict:
    endpoints = common.stack_endpoints()
    prefix = common.new_prefix("bulk")
    settings = LeadsSettings(
        kafka_bootstrap_servers=endpoints.kafka, mongodb_url=endpoints.mongodb, topic_prefix=prefix,
        database=f"{prefix.strip('.')}_leads", group_id=f"{prefix}leads", service_principals=["bench"],
        duplicate_check=False, log_level="WARNING", bulk_chunk=int(os.environ.get("BENCH_BULK_CHUNK", "200")),
    )
    service = create_app(settings)
    await service.start()
    db = service.db
    try:
        ids = [f"L{i}" for i in range(2 * leads)]
        await common.send_all(endpoints.kafka, [_record(prefix, CreateLead(lead_id=i, title=f"Lead {i}"), i) for i in ids])
        await _until(lambda: _stored(db, 2 * leads), "leads created")
        figures = {}

        async with EndOffsets(endpoints.kafka, prefix + LEADS_COMMANDS) as commands:
            meter = stack_meter(endpoints).start()
            started = time.perf_counter()
            await common.send_all(endpoints.kafka, [_record(prefix, MoveLead(lead_id=i, stage_id="processing"), i) for i in ids[:leads]])
            await until_committed_elsewhere(endpoints.kafka, settings.group_id, prefix + LEADS_COMMANDS, await commands.total())
            figures["single commands"] = (time.perf_counter() - started, meter.sample().copy())

        meter = stack_meter(endpoints).start()
        started = time.perf_counter()
        by = by if by != "auto" else ("ids" if leads <= MAX_LEAD_IDS else "filter")
        await common.send_all(endpoints.kafka, [_record(prefix, _bulk_move(ids[leads:], by), "bench-move")])
        await _until(lambda: _finished(db, "bench-move"), "the bulk job", every=0.25)
        figures[f"one bulk ({by})"] = (time.perf_counter() - started, meter.sample().copy())
        counts = await BulkRepository(db).counts("bench-move")
        if counts["applied"] != leads:  # a figure per lead means nothing unless each lead was moved
            raise RuntimeError(f"the bulk job moved {counts['applied']} of {leads} leads: {counts}")
        return {"leads": leads, "runs": figures}
    finally:
        await service.stop()
        await common.drop_prefix(endpoints, prefix)


async def _stored(db, count: int) -> bool:
    return await db["leads"].count_documents({}) >= count


async def _finished(db, bulk_id: str) -> bool:
    """Whether the job completed; a job refused or cancelled stops the run with its reason (it would never complete)."""
    job = await db["bulk_jobs"].find_one({"_id": bulk_id}, {"state": 1, "refused_message": 1, "total": 1})
    if job is None or job["state"] in ("expanding", "running"):
        return False
    if job["state"] != "completed":
        raise RuntimeError(f"the bulk job ended {job['state']}: {job.get('refused_message') or 'see its report'}")
    return True


def print_table(result: dict) -> None:
    leads = result["leads"]
    print(f"{leads:,} leads moved to processing, each way (CPU per lead from /proc; bench = the service + sender)")
    print(f"{'contender':<18} {'seconds':>8} {'bench µs':>9} {'kafka µs':>9} {'ferretdb µs':>12} {'total µs':>9} {'ratio':>6}")
    base = None
    for name, (seconds, used) in result["runs"].items():
        per = {k: v / leads * 1e6 for k, v in used.items()}
        total = sum(per.values())
        base = base or total
        print(f"{name:<18} {seconds:>8.2f} {per.get('bench', 0):>9.0f} {per.get('kafka', 0):>9.0f} {per.get('ferretdb', 0):>12.0f} "
              f"{total:>9.0f} {total / base:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--by", choices=("auto", "ids", "filter"), default="auto",
                        help=f"how the bulk names its leads (auto: lead_ids up to {MAX_LEAD_IDS:,}, else a filter)")
    args = parser.parse_args()
    common.quiet_logs()
    print_table(asyncio.run(measure(args.leads, args.by)))


if __name__ == "__main__":
    main()
