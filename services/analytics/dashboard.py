"""The dashboard page: server-rendered HTML with the filters as a plain form and the charts inline (no scripts)."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from urllib.parse import urlencode

from services.analytics import charts
from services.analytics import domain as d
from services.analytics.filters import Filters, SOURCE_DIMENSIONS, TREND_PERIODS
from services.analytics.reports import COLUMNS

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 12px}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end;background:#fff;padding:10px;border:1px solid #ddd;border-radius:6px}
label{display:flex;flex-direction:column;font-size:12px;gap:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(660px,1fr));gap:14px;margin-top:14px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin-top:6px}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.links{font-size:12px}.error{color:#a00}
"""

# The charts the page shows, in order; every report also has a table.
DASHBOARD_REPORTS = ("funnel", "sources", "reasons", "trend", "stages", "responsible")


def _select(name: str, label: str, options: list[tuple[str, str]], chosen: str | None) -> str:
    opts = "".join(
        f"<option value='{escape(v)}'{' selected' if v == (chosen or '') else ''}>{escape(text)}</option>" for v, text in options
    )
    return f"<label>{escape(label)}<select name='{name}'>{opts}</select></label>"


def _input(name: str, label: str, value: str, kind: str = "text") -> str:
    return f"<label>{escape(label)}<input type='{kind}' name='{name}' value='{escape(value)}'></label>"


def _table(report: d.Report) -> str:
    cols = COLUMNS[report.name]
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td data-col='{c}'>{escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in report.rows
    )
    return f"<table class='report' data-report='{report.name}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def day(at) -> str:
    return at.date().isoformat() if at else ""


def render(
    reports: dict[str, d.Report | str],
    f: Filters,
    *,
    token: str | None,
    pipelines: list[dict],
    responsibles: list[str],
    sources: list[str],
) -> str:
    """The whole page; a report that could not run shows its message in place of its chart."""
    pipeline_opts = [(p["pipeline_id"], p["name"] or p["pipeline_id"]) for p in pipelines if not p["deleted"]] or [("default", "default")]
    form = [
        "<form method='get' action='/'>",
        _select("pipeline_id", "Pipeline", pipeline_opts, f.pipeline_id or d.DEFAULT_PIPELINE),
        _input("created_from", "Created from", day(f.created_from), "date"),
        _input("created_to", "Created to (inclusive)", day(f.created_to - timedelta(days=1)) if f.created_to else "", "date"),
        _select("responsible_id", "Responsible", [("", "anyone"), *[(u, u) for u in responsibles]], f.responsible_id),
        _select("source", "Source", [("", "any"), *[(s, s) for s in sources]], f.source),
        _select("by", "Sources by", [(x, x) for x in SOURCE_DIMENSIONS], f.by),
        _select("period", "Trend per", [(x, x) for x in TREND_PERIODS], f.period),
        f"<input type='hidden' name='token' value='{escape(token)}'>" if token else "",
        "<button type='submit'>Show</button></form>",
    ]
    query = {**f.query(), **({"token": token} if token else {})}
    sections = []
    for name in DASHBOARD_REPORTS:
        report = reports[name]
        links = " · ".join(
            f"<a href='/reports/{name}{ext}?{escape(urlencode(query))}'>{label}</a>" for ext, label in (("", "JSON"), (".csv", "CSV"), (".svg", "SVG"))
        )
        if isinstance(report, str):
            inner = f"<p class='error'>{escape(report)}</p>"
        else:
            inner = charts.chart(report) + _table(report)
        sections.append(f"<section id='{name}'><div class='links'>{name}: {links}</div>{inner}</section>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Leads analytics</title>"
        f"<style>{_STYLE}</style></head><body><h1>Leads analytics</h1>{''.join(form)}"
        f"<div class='grid'>{''.join(sections)}</div></body></html>"
    )


def sign_in(error: str | None = None) -> str:
    """The sign-in page: a token typed once goes into an HttpOnly cookie (never into a link or the history)."""
    message = f"<p class='error' id='sign-in-error'>{escape(error)}</p>" if error else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Leads analytics: sign in</title>"
        f"<style>{_STYLE}</style></head><body><h1>Leads analytics</h1>{message}"
        "<form method='post' action='/sign-in'><label>Your token<input type='password' name='token' "
        "autocomplete='current-password' required></label><button type='submit'>Sign in</button></form></body></html>"
    )
