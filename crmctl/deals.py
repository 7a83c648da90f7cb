"""``crm deals watch``: an example consumer of the public qualification topic that prints new deals."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict

import typer

from contracts import ContractError, parse_message
from contracts.topics import QUALIFICATION_EVENTS
from crmkit.settings import KafkaSettings

from .kafka import connection

_REMEMBERED = 10_000

deals_app = typer.Typer(
    help="Deals created by qualifying leads, read from the public topic crm.qualification.events.v1.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def deal_line(data) -> str:
    """One line per deal: what an integrator would pick out of crm.deal.created."""
    return (
        f"deal {data.deal_id}  lead {data.lead_id}  company {data.company_id}  "
        f"title {data.title!r}  responsible {data.responsible_id}"
    )


async def watch_deals(kafka: KafkaSettings, prefix: str, from_beginning: bool, group: str | None) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        prefix + QUALIFICATION_EVENTS,
        **kafka.kafka_client_options(),
        # A group of your own keeps your place between runs; without one every run is a fresh reader.
        # The integrator principal may use the groups whose names start with "integrator".
        group_id=group or f"integrator-deals-watch-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=True,
    )
    await consumer.start()
    seen: OrderedDict[str, None] = OrderedDict()  # recent event ids, bounded so memory stays flat
    try:
        async for record in consumer:
            try:
                message = parse_message(QUALIFICATION_EVENTS, record.value)
            except ContractError:
                continue  # not ours to judge here; the producer's DLQ handles bad records
            # Delivery is at least once and a replay republishes the same event id: dedupe on it.
            if message.type != "crm.deal.created" or message.id in seen:
                continue
            seen[message.id] = None
            if len(seen) > _REMEMBERED:
                seen.popitem(last=False)
            typer.echo(deal_line(message.data))
    finally:
        await consumer.stop()


@deals_app.command("watch")
def watch(
    bootstrap: str = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers; the local stack's when absent."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Print every deal still on the topic, not only new ones."
    ),
    prefix: str = typer.Option("", "--prefix", help="Topic prefix of the deployment (CRM_TOPIC_PREFIX), if any."),
    group: str | None = typer.Option(None, "--group", help="Consumer group to remember the position in between runs."),
) -> None:
    """Print one line per crm.deal.created until Ctrl-C."""
    try:
        asyncio.run(watch_deals(connection("integrator", bootstrap), prefix, from_beginning, group))
    except KeyboardInterrupt:
        pass
