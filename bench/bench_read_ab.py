"""A/B of the leads read side: bench_read's request kinds from two source trees' leads processes, alternated.

Both processes run on the same stored leads (bench_read's database for N) at the same time; each round
times every chosen kind against one tree, then the other (the order swapped each round), each beside a
bare find_one timed just before it, with the CPU each request cost FerretDB and the leads process.

    git archive <commit> | tar -x -C /tmp/before     # the code before a change
    .venv/bin/python bench/bench_read_ab.py --before /tmp/before --only card --rounds 4 [--leads 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from crmctl.stack import Stack  # noqa: E402
from crmkit.mongo import make_client  # noqa: E402

import bench_read as br  # noqa: E402
from processes import stop_all, use_local_stack_credentials  # noqa: E402

BARE = "bare find_one by _id"


async def side(url: str, leads, ids: list[str], only: list[str], clients: int, seconds: float, pids: tuple) -> list[dict]:
    """Every chosen kind (after the bare find_one) against one leads process: p50, p99, rate, CPU per request."""
    rows = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {br.TOKEN}"}, timeout=60) as http:
        cursor = (await http.get("/leads", params={"limit": "50", "source": "expo"})).json()["next_cursor"]

        async def get(path: str, params: dict | None = None) -> None:
            reply = await http.get(path, params=params)
            if reply.status_code != 200:
                raise RuntimeError(f"{path} {params}: {reply.status_code} {reply.text[:200]}")

        kinds = [k for k in br.lead_kinds(get, leads, ids, cursor) if k[0] == BARE or any(o in k[0] for o in only)]
        for name, call in kinds:
            await call(0)
            before = [br.cpu_seconds(p) for p in pids]
            took = await br.timed(clients, seconds, call)
            used = [1000 * (br.cpu_seconds(p) - b) / len(took) for p, b in zip(pids, before, strict=True)]
            rows.append({"request": name, "n": len(took), "per_second": len(took) / seconds, "p50_ms": statistics.median(took),
                         "p99_ms": br.percentile(took, 0.99), "ferretdb_cpu_ms": used[0], "leads_cpu_ms": used[1]})
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the source tree of the code before (its services/ and crmkit/)")
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="card", help="comma-separated parts of bench_read's request names")
    args = parser.parse_args()
    stack = Stack()
    stack.up()
    use_local_stack_credentials(stack)
    endpoints = stack.config
    database = f"bench_read_{args.leads}"
    await br.populate(endpoints.mongodb_url, database, args.leads, False)
    ferretdb = br.ferretdb_pid(endpoints)
    trees = {"before": str(Path(args.before).resolve()), "after": None}
    procs = {}
    client = make_client(endpoints.mongodb_url)
    try:
        for label, tree in trees.items():
            # Each in a group of its own: two instances of one group would rebalance while the requests are timed.
            procs[label] = await br.start_leads(endpoints.kafka_bootstrap, endpoints.mongodb_url, database, tree=tree,
                                                extra={"GROUP_ID": f"{database}.ab-{label}"})
        rnd = random.Random(7)
        ids = [f"L{rnd.randrange(args.leads):07d}" for _ in range(5000)]
        only = [o.strip() for o in args.only.split(",") if o.strip()]
        print(f"{'round':>5} {'code':6} {'request':34} {'n':>6} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req ferretdb':>20} {'leads':>6}")
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for label in order:
                proc, url, _ = procs[label]
                for row in await side(url, client[database]["leads"], ids, only, args.clients, args.seconds, (ferretdb, proc.pid)):
                    print(f"{r:5d} {label:6} {row['request']:34} {row['n']:6d} {row['per_second']:6.0f} {row['p50_ms']:7.1f} "
                          f"{row['p99_ms']:7.1f} {row['ferretdb_cpu_ms']:20.3f} {row['leads_cpu_ms']:6.3f}", flush=True)
    finally:
        await client.close()
        stop_all([proc for proc, _, _ in procs.values()])


if __name__ == "__main__":
    asyncio.run(main())
