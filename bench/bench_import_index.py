"""How a re-import finds what it knows of each external id on FerretDB: a document per row, or one per chunk.

Both layouts hold the same entries (external id → lead id and the row's fields as JSON):
  per row    ``{_id: external id, lead_id, fields}``, looked up ``_id $in`` (the importer's layout);
  per chunk  ``{_id, ids: [external ids], entries: JSON}``, an index on ``ids``, looked up ``ids $in``;
  segments   the importer's layout now (services/importer/external_ids.py): a segment per batch and
             bucket of 1,000 neighbouring numbers, looked up by the chunk's buckets (``ix_bucket $in``).
Each is written as a first import would (insert_many per chunk) and then read as a re-import of the
same file would (one lookup per chunk of ``--chunk`` ids); FerretDB's CPU (from /proc) is reported per
row beside the wall time, since the other engineers' load moves wall times.

Run: .venv/bin/python bench/bench_import_index.py [--rows 100000] [--chunk 1000] [--skip-chunk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymongo import ASCENDING, IndexModel  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from crmkit.mongo import find_by_ids  # noqa: E402
from services.importer.external_ids import ExternalIdProjection, Projected  # noqa: E402


def entry(i: int) -> tuple[str, str, str]:
    fields = {"title": f"Заявка {i}", "contact": {"name": f"Иван Петров {i}", "phone": f"+7912{i:07d}", "email": f"user{i}@example.ru"},
              "company": {"name": f"ООО Ромашка {i % 5000}", "inn": "7701234567"}, "source": "website", "utm_source": "yandex",
              "description": "Перезвонить после обеда"}
    return f"bench-{i}", str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))), json.dumps(fields, ensure_ascii=False)


async def write_per_row(col, rows: int, chunk: int) -> None:
    for start in range(0, rows, chunk):
        await col.insert_many([{"_id": e, "lead_id": lid, "fields": f} for e, lid, f in map(entry, range(start, min(rows, start + chunk)))])


async def read_per_row(col, rows: int, chunk: int, limit_s: float) -> tuple[int, int]:
    found = 0
    for start in range(0, rows, chunk):
        found += len(await find_by_ids(col, [f"bench-{i}" for i in range(start, min(rows, start + chunk))]))
    return found, rows


async def write_per_chunk(col, rows: int, chunk: int) -> None:
    await col.create_indexes([IndexModel([("ids", ASCENDING)], name="ids_1")])
    for start in range(0, rows, chunk):
        entries = list(map(entry, range(start, min(rows, start + chunk))))
        await col.insert_one({"_id": f"chunk-{start}", "ids": [e for e, _, _ in entries],
                              "entries": json.dumps({e: [lid, f] for e, lid, f in entries}, ensure_ascii=False)})


async def read_per_chunk(col, rows: int, chunk: int, limit_s: float) -> tuple[int, int]:
    found, began = 0, time.perf_counter()
    for start in range(0, rows, chunk):
        wanted = [f"bench-{i}" for i in range(start, min(rows, start + chunk))]
        async for doc in col.find({"ids": {"$in": wanted}}, {"entries": 1}):
            entries = json.loads(doc["entries"])
            found += sum(1 for e in wanted if e in entries)
        if time.perf_counter() - began > limit_s:  # each further chunk costs as much: stop here, per row is per row
            return found, start + chunk
    return found, rows


async def write_segments(db, rows: int, chunk: int) -> None:
    projection = ExternalIdProjection(db)
    await projection.ensure_indexes()
    for start in range(0, rows, chunk):
        cards = {lid: Projected(e, json.loads(f), 1) for e, lid, f in map(entry, range(start, min(rows, start + chunk)))}
        await projection.apply(cards, dict.fromkeys(cards, "imp-1"), datetime.now(UTC))


async def read_segments(db, rows: int, chunk: int, limit_s: float) -> tuple[int, int]:
    projection, found = ExternalIdProjection(db), 0
    for start in range(0, rows, chunk):
        found += len(await projection.by_external_ids([f"bench-{i}" for i in range(start, min(rows, start + chunk))]))
    return found, rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--limit-s", type=float, default=120.0, help="stop the per-chunk lookups after this long")
    parser.add_argument("--skip-chunk", action="store_true", help="leave out the per-chunk layout (it reads every document)")
    args = parser.parse_args()
    endpoints = common.stack_endpoints()
    client = common.mongo(endpoints.mongodb)
    db = client[f"bench_index_{uuid.uuid4().hex[:8]}"]
    try:
        layouts = {"per row": (write_per_row, read_per_row), "per chunk": (write_per_chunk, read_per_chunk),
                   "segments": (write_segments, read_segments)}
        if args.skip_chunk:
            del layouts["per chunk"]
        for name, (write, read) in layouts.items():
            col = db[name.replace(" ", "_")] if name != "segments" else db
            meter = common.stack_meter(endpoints).start()
            began = time.perf_counter()
            await write(col, args.rows, args.chunk)
            written_s = time.perf_counter() - began
            meter.sample()
            write_us = meter.per_item_us(args.rows).get("ferretdb", 0)
            meter = common.stack_meter(endpoints).start()
            began = time.perf_counter()
            found, looked_up = await read(col, args.rows, args.chunk, args.limit_s)
            read_s = time.perf_counter() - began
            meter.sample()
            read_us = meter.per_item_us(looked_up).get("ferretdb", 0)
            print(f"{name:>9}: {args.rows:,} written in {written_s:.1f} s (FerretDB {write_us:,.0f} µs a row); "
                  f"{looked_up:,} looked up ({found:,} found) in {read_s:.1f} s (FerretDB {read_us:,.0f} µs a row, "
                  f"{read_s / looked_up * 1e6:,.0f} µs wall)")
    finally:
        await client.drop_database(db.name)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
