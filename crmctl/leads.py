"""``crm leads bulk ...``: start a mass action on the leads service, follow it with a progress bar, list, cancel it."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .board import recount
from .jobs import TOKEN_HELP, checked, resolve_token

console = Console(stderr=True, soft_wrap=True)  # a message stays one line, for logs and grep

leads_app = typer.Typer(help="Leads: mass actions over many leads, the board's counts.", no_args_is_help=True, rich_markup_mode=None)
bulk_app = typer.Typer(
    help="Mass actions: move, assign, change pipeline, delete or restore many leads, each as if sent alone.",
    no_args_is_help=True, rich_markup_mode=None,
)
leads_app.add_typer(bulk_app, name="bulk")

_FINAL = {"completed", "cancelled"}
_PAGE = 200  # refusals per request: the service's largest page by default (LEADS_PAGE_SIZE_MAX)
_MAX_IDS = 1_000  # lead ids one job may name (a filter takes up to LEADS_BULK_MAX_LEADS)
_UNREACHABLE_S = 60  # how long the service may be out of reach (a restart) while a job is followed
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
    if len(lead_ids) > _MAX_IDS:
        raise typer.BadParameter(f"{len(lead_ids):,} lead ids, at most {_MAX_IDS:,} a job: name them with --where, or split the list")
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
        status = _finished(http, _wait(http, bulk_id, show=not as_json))
    _report(status, as_json)


def _report(status: dict[str, Any], as_json: bool, *, cancelling: bool = False) -> None:
    """The job's status printed; exit 3 when some leads were refused, 4 when it was cancelled (unless that was asked): a script can tell."""
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        _summary(status)
    if status["state"] == "cancelled" and not cancelling:
        raise typer.Exit(4)
    if status["counts"].get("refused"):
        raise typer.Exit(3)


def _wait(http: httpx.Client, bulk_id: str, *, show: bool, deadline_s: float = 3600) -> dict[str, Any]:
    ends = time.monotonic() + deadline_s
    # M of N renders a total not known yet ("?"); a format of task.total failed on it before the first answer.
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("leads"), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console, disable=not show) as progress:
            task = progress.add_task("starting", total=None)
            reached = time.monotonic()
            while True:
                # The job exists once the service has taken its command: 404 until then. One refusal is
                # enough while following it; they are read whole at the end.
                try:
                    response = http.get(f"/bulk/{bulk_id}", params={"limit": 1})
                    reached = time.monotonic()
                except httpx.TransportError as exc:  # the job goes on in the service: wait out a restart
                    if time.monotonic() - reached > _UNREACHABLE_S:
                        console.print(f"error: cannot reach the leads service at {http.base_url}: {exc}; "
                                      f"job {bulk_id} goes on: 'crm leads bulk show {bulk_id}' follows it")
                        raise typer.Exit(1) from None
                    progress.update(task, description="unreachable, retrying")
                    time.sleep(1)
                    continue
                if response.status_code == 200:
                    status = response.json()
                    if status["state"] == "refused":
                        error = status.get("error") or {}
                        console.print(f"error: mass action {bulk_id} refused: {error.get('reason_code')}: {error.get('message')}")
                        raise typer.Exit(1)
                    progress.update(task, total=status["total"] or 1, completed=status["done"], description=status["state"])
                    if status["state"] in _FINAL:
                        return status
                elif response.status_code != 404:
                    _request(http, "GET", f"/bulk/{bulk_id}", 200)  # reports the error and exits
                if time.monotonic() > ends:
                    console.print(f"error: job {bulk_id} still running; 'crm leads bulk show {bulk_id}' follows it")
                    raise typer.Exit(1)
                time.sleep(0.3)
    except KeyboardInterrupt:
        # Only the watching stops: the job goes on in the service.
        console.print(f"stopped watching; job {bulk_id} goes on: 'crm leads bulk show {bulk_id}' follows it, "
                      f"'crm leads bulk cancel {bulk_id}' stops it")
        raise typer.Exit(130) from None


def _finished(http: httpx.Client, status: dict[str, Any]) -> dict[str, Any]:
    """The status with every refusal, read page by page from GET /bulk/{id}/refusals."""
    return {**{k: v for k, v in status.items() if k != "refusals_next_cursor"}, "refusals": _refusals(http, status["bulk_id"])}


