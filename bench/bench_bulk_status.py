"""What following a 10,000-lead mass action costs: one status read, before (aggregate + 1,000 refusals) and now.

One job's answers (10,000 by default, 30 % refused) are stored through `BulkRepository` on the
local FerretDB; then the same status read is done many times both ways, one after the other in the
same run: the read of before (counts by `$group` over the job's answers, its refusals found by job
and state and sorted by lead id, up to 1,000, as `GET /bulk/{id}` did) against the one of now (four
index-range counts and a page of 50 refusals from the `ix_state` index, as `GET /bulk/{id}` does;
the CLI asks for one). Figures are CPU per read (this process and FerretDB, from /proc) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from services.leads.bulk.repository import Answer, BulkRepository  # noqa: E402
from services.leads.domain import bulk as rules  # noqa: E402


async def _before(db, bulk_id: str) -> None:
    """The status read of before this change, query for query."""
    answers = db["bulk_answers"]
    pipeline = [{"$match": {"job_id": bulk_id}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    async for _ in await answers.aggregate(pipeline):
        pass
    async for _ in answers.find({"job_id": bulk_id, "state": rules.REFUSED}).sort("lead_id", 1).limit(1_000):
        pass


async def _now(jobs: BulkRepository, bulk_id: str, limit: int) -> None:
    await jobs.counts(bulk_id)
    await jobs.refusals(bulk_id, limit)


async def measure(leads: int, reads: int) -> dict:
    endpoints = common.stack_endpoints()
    prefix = common.new_prefix("bulkstatus")
    client = common.mongo(endpoints.mongodb)
    db = client[f"{prefix.strip('.')}_leads"]
    try:
        jobs = BulkRepository(db)
        await jobs.ensure_indexes()
        await db["bulk_answers"].create_index([("job_id", 1), ("state", 1)])  # the index of before, for its queries
        now = datetime.now(UTC)
        ids = [f"L{i}" for i in range(leads)]
        await jobs.start(rules.check_request("b1", {"action": "delete", "lead_ids": ids[:1]}, "bench"), "c", "c", now)
        for n, start in enumerate(range(0, leads, 200)):  # answers as the tracker records them, a batch at a time
            wave = [Answer(f"c{i}", ids[i], rules.REFUSED if i % 10 < 3 else rules.APPLIED, "invalid_state" if i % 10 < 3 else None,
                           "deleted" if i % 10 < 3 else None) for i in range(start, min(leads, start + 200))]
            await jobs.record({a.command_id: "b1" for a in wave}, wave, now + timedelta(milliseconds=n))
        runs = {}
        for name, read in (("before", lambda: _before(db, "b1")), ("now, page of 50", lambda: _now(jobs, "b1", 50)),
                           ("now, CLI's page of 1", lambda: _now(jobs, "b1", 1))):
            await read()  # warm
            meter = common.stack_meter(endpoints).start()
            for _ in range(reads):
                await read()
            runs[name] = dict(meter.sample())
        return {"leads": leads, "reads": reads, "runs": runs}
    finally:
        await client.drop_database(db.name)
        await client.close()


def print_table(result: dict) -> None:
    print(f"status read of a job of {result['leads']:,} answers (30 % refused), {result['reads']} reads each; CPU per read from /proc")
    print(f"{'read':<22} {'bench µs':>9} {'ferretdb µs':>12} {'total µs':>9} {'ratio':>6}")
    base = None
    for name, used in result["runs"].items():
        per = {k: v / result["reads"] * 1e6 for k, v in used.items() if k != "kafka"}
        total = sum(per.values())
        base = base or total
        print(f"{name:<22} {per.get('bench', 0):>9.0f} {per.get('ferretdb', 0):>12.0f} {total:>9.0f} {total / base:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=30)
    args = parser.parse_args()
    common.quiet_logs()
    print_table(asyncio.run(measure(args.leads, args.reads)))


if __name__ == "__main__":
    main()
