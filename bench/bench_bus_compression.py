"""What the bus's producer compression costs and saves: Kafka's CPU per record, the clients', the bytes stored.

N records shaped like an import's (a ``crm.lead.create`` of ~1 kB and its ``crm.lead.created`` answer of ~1.9 kB:
the same JSON as the services publish, each with its own ids, names and row number) are produced with
``crmkit.messaging.Bus``'s producer settings (idempotent, acks=all, linger 5 ms, 512 kB batches; sent a thousand at a time) and
read back once by a consumer group that commits, with each compression type in turn, alternated, on fresh topics.
Kafka's CPU (``/proc/<pid>/stat``) and this process's are read over each pass.

Run: .venv/bin/python bench/bench_bus_compression.py [--records 20000] [--pairs 3] [--types none,zstd]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)

from aiokafka.admin import NewTopic  # noqa: E402
from crmctl.stack import StackConfig  # noqa: E402

_HEADERS = [("content-type", b"application/cloudevents+json"), ("ce-type", b"crm.lead.created"),
            ("crm-producer-instance", uuid.uuid4().hex.encode())]


def record_values(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: alternately a create command and its created event, as an import sends and answers them."""
    import_id = str(uuid.uuid4())
    out = []
    for row in range(n // 2):
        lead_id, now = str(uuid.uuid4()), "2026-12-02T16:18:06.058083Z"
        contact = {"name": f"Иван Петров {row}", "phone": f"+7912{row:07d}", "email": f"user{row}@example.ru"}
        company = {"name": f"ООО Ромашка {row}", "inn": "7701234567"}
        envelope = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "crm/importer", "time": now, "subject": lead_id,
                    "datacontenttype": "application/json", "correlationid": f"crm-import:{import_id}:{row}", "actorid": "bench",
                    "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
        command = {**envelope, "type": "crm.lead.create", "data": {
            "pipeline_id": "default", "title": f"Заявка {row}", "external_id": f"bench-{row}", "source": "website",
            "utm_source": "yandex", "description": "Перезвонить после обеда", "contact": contact, "company": company,
            "lead_id": lead_id, "import_id": import_id, "import_row": row}}
        card = {"lead_id": lead_id, "pipeline_id": "default", "stage_id": "new", "status": "new", "version": 1,
                "title": f"Заявка {row}", "responsible_id": "bench", "created_by": "bench",
                "contact": {"contact_id": None, **contact}, "company": {"company_id": None, **company}, "products": [],
                "source": "website", "marketing_event": None, "utm_source": "yandex", "utm_medium": None, "utm_campaign": None,
                "need_maturity": None, "description": "Перезвонить после обеда", "external_id": f"bench-{row}",
                "external_ids": {}, "created_at": now, "updated_at": now, "data_changed_at": now, "status_since": now,
                "status_history": [{"pipeline_id": "default", "stage_id": "new", "status": "new", "entered_at": now,
                                    "left_at": None, "actor_id": "bench"}],
                "deleted": False, "deleted_at": None, "qualified_deal_id": None, "qualified_company_id": None,
                "disqualification_reason_id": None, "disqualification_reason": None, "disqualification_comment": None,
                "activity": None, "duplicates": [], "duplicate_of": None, "merged_into": None, "import_id": import_id,
                "changed_fields": []}
        event = {**envelope, "id": str(uuid.uuid4()), "type": "crm.lead.created", "source": "crm/leads",
                 "causationid": command["id"], "data": card}
        for message in (command, event):
            out.append((lead_id.encode(), json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()))
    return out


async def one_pass(endpoints: common.Endpoints, records: list[tuple[bytes, bytes]], compression: str) -> dict:
    """Produce every record (a thousand a publish, as a service's batch), then read them all once in a group."""
    topic = common.new_prefix("bus") + "records"
    admin = common.admin(endpoints.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        producer = common.producer(endpoints.kafka, enable_idempotence=True, linger_ms=5, max_batch_size=512 * 1024,
                                   max_request_size=2 * 1024 * 1024, compression_type=None if compression == "none" else compression)
        await producer.start()
        await producer.partitions_for(topic)
        reader = common.consumer(endpoints.kafka, topic, group_id=topic, auto_offset_reset="earliest", enable_auto_commit=False)
        meter = common.stack_meter(endpoints).start()
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            for i in range(0, len(records), 1000):
                futures = [await producer.send(topic, value, key=key, headers=_HEADERS) for key, value in records[i:i + 1000]]
                await asyncio.gather(*futures)
            produced, cpu_produced = time.perf_counter(), time.process_time()
            await reader.start()
            seen = 0
            while seen < len(records):
                got = await reader.getmany(timeout_ms=1000, max_records=1000)
                seen += sum(len(batch) for batch in got.values())
                await reader.commit()
            meter.sample()
            elapsed, cpu_read = time.perf_counter() - started, time.process_time() - cpu_produced
        finally:
            await reader.stop()
            await producer.stop()
        # The segments the nodes wrote (a local stack's folders: crmctl's run dir).
        stored = sum(log.stat().st_size for log in (StackConfig.from_env().run_dir / "kafka").glob(f"node-*/data/{topic}-*/*.log"))
        cpu = meter.per_item_us(len(records))
        return {"compression": compression, "seconds": elapsed, "produce_s": produced - started, "kafka_us": cpu.get("kafka"),
                "client_us": cpu.get("bench"), "producing_us": (cpu_produced - cpu_started) / len(records) * 1e6,
                "reading_us": cpu_read / len(records) * 1e6, "stored_bytes_per_record": stored / len(records) if stored else None}
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="records a pass (half commands, half events)")
    parser.add_argument("--pairs", type=int, default=3, help="alternated rounds of every type")
    parser.add_argument("--types", default="none,zstd", help="compression types, comma-separated (aiokafka's names)")
    args = parser.parse_args()
    common.quiet_logs()
    endpoints = common.stack_endpoints()
    records = record_values(args.records)
    types = args.types.split(",")
    runs: list[dict] = []
    for round_ in range(args.pairs):
        for compression in types if round_ % 2 == 0 else list(reversed(types)):
            run = asyncio.run(one_pass(endpoints, records, compression))
            runs.append(run)
            print(json.dumps({"round": round_, **{k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}}), flush=True)
    print(f"\n{args.records:,} records a pass ({sum(len(v) for _, v in records) / len(records):,.0f} bytes a value), "
          f"{args.pairs} alternated rounds; median (min-max)")
    print(f"{'compression':12} {'kafka µs/record':>22} {'client µs/record':>22} {'of it producing':>22} {'reading':>22} "
          f"{'seconds':>18} {'bytes stored':>13}")
    for compression in types:
        mine = [r for r in runs if r["compression"] == compression]

        def spread(key: str) -> str:
            values = [r[key] for r in mine if r[key] is not None]
            return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "-"
        print(f"{compression:12} {spread('kafka_us'):>22} {spread('client_us'):>22} {spread('producing_us'):>22} "
              f"{spread('reading_us'):>22} {spread('seconds'):>18} {mine[0]['stored_bytes_per_record'] or 0:>13,.0f}")


if __name__ == "__main__":
    main()
