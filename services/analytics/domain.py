"""Analytics rules, pure and synchronous: event payloads to read-model rows and report figures (filters: filters.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from services.analytics.filters import Filters

REPORTS = ("funnel", "sources", "reasons", "stages", "responsible", "trend")
OPEN_STATUSES = ("new", "in_progress")
DEFAULT_PIPELINE = "default"
NONE_LABEL = "(none)"  # the group of leads that carry no value for a dimension
SECONDS_PER_DAY = 86_400.0


# --- read-model rows ------------------------------------------------------------------------------
# Named tuples: a batch builds tens of thousands of them, and a frozen dataclass cost three times as much to make.


class LeadRow(NamedTuple):
    """What the reports need of one lead: its latest card, flattened."""

    lead_id: str
    version: int
    pipeline_id: str
    stage_id: str
    status: str
    responsible_id: str | None
    source: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    marketing_event: str | None
    created_at: datetime
    qualified_at: datetime | None
    deleted: bool
    reason_id: str | None
    reason: str | None


class Visit(NamedTuple):
    """A stage a lead really stood in (once per lead and stage however often it came back)."""

    lead_id: str
    pipeline_id: str
    stage_id: str


class Stay(NamedTuple):
    """One finished stay of a lead in a stage, in days."""

    lead_id: str
    pipeline_id: str
    stage_id: str
    days: float


@dataclass(slots=True)
class LeadFacts:
    """Everything one card version contributes to the read model."""

    lead: LeadRow
    visits: tuple[Visit, ...]
    stays: tuple[Stay, ...]


class StageRow(NamedTuple):
    pipeline_id: str
    stage_id: str
    name: str
    status: str
    position: int


class PipelineFacts(NamedTuple):
    pipeline_id: str
    version: int
    name: str
    deleted: bool
    stages: tuple[StageRow, ...]
    groups: tuple[str, ...] = ()  # who sees it (neither: every licensed user)
    roles: tuple[str, ...] = ()


class TaskRow(NamedTuple):
    task_id: str
    version: int
    lead_id: str
    assignee_id: str
    status: str
    due_at: datetime


class DealRow(NamedTuple):
    deal_id: str
    lead_id: str


def _text(value: Any) -> str | None:
    """An enum or string field as plain text; empty strings count as absent."""
    if value is None:
        return None
    text = getattr(value, "value", value)
    return str(text) or None


def lead_facts(card: Any) -> LeadFacts:
    """A lead card (``crm.lead.created``/``updated`` payload) as rows: the lead, its visits and finished stays.

    The card carries the whole status history, so each version replaces what the last one said: a
    redelivered or late card changes nothing, and a lead moved back, to another pipeline or reopened
    is read from its history rather than from the order its events arrived in.
    """
    status = _text(card.status) or ""
    lead_id = card.lead_id
    visits: dict[tuple[str, str], Visit] = {}
    stays = []
    qualified_at = None
    for entry in card.status_history:
        key = (entry.pipeline_id, entry.stage_id)
        if key not in visits:
            visits[key] = Visit(lead_id, entry.pipeline_id, entry.stage_id)
        if entry.left_at is not None:
            seconds = (entry.left_at - entry.entered_at).total_seconds()
            stays.append(Stay(lead_id, entry.pipeline_id, entry.stage_id, max(0.0, seconds / SECONDS_PER_DAY)))
        elif status == "qualified" and _text(entry.status) == "qualified":
            qualified_at = entry.entered_at  # the stay it is in now
    if status == "qualified" and qualified_at is None:
        qualified_at = card.status_since
    # A card without history still stands somewhere: its current stage counts as entered.
    key = (card.pipeline_id, card.stage_id)
    if key not in visits:
        visits[key] = Visit(lead_id, card.pipeline_id, card.stage_id)
    unqualified = status == "unqualified"
    lead = LeadRow(
        lead_id=lead_id,
        version=card.version,
        pipeline_id=card.pipeline_id,
        stage_id=card.stage_id,
        status=status,
        responsible_id=card.responsible_id,
        source=card.source or None,
        utm_source=card.utm_source or None,
        utm_medium=card.utm_medium or None,
        utm_campaign=card.utm_campaign or None,
        marketing_event=card.marketing_event or None,
        created_at=card.created_at,
        qualified_at=qualified_at,
        deleted=bool(card.deleted),
        reason_id=card.disqualification_reason_id if unqualified else None,
        reason=(card.disqualification_reason or card.disqualification_reason_id) if unqualified else None,
    )
    return LeadFacts(lead, tuple(visits.values()), tuple(stays))


def pipeline_facts(card: Any, *, deleted: bool = False) -> PipelineFacts:
    stages = tuple(
        StageRow(card.pipeline_id, s.stage_id, s.name, _text(s.status) or "", s.position)
        for s in sorted(card.stages, key=lambda s: s.position)
    )
    shown = getattr(card, "visible_to", None)
    groups = tuple(shown.groups) if shown else ()
    roles = tuple(shown.roles) if shown else ()
    return PipelineFacts(card.pipeline_id, card.version, card.name, deleted, stages, groups, roles)


def task_row(view: Any) -> TaskRow:
    return TaskRow(view.task_id, view.version, view.lead_id, view.assignee_id, _text(view.status) or "", view.due_at)


def newest(items: Iterable[Any], ident: Callable[[Any], str], version: Callable[[Any], int]) -> list[Any]:
    """Of several versions of the same thing in one batch, the highest (the first seen wins a tie)."""
    best: dict[str, Any] = {}
    for item in items:
        held = best.get(ident(item))
        if held is None or version(item) > version(held):
            best[ident(item)] = item
    return list(best.values())


# --- report figures -------------------------------------------------------------------------------


def ratio(part: float, whole: float) -> float | None:
    """A share rounded to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def days(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 2)


