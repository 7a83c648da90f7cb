"""Reports drawn as self-contained SVG (no scripts, no fonts to fetch): horizontal bars and a trend chart."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from services.analytics import domain as d

_W = 640
_ROW = 26
_LABEL_W = 170
_BAR_W = 240  # leaves room after the longest bar for its figures
_TOP = 34
_FONT = "font-family='system-ui, sans-serif' font-size='12'"
_COLOURS = {"bar": "#3b6fb6", "created": "#3b6fb6", "qualified": "#2e9d5b"}


def _svg(height: int, title: str, body: list[str], chart: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{height}' viewBox='0 0 {_W} {height}'"
        f" role='img' aria-label='{escape(title)}' class='chart' data-chart='{chart}' {_FONT}>"
        f"<title>{escape(title)}</title>"
        f"<text x='8' y='20' font-size='15' font-weight='bold'>{escape(title)}</text>"
        + "".join(body)
        + "</svg>"
    )


def bars(title: str, items: Sequence[tuple[str, float, str]], chart: str, maximum: float | None = None) -> str:
    """One bar per (label, value, text shown after the bar), scaled to the largest value."""
    top = maximum if maximum else max((v for _, v, _ in items), default=0) or 1
    body = []
    if not items:
        body.append(f"<text x='8' y='{_TOP + 14}' fill='#666'>No leads match these filters.</text>")
    for i, (label, value, text) in enumerate(items):
        y = _TOP + i * _ROW
        width = max(0.0, value) / top * _BAR_W
        short = label if len(label) <= 22 else label[:21] + "…"  # what fits left of the bars
        body.append(
            f"<g class='bar' data-label='{escape(label)}' data-value='{value}'>"
            f"<text x='{_LABEL_W - 6}' y='{y + 15}' text-anchor='end'>{escape(short)}</text>"
            f"<rect x='{_LABEL_W}' y='{y + 3}' width='{width:.1f}' height='{_ROW - 8}' fill='{_COLOURS['bar']}' rx='2'/>"
            f"<text x='{_LABEL_W + width + 6:.1f}' y='{y + 15}' class='figure'>{escape(text)}</text></g>"
        )
    return _svg(_TOP + max(1, len(items)) * _ROW + 10, title, body, chart)


def trend(title: str, rows: Sequence[dict], chart: str = "trend") -> str:
    """Columns of leads created and qualified per period, side by side."""
    height, left, bottom, plot_h = 260, 44, 220, 170
    body = []
    if not rows:
        body.append(f"<text x='8' y='{_TOP + 14}' fill='#666'>No leads match these filters.</text>")
        return _svg(80, title, body, chart)
    top = max(max(r["created"], r["qualified"]) for r in rows) or 1
    slot = (_W - left - 10) / len(rows)
    col = max(1.0, min(18.0, slot / 2 - 1))
    body.append(f"<line x1='{left}' y1='{bottom}' x2='{_W - 8}' y2='{bottom}' stroke='#999'/>")
    body.append(f"<text x='{left - 4}' y='{bottom - plot_h + 4}' text-anchor='end'>{top}</text>")
    body.append(f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>0</text>")
    label_every = max(1, len(rows) // 8)
    for i, r in enumerate(rows):
        x = left + i * slot
        for j, key in enumerate(("created", "qualified")):
            h = r[key] / top * plot_h
            body.append(
                f"<rect class='column' data-period='{r['period_start']}' data-series='{key}' data-value='{r[key]}'"
                f" x='{x + j * col:.1f}' y='{bottom - h:.1f}' width='{col:.1f}' height='{h:.1f}' fill='{_COLOURS[key]}'>"
                f"<title>{r['period_start']}: {r[key]} {key}</title></rect>"
            )
        if i % label_every == 0:
            body.append(f"<text x='{x:.1f}' y='{bottom + 16}' font-size='10'>{r['period_start'][5:]}</text>")
    for j, key in enumerate(("created", "qualified")):
        body.append(f"<rect x='{left + j * 110}' y='{height - 18}' width='10' height='10' fill='{_COLOURS[key]}'/>")
        body.append(f"<text x='{left + j * 110 + 14}' y='{height - 9}'>{key}</text>")
    return _svg(height, title, body, chart)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def chart(report: d.Report) -> str:
    """The picture of a report."""
    rows = report.rows
    if report.name == "funnel":
        items = [
            (r["name"], r["reached"], f"{r['reached']} · now {r['now_in']} · {_pct(r['conversion_from_first'])} of first")
            for r in rows
        ]
        return bars(f"Funnel: {report.extra.get('pipeline_id')}", items, "funnel")
    if report.name == "sources":
        items = [(r["value"], r["qualification_rate"] or 0.0, f"{_pct(r['qualification_rate'])} of {r['leads']}") for r in rows]
        return bars(f"Qualification rate by {report.extra.get('by')}", items, "sources", maximum=1.0)
    if report.name == "reasons":
        items = [(f"{r['reason']} ({r['pipeline_id']})", r["leads"], f"{r['leads']} · {_pct(r['share'])}") for r in rows]
        return bars("Disqualification reasons", items, "reasons")
    if report.name == "stages":
        items = [
            (r["name"], r["median_days"] or 0.0, "no finished stays" if r["median_days"] is None else f"median {r['median_days']} d, p90 {r['p90_days']} d")
            for r in rows
        ]
        return bars(f"Days in stage: {report.extra.get('pipeline_id')}", items, "stages")
    if report.name == "responsible":
        items = [(r["responsible_id"], r["leads"], f"{r['leads']} leads · tasks {r['open_tasks']} open, {r['overdue_tasks']} late") for r in rows]
        return bars("Leads per responsible", items, "responsible")
    if report.name == "trend":
        return trend(f"Leads created and qualified per {report.extra.get('period')}", rows)
    raise KeyError(report.name)
