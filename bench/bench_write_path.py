"""The leads write path alone: CPU per create and per qualification, beside the bare writes of the same documents.

The service's handlers (``LeadsHandlers.on_batch``, duplicate check on, the collector tuned as the service
tunes it) run in this process on the local stack's FerretDB, without Kafka: records are parsed from their
bytes and handed over as the consumer hands them, creates 1,000 a batch, then one ``crm.lead.qualified``
for each lead, 333 a batch (a batch of 1,000 qualification-topic records holds a third of them: the deals
and companies are passed over). Per step: this process's CPU (the handlers), FerretDB's (from /proc) and
the wall time, per lead. The baseline of the same run, per document: the very documents the step stored,
copied and written again bare by pymongo (``insert_many`` for the creates, a bulk ``ReplaceOne {_id,
version}`` onto that copy for the qualifications), so what the handlers add to the database's work shows.

Run: .venv/bin/python bench/bench_write_path.py [--leads 6000] [--rounds 3] [--binary NAME=PATH ...]: with
``--binary``, each FerretDB build runs on a port and data folder of its own and the rounds alternate between
them (as in bench_ferretdb_writes.py); from a ``git worktree`` of another commit (this file copied in) to
compare two trees of the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (bench/common.py)
from bench_ferretdb_writes import Build  # noqa: E402
from bench_leads import create_records  # noqa: E402
from pymongo import ReplaceOne  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.qualification import LeadQualified  # noqa: E402
from contracts.registry import parse_message  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS, LEADS_COMMANDS, QUALIFICATION_EVENTS  # noqa: E402
from crmkit.messaging import Inbound  # noqa: E402
from crmkit.mongo import find_by_ids  # noqa: E402
from crmkit.principals import PrincipalRepository  # noqa: E402
from crmkit.service import tune_gc  # noqa: E402
from services.leads.counters import LeadCounters  # noqa: E402
from services.leads.handlers import LeadsHandlers  # noqa: E402
from services.leads.index import LeadIndex  # noqa: E402
from services.leads.repository import DirectoryRepository, LeadRepository, PipelineRepository  # noqa: E402
from services.leads.settings import LeadsSettings  # noqa: E402

CREATES_A_BATCH, QUALIFIED_A_BATCH = 1000, 333


class Step:
    """This process's and FerretDB's CPU and the wall time over one measured step."""

    def __init__(self, ferretdb_pid: int) -> None:
        self.meter = common.CpuMeter({"handlers": os.getpid(), "ferretdb": ferretdb_pid})

    def __enter__(self) -> Step:
        self.meter.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.meter.sample()

    def per_item(self, items: int) -> dict[str, float]:
        return {**self.meter.per_item_us(items), "wall": self.seconds / items * 1e6}


async def one_round(url: str, ferretdb_pid: int, leads: int) -> dict[str, dict[str, float]]:
    settings = LeadsSettings(kafka_bootstrap_servers="127.0.0.1:1", mongodb_url=url)
    client = common.mongo(url)
    name = f"benchwrite{uuid.uuid4().hex[:6]}"
    db = client[name]
    try:
        repo = LeadRepository(db, strict_versions=True, ferretdb=True)
        await repo.ensure_indexes(ferretdb=True)
        pipelines, counters = PipelineRepository(db), LeadCounters(db)
        await counters.ensure_indexes()
        handlers = LeadsHandlers(settings, repo, pipelines, DirectoryRepository(db), PrincipalRepository(db, settings.service_principals),
                                 LeadIndex(), source="crm/leads", counters=counters)
        await handlers.announce_default_pipeline()
        await counters.ensure(repo, pipelines)  # the board counted, as at the service's first start
        offsets = iter(range(1, 10**9))
        _, _, grant = common.grant_record("")
        await handlers.on_batch([Inbound(DIRECTORY_EVENTS, 0, 0, parse_message(DIRECTORY_EVENTS, grant))])
        # The first tenth unmeasured (start-up, the pipeline's first read), as the service is warm in a burst.
        warm = max(1, leads // 10)
        creates = [Inbound(LEADS_COMMANDS, 0, next(offsets), parse_message(LEADS_COMMANDS, value))
                   for _, _, value in create_records("", leads + warm, names=max(1, (leads + warm) // 2))]
        tune_gc(freeze=True)
        await handlers.on_batch(creates[:warm])
        figures: dict[str, dict[str, float]] = {}
        with Step(ferretdb_pid) as step:
            for start in range(warm, len(creates), CREATES_A_BATCH):
                await handlers.on_batch(creates[start:start + CREATES_A_BATCH])
        figures["create"] = step.per_item(leads)
        created = [c.message.data.lead_id for c in creates]
        figures["bare insert_many"] = await _bare(db, ferretdb_pid, created[warm:], replace=False)
        qualified = [_qualified(lead_id, next(offsets)) for lead_id in created]
        await handlers.on_batch(qualified[:warm])
        with Step(ferretdb_pid) as step:
            for start in range(warm, len(qualified), QUALIFIED_A_BATCH):
                await handlers.on_batch(qualified[start:start + QUALIFIED_A_BATCH])
        figures["qualification"] = step.per_item(leads)
        figures["bare ReplaceOne"] = await _bare(db, ferretdb_pid, created[warm:], replace=True)
        return figures
    finally:
        await client.drop_database(name)
        await client.close()


def _qualified(lead_id: str, offset: int) -> Inbound:
    event = build_message(LeadQualified(lead_id=lead_id, qualification_type="deal_and_company", company_id=f"C-{lead_id}",
                                        deal_id=f"D-{lead_id}"), source="crm/qualification", subject=lead_id)
    return Inbound(QUALIFICATION_EVENTS, 0, offset, parse_message(QUALIFICATION_EVENTS, event.to_json_bytes()))


async def _bare(db, ferretdb_pid: int, lead_ids: list[str], *, replace: bool) -> dict[str, float]:
    """The stored documents of ``lead_ids`` written again by pymongo alone: inserted into a copy of the leads
    collection (its indexes too), or, with ``replace``, replacing that copy's documents by version."""
    docs = await find_by_ids(db["leads"], lead_ids)
    copy = db["leads_bare"]
    if not replace:
        await copy.drop()
        for name, spec in (await db["leads"].index_information()).items():
            if name != "_id_":
                await copy.create_index(spec["key"], name=name)
    with Step(ferretdb_pid) as step:
        for start in range(0, len(docs), CREATES_A_BATCH):
            chunk = docs[start:start + CREATES_A_BATCH]
            if replace:  # a qualification is one version on from the create: the copy holds that one
                await copy.bulk_write([ReplaceOne({"_id": d["_id"], "version": d["version"] - 1}, d) for d in chunk], ordered=False)
            else:
                await copy.insert_many(chunk, ordered=False)
    return step.per_item(len(docs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=6000, help="leads created, then qualified, a round (default 6000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh database (default 3)")
    parser.add_argument("--binary", action="append", default=[], metavar="NAME=PATH",
                        help="a FerretDB build to run on a port and folder of its own (repeatable; rounds alternate "
                             "between the builds); default: the local stack's FerretDB")
    args = parser.parse_args()
    common.quiet_logs()
    builds: list[Build] = []
    home = Path(tempfile.mkdtemp(prefix="bench_write_path"))
    try:
        if args.binary:
            for spec in args.binary:
                name, _, path = spec.partition("=")
                builds.append(Build(name, Path(path), home))
            targets = {b.name: (f"mongodb://127.0.0.1:{b.port}/", b.proc.pid) for b in builds}
        else:
            endpoints = common.stack_endpoints()
            if endpoints.ferretdb_pid is None:
                sys.exit("FerretDB's pid is unknown: start the local stack (.venv/bin/crm stack up)")
            targets = {"stack": (endpoints.mongodb, endpoints.ferretdb_pid)}
        rounds: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, pid) in targets.items():
                rounds[name].append(asyncio.run(one_round(url, pid, args.leads)))
    finally:
        for build in builds:
            build.close()
        shutil.rmtree(home, ignore_errors=True)
    print(f"leads write path alone, {args.leads:,} leads a round, median of {args.rounds} rounds (µs a lead or document)")
    print(f"{'FerretDB':<10}{'step':<18}{'handlers CPU':>14}{'FerretDB CPU':>14}{'wall':>10}   rounds (handlers / FerretDB)")
    for name, found in rounds.items():
        for step in found[0]:
            med = {k: statistics.median(r[step][k] for r in found) for k in ("handlers", "ferretdb", "wall")}
            spread = ", ".join(f"{r[step]['handlers']:.0f}/{r[step]['ferretdb']:.0f}" for r in found)
            print(f"{name:<10}{step:<18}{med['handlers']:>14.0f}{med['ferretdb']:>14.0f}{med['wall']:>10.0f}   {spread}")
    print("handlers CPU of a bare row: pymongo encoding and sending the documents")


if __name__ == "__main__":
    main()
