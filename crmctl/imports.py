"""``crm import FILE`` and ``crm import-template OUT``: upload a CSV/XLSX to the importer and follow it."""

from __future__ import annotations

from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .jobs import TOKEN_HELP, resolve_token

console = Console(stderr=True)

imports_app = typer.Typer(
    help="Bulk lead import from CSV and XLSX files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

_FINAL = {"completed", "failed", "reverted"}
_WAIT_S = 1


def _count_lines(path: Path) -> int | None:
    """Data rows of a CSV, roughly (header excluded), for the progress bar; None for XLSX."""
    if path.suffix.lower() == ".xlsx":
        return None
    with open(path, "rb") as file:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    return max(lines - 1, 0) or None


@imports_app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The CSV or XLSX file to import."),
    pipeline: str = typer.Option("default", "--pipeline", help="Pipeline the leads go into."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate every row and report what would happen; write nothing."),
    mapping: list[str] = typer.Option(
        [], "--mapping", help="Map a column to a lead field, as 'Column=field' (repeatable), e.g. --mapping 'Моб=contact_phone'."
    ),
    sheet: str | None = typer.Option(None, "--sheet", help="XLSX sheet to read; the first sheet by default."),
    encoding: str | None = typer.Option(None, "--encoding", help="CSV encoding (utf-8, cp1251, utf-16); detected by default."),
    delimiter: str | None = typer.Option(None, "--delimiter", help="CSV delimiter: ',', ';' or 'tab'; detected by default."),
    stage: str | None = typer.Option(None, "--stage", help="Stage for rows without a stage column."),
    url: str = typer.Option("http://127.0.0.1:8003", "--url", help="Base URL of the importer service."),
    token: str = typer.Option(None, "--token", help=TOKEN_HELP),
) -> None:
    """Upload FILE to the importer, show its progress with rows per second, and print the counts.

    Columns map by lead field name, Russian or English header aliases, or --mapping. Rows with
    problems are reported with their row and column; the rest are imported. Exits 1 when the
    import fails (unreadable file, no known column, ...)."""
    headers = {"Authorization": f"Bearer {resolve_token(token)}"}
    data: dict[str, str | list[str]] = {"pipeline_id": pipeline, "dry_run": "true" if dry_run else "false"}
    if mapping:
        data["mapping"] = "\n".join(mapping)
    for name, value in (("sheet", sheet), ("encoding", encoding), ("delimiter", delimiter), ("stage_id", stage)):
        if value:
            data[name] = value
    base = url.rstrip("/")
    total = _count_lines(file)
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        try:
            with open(file, "rb") as body:
                response = http.post("/imports", files={"file": (file.name, body)}, data=data)
        except httpx.HTTPError as exc:
            console.print(f"[red]error:[/red] cannot reach the importer at {base}: {exc}")
            raise typer.Exit(1) from None
        if response.status_code != 202:
            console.print(f"[red]error:[/red] upload refused ({response.status_code}): {_message(response)}")
            raise typer.Exit(1)
        status_url = response.json()["status_url"]
        status = _follow(http, status_url, total)
    _summary(status, base)
    if status["state"] == "failed":
        raise typer.Exit(1)


def _follow(http: httpx.Client, status_url: str, total: int | None) -> dict:
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}" + (f"/{total:,}" if total else "") + " rows"),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("importing", total=total, rate="-")
        while True:
            # A long poll: answered at the job's next change (a chunk read, its end) or after a second,
            # so the bar moves and the end is seen at once, without a fixed pause between requests.
            status = http.get(status_url, params={"wait": _WAIT_S}).json()
            rate = status.get("rows_per_second")
            progress.update(task, completed=status.get("rows_read", 0), description=status["state"],
                            rate=f"{rate:,.0f}" if rate else "-")
            if status["state"] in _FINAL:
                if total is None:
                    progress.update(task, total=status.get("rows_read", 0))
                return status


def _summary(status: dict, base: str) -> None:
    out = Console()
    if status["state"] == "failed":
        failure = status.get("failure") or {}
        console.print(f"[red]import failed[/red] ({failure.get('code')}): {failure.get('reason')}")
        return
    table = Table("import", status["import_id"] + (" (dry run)" if status["dry_run"] else ""))
    for name in ("rows_read", "created", "updated", "unchanged", "rejected", "duplicates"):
        label = ("would be " + name) if status["dry_run"] and name in ("created", "updated") else name
        table.add_row(label, f"{status.get(name, 0):,}")
    if status.get("cancelled"):
        table.add_row("cancelled", "yes")
    if status.get("rows_per_second"):
        table.add_row("rows/s", f"{status['rows_per_second']:,.0f}")
    out.print(table)
    if status.get("unknown_columns"):
        console.print("columns not imported (no matching lead field): " + ", ".join(status["unknown_columns"]))
    if status.get("rejected"):
        console.print(f"error report: {base}{status['errors_csv_url']}  (also {base}{status['errors_xlsx_url']})")


def _message(response: httpx.Response) -> str:
    try:
        return response.json().get("message") or response.text
    except ValueError:
        return response.text


@imports_app.command("import-template")
def import_template(
    out: Path = typer.Argument(..., dir_okay=False, help="Where to write the template, e.g. leads.xlsx."),
    format: str | None = typer.Option(None, "--format", help="xlsx or csv; taken from OUT's extension by default."),
    language: str = typer.Option("ru", "--language", help="Header language: ru or en."),
) -> None:
    """Write an import template: one column per lead field with a header in Russian or English and an example row."""
    from services.importer.reports import write_template

    chosen = (format or out.suffix.lstrip(".") or "xlsx").lower()
    if chosen not in ("xlsx", "csv") or language not in ("ru", "en"):
        console.print("[red]error:[/red] --format must be xlsx or csv and --language ru or en")
        raise typer.Exit(2)
    write_template(out, format=chosen, language=language)  # type: ignore[arg-type]
    console.print(f"wrote {out} ({chosen}, {language})")