def _refusals(http: httpx.Client, bulk_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _request(http, "GET", f"/bulk/{bulk_id}/refusals", 200, params={"limit": _PAGE, **({"cursor": cursor} if cursor else {})})
        found += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return found


def _summary(status: dict[str, Any]) -> None:
    table = Table("bulk", status["bulk_id"])
    table.add_row("action", status["action"] + (" " + json.dumps(status["params"]) if status["params"] else ""))
    table.add_row("state", status["state"])
    table.add_row("total", f"{status['total']:,}")
    for name in ("applied", "unchanged", "refused", "cancelled"):
        table.add_row(name, f"{status['counts'].get(name, 0):,}")
    Console().print(table)
    if status["state"] == "refused":
        error = status.get("error") or {}
        console.print(f"refused: {error.get('reason_code')}: {error.get('message')}")
    for refusal in status["refusals"][:20]:
        console.print(f"refused {refusal['lead_id']}: {refusal['reason_code']}: {refusal['message']}")
    more = status["counts"].get("refused", 0) - min(len(status["refusals"]), 20)
    if more > 0:
        console.print(f"... and {more:,} more ('crm leads bulk refusals {status['bulk_id']}' lists them all)")


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


@bulk_app.command("list")
def list_jobs(
    user: str = typer.Option(None, "--user", help="Administrators: only this user's mass actions (default: everyone's)."),
    limit: int = typer.Option(50, help="Page size (1-200)."),
    cursor: str = typer.Option(None, help="Where the previous page ended (its next_cursor)."),
    as_json: bool = typer.Option(False, "--json", help="The page as JSON ({items, next_cursor}) instead of a table."),
    url: str = _URL, token: str = _TOKEN,
) -> None:
    """Mass actions newest first: your own, or everyone's when you are an administrator."""
    params: dict[str, Any] = {"limit": limit, **{k: v for k, v in (("requested_by", user), ("cursor", cursor)) if v}}
    with _client(url, token) as http:
        page = _request(http, "GET", "/bulk", 200, params=params)
    if as_json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return
    table = Table("bulk", "user", "action", "state", "total", "sent", "created", "finished")
    for job in page["items"]:
        table.add_row(job["bulk_id"], job["requested_by"] or "-", job["action"] or "-", job["state"], f"{job['total']:,}",
                      f"{job['sent']:,}", str(job["created_at"]), str(job["finished_at"] or "-"))
    Console().print(table)
    if page.get("next_cursor"):
        console.print(f"more: --cursor {page['next_cursor']}")


@bulk_app.command("show")
def show(bulk_id: str, as_json: bool = _JSON, url: str = _URL, token: str = _TOKEN) -> None:
    """A job's state, counts and refused leads (all of them with --json)."""
    with _client(url, token) as http:
        status = _finished(http, _request(http, "GET", f"/bulk/{bulk_id}", 200, params={"limit": 1}))
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        _summary(status)


@bulk_app.command("refusals")
def refusals(bulk_id: str, as_json: bool = typer.Option(False, "--json", help="A JSON list instead of CSV."),
             url: str = _URL, token: str = _TOKEN) -> None:
    """Every lead the job could not change, with the reason: CSV (lead_id,reason_code,message) on stdout."""
    with _client(url, token) as http:
        found = _refusals(http, bulk_id)
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(("lead_id", "reason_code", "message"))
    out.writerows((r["lead_id"], r["reason_code"], r["message"]) for r in found)


@bulk_app.command("cancel")
def cancel(bulk_id: str, wait: bool = typer.Option(False, "--wait", help="Follow the job until it stops, then print it."),
           as_json: bool = _JSON, url: str = _URL, token: str = _TOKEN) -> None:
    """Stop a running job: leads not yet changed stay as they are."""
    with _client(url, token) as http:
        _request(http, "POST", f"/bulk/{bulk_id}/cancel", 202)
        if not wait:
            console.print(f"cancel of {bulk_id} requested; 'crm leads bulk show {bulk_id}' follows it")
            return
        status = _finished(http, _wait(http, bulk_id, show=not as_json))
    _report(status, as_json, cancelling=True)


# `crm leads recount`: the board's stage counts counted again (crmctl/board.py).
leads_app.command("recount")(recount)
