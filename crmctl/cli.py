"""The ``crm`` command: run the platform locally, look at it, and operate it."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from . import services as svc
from .deals import deals_app
from .dlq import dlq_app
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
def status() -> None:
    """Show what runs: Kafka, FerretDB and each service with its port and readiness."""
    _print_status(include_services=True)


def _print_status(include_services: bool) -> None:
    stack = Stack()
    table = Table("component", "pid", "address", "ready")
    for name, info in stack.status().items():
        table.add_row(name, str(info["pid"] or "-"), str(info["address"]), "yes" if info["ready"] else "no")
    if include_services:
        for spec in svc.SERVICES:
            pid = svc.process_for(spec, stack.config).pid()
            ready = pid is not None and svc.http_ready(spec.port)
            table.add_row(spec.name, str(pid or "-"), f"http://127.0.0.1:{spec.port}", "yes" if ready else "no")
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
