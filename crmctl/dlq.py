"""``crm dlq``: look into the dead-letter topics and replay their records to where they came from."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from contracts.topics import DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_SUFFIX, DLQ_TOPIC
from crmctl.kafka import connection

console = Console()

dlq_app = typer.Typer(
    help="Dead-letter topics (<topic>.dlq): what was parked there and why; replay after a fix.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_DLQ_HEADERS = {DLQ_REASON, DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET}


def _bootstrap(value: str | None) -> dict[str, Any]:
    """aiokafka options for the operator principal (it reads every topic and may replay DLQs)."""
    return connection("operator", value).kafka_client_options()


async def _dlq_topics(kafka: dict[str, Any], prefix: str) -> list[str]:
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        return sorted(t for t in await consumer.topics() if t.endswith(DLQ_SUFFIX) and t.startswith(prefix))
    finally:
        await consumer.stop()


async def _read(kafka: dict[str, Any], topic: str, limit: int | None = None) -> list[Any]:
    """Every record of ``topic`` from the beginning up to its end now (no consumer group: nothing is committed)."""
    consumer = AIOKafkaConsumer(
        **kafka, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise typer.BadParameter(f"topic {topic} does not exist; 'crm dlq list' shows the DLQ topics")
        if not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()  # noqa: SLF001  (topics() does not fill this cache)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for part in batch.values():
                records.extend(r for r in part if r.offset < ends[TopicPartition(r.topic, r.partition)])
            if limit is not None and len(records) >= limit:
                return records[:limit]
        return records
    finally:
        await consumer.stop()


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


@dlq_app.command("list")
def list_dlq(
    topic: str = typer.Argument(None, help="A DLQ topic (e.g. crm.leads.commands.v1.dlq); all DLQ topics when absent."),
    prefix: str = typer.Option("", help="Only DLQ topics starting with this (a deployment's topic prefix)."),
    reasons: bool = typer.Option(False, "--reasons", help="Also count the records by reason."),
    show: int = typer.Option(0, help="Print this many records (origin, reason, first bytes of the value)."),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers; the local stack's when absent."),
) -> None:
    """How many records each DLQ holds, and why they were parked."""
    servers = _bootstrap(bootstrap)

    async def run() -> None:
        topics = [topic] if topic else await _dlq_topics(servers, prefix)
        table = Table("DLQ topic", "records", "original topic")
        for name in topics:
            records = await _read(servers, name)
            table.add_row(name, str(len(records)), name.removesuffix(DLQ_SUFFIX))
            if reasons and records:
                for reason, count in Counter(_headers(r).get(DLQ_REASON, "?")[:120] for r in records).most_common(20):
                    table.add_row("", str(count), f"  {reason}")
            for record in records[:show]:
                h = _headers(record)
                origin = f"{h.get(DLQ_TOPIC)}[{h.get(DLQ_PARTITION)}]@{h.get(DLQ_OFFSET)}"
                preview = (record.value or b"")[:80].decode(errors="replace")
                table.add_row("", origin, f"{h.get(DLQ_REASON, '?')[:100]} | {preview}")
        console.print(table)

    asyncio.run(run())


@dlq_app.command("replay")
def replay(
    topic: str = typer.Argument(..., help="The DLQ topic to replay, e.g. crm.leads.commands.v1.dlq"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be re-published; send nothing."),
    reason_contains: str = typer.Option(None, "--reason-contains", help="Only records whose reason contains this."),
    limit: int = typer.Option(None, help="Replay at most this many records (oldest first)."),
    bootstrap: str = typer.Option(None, help="Kafka bootstrap servers; the local stack's when absent."),
) -> None:
    """Re-publish DLQ records to their original topic with their key and original headers.

    Safe to repeat: the services dedupe by message id, so a record that is applied twice acts once.
    The DLQ itself is left as it is (Kafka topics are append-only); a record that is still bad comes
    back to the DLQ with a fresh reason.
    """
    servers = _bootstrap(bootstrap)

    async def run() -> None:
        records = await _read(servers, topic)
        chosen = [r for r in records if not reason_contains or reason_contains in _headers(r).get(DLQ_REASON, "")]
        chosen = chosen[:limit] if limit is not None else chosen
        targets = Counter(_headers(r).get(DLQ_TOPIC) or topic.removesuffix(DLQ_SUFFIX) for r in chosen)
        verb = "would re-publish" if dry_run else "re-publishing"
        console.print(f"{verb} {len(chosen)} of {len(records)} records: " + ", ".join(f"{t}={n}" for t, n in targets.items()))
        if dry_run or not chosen:
            return
        producer = AIOKafkaProducer(**servers, acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            futures = []
            for record in chosen:
                h = _headers(record)
                headers = [(k, v.encode()) for k, v in h.items() if k not in _DLQ_HEADERS]
                headers.append(("dlq-replayed-from", f"{record.topic}[{record.partition}]@{record.offset}".encode()))
                target = h.get(DLQ_TOPIC) or topic.removesuffix(DLQ_SUFFIX)
                futures.append(await producer.send(target, record.value, key=record.key, headers=headers))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        console.print(f"re-published {len(chosen)} records")

    asyncio.run(run())