def funnel_rows(stages: Sequence[StageRow], reached: Mapping[str, int], now_in: Mapping[str, int]) -> list[dict]:
    """Per stage in pipeline order: leads that really stood in it, leads there now, conversions.

    Final stages (qualified, unqualified) are outcomes, not steps: each converts from the last
    working stage, and only working stages chain to the next.
    """
    rows = []
    first = reached.get(stages[0].stage_id, 0) if stages else 0
    previous_working: int | None = None
    for stage in stages:
        count = reached.get(stage.stage_id, 0)
        rows.append(
            {
                "stage_id": stage.stage_id,
                "name": stage.name,
                "status": stage.status,
                "reached": count,
                "now_in": now_in.get(stage.stage_id, 0),
                "conversion_from_previous": ratio(count, previous_working) if previous_working is not None else None,
                "conversion_from_first": ratio(count, first),
            }
        )
        if stage.status in OPEN_STATUSES:
            previous_working = count
    return rows


def source_rows(groups: Iterable[Mapping[str, Any]]) -> list[dict]:
    rows = []
    for g in groups:
        rows.append(
            {
                "value": g["value"] if g["value"] is not None else NONE_LABEL,
                "leads": g["leads"],
                "open": g["open"],
                "qualified": g["qualified"],
                "unqualified": g["unqualified"],
                "qualification_rate": ratio(g["qualified"], g["leads"]),
                "median_days_to_qualification": days(g["median_days"]),
                "deals_created": g["deals"],
            }
        )
    return sorted(rows, key=lambda r: (-r["leads"], r["value"]))


def reason_rows(groups: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Reasons by count, with each one's share of its pipeline's disqualified leads."""
    groups = list(groups)
    totals: dict[str, int] = {}
    for g in groups:
        totals[g["pipeline_id"]] = totals.get(g["pipeline_id"], 0) + g["leads"]
    rows = [
        {
            "pipeline_id": g["pipeline_id"],
            "reason_id": g["reason_id"] or NONE_LABEL,
            "reason": g["reason"] or g["reason_id"] or NONE_LABEL,
            "leads": g["leads"],
            "share": ratio(g["leads"], totals[g["pipeline_id"]]),
        }
        for g in groups
    ]
    return sorted(rows, key=lambda r: (r["pipeline_id"], -r["leads"], r["reason_id"]))


def stage_rows(stages: Sequence[StageRow], times: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    rows = []
    for stage in stages:
        t = times.get(stage.stage_id, {})
        rows.append(
            {
                "stage_id": stage.stage_id,
                "name": stage.name,
                "status": stage.status,
                "stays": t.get("stays", 0),
                "median_days": days(t.get("median")),
                "p90_days": days(t.get("p90")),
            }
        )
    return rows


def responsible_rows(leads: Iterable[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Per user: the leads they are responsible for and the open and overdue tasks assigned to them."""
    users: dict[str, dict] = {}

    def row(user: str | None) -> dict:
        key = user or NONE_LABEL
        return users.setdefault(
            key, {"responsible_id": key, "leads": 0, "qualified": 0, "unqualified": 0, "open_tasks": 0, "overdue_tasks": 0}
        )

    for g in leads:
        r = row(g["user"])
        r["leads"], r["qualified"], r["unqualified"] = g["leads"], g["qualified"], g["unqualified"]
    for g in tasks:
        r = row(g["user"])
        r["open_tasks"], r["overdue_tasks"] = g["open"], g["overdue"]
    for r in users.values():
        r["qualification_rate"] = ratio(r["qualified"], r["leads"])
    return sorted(users.values(), key=lambda r: (-r["leads"], r["responsible_id"]))


def bucket_start(at: date, period: str) -> date:
    return at - timedelta(days=at.weekday()) if period == "week" else at


def trend_rows(created: Mapping[date, int], qualified: Mapping[date, int], period: str) -> list[dict]:
    """Leads created and qualified per day or week (weeks start on Monday, UTC), gaps filled with zeros."""
    keys = set(created) | set(qualified)
    if not keys:
        return []
    step = timedelta(days=7 if period == "week" else 1)
    current, last = bucket_start(min(keys), period), bucket_start(max(keys), period)
    rows = []
    while current <= last:
        rows.append({"period_start": current.isoformat(), "created": created.get(current, 0), "qualified": qualified.get(current, 0)})
        current += step
    return rows


@dataclass
class Report:
    """One report's answer: its rows, the filters it ran with, and what the columns mean."""

    name: str
    filters: Filters
    rows: list[dict] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"report": self.name, "filters": self.filters.query(), **self.extra, "rows": self.rows}
