"""Read-side benchmark: the card, lists, board and search at N stored leads, beside a bare find_one by _id.

In one run on the local stack:
  populate   N leads (varied pipelines' stages, responsibles, sources, Russian and Latin names,
             phones, emails, companies) stored through the leads repository, as the service stores
             them; kept in a database named by N, so a second run reuses them (``--fresh`` rebuilds);
  start      a leads service process on that database: seconds until ``/health/ready`` and its RSS;
  requests   each request kind below, ``--clients`` concurrent clients for ``--seconds`` each:
             p50/p99 in ms, beside ``bare find_one``: the same clients reading one lead by ``_id``
             straight from the database (the floor of any read); and the CPU each request cost FerretDB
             and the leads process (from /proc, so other work on the machine does not count);
  other lists  ``--others``: N tasks and N deals stored too, an activity and a qualification process,
             and ``/tasks``, ``/my-day`` and ``/deals`` timed the same way.

Run: .venv/bin/python bench/bench_read.py [--leads 100000] [--clients 4] [--seconds 5] [--fresh] [--others] [--database D]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from crmctl.stack import Stack  # noqa: E402
from crmkit.mongo import make_client  # noqa: E402

from processes import free_port, start_service, stop_all, use_local_stack_credentials  # noqa: E402  (bench/processes.py)

TOKEN = "bench-token"
FIRST = ["Иван", "Пётр", "Анна", "Мария", "Сергей", "Олег", "Елена", "John", "Maria", "Alex", "Семён", "Юлия"]
LAST = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Ёлкин", "Соколов", "Smith", "Brown", "Попов", "Лебедев"]
WORDS = ["заявка", "сайт", "выставка", "звонок", "поставка", "насосы", "кран", "order", "demo", "тендер", "опт"]
COMPANIES = ["Ромашка", "Ёлка", "Acme", "Вектор", "Альфа", "Сигма", "Восток", "Nord", "Гранит", "Лидер"]
SOURCES = ["expo", "website", "phone", "partner", "ads"]
STAGES = [("new", "new"), ("processing", "in_progress"), ("qualified", "qualified"), ("unqualified", "unqualified")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def populate(mongodb: str, database: str, count: int, fresh: bool) -> None:
    from services.leads import domain as d
    from services.leads.repository import LeadRepository, LeadWrite, Recent

    client = make_client(mongodb)
    db = client[database]
    try:
        if fresh:
            await client.drop_database(database)
        have = await db["leads"].estimated_document_count()
        # Stored in the current shape: the service's one-off migration has nothing to do (it would
        # otherwise read every lead once, in the background, while the requests are timed).
        from services.leads.readmodel import READ_FIELDS_VERSION

        await db["leads_meta"].update_one({"_id": "read_fields"}, {"$set": {"version": READ_FIELDS_VERSION}}, upsert=True)
        if have >= count:
            print(f"reusing {have} leads in {database}", file=sys.stderr)
            return
        repo = LeadRepository(db, strict_versions=False, ferretdb=True)
        await repo.ensure_indexes(ferretdb=True)
        await db["principals"].update_one({"_id": "bench"}, {"$set": {"licences": ["crm"], "roles": []}}, upsert=True)
        rnd = random.Random(count)
        now = datetime.now(UTC)
        pipeline = d.default_pipeline(now)
        actor = d.Actor(user_id="bench", licensed=True, service=True)
        started = time.perf_counter()
        for base in range(have, count, 1000):
            writes = []
            for i in range(base, min(base + 1000, count)):
                name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
                data = {
                    "title": f"{rnd.choice(WORDS).capitalize()} {rnd.choice(WORDS)} {i}",
                    "source": rnd.choice(SOURCES), "responsible_id": f"user{rnd.randrange(20)}",
                    "contact": {"name": name, "phone": f"+7 9{rnd.randrange(10**9):09d}", "email": f"c{i}@example{i % 97}.ru"},
                    "company": {"name": f"ООО {rnd.choice(COMPANIES)} {i % 500}"},
                }
                lead = d.create_lead(actor, f"L{i:07d}", data, pipeline, now).lead
                stage_id, status = STAGES[rnd.choices(range(4), weights=[50, 30, 10, 10])[0]]
                changed = now - timedelta(seconds=rnd.randrange(365 * 86400))
                lead = lead.model_copy(update={"stage_id": stage_id, "status": status, "updated_at": changed})
                writes.append(LeadWrite(lead, [Recent("m", [])], None))
            await repo.save(writes)
            # Stored around the service: its board counters (if a run made them) no longer hold; it counts
            # the leads again at its next start.
            await db["lead_counts"].drop()
            if (base // 1000) % 10 == 0:
                print(f"  stored {base + len(writes)} leads ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    finally:
        await client.close()


async def populate_others(mongodb: str, database: str, count: int) -> None:
    """N tasks and N deals, stored as the activity and qualification repositories store them."""
    from services.activity.domain import Task
    from services.activity.repository import TaskRepository, task_document
    from services.qualification.domain import Deal
    from services.qualification.repository import deal_document, ensure_indexes

    client = make_client(mongodb)
    try:
        activity, qualification = client[f"{database}_activity"], client[f"{database}_qualification"]
        for db in (activity, qualification):
            await db["principals"].update_one({"_id": "bench"}, {"$set": {"licences": ["crm"], "roles": ["admin"]}}, upsert=True)
        tasks = TaskRepository(activity)
        await tasks.ensure_indexes()
        if await activity["tasks"].estimated_document_count() and await tasks.list_keys_stale():
            await tasks.migrate_list_keys()  # stored by an older benchmark: the keys of today (ix_due)
        await tasks.mark_list_keys_done()  # stored in the current shape (see populate)
        await ensure_indexes(qualification)
        await qualification["qualification_meta"].update_one({"_id": "deal_list_keys"}, {"$set": {"version": 1}}, upsert=True)
        rnd = random.Random(count)
        now = datetime.now(UTC)
        have = await activity["tasks"].estimated_document_count()
        for base in range(have, count, 1000):
            docs = []
            for i in range(base, min(base + 1000, count)):
                due = now + timedelta(minutes=rnd.randrange(-60 * 24 * 30, 60 * 24 * 30))
                docs.append(task_document(Task(
                    task_id=f"T{i:07d}", lead_id=f"L{rnd.randrange(count):07d}", type="call", title=f"Call {i}",
                    start_at=due - timedelta(hours=1), due_at=due, assignee_id=f"user{rnd.randrange(20)}",
                    status=rnd.choices(["open", "done", "cancelled"], weights=[60, 35, 5])[0], created_at=now, updated_at=now,
                ), []))
            await activity["tasks"].insert_many(docs)
        have = await qualification["deals"].estimated_document_count()
        for base in range(have, count, 1000):
            docs = []
            for i in range(base, min(base + 1000, count)):
                deal = Deal(deal_id=f"D{i:07d}", lead_id=f"L{i:07d}", company_id="C", title=f"Deal {i}",
                            responsible_id="bench", deal_pipeline_id="sales", created_at=now - timedelta(seconds=i))
                docs.append(deal_document(deal))
            await qualification["deals"].insert_many(docs)
    finally:
        await client.close()


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU a process has used so far (0 when there is no such process)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ferretdb_pid(endpoints) -> int | None:
    """The local stack's FerretDB process: the harness's endpoints name it, a StackConfig has its run folder."""
    if getattr(endpoints, "ferretdb_pid", None):
        return endpoints.ferretdb_pid
    run_dir = getattr(endpoints, "run_dir", None)
    try:
        return int((Path(run_dir) / "ferretdb" / "ferretdb.pid").read_text()) if run_dir else None
    except (OSError, ValueError):
        return None


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def start_leads(bootstrap: str, mongodb: str, database: str, name: str = "leads",
                      extra: dict[str, str] | None = None, tree: str | None = None) -> tuple[object, str, float]:
    port = free_port()
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MONGODB_URL": mongodb, "TOPIC_PREFIX": f"{database}.",
        "DATABASE": database if name == "leads" else f"{database}_{name}", "GROUP_ID": f"{database}.{name}",
        "HTTP_PORT": str(port), "TOKENS": f'{{"{TOKEN}": "bench"}}', **(extra or {}),
    }
    if name == "activity":
        # Its due pass is a write-side job (it claims and publishes notices): off here, so that the lists
        # are measured alone; its query is timed apart (due_pass_query).
        settings["DUE_PASS_INTERVAL_S"] = "0"
    started = time.perf_counter()
    proc = start_service(name, settings, cwd=tree)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the leads process exited at start")
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    return proc, url, time.perf_counter() - started


async def range_counted_board(bootstrap: str, mongodb: str, database: str, args) -> tuple[str, list[float]]:
    """The board as it was before the write path kept its counts: an instance with them off counts each
    stage's index range (its own group; it writes nothing, so the counted instance's counts stay good)."""
    proc, url, _ = await start_leads(bootstrap, mongodb, database, extra={"BOARD_COUNTERS": "false", "GROUP_ID": f"{database}.ranges"})
    try:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            async def board(i: int) -> None:
                reply = await http.get("/pipelines/default/board")
                if reply.status_code != 200:
                    raise RuntimeError(f"board (range counts): {reply.status_code} {reply.text[:200]}")

            await board(0)
            return "  board by range counts (before)", await timed(args.clients, args.seconds, board)
    finally:
        stop_all([proc])


async def timed(clients: int, seconds: float, call: Callable[[int], Awaitable[None]]) -> list[float]:
    took: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        i = n
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await call(i)
            took.append((time.perf_counter() - t) * 1000)
            i += clients

    await asyncio.gather(*(client(n) for n in range(clients)))
    return took


async def other_lists(bootstrap: str, mongodb: str, database: str, args) -> list[tuple[str, list[float]]]:
    """/tasks, /my-day and /deals from their own service processes."""
    rows: list[tuple[str, list[float]]] = []
    procs = []
    client = make_client(mongodb)
    try:
        activity, activity_url, _ = await start_leads(bootstrap, mongodb, database, "activity")
        procs.append(activity)
        qualification, qualification_url, _ = await start_leads(bootstrap, mongodb, database, "qualification")
        procs.append(qualification)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        from services.activity.domain import DUE_SOON_WITHIN
        from services.activity.repository import TaskRepository

        tasks = TaskRepository(client[f"{database}_activity"])
        now = datetime.now(UTC)

        async def due_pass(i: int) -> None:  # what one pass of the activity service reads (its query alone)
            await tasks.due_candidates(now, now + DUE_SOON_WITHIN, 1000)

        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            async def get(url: str, params: dict) -> None:
                reply = await http.get(url, params=params)
                if reply.status_code != 200:
                    raise RuntimeError(f"{url} {params}: {reply.status_code} {reply.text[:200]}")

            kinds = [
                ("GET /tasks?limit=50", lambda i: get(f"{activity_url}/tasks", {"limit": "50"})),
                ("GET /tasks?assignee_id=&status=open", lambda i: get(f"{activity_url}/tasks", {"limit": "50", "assignee_id": f"user{i % 20}", "status": "open"})),
                ("GET /tasks?lead_id=", lambda i: get(f"{activity_url}/tasks", {"lead_id": f"L{i * 7919 % args.leads:07d}"})),
                ("GET /my-day?assignee_id=", lambda i: get(f"{activity_url}/my-day", {"assignee_id": f"user{i % 20}"})),
                ("GET /deals?limit=50", lambda i: get(f"{qualification_url}/deals", {"limit": "50"})),
                ("GET /deals?lead_id=", lambda i: get(f"{qualification_url}/deals", {"lead_id": f"L{i * 7919 % args.leads:07d}"})),
                ("due pass query (1000 tasks)", lambda i: due_pass(i)),
            ]
            for name, call in kinds:
                await call(0)
                rows.append((name, await timed(args.clients, args.seconds, call)))
                print(f"  {name}: done", file=sys.stderr)
    finally:
        stop_all(procs)
        await client.close()
    return rows


def lead_kinds(get, leads, ids: list[str], cursor: str | None) -> list[tuple[str, Callable[[int], Awaitable[None]]]]:
    """Each request kind timed against the leads service, the bare find_one first (the baseline)."""
    from services.leads.counters import LeadCounters
    from services.leads.repository import LeadRepository

    counts, ranges = LeadCounters(leads.database), LeadRepository(leads.database)
    return [
        ("bare find_one by _id", lambda i: leads.find_one({"_id": ids[i % len(ids)]})),
        ("GET /leads/{id} (card)", lambda i: get(f"/leads/{ids[i % len(ids)]}")),
        ("GET /leads?limit=50", lambda i: get("/leads", {"limit": "50"})),
        ("GET /leads?source=expo", lambda i: get("/leads", {"limit": "50", "source": "expo"})),
        ("  its page 2 (cursor)", lambda i: get("/leads", {"limit": "50", "source": "expo", "cursor": cursor})),
        ("GET /leads?stage_id=processing", lambda i: get("/leads", {"limit": "50", "pipeline_id": "default", "stage_id": "processing"})),
        ("GET /leads?responsible_id=", lambda i: get("/leads", {"limit": "50", "responsible_id": f"user{i % 20}"})),
        ("GET /leads?status=qualified", lambda i: get("/leads", {"limit": "50", "status": "qualified"})),
        ("GET /leads?include_deleted=true", lambda i: get("/leads", {"limit": "50", "include_deleted": "true"})),
        ("GET /leads?q=<name> (common)", lambda i: get("/leads", {"limit": "50", "q": LAST[i % len(LAST)]})),
        ("GET /leads?q=<lead number> (rare)", lambda i: get("/leads", {"limit": "50", "q": f"{ids[i % len(ids)][1:].lstrip('0')}"})),
        ("GET /leads?q=<email> (rare)", lambda i: get("/leads", {"limit": "50", "q": f"c{int(ids[i % len(ids)][1:])}@"})),
        ("GET /pipelines/default/board", lambda i: get("/pipelines/default/board")),
        # The board's counting step alone, straight from the database: the write path's counters against
        # what the board did before them (one index range count per stage).
        ("  board counts: counters", lambda i: counts.board("default")),
        ("  board counts: range counts", lambda i: ranges.count_by_stage("default", [stage for stage, _ in STAGES])),
    ]


async def measure(endpoints, leads_count: int, clients: int = 4, seconds: float = 5.0, fresh: bool = False,
                  others: bool = False, database: str | None = None) -> dict:
    """Every request kind timed; the harness's figures (p99 of the card, the slowest list, the board).

    ``database``: the leads stored so far in another run's database (a larger run cut short), read as
    they are; ``leads_count`` is then how many it holds."""
    args = argparse.Namespace(leads=leads_count, clients=clients, seconds=seconds, fresh=fresh, others=others)
    bootstrap, mongodb = endpoints.kafka_bootstrap, endpoints.mongodb_url
    if database is None:
        database = f"bench_read_{args.leads}"
        await populate(mongodb, database, args.leads, args.fresh)
    if args.others:
        await populate_others(mongodb, database, args.leads)
    proc, url, start_s = await start_leads(bootstrap, mongodb, database)
    rss = rss_mb(proc.pid)
    rnd = random.Random(7)
    ids = [f"L{rnd.randrange(args.leads):07d}" for _ in range(5000)]
    rows: list[tuple[str, list[float]]] = []
    cpu: dict[str, tuple[float, float]] = {}  # per request kind: (FerretDB, leads process) CPU seconds
    ferretdb = ferretdb_pid(endpoints)
    client = make_client(mongodb)
    leads = client[database]["leads"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            first = (await http.get("/leads", params={"limit": "50", "source": "expo"})).json()
            cursor = first["next_cursor"]

            async def get(path: str, params: dict | None = None) -> None:
                reply = await http.get(path, params=params)
                if reply.status_code != 200:
                    raise RuntimeError(f"{path} {params}: {reply.status_code} {reply.text[:200]}")

            kinds = lead_kinds(get, leads, ids, cursor)
            for name, call in kinds:
                await call(0)  # warm
                before = cpu_seconds(ferretdb), cpu_seconds(proc.pid)
                rows.append((name, await timed(args.clients, args.seconds, call)))
                cpu[name] = (cpu_seconds(ferretdb) - before[0], cpu_seconds(proc.pid) - before[1])
                print(f"  {name}: done", file=sys.stderr)
        rows.append(await range_counted_board(bootstrap, mongodb, database, args))
        if args.others:
            rows += await other_lists(bootstrap, mongodb, database, args)
    finally:
        await client.close()
        stop_all([proc])
    table = [{"request": name, "n": len(took), "p50_ms": statistics.median(took), "p99_ms": percentile(took, 0.99),
              "per_second": len(took) / args.seconds,
              **({"ferretdb_cpu_ms": 1000 * cpu[name][0] / len(took), "leads_cpu_ms": 1000 * cpu[name][1] / len(took)}
                 if name in cpu and ferretdb else {})}
             for name, took in rows]
    by_name = {row["request"]: row for row in table}
    lists = [row for row in table if row["request"].startswith("GET /leads?") or row["request"].startswith("  its page")]
    return {
        "leads": args.leads, "clients": args.clients, "seconds_per_kind": args.seconds,
        "ready_s": start_s, "rss_mb": rss, "requests": table,
        "bare_p99_ms": by_name["bare find_one by _id"]["p99_ms"],
        "card_p99_ms": by_name["GET /leads/{id} (card)"]["p99_ms"],
        "board_p99_ms": by_name["GET /pipelines/default/board"]["p99_ms"],
        "list_p99_ms": max(row["p99_ms"] for row in lists),
        "list_slowest": max(lists, key=lambda row: row["p99_ms"])["request"],
    }


def print_table(figures: dict) -> None:
    bare = figures["requests"][0]["p50_ms"]
    print(f"\n{figures['leads']} leads stored, {figures['clients']} concurrent clients, {figures['seconds_per_kind']:g} s per request kind")
    print(f"leads instance: ready in {figures['ready_s']:.1f} s, RSS {figures['rss_mb']:.0f} MB\n")
    print(f"{'request':36} {'n':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50/bare':>9} {'CPU ms/req: ferretdb':>21} {'leads':>6}")
    for row in figures["requests"]:
        used = f"{row['ferretdb_cpu_ms']:21.2f} {row['leads_cpu_ms']:6.2f}" if "ferretdb_cpu_ms" in row else ""
        print(f"{row['request']:36} {row['n']:6d} {row['per_second']:7.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
              f"{row['p50_ms'] / bare:9.1f} {used}")
    print("targets (issue 22, 100,000 leads): p99 card < 20 ms, lists < 100 ms, board < 150 ms, search < 200 ms; "
          "at 1,000,000 none over 500 ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fresh", action="store_true", help="store the leads again")
    parser.add_argument("--others", action="store_true", help="also N tasks and N deals and their lists")
    parser.add_argument("--database", help="read the leads already stored in this database (--leads: how many it holds)")
    args = parser.parse_args()
    stack = Stack()
    stack.up()
    use_local_stack_credentials(stack)
    figures = await measure(stack.config, args.leads, args.clients, args.seconds, args.fresh, args.others, args.database)
    print_table(figures)


if __name__ == "__main__":
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.run("asyncio.run(main())", sort="cumtime")
    else:
        asyncio.run(main())
