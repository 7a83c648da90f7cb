"""Import benchmark: a generated CSV and XLSX imported end to end, beside raw parsing and a bare bulk insert.

Measured in one run on the local stack (Kafka + FerretDB):
  parse        open_rows over the file, nothing else (the reader's own speed);
  parse+map    the same plus build_mapping/row_to_lead per row (what the importer does before sending);
  bare insert  insert_many of the documents the end-to-end run's leads service stored, 1,000 at a time, into a
               collection with the service's indexes (the read side needs them); beside it, the rows' lead
               fields into a collection without indexes (the floor of the runs before 2026-12-02);
  end to end   importer and leads service as separate processes, as deployed (``--in-process``: both in
               this process, sharing one core): crm.import.start → every lead stored → crm.import.completed.

The CSV files through ``crm import`` (1,000 and 10,000 rows) are timed by bench_import_cli.py.

``--memory`` imports 10,000 and 1,000,000 CSV rows as dry runs, each in a fresh importer process, and
reports the process's peak RSS (VmHWM) beside the parse+map path's, to show memory stays flat.

Run: .venv/bin/python bench/bench_import.py [--rows 100000] [--memory]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import build_message  # noqa: E402
from contracts.directory import UserLicenceGranted  # noqa: E402
from contracts.imports import StartImport  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS  # noqa: E402
from crmctl.stack import Stack  # noqa: E402
from crmkit.mongo import make_client  # noqa: E402
from services.importer.rows import row_to_lead  # noqa: E402
from services.importer.mapping import build_mapping  # noqa: E402
from services.importer.readers import open_rows  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from processes import start_service, stop_all, use_local_stack_credentials  # noqa: E402  (bench/processes.py)
from stages import Profiles  # noqa: E402  (bench/stages.py)

HEADER = ["Название", "Имя", "Телефон", "Эл. почта", "Компания", "ИНН", "Источник", "utm_source", "Внешний ID", "Описание"]


def row(i: int) -> list[str]:
    return [
        f"Заявка {i}", f"Иван Петров {i}", f"+7912{i % 10_000_000:07d}", f"user{i}@example.ru", f"ООО Ромашка {i % 5000}",
        "7701234567", "website", "yandex", f"bench-{i}", "Перезвонить после обеда",
    ]


def write_csv(path: Path, rows: int) -> None:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(row(i))


def write_xlsx(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Leads")
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append(row(i))
    workbook.save(path)


def parse(path: Path, *, map_rows: bool) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    with open_rows(path) as source:
        mapping = build_mapping(source.header) if map_rows else None
        for number, cells in source:
            if mapping is not None:
                row_to_lead(number, cells, mapping, pipeline_id=None)
            count += 1
    return count, time.perf_counter() - started


async def bare_insert(mongodb_url: str, path: Path | None = None, stored: list[dict] | None = None) -> tuple[int, float]:
    """The leads written straight with insert_many, 1,000 at a time.

    ``stored``: the very documents the end-to-end run's leads service stored, into a collection with the
    service's own indexes (lists, search and the duplicate check read through them): the unavoidable
    work of storing the rows. Else the rows' lead fields as the importer maps them (``path``), into a
    collection without indexes: the floor the figures before 2026-12-02 were measured against.
    """
    if stored is None:
        assert path is not None
        with open_rows(path) as source:
            mapping = build_mapping(source.header)
            leads = [row_to_lead(n, cells, mapping, pipeline_id="default").lead for n, cells in source]
        docs = [{"_id": str(uuid.uuid4()), **doc, "stage_id": "new", "status": "new", "version": 1} for doc in leads]
    else:
        docs = stored
    client = make_client(mongodb_url)
    db = client[f"bench_bare_{uuid.uuid4().hex[:8]}"]
    try:
        if stored is not None:
            from crmkit.mongo import is_ferretdb
            from services.leads.repository import LeadRepository

            await LeadRepository(db).ensure_indexes(ferretdb=await is_ferretdb(db))
        started = time.perf_counter()
        for start in range(0, len(docs), 1000):
            await db["leads"].insert_many(docs[start:start + 1000], ordered=False)
        elapsed = time.perf_counter() - started
        return len(docs), elapsed
    finally:
        await client.drop_database(db.name)
        await client.close()


async def end_to_end(config, path: Path, rows: int, fmt: str) -> tuple[int, float]:
    from services.importer.app import create_app as create_importer
    from services.importer.settings import ImporterSettings
    from services.leads.app import create_app as create_leads
    from services.leads.settings import LeadsSettings
    from tests.support import Collector, Producer

    prefix = f"b{uuid.uuid4().hex[:8]}."
    common = dict(kafka_bootstrap_servers=config.kafka_bootstrap, mongodb_url=config.mongodb_url, topic_prefix=prefix)
    leads = create_leads(LeadsSettings(**common, database=f"{prefix[:-1]}_leads", group_id=prefix + "leads", duplicate_check=False))
    importer = create_importer(ImporterSettings(**common, database=f"{prefix[:-1]}_importer", group_id=prefix + "importer",
                                                file_roots=[str(path.parent)]))
    await leads.start()
    await importer.start()
    try:
        async with Producer(config.kafka_bootstrap, prefix) as producer, Collector(config.kafka_bootstrap, prefix, "crm.imports.events.v1") as events:
            grant = build_message(UserLicenceGranted(user_id="bench", licence="crm"), source="bench")
            await producer.send(DIRECTORY_EVENTS, grant, key="bench")
            from crmkit.principals import PrincipalRepository

            for service in (leads, importer):
                while not (await PrincipalRepository(service.db, []).get("bench")).licensed:
                    await asyncio.sleep(0.05)
            import_id = f"bench-{fmt}"
            started = time.perf_counter()
            await producer.send(IMPORTS_COMMANDS, build_message(StartImport(import_id=import_id, file_uri=str(path)), source="bench", actorid="bench"), key=import_id)
            last_report = time.perf_counter()
            while True:
                done = [m for m in events.got.messages if m.type in ("crm.import.completed", "crm.import.failed")]
                if done:
                    break
                await asyncio.sleep(0.05)
                if time.perf_counter() - last_report > 10:
                    last_report = time.perf_counter()
                    job = await importer.db["imports"].find_one({"_id": import_id}) or {}
                    print(f"  ... {job.get('state')} read {job.get('rows_read')} outcomes "
                          f"{await importer.db['import_counts'].find_one({'_id': import_id})}", file=sys.stderr)
            elapsed = time.perf_counter() - started
            if done[0].type != "crm.import.completed":
                raise SystemExit(f"{fmt} import failed: {done[0].data}")
            stored = await count_stored(leads.db, rows)
            if stored != rows or done[0].data.created != rows:
                raise SystemExit(f"{fmt}: {stored} leads stored, completed says {done[0].data}; expected {rows}")
            return stored, elapsed
    finally:
        await importer.stop()
        await leads.stop()
        client = make_client(config.mongodb_url)
        for name in (f"{prefix[:-1]}_leads", f"{prefix[:-1]}_importer"):
            await client.drop_database(name)
        await client.close()


async def end_to_end_processes(
    config, path: Path, rows: int, fmt: str, leads_instances: int = 1, *, dry_run: bool = False,
    profile: Path | None = None, reimport: bool = False, stored: list[dict] | None = None,
) -> tuple[int, float, int]:
    """The same import with ``python -m services.leads`` (``leads_instances`` of them, one consumer
    group) and ``python -m services.importer`` running as separate processes.

    Returns the rows, the seconds, and the importer process's peak RSS in kB (VmHWM). A dry run
    starts the importer alone: nothing reaches the leads service. ``stored`` gets the lead documents
    the leads service stored (for the bare insert of the same documents).
    """
    from crmkit.principals import PrincipalRepository
    from tests.support import Collector, Producer

    prefix = f"b{uuid.uuid4().hex[:8]}."
    names = ["importer"] + ([] if dry_run else ["leads"])
    databases = {name: f"{prefix[:-1]}_{name}" for name in names}
    # Deployed defaults (completion is checked as outcomes arrive), reading the bench's folder.
    services: list[tuple[str, dict[str, str]]] = [("importer", {"FILE_ROOTS": json.dumps([str(path.parent)])})]
    if not dry_run:
        services += [("leads", {"DUPLICATE_CHECK": "false"})] * leads_instances
    procs = [
        start_service(name, {
            "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap, "MONGODB_URL": config.mongodb_url,
            "TOPIC_PREFIX": prefix, "DATABASE": databases[name], "GROUP_ID": prefix + name, **extra,
        }, cwd=IMPORTER_TREE if name == "importer" else None)
        for name, extra in services
    ]
    client = make_client(config.mongodb_url)
    try:
        async with Producer(config.kafka_bootstrap, prefix) as producer, Collector(config.kafka_bootstrap, prefix, "crm.imports.events.v1") as events:
            grant = build_message(UserLicenceGranted(user_id="bench", licence="crm"), source="bench")
            await producer.send(DIRECTORY_EVENTS, grant, key="bench")
            for database in databases.values():  # every service started and saw the grant
                while not (await PrincipalRepository(client[database], []).get("bench")).licensed:
                    if any(p.poll() is not None for p in procs):
                        raise SystemExit("a service process exited before the import (its stderr is above)")
                    await asyncio.sleep(0.1)
            import_id = f"bench-{fmt}"
            start = StartImport(import_id=import_id, file_uri=str(path), dry_run=dry_run)
            pids = {name: proc.pid for (name, _), proc in zip(services, procs)}
            profiles = Profiles(profile, {"importer": pids["importer"]})
            profiles.start(f"import-{fmt}")
            meter = (common.stack_meter(config, **pids) if hasattr(config, "kafka_pid") else common.CpuMeter(pids)).start()
            started = time.perf_counter()
            await producer.send(IMPORTS_COMMANDS, build_message(start, source="bench", actorid="bench"), key=import_id)
            while not (done := [m for m in events.got.messages if m.type in ("crm.import.completed", "crm.import.failed")]):
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a service process exited during the import (its stderr is above)")
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            meter.sample()
            profiles.stop(top=40)
            CPU_US_PER_ROW[fmt] = {name: round(us, 1) for name, us in meter.per_item_us(rows).items()}
            peak_kb = _peak_rss_kb(procs[0].pid)
            if done[0].type != "crm.import.completed":
                raise SystemExit(f"{fmt} import failed: {done[0].data}")
            if dry_run:
                if done[0].data.rows_total != rows or done[0].data.rejected:
                    raise SystemExit(f"{fmt} dry run: completed says {done[0].data}; expected {rows} clean rows")
                return rows, elapsed, peak_kb
            n_stored = await count_stored(client[databases["leads"]], rows)
            if n_stored != rows or done[0].data.created != rows:
                raise SystemExit(f"{fmt}: {n_stored} leads stored, completed says {done[0].data}; expected {rows}")
            if reimport:
                await _reimport(config, producer, events, path, rows, fmt, pids)
            if stored is not None:
                stored.extend([doc async for doc in client[databases["leads"]]["leads"].find({}, batch_size=2000)])
            return n_stored, elapsed, peak_kb
    finally:
        stop_all(procs)
        for database in databases.values():
            await client.drop_database(database)
        await client.close()


async def _reimport(config, producer, events, path: Path, rows: int, fmt: str, pids: dict[str, int]) -> None:
    """The same file again: every row is matched to its lead by external id and found unchanged, so this
    times the importer's lookups of what it knows (nothing reaches the leads service)."""
    import_id = f"bench-{fmt}-again"
    start = StartImport(import_id=import_id, file_uri=str(path))
    meter = (common.stack_meter(config, **pids) if hasattr(config, "kafka_pid") else common.CpuMeter(pids)).start()
    started = time.perf_counter()
    await producer.send(IMPORTS_COMMANDS, build_message(start, source="bench", actorid="bench"), key=import_id)
    while not (done := [m for m in events.got.messages if m.subject == import_id and m.type in ("crm.import.completed", "crm.import.failed")]):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    meter.sample()
    counts = done[0].data if done[0].type == "crm.import.completed" else None
    if counts is None or (counts.rows_total, counts.created, counts.updated, counts.rejected) != (rows, 0, 0, 0):
        raise SystemExit(f"{fmt} re-import: completed says {done[0].data}; expected {rows} unchanged rows")
    REIMPORT[fmt] = {"seconds": elapsed, "cpu_us_per_row": {name: round(us, 1) for name, us in meter.per_item_us(rows).items()}}
    print(f"  re-import of the same {rows:,} rows (all unchanged): {elapsed:.2f} s; CPU per row (µs) {REIMPORT[fmt]['cpu_us_per_row']}",
          file=sys.stderr)


