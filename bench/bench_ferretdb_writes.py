"""FerretDB's CPU per written document, by write kind, beside insert_many of the same documents, for one or more builds.

Each build (``--binary NAME=PATH``, default the stack's current build) runs as a FerretDB process of
its own on a free port and an empty data folder, so builds are compared in the same run on the same
machine; rounds alternate between the builds. Per scenario: a fresh collection of ``--docs`` lead-like
documents (about 2.5 KB, three secondary indexes) written by insert_many (not measured, except in the
``insert_many`` row, the baseline), then one write command of ``--docs`` statements, measured by the
FerretDB process's user + system CPU from /proc (which load elsewhere on the machine does not change)
and by the wall time. Each command's reply is checked against what MongoDB returns (matched, modified,
upserted, deleted), so a build that writes less than it reports fails the run.

Run: .venv/bin/python bench/bench_ferretdb_writes.py [--docs 1000] [--rounds 3] [--binary before=PATH --binary after=PATH]
[--only SUBSTRING] [--profile DIR]. ``--profile`` writes each build's Go CPU profile of the whole run to DIR/NAME.pprof
(infra/ferretdb/main.go, CRM_FERRETDB_CPUPROFILE); read it with ``go tool pprof -top -focus=crmUpdate BINARY FILE``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymongo import DeleteOne, IndexModel, MongoClient, ReplaceOne, UpdateOne  # noqa: E402

from common import cpu_seconds  # noqa: E402  (bench/common.py)
from processes import ROOT, free_port  # noqa: E402  (bench/processes.py)

TEXT = "Заявка с выставки: насосы и краны для котельной, поставка до конца квартала. " * 18  # ~1.5 KB


def lead(i: int, version: int = 1, stage: str = "s1") -> dict:
    return {
        "_id": f"L-{i:07d}", "version": version, "title": f"Lead {i}", "pipeline_id": "default",
        "ix_stage": stage, "ix_responsible": f"u{i % 17}", "ix_updated": f"2026-12-01T10:{i % 60:02d}:00",
        "contact": {"name": "Иван Петров", "phone": "+7 900 000 00 00", "email": f"c{i}@example.org"},
        "products": [{"product_id": f"P-{k}", "quantity": k + 1} for k in range(3)],
        "description": TEXT, "utm_source": "expo", "status": "in_progress",
    }


class Build:
    """One FerretDB binary running on a port and data folder of its own."""

    def __init__(self, name: str, binary: Path, home: Path, profile: Path | None = None) -> None:
        self.name, self.port = name, free_port()
        data = home / name
        data.mkdir(parents=True)
        self.log = (home / f"{name}.log").open("w")
        env = {**os.environ, "CRM_FERRETDB_CPUPROFILE": str(profile / f"{name}.pprof")} if profile else None
        self.proc = subprocess.Popen(
            [str(binary), "-listen", f"127.0.0.1:{self.port}", "-data", str(data), "-log-level", "error"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        self.client = MongoClient(f"mongodb://127.0.0.1:{self.port}/", serverSelectionTimeoutMS=30000)
        self.client.admin.command("ping")
        self.db = self.client["bench_writes"]

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def fresh(build: Build, name: str, n: int) -> object:
    col = build.db[name]
    col.drop()
    col.create_indexes([IndexModel("ix_stage"), IndexModel("ix_responsible"), IndexModel("ix_updated")])
    col.insert_many([lead(i) for i in range(n)], ordered=False)
    return col


def expect(what: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise SystemExit(f"{what}: the reply says {got!r}, MongoDB would say {wanted!r}")


# Each scenario: (prepare the collection, then the one measured command and the check of its reply).
def s_insert(col, n):
    col.drop()
    col.create_indexes([IndexModel("ix_stage"), IndexModel("ix_responsible"), IndexModel("ix_updated")])
    docs = [lead(i) for i in range(n)]
    return lambda: expect("insert_many", len(col.insert_many(docs, ordered=False).inserted_ids), n)


def s_replace(col, n):
    ops = [ReplaceOne({"_id": f"L-{i:07d}", "version": 1}, lead(i, 2)) for i in range(n)]
    return lambda: expect("replace", col.bulk_write(ops, ordered=False).modified_count, n)


def s_set(col, n):
    ops = [UpdateOne({"_id": f"L-{i:07d}"}, {"$set": {"ix_stage": "s2", "version": 2}}) for i in range(n)]
    return lambda: expect("$set", col.bulk_write(ops, ordered=False).modified_count, n)


def s_set_bulks(col, n):
    """Bulks of 250 statements, as the services' batches write (each bulk one command)."""
    ops = [UpdateOne({"_id": f"L-{i:07d}"}, {"$set": {"ix_stage": "s2", "version": 2}}) for i in range(n)]
    bulks = [ops[k:k + 250] for k in range(0, n, 250)]
    return lambda: expect("$set bulks", sum(col.bulk_write(b, ordered=False).modified_count for b in bulks), n)


