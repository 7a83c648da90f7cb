"""``crm report <name>`` (the analytics reports as tables, bars, JSON or CSV) and ``crm analytics rebuild|status``."""

from __future__ import annotations

import json
import os

import httpx
import typer
from rich.console import Console
from rich.table import Table

REPORTS = ("funnel", "sources", "reasons", "stages", "responsible", "trend")
_BAR = 40

analytics_app = typer.Typer(help="The analytics service's read model: rebuild it, see how far it is.", no_args_is_help=True, rich_markup_mode=None)
report_app = typer.Typer(help="Reports of the analytics service (port 8005), with the same filters as its HTTP side.", rich_markup_mode=None)

_URL = typer.Option(os.environ.get("CRM_ANALYTICS_URL", "http://127.0.0.1:8005"), "--url", help="Analytics service (CRM_ANALYTICS_URL).")
_TOKEN = typer.Option(os.environ.get("CRM_TOKEN", "demo-admin"), "--token", help="Bearer token (CRM_TOKEN); the demo's admin by default.")


def _call(method: str, url: str, token: str, **kwargs) -> httpx.Response:
    try:
        response = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        Console(stderr=True).print(f"[red]error:[/red] cannot reach the analytics service at {url}: {exc}")
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        Console(stderr=True).print(f"[red]error {response.status_code}:[/red] {message}")
        raise typer.Exit(1)
    return response


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def funnel_bars(rows: list[dict], width: int = _BAR) -> list[str]:
    """The funnel as terminal bars, one per stage, scaled to the stage reached most."""
    top = max((r["reached"] for r in rows), default=0) or 1
    label = max((len(r["name"]) for r in rows), default=0)
    lines = []
    for r in rows:
        filled = round(r["reached"] / top * width)
        share = r["conversion_from_first"]
        lines.append(f"{r['name']:<{label}} {'█' * filled}{' ' * (width - filled)} {r['reached']:>6}  {'' if share is None else f'{share * 100:.1f}%'}")
    return lines


@report_app.command("report")
def report(
    name: str = typer.Argument(..., help="funnel, sources, reasons, stages, responsible or trend"),
    pipeline_id: str = typer.Option(None, "--pipeline", help="Pipeline id (funnel and stages: the default pipeline if absent)."),
    created_from: str = typer.Option(None, "--from", help="Leads created from this date (2025-03-01) or RFC 3339 time."),
    created_to: str = typer.Option(None, "--to", help="Leads created up to this date, inclusive (or before this time)."),
    responsible_id: str = typer.Option(None, "--responsible", help="Responsible user id."),
    source: str = typer.Option(None, "--source", help="Lead source, e.g. website."),
    by: str = typer.Option(None, "--by", help="sources: group by source, utm_source, utm_medium, utm_campaign or marketing_event."),
    period: str = typer.Option(None, "--period", help="trend: day or week."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON answer."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the CSV."),
    url: str = _URL,
    token: str = _TOKEN,
) -> None:
    """Print a report as a table (the funnel with bars too)."""
    if name not in REPORTS:
        Console(stderr=True).print(f"[red]error:[/red] no report {name!r}; reports: {', '.join(REPORTS)}")
        raise typer.Exit(2)
    params = {k: v for k, v in {"pipeline_id": pipeline_id, "created_from": created_from, "created_to": created_to,
                                "responsible_id": responsible_id, "source": source, "by": by, "period": period}.items() if v}
    if as_csv:
        typer.echo(_call("GET", f"{url}/reports/{name}.csv", token, params=params).text, nl=False)
        return
    answer = _call("GET", f"{url}/reports/{name}", token, params=params).json()
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    rows = answer["rows"]
    title = name + "".join(f"  {k}={v}" for k, v in answer.get("filters", {}).items() if k not in ("by", "period") or k in params)
    if "pipeline_id" in answer and "pipeline_id" not in params:
        title += f"  pipeline_id={answer['pipeline_id']}"
    table = Table(*(rows[0].keys() if rows else ["(no rows)"]), title=title)
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    out = Console()
    out.print(table)
    if name == "funnel" and rows:
        out.print("\n".join(funnel_bars(rows)), highlight=False)


@analytics_app.command("rebuild")
def rebuild(url: str = _URL, token: str = _TOKEN) -> None:
    """Empty the read model and rebuild it from the beginning of the topics (administrators; safe to repeat)."""
    answer = _call("POST", f"{url}/admin/rebuild", token).json()
    typer.echo(f"rebuilding from the beginning of the topics ({answer['lag']} records behind before the reset)")


@analytics_app.command("status")
def status(url: str = _URL, token: str = _TOKEN) -> None:
    """How many leads, tasks and deals the read model holds and how many records it is behind."""
    typer.echo(json.dumps(_call("GET", f"{url}/admin/status", token).json(), indent=2))