# Another source tree's importer (--importer-tree: the code before a change, for alternating A/B runs).
IMPORTER_TREE: str | None = None
# A re-import's seconds and CPU per row (--reimport), by format.
REIMPORT: dict[str, dict] = {}
# The last end-to-end run's CPU per row of each process (µs, from /proc), by format.
CPU_US_PER_ROW: dict[str, dict[str, float]] = {}


def _peak_rss_kb(pid: int) -> int:
    """A live process's peak resident set (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


async def count_stored(db, rows: int) -> int:
    """Leads of the file found through the leads repository (every row has an external id)."""
    from services.importer.domain import derive_lead_id
    from services.leads.repository import LeadRepository

    repo = LeadRepository(db)
    ids = [derive_lead_id("", 0, f"bench-{i}", "crm/importer") for i in range(rows)]
    stored = 0
    for start in range(0, rows, 1000):
        stored += len(await repo.get_many(ids[start:start + 1000]))
    return stored


def memory_child(path: str) -> None:
    count, _ = parse(Path(path), map_rows=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{count} {peak_kb}")


def memory_mode(rows_small: int = 10_000, rows_large: int = 1_000_000) -> None:
    """Peak RSS of the importer process itself (a fresh one per file) running a dry run of each file.

    A dry run goes through everything the importer does per row (read, detect, map, validate,
    plan, count, report) without waiting for the leads service, so a million rows take minutes,
    not an hour; the parse+map path alone is measured beside it in a fresh interpreter.
    """
    stack = Stack()
    stack.up()
    use_local_stack_credentials(stack)
    results: list[tuple[int, int, int, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in (rows_small, rows_large):
            path = Path(folder) / f"m{rows}.csv"
            print(f"generating {rows:,} CSV rows...", file=sys.stderr)
            write_csv(path, rows)
            output = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(path)], check=True, capture_output=True, text=True
            ).stdout.split()
            parse_peak_kb = int(output[1])
            print(f"dry-run import of {rows:,} rows in a fresh importer process...", file=sys.stderr)
            _, elapsed, importer_peak_kb = asyncio.run(end_to_end_processes(stack.config, path, rows, "csv", dry_run=True))
            results.append((rows, parse_peak_kb, importer_peak_kb, elapsed))
            path.unlink()
    print(f"\n{'rows':>10} {'parse+map peak MB':>18} {'importer peak MB':>17} {'dry run s':>10} {'rows/s':>8}")
    for rows, parse_kb, importer_kb, elapsed in results:
        print(f"{rows:>10,} {parse_kb / 1024:>18.1f} {importer_kb / 1024:>17.1f} {elapsed:>10.1f} {rows / elapsed:>8,.0f}")
    ratio = results[1][2] / results[0][2]
    bound = 1.5
    print(f"importer peak, {rows_large:,} / {rows_small:,} rows: {ratio:.2f} (bound {bound}: {'OK' if ratio <= bound else 'OVER'})")


async def measure(endpoints: common.Endpoints, rows: int, formats: tuple[str, ...] = ("csv", "xlsx"),
                  leads_instances: int = 1, profile: Path | None = None, reimport: bool = False) -> dict:
    """Parse, parse+map, bare insert and end to end (separate processes) per format; the harness's figures."""
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        bare_rate = unindexed_rate = None
        for fmt in formats:
            path = Path(folder) / f"leads.{fmt}"
            print(f"generating {rows:,} rows of {fmt}...", file=sys.stderr)
            (write_csv if fmt == "csv" else write_xlsx)(path, rows)
            n, parse_s = parse(path, map_rows=False)
            n, map_s = parse(path, map_rows=True)
            if unindexed_rate is None:
                n, bare_s = await bare_insert(endpoints.mongodb, path)
                unindexed_rate = n / bare_s
            print(f"importing {fmt} end to end...", file=sys.stderr)
            stored: list[dict] | None = [] if bare_rate is None else None
            n, seconds, peak_kb = await end_to_end_processes(endpoints, path, rows, fmt, leads_instances, profile=profile,
                                                             reimport=reimport, stored=stored)
            if stored:
                print("bare insert of the stored leads...", file=sys.stderr)
                bare_n, bare_s = await bare_insert(endpoints.mongodb, stored=stored)
                bare_rate = bare_n / bare_s
                del stored
            rate = n / seconds
            figures[fmt] = {
                "rows": n, "seconds": seconds, "per_second": rate, "parse_per_second": n / parse_s,
                "parse_map_per_second": n / map_s, "bare_insert_per_second": bare_rate,
                "ratio_to_bare": rate / bare_rate, "ratio_to_parse": rate / (n / parse_s), "importer_peak_mb": peak_kb / 1024,
                # The floor before 2026-12-02: the rows' lead fields into a collection without indexes.
                "bare_insert_unindexed_per_second": unindexed_rate, "ratio_to_unindexed_bare": rate / unindexed_rate,
                "cpu_us_per_row": CPU_US_PER_ROW.get(fmt, {}),
                **({"reimport": REIMPORT[fmt]} if fmt in REIMPORT else {}),
            }
            path.unlink()
    return figures


