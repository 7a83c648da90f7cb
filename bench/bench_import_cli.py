"""CSV files through ``crm import``: seconds from the upload to ``crm.import.completed``, every lead then checked stored.

The CLI's own upload (``crmctl.imports.import_file``, in a thread of this process) to an importer process
with a leads process beside it, both started and ready before the clock starts. The CLI long-polls the job's
status, so the time it returns is reported beside the event's. The importer's database commands are
counted in its process (a pymongo listener, bench/dbops/sitecustomize.py) and listed by collection;
the batches each service handled (records a batch, from their /metrics) and the time from the leads
service's last answer to crm.import.completed show whether the pacing or the tail holds the import up.

Run: .venv/bin/python bench/bench_import_cli.py [--rows 1000 --rows 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
from bench_import import count_stored, write_csv  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.directory import UserLicenceGranted  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS  # noqa: E402

from processes import free_port, start_service, stop_all  # noqa: E402  (bench/processes.py)
from stages import Profiles  # noqa: E402  (bench/stages.py)


async def cli_import(endpoints: common.Endpoints, path: Path, rows: int, profile: Path | None = None,
                     importer_tree: str | None = None, leads_tree: str | None = None) -> dict:
    """``crm import FILE`` against an importer process (a leads process beside it), timed from the upload
    to ``crm.import.completed``; every lead is then checked stored."""
    import httpx

    import crmctl.imports
    from crmkit.principals import PrincipalRepository
    from rich.console import Console
    from tests.support import Collector, Producer

    prefix = common.new_prefix("cli")
    ops_dir = path.parent / "db-ops"
    ops_dir.mkdir(exist_ok=True)
    databases = {name: f"{prefix[:-1]}_{name}" for name in ("importer", "leads")}
    port, leads_port = free_port(), free_port()
    connection = {**common.service_connection(endpoints), "TOPIC_PREFIX": prefix}
    with count_db_ops(ops_dir):
        procs = [
            start_service("importer", {**connection, "DATABASE": databases["importer"], "GROUP_ID": prefix + "importer",
                                       "HTTP_PORT": str(port), "TOKENS": '{"bench-token": "bench"}',
                                       "UPLOADS_DIR": str(path.parent / "uploads")}, cwd=importer_tree),
            start_service("leads", {**connection, "DATABASE": databases["leads"], "GROUP_ID": prefix + "leads",
                                    "DUPLICATE_CHECK": "false", "HTTP_PORT": str(leads_port)}, cwd=leads_tree),
        ]
    client = common.mongo(endpoints.mongodb)
    crmctl.imports.console = Console(file=sys.stderr)  # its progress bar is not the benchmark's output
    try:
        async with Producer(endpoints.kafka, prefix) as producer, Collector(endpoints.kafka, prefix, "crm.imports.events.v1") as events:
            grant = build_message(UserLicenceGranted(user_id="bench", licence="crm"), source="bench")
            await producer.send(DIRECTORY_EVENTS, grant, key="bench")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for database in databases.values():
                    while not (await PrincipalRepository(client[database], []).get("bench")).licensed:
                        if any(p.poll() is not None for p in procs):
                            raise SystemExit("a service process exited before the import (its stderr is above)")
                        await asyncio.sleep(0.1)
                while True:
                    try:
                        if (await http.get("/health/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
            async with httpx.AsyncClient() as http:
                batches_before = {name: await batch_counts(http, p) for name, p in (("importer", port), ("leads", leads_port))}
            ops_before = await db_ops(ops_dir, procs[0].pid)  # start-up's (indexes, the grant) are not the import's
            profiles = Profiles(profile, {"importer": procs[0].pid, "leads": procs[1].pid})
            profiles.start(f"cli-{rows}")
            meter = common.stack_meter(endpoints, importer=procs[0].pid, leads=procs[1].pid).start()
            started, started_at = time.perf_counter(), datetime.now(UTC)
            cli = asyncio.create_task(asyncio.to_thread(
                crmctl.imports.import_file, file=path, pipeline="default", dry_run=False, mapping=[], sheet=None,
                encoding=None, delimiter=None, stage=None, url=f"http://127.0.0.1:{port}", token="bench-token"))
            while not (done := [m for m in events.got.messages if m.type in ("crm.import.completed", "crm.import.failed")]):
                if cli.done() and cli.exception():
                    raise SystemExit(f"crm import failed: {cli.exception()!r}")
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            meter.sample()
            profiles.stop(top=40)
            await cli
            cli_elapsed = time.perf_counter() - started
            if done[0].type != "crm.import.completed":
                raise SystemExit(f"crm import failed: {done[0].data}")
            stored = await count_stored(client[databases["leads"]], rows)
            if stored != rows or done[0].data.created != rows:
                raise SystemExit(f"crm import: {stored} leads stored, completed says {done[0].data}; expected {rows}")
            cpu = {name: round(us, 1) for name, us in meter.per_item_us(rows).items()}
            async with httpx.AsyncClient() as http:
                batches = {name: batch_sizes(batches_before[name], await batch_counts(http, p))
                           for name, p in (("importer", port), ("leads", leads_port))}
            ops = {name: n - ops_before.get(name, 0) for name, n in (await db_ops(ops_dir, procs[0].pid)).items()}
            ops = {name: n for name, n in ops.items() if n}
            last_answer = await last_record_time(endpoints.kafka, prefix + "crm.leads.events.v1")
            bus = await bus_records(endpoints.kafka, prefix)
            timeline = [((m.time - started_at).total_seconds(), m.type.removeprefix("crm.import."), getattr(m.data, "rows_read", None))
                        for m in events.got.messages if m.subject == done[0].subject]
            return {"rows": rows, "seconds": elapsed, "per_second": rows / elapsed, "cli_seconds": cli_elapsed,
                    "cpu_us_per_row": cpu, "batches": batches,
                    "last_answer_s": (last_answer - started_at).total_seconds() if last_answer else None, "importer_db_commands": ops, "timeline": timeline,
                    "importer_writes_per_row": ops.get("_write_items", 0) / rows,
                    "bus_per_row": {topic: (n / rows, size / rows if size else None) for topic, (n, size) in bus.items()}}
    finally:
        stop_all(procs)
        await client.close()
        await common.drop_prefix(endpoints, prefix)


@contextlib.contextmanager
def count_db_ops(folder: Path) -> Iterator[None]:
    """Service processes started inside count their database commands into ``folder`` (bench/dbops/sitecustomize.py)."""
    saved = {name: os.environ.get(name) for name in ("BENCH_DB_OPS_DIR", "PYTHONPATH")}
    os.environ["BENCH_DB_OPS_DIR"] = str(folder)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent / "dbops"), saved["PYTHONPATH"]]))
    try:
        yield
    finally:  # later benchmarks of the same harness process start uncounted processes
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def bus_records(bootstrap: str, prefix: str) -> dict[str, tuple[int, int | None]]:
    """Records each of the run's topics holds (end offsets) and the bytes of its log segments as stored, compressed
    as the producers sent them (a local stack's folders; None where they are not on this machine)."""
    from aiokafka import TopicPartition
    from crmctl.stack import StackConfig

    reader = common.consumer(bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        topics = sorted(t for t in reader._client.cluster.topics() if t.startswith(prefix) and not t.endswith(".dlq"))
        ends = await reader.end_offsets([TopicPartition(t, p) for t in topics for p in reader.partitions_for_topic(t) or ()])
    finally:
        await reader.stop()
    data = StackConfig.from_env().run_dir / "kafka"
    counts: dict[str, tuple[int, int | None]] = {}
    for topic in topics:
        records = sum(n for tp, n in ends.items() if tp.topic == topic)
        if records:
            logs = list(data.glob(f"node-*/data/{topic}-*/*.log"))
            counts[topic.removeprefix(prefix)] = (records, sum(log.stat().st_size for log in logs) if logs else None)
    return counts


async def last_record_time(bootstrap: str, topic: str) -> datetime | None:
    """When the topic's newest record was written (the leads service's last answer), by the broker's clock."""
    from aiokafka import TopicPartition

    reader = common.consumer(bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or await _partitions(reader, topic)]
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        newest = None
        for tp, end in ends.items():
            if end:
                reader.seek(tp, end - 1)
                record = (await reader.getmany(tp, timeout_ms=2000)).get(tp, [None])[-1]
                if record is not None and (newest is None or record.timestamp > newest):
                    newest = record.timestamp
        return datetime.fromtimestamp(newest / 1000, UTC) if newest else None
    finally:
        await reader.stop()


async def _partitions(reader, topic: str) -> set[int]:
    await reader._client.force_metadata_update()  # a topic this consumer has not subscribed to
    return reader.partitions_for_topic(topic) or set()


async def batch_counts(http, port: int) -> dict[str, float]:
    """A service's consumed records by topic and its handled batches, from its /metrics."""
    counts: dict[str, float] = {}
    for line in (await http.get(f"http://127.0.0.1:{port}/metrics")).text.splitlines():
        if line.startswith("crm_consumed_total{"):
            topic = line.split('topic="', 1)[1].split('"', 1)[0]
            counts[topic] = counts.get(topic, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("crm_batch_seconds_count{"):
            counts["_batches"] = counts.get("_batches", 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("crm_batch_seconds_sum{"):
            counts["_handling_s"] = counts.get("_handling_s", 0) + float(line.rsplit(" ", 1)[1])
    return counts


def batch_sizes(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Batches handled during the import and the records consumed per batch, by topic."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    batches = delta.pop("_batches", 0)
    handling = delta.pop("_handling_s", 0)
    return {"batches": batches, "handling_s": round(handling, 2),
            **{topic: round(n / batches, 1) if batches else 0 for topic, n in delta.items() if n}}


async def db_ops(folder: Path, pid: int) -> dict[str, int]:
    """The process's database commands by kind and collection, as its counter last wrote them."""
    path, asked = folder / f"{pid}.json", time.time()
    deadline = asked + 3.0
    # The counter rewrites its file every 0.2 s: wait for a write made after the job completed.
    while not (path.exists() and path.stat().st_mtime > asked) and time.time() < deadline:
        await asyncio.sleep(0.05)
    return json.loads(path.read_text()) if path.exists() else {}


async def measure_cli(endpoints: common.Endpoints, rows: int, profile: Path | None = None, importer_tree: str | None = None,
                      leads_tree: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"leads{rows}.csv"
        write_csv(path, rows)
        print(f"crm import of {rows:,} CSV rows ...", file=sys.stderr)
        return await cli_import(endpoints, path, rows, profile, importer_tree, leads_tree)


def print_table(rows: int, f: dict) -> None:
    print(f"\ncrm import, {rows:,} CSV rows: {f['seconds']:.2f} s to crm.import.completed ({f['per_second']:,.0f} rows/s; "
          f"the CLI returned after {f['cli_seconds']:.2f} s)")
    if f.get("cpu_us_per_row"):
        print("  CPU per row (µs, from /proc): " + ", ".join(f"{k} {v:,.0f}" for k, v in f["cpu_us_per_row"].items()))
    if f.get("batches"):
        print("  batches handled (records a batch, by topic): " + "; ".join(
            f"{name} {b['batches']:,.0f} in {b['handling_s']:.2f} s (" + ", ".join(f"{t} {n}" for t, n in b.items() if t not in ("batches", "handling_s")) + ")"
            for name, b in f["batches"].items()))
    if f.get("importer_db_commands"):
        ops = f["importer_db_commands"]
        print(f"  importer database: {ops.get('_commands', 0):,} commands, {ops.get('_writes', 0):,} writes "
              f"({ops.get('_write_items', 0):,} documents/statements, {f['importer_writes_per_row']:.3f} a row)")
        for name, n in sorted(ops.items(), key=lambda kv: -kv[1]):
            if not name.startswith("_"):
                print(f"    {n:6,}  {name}")
    if f.get("bus_per_row"):
        # What a row puts on the bus: each topic's records a row and their stored bytes (as compressed).
        print("  the bus, a row: " + "; ".join(
            f"{topic} {n:.3f} records" + (f" {size:,.0f} bytes" if size is not None else "")
            for topic, (n, size) in sorted(f["bus_per_row"].items(), key=lambda kv: -kv[1][0])))
    if f.get("last_answer_s") is not None:
        print(f"  the leads service's last answer {f['last_answer_s']:.2f} s from the upload, completed "
              f"{f['seconds'] - f['last_answer_s']:.2f} s after it")
    if f.get("timeline"):
        # When each of the import's events was published, from the upload: chunks sent ahead, then the tail.
        print("  events (s from the upload): " + ", ".join(
            f"{kind}{'' if n is None else f' {n:,}'} {at:.2f}" for at, kind, n in sorted(f["timeline"])))
    print("targets (issue 21): 1,000 rows < 1 s, 10,000 rows < 3 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", default=[], help="rows of a CSV (repeatable; default 1000 and 10000)")
    parser.add_argument("--repeat", type=int, default=1, help="imports per file size (the median is shown)")
    parser.add_argument("--profile", type=Path, help="sample the importer process with py-spy into this folder; print its heaviest functions")
    parser.add_argument("--importer-tree", help="run the importer from this source tree (e.g. `git archive` of the code before a change)")
    parser.add_argument("--leads-tree", help="run the leads service from this source tree (with --importer-tree: both services of another commit)")
    args = parser.parse_args()
    common.quiet_logs()
    endpoints = common.stack_endpoints()
    for rows in args.rows or [1000, 10_000]:
        runs = [asyncio.run(measure_cli(endpoints, rows, args.profile, args.importer_tree, args.leads_tree)) for _ in range(args.repeat)]
        print_table(rows, min(runs, key=lambda f: abs(f["seconds"] - statistics.median(r["seconds"] for r in runs))))


if __name__ == "__main__":
    main()
