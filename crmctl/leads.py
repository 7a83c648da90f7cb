"""``crm leads bulk ...``: start a mass action on the leads service, follow it with a progress bar, cancel it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .board import recount
from .jobs import TOKEN_HELP, checked, resolve_token

console = Console(stderr=True)

leads_app = typer.Typer(help="Leads: mass actions over many leads, the board's counts.", no_args_is_help=True, rich_markup_mode=None)
bulk_app = typer.Typer(
    help="Mass actions: move, assign, change pipeline, delete or restore many leads, each as if sent alone.",
    no_args_is_help=True, rich_markup_mode=None,
)
leads_app.add_typer(bulk_app, name="bulk")

_FINAL = {"completed", "cancelled"}
_URL = typer.Option(None, "--url", help="Base URL of the leads service; CRM_LEADS_URL, else http://127.0.0.1:8001.")
_TOKEN = typer.Option(None, "--token", help=TOKEN_HELP)
_JSON = typer.Option(False, "--json", help="Print the job's final status as JSON instead of a table (no progress bar).")
_IDS = typer.Option([], "--id", help="A lead id (repeatable); or use --ids-file or --where.")
_IDS_FILE = typer.Option(None, "--ids-file", exists=True, dir_okay=False, help="A file of lead ids, one a line (up to 1,000).")
_WHERE = typer.Option(
    [], "--where",
    help="A filter as GET /leads takes it, 'name=value' (repeatable): pipeline_id, stage_id, status, responsible_id, source, q, include_deleted.",
)
_NO_WAIT = typer.Option(False, "--no-wait", help="Print the job id and return at once.")
_FILTERS = {"pipeline_id", "stage_id", "status", "responsible_id", "source", "q", "include_deleted"}


def leads_url(url: str | None) -> str:
    return (url or os.environ.get("CRM_LEADS_URL") or "http://127.0.0.1:8001").rstrip("/")


def _selection(ids: list[str], ids_file: Path | None, where: list[str]) -> dict[str, Any]:
    """lead_ids or filter of the request, from the options; exactly one way of naming leads."""
    lead_ids = list(ids) + ([line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()] if ids_file else [])
    if bool(lead_ids) == bool(where):
        raise typer.BadParameter("name the leads with --id/--ids-file or with --where, one of the two")
    if lead_ids:
        return {"lead_ids": lead_ids}
    found: dict[str, Any] = {}
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or name not in _FILTERS:
            raise typer.BadParameter(f"--where {item!r}: use name=value with a name of {', '.join(sorted(_FILTERS))}")
        found[name] = value.lower() in ("1", "true", "yes", "on") if name == "include_deleted" else value
    return {"filter": found}


def _request(http: httpx.Client, method: str, path: str, expected: int, **kwargs) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        console.print(f"error: cannot reach the leads service at {http.base_url}: {exc}")
        raise typer.Exit(1) from None
    return checked(response, expected)


def _client(url: str | None, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=leads_url(url), headers={"Authorization": f"Bearer {resolve_token(token)}"}, timeout=60)


def _run(body: dict[str, Any], url: str | None, token: str | None, as_json: bool, no_wait: bool) -> None:
    with _client(url, token) as http:
        started = _request(http, "POST", "/bulk", 202, json=body)
        bulk_id = started["bulk_id"]
        if no_wait:
            print(bulk_id)
            return
        status = _wait(http, bulk_id, show=not as_json)
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        _summary(status)
    if status["counts"].get("refused"):
        raise typer.Exit(3)  # some leads were refused: a script can tell


def _wait(http: httpx.Client, bulk_id: str, *, show: bool, deadline_s: float = 3600) -> dict[str, Any]:
    ends = time.monotonic() + deadline_s
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} leads"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not show) as progress:
        task = progress.add_task("starting", total=None)
        while True:
            # The job exists once the service has taken its command: 404 until then.
            response = http.get(f"/bulk/{bulk_id}")
            if response.status_code == 200:
                status = response.json()
                progress.update(task, total=status["total"] or 1, completed=status["done"], description=status["state"])
                if status["state"] in _FINAL:
                    return status
            elif response.status_code != 404:
                _request(http, "GET", f"/bulk/{bulk_id}", 200)  # reports the error and exits
            if time.monotonic() > ends:
                console.print(f"error: job {bulk_id} still running; 'crm leads bulk show {bulk_id}' follows it")
                raise typer.Exit(1)
            time.sleep(0.3)


def _summary(status: dict[str, Any]) -> None:
    table = Table("bulk", status["bulk_id"])
    table.add_row("action", status["action"] + (" " + json.dumps(status["params"]) if status["params"] else ""))
    table.add_row("state", status["state"])
    table.add_row("total", f"{status['total']:,}")
    for name in ("applied", "unchanged", "refused", "cancelled"):
        table.add_row(name, f"{status['counts'].get(name, 0):,}")
    Console().print(table)
    for refusal in status["refusals"][:20]:
        console.print(f"refused {refusal['lead_id']}: {refusal['reason_code']}: {refusal['message']}")
    if len(status["refusals"]) > 20:
        console.print(f"... and {len(status['refusals']) - 20} more ('crm leads bulk show {status['bulk_id']} --json' lists them)")


@bulk_app.command("move")
def move(stage: str = typer.Option(..., "--stage", help="Stage to move the leads to."),
         ids: list[str] = _IDS, ids_file: Path = _IDS_FILE, where: list[str] = _WHERE,
         as_json: bool = _JSON, no_wait: bool = _NO_WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """Move leads to a stage of their pipeline (each as the pipeline's mode allows)."""
    _run({"action": "move", "stage_id": stage, **_selection(ids, ids_file, where)}, url, token, as_json, no_wait)


@bulk_app.command("assign")
def assign(responsible: str = typer.Option(..., "--responsible", help="User to make responsible."),
           ids: list[str] = _IDS, ids_file: Path = _IDS_FILE, where: list[str] = _WHERE,
           as_json: bool = _JSON, no_wait: bool = _NO_WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """Make a user responsible for leads (a lead in New moves to Processing)."""
    _run({"action": "assign", "responsible_id": responsible, **_selection(ids, ids_file, where)}, url, token, as_json, no_wait)


@bulk_app.command("change-pipeline")
def change_pipeline(pipeline: str = typer.Option(..., "--pipeline", help="Pipeline to move the leads to."),
                    stage: str = typer.Option(None, "--stage", help="Stage of that pipeline; its first stage when absent."),
                    ids: list[str] = _IDS, ids_file: Path = _IDS_FILE, where: list[str] = _WHERE,
                    as_json: bool = _JSON, no_wait: bool = _NO_WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """Move leads to another pipeline."""
    body = {"action": "change_pipeline", "pipeline_id": pipeline, **({"stage_id": stage} if stage else {})}
    _run({**body, **_selection(ids, ids_file, where)}, url, token, as_json, no_wait)


@bulk_app.command("delete")
def delete(ids: list[str] = _IDS, ids_file: Path = _IDS_FILE, where: list[str] = _WHERE,
           as_json: bool = _JSON, no_wait: bool = _NO_WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """Delete leads (soft: 'crm leads bulk restore' undoes it)."""
    _run({"action": "delete", **_selection(ids, ids_file, where)}, url, token, as_json, no_wait)


@bulk_app.command("restore")
def restore(ids: list[str] = _IDS, ids_file: Path = _IDS_FILE, where: list[str] = _WHERE,
            as_json: bool = _JSON, no_wait: bool = _NO_WAIT, url: str = _URL, token: str = _TOKEN) -> None:
    """Restore deleted leads (with --where, add include_deleted=true)."""
    _run({"action": "restore", **_selection(ids, ids_file, where)}, url, token, as_json, no_wait)


@bulk_app.command("show")
def show(bulk_id: str, as_json: bool = _JSON, url: str = _URL, token: str = _TOKEN) -> None:
    """A job's state, counts and refused leads."""
    with _client(url, token) as http:
        status = _request(http, "GET", f"/bulk/{bulk_id}", 200)
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        _summary(status)


@bulk_app.command("cancel")
def cancel(bulk_id: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Stop a running job: leads not yet changed stay as they are."""
    with _client(url, token) as http:
        _request(http, "POST", f"/bulk/{bulk_id}/cancel", 202)
    console.print(f"cancel of {bulk_id} requested; 'crm leads bulk show {bulk_id}' follows it")


# `crm leads recount`: the board's stage counts counted again (crmctl/board.py).
leads_app.command("recount")(recount)