def print_table(figures: dict) -> None:
    figures = {fmt: f for fmt, f in figures.items() if isinstance(f, dict)}  # the harness adds "repetitions"
    print(f"\n{'file':<5} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'parse/s':>9} {'bare ins/s':>10} {'vs bare':>8} {'vs parse':>9}"
          f" {'unindexed/s':>11} {'vs it':>6}")
    for fmt, f in figures.items():
        print(f"{fmt:<5} {f['rows']:>9,} {f['seconds']:>8.2f} {f['per_second']:>9,.0f} {f['parse_per_second']:>9,.0f} "
              f"{f['bare_insert_per_second']:>10,.0f} {f['ratio_to_bare']:>8.2f} {f['ratio_to_parse']:>9.2f}"
              f" {f.get('bare_insert_unindexed_per_second', 0):>11,.0f} {f.get('ratio_to_unindexed_bare', 0):>6.2f}")
    print("(bare ins/s: the leads service's stored documents into a collection with its indexes; unindexed/s: the rows'\n"
          " lead fields into one without, the floor of the runs before 2026-12-02)")
    for fmt, f in figures.items():
        if f.get("cpu_us_per_row"):
            print(f"  {fmt} CPU per row (µs, from /proc): " + ", ".join(f"{k} {v:,.0f}" for k, v in f["cpu_us_per_row"].items()))
    print("targets (issue 21): CSV >= 0.5 of bare insert, XLSX >= 0.6 of parse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="importer peak RSS for 10,000 vs 1,000,000 CSV rows (dry runs)")
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="the larger file of --memory")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--skip-xlsx", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="run the importer and leads service in this process")
    parser.add_argument("--leads-instances", type=int, default=1, help="leads service processes (one consumer group)")
    parser.add_argument("--reimport", action="store_true", help="import each file a second time (every row unchanged)")
    parser.add_argument("--profile", type=Path, help="sample the importer process with py-spy into this folder; print its heaviest functions")
    parser.add_argument("--importer-tree", help="run the importer from this source tree (e.g. `git archive` of the code before a change)")
    args = parser.parse_args()
    global IMPORTER_TREE
    IMPORTER_TREE = args.importer_tree
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.memory:
        memory_mode(rows_large=args.memory_rows)
        return
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("faststream").setLevel(logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # leader moves while topics are created
    if not args.in_process:
        endpoints = common.stack_endpoints()
        figures = asyncio.run(measure(endpoints, args.rows, ("csv",) if args.skip_xlsx else ("csv", "xlsx"), args.leads_instances,
                                      args.profile, args.reimport))
        print_table(figures)
        return
    stack = Stack()
    stack.up()
    use_local_stack_credentials(stack)
    config = stack.config
    rows = args.rows
    table: list[tuple[str, str, int, float]] = []
    peaks: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        formats = ["csv"] if args.skip_xlsx else ["csv", "xlsx"]
        for fmt in formats:
            path = Path(folder) / f"leads.{fmt}"
            print(f"generating {rows:,} rows of {fmt}...", file=sys.stderr)
            (write_csv if fmt == "csv" else write_xlsx)(path, rows)
            n, t = parse(path, map_rows=False)
            table.append((fmt, "parse", n, t))
            n, t = parse(path, map_rows=True)
            table.append((fmt, "parse+map", n, t))
            if fmt == "csv":
                n, t = asyncio.run(bare_insert(config.mongodb_url, path))
                table.append(("-", "bare insert_many", n, t))
            print(f"importing {fmt} end to end...", file=sys.stderr)
            if args.in_process:
                n, t = asyncio.run(end_to_end(config, path, rows, fmt))
            else:
                n, t, peak_kb = asyncio.run(end_to_end_processes(config, path, rows, fmt, args.leads_instances))
                print(f"  importer peak RSS {peak_kb / 1024:.1f} MB; CPU per row (µs) {CPU_US_PER_ROW[fmt]}", file=sys.stderr)
                peaks[fmt] = peak_kb
            table.append((fmt, "end to end", n, t))
    rates = {(f, what): n / t for f, what, n, t in table}
    bare = rates[("-", "bare insert_many")]
    print(f"\n{'file':<5} {'measure':<18} {'rows':>9} {'seconds':>8} {'rows/s':>9}  ratio")
    for fmt, what, n, t in table:
        rate = n / t
        if what == "end to end":
            ratio = f"{rate / bare:.2f} of bare insert; {rate / rates[(fmt, 'parse')]:.2f} of parse"
        elif what == "bare insert_many":
            ratio = "baseline"
        else:
            ratio = f"{rate / bare:.1f}x bare insert"
        print(f"{fmt:<5} {what:<18} {n:>9,} {t:>8.2f} {rate:>9,.0f}  {ratio}")
    for fmt, peak_kb in peaks.items():
        print(f"importer process peak RSS, {fmt} end to end: {peak_kb / 1024:.1f} MB")


if __name__ == "__main__":
    main()
