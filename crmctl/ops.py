"""Operator commands: ``crm lag``, ``crm tail TOPIC`` and ``crm logs [SERVICE]``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from contracts import ContractError, parse_message
from crmkit.lag import LagReader, PartitionLag
from crmkit.logs import CONTEXT_FIELDS

from . import services as svc
from .kafka import operator_options
from .stack import StackConfig

console = Console()

_BOOTSTRAP = typer.Option(None, help="Kafka bootstrap servers; CRM_KAFKA_PORT's local stack when absent.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def bootstrap_of(value: str | None) -> dict:
    """The operator's connection: to ``value`` when given, else the local stack (CRM_KAFKA_PORT)."""
    return operator_options(value)


def service_of_group(group: str) -> str:
    """The service a consumer group belongs to, by the default group names (``crm-<service>``)."""
    for spec in svc.SERVICES:
        if group.endswith(spec.name) or group.startswith(f"crm-{spec.name}"):
            return spec.name
    return "-"


async def read_lag(bootstrap: dict[str, Any], prefix: str = "crm-", groups: list[str] | None = None) -> list[PartitionLag]:
    """Every partition's lag of the chosen consumer groups (default: those named ``crm-*``), from the brokers."""
    reader = LagReader(bootstrap)
    await reader.start()
    try:
        rows: list[PartitionLag] = []
        for group in groups or await reader.groups(prefix):
            rows.extend(await reader.lag(group))
        return rows
    finally:
        await reader.stop()


def lag_by_group(rows: list[PartitionLag]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.group] = totals.get(row.group, 0) + row.lag
    return totals


def lag(
    group: list[str] = typer.Option(None, "--group", help="Only this consumer group (repeatable)."),
    prefix: str = typer.Option("crm-", help="Groups whose name starts with this, when no --group is given."),
    all_partitions: bool = typer.Option(False, "--all", help="Also list partitions that are caught up."),
    as_json: bool = _JSON,
    bootstrap: str = _BOOTSTRAP,
) -> None:
    """Consumer lag per service, group and partition, read from the brokers (committed offset vs log end)."""
    rows = asyncio.run(read_lag(bootstrap_of(bootstrap), prefix, group or None))
    if as_json:
        print(json.dumps([{"service": service_of_group(r.group), **asdict(r)} for r in rows], indent=2))
        return
    table = Table("service", "group", "topic", "partition", "committed", "end", "lag")
    for row in rows:
        if row.lag or all_partitions:
            table.add_row(service_of_group(row.group), row.group, row.topic, str(row.partition),
                          "-" if row.committed is None else str(row.committed), str(row.end), str(row.lag))
    for name, total in lag_by_group(rows).items():
        table.add_row(service_of_group(name), name, "(all)", "", "", "", str(total))
    console.print(table)


def _contract_topic(physical: str) -> str:
    at = physical.find("crm.")
    return physical[at:] if at >= 0 else physical


def tail(
    topic: str = typer.Argument(..., help="Topic to read, e.g. crm.leads.events.v1 (with a deployment's prefix if any)."),
    message_type: str = typer.Option(None, "--type", help="Only messages of this type, e.g. crm.lead.created."),
    lead: str = typer.Option(None, "--lead", help="Only messages about this lead (subject or data.lead_id)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record instead of new ones."),
    count: int = typer.Option(0, help="Stop after this many matching messages (0: run until Ctrl-C)."),
    bootstrap: str = _BOOTSTRAP,
) -> None:
    """Print a topic's messages as they arrive, decoded through the contracts, one JSON object a line."""
    asyncio.run(_tail(bootstrap_of(bootstrap), topic, message_type, lead, from_beginning, count))


def matches(message: Any, message_type: str | None, lead: str | None) -> bool:
    if message_type and message.type != message_type:
        return False
    return not lead or lead in (message.subject, getattr(message.data, "lead_id", None))


async def _tail(bootstrap: dict[str, Any], topic: str, message_type: str | None, lead: str | None, from_beginning: bool, count: int) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, **bootstrap, group_id=f"crm-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest", enable_auto_commit=False,
    )
    await consumer.start()
    shown = 0
    try:
        async for record in consumer:
            try:
                message = parse_message(_contract_topic(record.topic), record.value or b"")
            except ContractError as exc:
                if not (message_type or lead):
                    print(json.dumps({"partition": record.partition, "offset": record.offset, "undecodable": str(exc)}))
                continue
            if matches(message, message_type, lead):
                print(json.dumps({"partition": record.partition, "offset": record.offset, **json.loads(message.to_json_bytes())},
                                 ensure_ascii=False), flush=True)
                shown += 1
                if count and shown >= count:
                    return
    finally:
        await consumer.stop()


def readable(line: str) -> str:
    """A JSON log line as a person reads it; any other line as it is."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "message" not in entry:
        return line
    context = " ".join(f"{k}={entry[k]}" for k in CONTEXT_FIELDS if entry.get(k) is not None)
    text = f"{entry.get('time', '')} {entry.get('level', ''):<7} {entry.get('service', '')}: {entry['message']}"
    text += f" [{context}]" if context else ""
    return text + ("\n" + entry["exception"] if entry.get("exception") else "")


def logs(
    service: str = typer.Argument(None, help="leads, qualification, importer or activity; all four when absent."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they are written."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many of the last lines to show first."),
    raw: bool = typer.Option(False, "--raw", help="Print the JSON lines as written."),
) -> None:
    """Show the local services' logs (the files under the run folder), readable, optionally following them."""
    config = StackConfig.from_env()
    specs = [s for s in svc.SERVICES if service in (None, s.name)]
    if not specs:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(s.name for s in svc.SERVICES)}")
    files = {spec.name: Path(svc.process_for(spec, config).log_file) for spec in specs}
    prefix = len(files) > 1
    positions: dict[str, int] = {}
    for name, path in files.items():
        if not path.exists():
            console.print(f"({name}: no log yet at {path})")
            positions[name] = 0
            continue
        content = path.read_text(errors="replace").splitlines()
        for line in content[-lines:] if lines else []:
            print(_shown(name, line, prefix, raw))
        positions[name] = path.stat().st_size
    while follow:
        for name, path in files.items():
            if path.exists() and path.stat().st_size > positions[name]:
                with open(path, errors="replace") as file:
                    file.seek(positions[name])
                    for line in file.read().splitlines():
                        print(_shown(name, line, prefix, raw), flush=True)
                    positions[name] = file.tell()
        time.sleep(0.5)


def _shown(name: str, line: str, prefix: bool, raw: bool) -> str:
    text = line if raw else readable(line)
    return f"{name:<13} {text}" if prefix else text
