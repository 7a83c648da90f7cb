"""The ``crm`` command: run the platform locally, look at it, and operate it."""

from __future__ import annotations

import json
import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from . import services as svc
from .deals import deals_app
from .dlq import dlq_app
from . import ops
from .jobs import jobs_app
from .leads import leads_app
from .stack import Stack, StackConfig, StackError

console = Console(stderr=True)

app = typer.Typer(
    help=(
        "Operate the lead-management platform.\n\n"
        "Start here: 'crm up' runs Kafka, FerretDB and the four services on this machine; "
        "'crm status' shows what runs; 'crm down' stops it all."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
stack_app = typer.Typer(
    help="The infrastructure alone: Apache Kafka (KRaft) and FerretDB, on 127.0.0.1.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(stack_app, name="stack")
app.add_typer(deals_app, name="deals")
app.add_typer(dlq_app, name="dlq")
app.add_typer(jobs_app, name="imports")
app.add_typer(leads_app, name="leads")
app.command("lag")(ops.lag)
app.command("tail")(ops.tail)
app.command("logs")(ops.logs)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


_BROKERS = typer.Option(
    None, "--brokers", min=1, max=3,
    help="Kafka nodes: 3 (the default, replicated) or 1 for a small machine; a run folder keeps the size it was made with.",
)


def _start_stack(brokers: int | None) -> Stack:
    stack = Stack(StackConfig.from_env(brokers))
    with console.status("Starting FerretDB..."):
        stack.ferretdb.start()
    with console.status(f"Starting Kafka ({stack.config.brokers} node{'s' if stack.config.brokers > 1 else ''})..."):
        stack.kafka.start()
    with console.status("Creating topics and ACLs..."):
        stack.kafka.setup_bus()
    return stack


@stack_app.command("up")
def stack_up(brokers: int = _BROKERS) -> None:
    """Provision (first run: Maven jars, Go build) and start Kafka and FerretDB; return when both answer."""
    try:
        stack = _start_stack(brokers)
    except StackError as exc:
        _fail(exc)
    console.print(
        f"Kafka    {stack.config.kafka_bootstrap} (SASL/SCRAM-SHA-512; credentials in {stack.kafka.credentials_file})\n"
        f"FerretDB {stack.config.mongodb_url}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the Kafka and FerretDB processes that 'crm stack up' started (data is kept in .run/)."""
    stopped = Stack().down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status() -> None:
    """Show each Kafka node, the controller quorum, under-replicated partitions, and FerretDB."""
    _print_status(include_services=False)


@app.command("bus-setup")
def bus_setup() -> None:
    """Create the contract topics and every principal's ACLs on the cluster of KAFKA_BOOTSTRAP_SERVERS.

    Connects as KAFKA_SASL_USERNAME, which must be a super user (compose's init container runs this);
    without those settings, on the local stack as its admin. Safe to repeat.
    """
    from crmkit.settings import KafkaSettings

    from . import bus

    try:
        kafka = KafkaSettings() if os.environ.get("KAFKA_SASL_USERNAME") else Stack().kafka.client_settings()
        created = bus.create_topics(kafka)
        acls = bus.apply_grants(kafka, bus.grants())
    except StackError as exc:
        _fail(exc)
    console.print(f"topics created: {len(created)}; ACLs in place: {acls}")


@app.command("compose-env")
def compose_env() -> None:
    """Print a fresh .env for compose.yaml: a cluster id, a password for every Kafka principal, the key sealing webhook secrets.

    Use it once: crm compose-env > .env (the nodes write the users when they first format their storage).
    """
    import base64

    from . import bus

    credentials = bus.generate_credentials()
    print(f"KAFKA_CLUSTER_ID={base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip('=')}")
    print(f"KAFKA_ADMIN_PASSWORD={credentials.pop(bus.ADMIN)}")
    for name, password in credentials.items():
        print(f"{name.upper()}_KAFKA_SASL_PASSWORD={password}")
    from cryptography.fernet import Fernet

    print(f"LEADS_SECRETS_KEYS='[\"{Fernet.generate_key().decode()}\"]'")


@app.command()
def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Seed demo users, licences, contacts and leads."),
    brokers: int = _BROKERS,
) -> None:
    """Start Kafka, FerretDB and the four services in the background; return once all are healthy."""
    try:
        stack = _start_stack(brokers)
        for spec in svc.SERVICES:
            svc.start_service(spec, stack.config)
        for spec in svc.SERVICES:
            with console.status(f"Waiting for the {spec.name} service..."):
                svc.wait_ready(spec, stack.config)
    except StackError as exc:
        _fail(exc)
    if demo:
        from .demo import seed_demo

        with console.status("Seeding demo data..."):
            summary = seed_demo(stack.config)
        console.print(summary)
    _print_status(include_services=True)
    console.print(
        "\nTry:  curl -H 'Authorization: Bearer demo-admin' http://127.0.0.1:8001/leads\n"
        "Stop: crm down"
    )


@app.command()
def down(
    keep_stack: bool = typer.Option(False, "--keep-stack", help="Stop only the services; leave Kafka and FerretDB running."),
) -> None:
    """Stop the four services (each finishes its batch in hand), then Kafka and FerretDB."""
    stack = Stack()
    stopped = [spec.name for spec in svc.SERVICES if svc.stop_service(spec, stack.config)]
    if not keep_stack:
        stopped += stack.down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show what runs: Kafka, FerretDB and each service with its port, readiness, consumer lag and DLQ records."""
    _print_status(include_services=True, as_json=as_json)


def _bus_figures(bootstrap: dict) -> tuple[dict[str, int], dict[str, int]] | None:
    """(lag by service, DLQ records by the service that parked them), or None when Kafka does not answer."""
    import asyncio

    from .dlq import summary

    async def read() -> tuple[dict[str, int], dict[str, int]]:
        lag: dict[str, int] = {}
        for row in await ops.read_lag(bootstrap):
            name = ops.service_of_group(row.group)
            lag[name] = lag.get(name, 0) + row.lag
        parked: dict[str, int] = {}
        for topic in await summary(bootstrap):
            for part in topic.get("by", ()):
                parked[part["service"]] = parked.get(part["service"], 0) + part["records"]
        return lag, parked

    try:
        return asyncio.run(asyncio.wait_for(read(), 20))
    except Exception:
        return None


def _quorum_json(kafka: dict | None) -> dict | None:
    if not kafka:
        return None
    return {"voters": kafka["voters"], "quorum_leader": kafka["quorum_leader"], "quorum_epoch": kafka["quorum_epoch"],
            "under_replicated": kafka["under_replicated"]}


def _print_status(include_services: bool, as_json: bool = False) -> None:
    stack = Stack()
    kafka = stack.kafka.status() if stack.kafka.credentials_file.exists() else None
    rows = []
    for node in kafka["nodes"] if kafka else ():
        in_meta = node.node_id in kafka["brokers_in_metadata"]
        role = " (quorum leader)" if node.node_id == kafka["quorum_leader"] else ""
        rows.append({"component": f"kafka node {node.node_id}{role}", "pid": node.pid, "address": node.address,
                     "ready": bool(node.up and in_meta)})
    ferret = stack.ferretdb
    rows.append({"component": "ferretdb", "pid": ferret.process.pid(), "address": stack.config.mongodb_url,
                 "ready": bool(ferret.process.running() and ferret.ready())})
    if include_services:
        kafka_up = any(r["component"].startswith("kafka") and r["ready"] for r in rows)
        figures = _bus_figures(ops.bootstrap_of(None)) if kafka_up else None
        for spec in svc.SERVICES:
            pid = svc.process_for(spec, stack.config).pid()
            ready = pid is not None and svc.http_ready(spec.port)
            row = {"component": spec.name, "pid": pid, "address": f"http://127.0.0.1:{spec.port}", "ready": ready}
            if figures is not None:
                row.update(lag=figures[0].get(spec.name, 0), dlq=figures[1].get(spec.name, 0))
            rows.append(row)
    if as_json:
        print(json.dumps({"components": rows, "kafka": _quorum_json(kafka)}, indent=2, default=str))
        return
    table = Table("component", "pid", "address", "ready", "lag", "DLQ")
    for row in rows:
        table.add_row(row["component"], str(row["pid"] or "-"), row["address"], "yes" if row["ready"] else "no",
                      str(row.get("lag", "")), str(row.get("dlq", "")))
    Console().print(table)
    if kafka:
        out = Console()
        voters = ",".join(map(str, kafka["voters"]))
        leader = kafka["quorum_leader"]
        out.print(f"controller quorum: voters {voters}; leader " + (f"node {leader} (epoch {kafka['quorum_epoch']})" if leader else "unknown"))
        under = kafka["under_replicated"]
        if under is None:
            out.print("under-replicated partitions: unknown (no broker answers)")
        else:
            out.print(f"under-replicated partitions: {len(under)}" + "".join(f"\n  {p}" for p in under[:20]))
    else:
        Console().print("kafka: not set up yet ('crm stack up')")


from .imports import imports_app  # noqa: E402  (registered last: `crm import`, `crm import-template`)
app.add_typer(imports_app)
from .analytics import analytics_app, report_app  # noqa: E402  (`crm report <name>`, `crm analytics rebuild|status`)
app.add_typer(report_app)
app.add_typer(analytics_app, name="analytics")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
