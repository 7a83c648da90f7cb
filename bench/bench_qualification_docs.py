"""FerretDB's CPU per document of qualification's writes and reads: the shape before the blobs against the current one.

Per round, on the stack's FerretDB, in a scratch database: ``--docs`` closings inserted (batches of 600, as
a consumed batch stores them), the same number of deals, then as many copies of a lead updated the way a
qualification's card event updates them and read back by id. Each kind in the shape written before
(every field of its own) and in the current one (``services/qualification/documents.py``), alternated,
``--rounds`` times; the FerretDB process's user + system CPU from /proc, which load elsewhere does not change.
``--products N`` gives the leads N product lines (bench_flow's leads have none).

Run: .venv/bin/python bench/bench_qualification_docs.py [--docs 2000] [--rounds 4] [--products 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymongo import MongoClient, UpdateOne  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from contracts import build_message  # noqa: E402
from contracts.qualification import NewCompany, QualifyLead  # noqa: E402
from services.qualification import domain as d  # noqa: E402
from services.qualification.documents import (  # noqa: E402
    StoredClosing, closing_document, deal_document, deal_list_keys,
)
from services.qualification.messages import qualification_events, qualify_request  # noqa: E402
from services.qualification.repository import LeadChange, copy_values  # noqa: E402

BATCH = 600


def lead(i: int, products: int) -> d.Lead:
    return d.Lead(
        lead_id=f"L{i:07d}", version=3, pipeline_id="default", stage_id="new", status="new", title=f"Lead {i}",
        responsible_id="u1", created_by="bench", source="bench", utm_source="bench",
        contact={"name": f"Contact {i}", "phone": f"+7912{i:07d}", "email": f"c{i}@example.com"},
        products=[{"product_id": f"P-{k}", "name": "Pump", "quantity": 1} for k in range(products)],
    )


def documents(count: int, products: int) -> dict[str, tuple[list, list]]:
    """Per kind, the documents (or update statements) in the shape before and in the current one."""
    now = datetime.now(UTC)
    actor = d.Actor(user_id="bench", licensed=True)
    closings: tuple[list, list] = ([], [])
    deals: tuple[list, list] = ([], [])
    copies: tuple[list, list] = ([], [])
    for i in range(count):
        card = lead(i, products)
        request = QualifyLead(lead_id=card.lead_id, qualification_type="deal_and_company", deal_pipeline_id="default",
                              new_company=NewCompany(name=f"Company {i}", inn="7701234567"))
        command = build_message(request, source="bench", actorid="bench")
        closing = d.plan_qualification(qualify_request(command.data), card, actor, command.id, now)
        outbox = [e.to_json_bytes().decode() for e in qualification_events(closing, command, "crm/qualification")]
        closings[0].append({**closing.model_dump(), "_id": closing.lead_id, "_outbox": outbox})
        closings[1].append(closing_document(StoredClosing(closing, outbox)))
        assert closing.deal is not None
        deals[0].append({**closing.deal.model_dump(), "_id": closing.deal.deal_id, **deal_list_keys(closing.deal)})
        deals[1].append(deal_document(closing.deal))
        fields = card.model_dump(mode="json", exclude={"lead_id", "version", "closed_version"}) | {"status": "qualified"}
        change = LeadChange(card.lead_id, 4, fields, True)
        for shape, values in ((copies[0], {**fields, "version": 4}), (copies[1], copy_values(change))):
            shape.append(({"_id": card.lead_id, "version": {"$lte": 4}}, {"$set": {**values, "closed_version": 4}}))
    return {"closing": closings, "deal": deals, "copy": copies}


def in_batches(items: list, write: Callable[[list], object]) -> None:
    for start in range(0, len(items), BATCH):
        write(items[start:start + BATCH])


def one_round(db, pid: int, made: dict[str, tuple[list, list]], per_doc: dict[tuple[str, str], list[float]]) -> None:
    """Each kind in each shape once, on a fresh collection; FerretDB's CPU per document added to ``per_doc``."""

    def timed(what: str, shape: str, count: int, work: Callable[[], None]) -> None:
        before = common.cpu_seconds(pid)
        work()
        per_doc.setdefault((what, shape), []).append((common.cpu_seconds(pid) - before) / count * 1e6)

    for kind, shapes in made.items():
        for shape, docs in zip(("before", "blob"), shapes, strict=True):
            col = db[kind]
            col.drop()
            if kind != "copy":
                timed(f"{kind} inserted", shape, len(docs), lambda: in_batches(docs, lambda b: col.insert_many(b, ordered=False)))
                continue
            # The copies as the lead's creation left them, then a qualification's card event, then the batch's read.
            col.insert_many([{**update["$set"], "_id": query["_id"], "version": 3} for query, update in docs])
            ops = [UpdateOne(query, update, upsert=True) for query, update in docs]
            ids = [query["_id"] for query, _ in docs]
            timed("copy updated", shape, len(ops), lambda: in_batches(ops, lambda b: col.bulk_write(b, ordered=False)))
            timed("copy read", shape, len(ids), lambda: in_batches(ids, lambda b: list(col.find({"_id": {"$in": b}}))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--products", type=int, default=2)
    args = parser.parse_args()
    endpoints = common.stack_endpoints()
    if endpoints.ferretdb_pid is None:
        raise SystemExit("needs the local stack's FerretDB (crm stack up)")
    client = MongoClient(endpoints.mongodb)
    db = client["bench_qualification_docs"]
    made = documents(args.docs, args.products)
    per_doc: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            one_round(db, endpoints.ferretdb_pid, made, per_doc)
    finally:
        client.drop_database("bench_qualification_docs")
        client.close()
    print(f"\nFerretDB CPU µs per document ({args.docs:,} documents, {args.products} product lines, median of {args.rounds} rounds)")
    print(f"  {'':16} {'before':>8} {'blob':>8}")
    for kind in dict.fromkeys(k for k, _ in per_doc):
        print(f"  {kind:16} {statistics.median(per_doc[(kind, 'before')]):8.0f} {statistics.median(per_doc[(kind, 'blob')]):8.0f}")


if __name__ == "__main__":
    main()
