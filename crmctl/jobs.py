"""``crm imports list|show|cancel|revert|errors``: follow and operate imports through the importer's HTTP API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

jobs_app = typer.Typer(
    help="Imports already started: list them (yours; an administrator's: everyone's), follow, cancel, revert, get errors.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TOKEN_HELP = "Bearer token of the user you act as; CRM_TOKEN when absent (the demo's tokens are in the README)."
_URL = typer.Option(None, "--url", help="Base URL of the importer; CRM_IMPORTER_URL, else http://127.0.0.1:8003.")
_TOKEN = typer.Option(None, "--token", help=TOKEN_HELP)
_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def resolve_token(token: str | None) -> str:
    """The token from --token or CRM_TOKEN; never a silent default (that would act as someone else)."""
    found = token or os.environ.get("CRM_TOKEN")
    if not found:
        console.print("error: no token: pass --token or set CRM_TOKEN (the local demo's tokens are listed in the README)")
        raise typer.Exit(2)
    return found


def importer_url(url: str | None) -> str:
    return (url or os.environ.get("CRM_IMPORTER_URL") or "http://127.0.0.1:8003").rstrip("/")


def _client(url: str | None, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=importer_url(url), headers={"Authorization": f"Bearer {resolve_token(token)}"}, timeout=60)


def checked(response: httpx.Response, expected: int = 200) -> Any:
    """The body of an answer with the expected status, else the service's error printed and exit 1."""
    if response.status_code != expected:
        try:
            body = response.json()
            text = f"{body.get('error')}: {body.get('message')}"
        except ValueError:
            text = response.text[:300]
        console.print(f"error ({response.status_code}) {text}")
        raise typer.Exit(1)
    return response.json() if response.headers.get("content-type", "").startswith("application/json") else response.content


def _call(url: str | None, token: str | None, method: str, path: str, expected: int = 200, **kwargs) -> Any:
    with _client(url, token) as http:
        try:
            return checked(http.request(method, path, **kwargs), expected)
        except httpx.HTTPError as exc:
            console.print(f"error: cannot reach the importer at {importer_url(url)}: {exc}")
            raise typer.Exit(1) from None


@jobs_app.command("list")
def list_imports(
    state: str = typer.Option(None, help="Only imports in this state (waiting, running, completed, failed, reverting, reverted)."),
    user: str = typer.Option(None, "--user", help="Administrators: only this user's imports."),
    limit: int = typer.Option(50, help="Page size (1-200)."),
    offset: int = typer.Option(0, help="Skip this many (the previous page's next_offset)."),
    as_json: bool = _JSON, url: str = _URL, token: str = _TOKEN,
) -> None:
    """Imports newest first: your own, or everyone's when you are an administrator."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params.update({k: v for k, v in (("state", state), ("actor_id", user)) if v})
    page = _call(url, token, "GET", "/imports", params=params)
    if as_json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return
    table = Table("import", "user", "state", "file", "rows read", "created", "updated", "rejected", "started")
    for job in page["items"]:
        table.add_row(job["import_id"], str(job.get("actor_id") or "-"), job["state"] + (" (dry run)" if job["dry_run"] else ""),
                      str(job.get("file_name") or "-"), str(job["rows_read"]), str(job["created"]), str(job["updated"]),
                      str(job["rejected"]), str(job.get("started_at") or "-"))
    Console().print(table)
    if page.get("next_offset") is not None:
        console.print(f"more: --offset {page['next_offset']}")


@jobs_app.command("show")
def show(import_id: str, as_json: bool = _JSON, url: str = _URL, token: str = _TOKEN) -> None:
    """One import's status: counts, rows per second, failure or retrying outage, report links."""
    status = _call(url, token, "GET", f"/imports/{import_id}")
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return
    table = Table("import", import_id)
    for key, value in status.items():
        if value not in (None, [], {}) and not key.endswith("_url"):
            table.add_row(key, json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)


@jobs_app.command("cancel")
def cancel(import_id: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Stop a running import; the rows already sent stay (revert it once it ends to undo them)."""
    _call(url, token, "POST", f"/imports/{import_id}/cancel", expected=202)
    console.print(f"cancel of {import_id} requested; 'crm imports show {import_id}' follows it")


@jobs_app.command("revert")
def revert(import_id: str, url: str = _URL, token: str = _TOKEN) -> None:
    """Undo a completed import: the leads it created are deleted, the ones it updated get their values back."""
    _call(url, token, "POST", f"/imports/{import_id}/revert", expected=202)
    console.print(f"revert of {import_id} requested; 'crm imports show {import_id}' follows it")


@jobs_app.command("errors")
def errors(
    import_id: str,
    out: Path = typer.Option(None, "--out", help="Write the report here; by default import-<id>-errors.<format> here."),
    format: str = typer.Option("csv", "--format", help="csv or xlsx."),
    url: str = _URL, token: str = _TOKEN,
) -> None:
    """Download the error report: every rejected row with its original cells, the column and the reason."""
    if format not in ("csv", "xlsx"):
        raise typer.BadParameter("--format must be csv or xlsx")
    body = _call(url, token, "GET", f"/imports/{import_id}/errors.{format}")
    target = out or Path(f"import-{import_id}-errors.{format}")
    target.write_bytes(body)
    console.print(f"wrote {target} ({len(body):,} bytes)")