def s_set_single(col, n):
    """One update_one command per document, the services' single writes (a round trip each)."""
    def run() -> None:
        expect("update_one", sum(col.update_one({"_id": f"L-{i:07d}", "version": 1}, {"$set": {"ix_stage": "s2", "version": 2}})
                                 .modified_count for i in range(n)), n)
    return run


def s_upsert_existing(col, n):
    ops = [UpdateOne({"_id": f"L-{i:07d}", "version": {"$lt": 2}}, {"$set": {"version": 2, "ix_stage": "s2"}}, upsert=True)
           for i in range(n)]
    return lambda: expect("guarded upsert", col.bulk_write(ops, ordered=False).modified_count, n)


def s_upsert_new(col, n):
    ops = [UpdateOne({"_id": f"N-{i:07d}"}, {"$set": {**{k: v for k, v in lead(i).items() if k != "_id"}}}, upsert=True)
           for i in range(n)]
    return lambda: expect("upsert new", col.bulk_write(ops, ordered=False).upserted_count, n)


def s_update_many(col, n):
    return lambda: expect("update_many", col.update_many({"ix_stage": "s1"}, {"$set": {"ix_stage": "s3"}}).modified_count, n)


def s_delete_many(col, n):
    return lambda: expect("delete_many", col.delete_many({"ix_stage": "s1"}).deleted_count, n)


def s_delete_one(col, n):
    ops = [DeleteOne({"_id": f"L-{i:07d}"}) for i in range(n)]
    return lambda: expect("DeleteOne", col.bulk_write(ops, ordered=False).deleted_count, n)


SCENARIOS: list[tuple[str, Callable, bool]] = [  # name, scenario, whether the collection is filled first
    ("insert_many", s_insert, False),
    ("bulk ReplaceOne {_id, version}", s_replace, True),
    ("bulk UpdateOne $set", s_set, True),
    ("bulks of 250 UpdateOne $set", s_set_bulks, True),
    ("update_one {_id, version} $set, each", s_set_single, True),
    ("bulk UpdateOne upsert, guard matches", s_upsert_existing, True),
    ("bulk UpdateOne upsert, new _id", s_upsert_new, True),
    ("update_many (one statement)", s_update_many, True),
    ("delete_many (one statement)", s_delete_many, True),
    ("bulk DeleteOne", s_delete_one, True),
]


def measure(build: Build, scenario: Callable, filled: bool, n: int, name: str) -> tuple[float, float]:
    """CPU µs per document of the FerretDB process and wall ms of the one command."""
    col = fresh(build, name, n) if filled else build.db[name]
    command = scenario(col, n)
    cpu, wall = cpu_seconds(build.proc.pid), time.perf_counter()
    command()
    wall, cpu = time.perf_counter() - wall, cpu_seconds(build.proc.pid) - cpu
    col.drop()
    return cpu / n * 1e6, wall * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", action="append", default=[], help="NAME=PATH of a ferretdb-local build (repeatable)")
    parser.add_argument("--only", action="append", default=[], help="run only the writes whose name holds this (repeatable)")
    parser.add_argument("--profile", type=Path, help="folder for each build's Go CPU profile (NAME.pprof)")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if s[0] == "insert_many" or not args.only or any(o in s[0] for o in args.only)]
    binaries = [b.split("=", 1) for b in args.binary] or [["current", str(ROOT / ".run" / "bin" / "ferretdb-local")]]

    with tempfile.TemporaryDirectory(prefix="bench-ferretdb-") as home:
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        builds = [Build(name, Path(path), Path(home), args.profile and args.profile.resolve()) for name, path in binaries]
        try:
            cpu: dict[tuple[str, str], list[float]] = {}
            wall: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for build in builds if r % 2 == 0 else builds[::-1]:  # alternate, so drift hits both alike
                    for k, (label, scenario, filled) in enumerate(scenarios):
                        c, w = measure(build, scenario, filled, args.docs, f"s{k}_{r}")
                        cpu.setdefault((build.name, label), []).append(c)
                        wall.setdefault((build.name, label), []).append(w)
        finally:
            for build in builds:
                build.close()

    med = {key: statistics.median(v) for key, v in cpu.items()}
    print(f"FerretDB CPU per document (median of {args.rounds} rounds), {args.docs} documents of ~2.5 KB per command")
    head = f"{'write':38}" + "".join(f"{b.name + ' µs/doc':>16}{'x insert':>9}{'wall ms':>9}" for b in builds)
    if len(builds) > 1:
        head += f"{builds[-1].name + '/' + builds[0].name:>16}"
    print(head)
    for label, _, _ in scenarios:
        row = f"{label:38}"
        for b in builds:
            base = med[(b.name, "insert_many")]
            row += f"{med[(b.name, label)]:16.0f}{med[(b.name, label)] / base:9.2f}{statistics.median(wall[(b.name, label)]):9.0f}"
        if len(builds) > 1:
            row += f"{med[(builds[-1].name, label)] / med[(builds[0].name, label)]:16.2f}"
        print(row)


if __name__ == "__main__":
    main()
