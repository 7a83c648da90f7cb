"""The ``crm`` command: run the platform locally, look at it, and operate it."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from . import services as svc
from .deals import deals_app
from .dlq import dlq_app
from .jobs import jobs_app
from . import ops
from .stack import Stack, StackError

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
app.command("lag")(ops.lag)
app.command("tail")(ops.tail)
app.command("logs")(ops.logs)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Provision (first run: Maven jars, Go build) and start Kafka and FerretDB; return when both answer."""
    stack = Stack()
    try:
        with console.status("Starting FerretDB..."):
            stack.ferretdb.start()
        with console.status("Starting Kafka..."):
            stack.kafka.start()
    except StackError as exc:
        _fail(exc)
    console.print(f"Kafka    {stack.config.kafka_bootstrap}\nFerretDB {stack.config.mongodb_url}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the Kafka and FerretDB processes that 'crm stack up' started (data is kept in .run/)."""
    stopped = Stack().down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status() -> None:
    """Show whether Kafka and FerretDB run, with their pids and addresses."""
    _print_status(include_services=False)


@app.command()
def up(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Seed demo users, licences, contacts and leads."),
) -> None:
    """Start Kafka, FerretDB and the four services in the background; return once all are healthy."""
    stack = Stack()
    try:
        with console.status("Starting FerretDB..."):
            stack.ferretdb.start()
        with console.status("Starting Kafka..."):
            stack.kafka.start()
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


def _bus_figures(bootstrap: str) -> tuple[dict[str, int], dict[str, int]] | None:
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


def _print_status(include_services: bool, as_json: bool = False) -> None:
    stack = Stack()
    rows = [
        {"component": name, "pid": info["pid"], "address": str(info["address"]), "ready": bool(info["ready"])}
        for name, info in stack.status().items()
    ]
    if include_services:
        kafka_up = any(r["component"].startswith("kafka") and r["ready"] for r in rows)
        figures = _bus_figures(stack.config.kafka_bootstrap) if kafka_up else None
        for spec in svc.SERVICES:
            pid = svc.process_for(spec, stack.config).pid()
            ready = pid is not None and svc.http_ready(spec.port)
            row = {"component": spec.name, "pid": pid, "address": f"http://127.0.0.1:{spec.port}", "ready": ready}
            if figures is not None:
                row.update(lag=figures[0].get(spec.name, 0), dlq=figures[1].get(spec.name, 0))
            rows.append(row)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("component", "pid", "address", "ready", "lag", "DLQ")
    for row in rows:
        table.add_row(row["component"], str(row["pid"] or "-"), row["address"], "yes" if row["ready"] else "no",
                      str(row.get("lag", "")), str(row.get("dlq", "")))
    Console().print(table)


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
