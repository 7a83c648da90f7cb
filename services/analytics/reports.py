"""Each report: the store's figures for the filters, shaped by the domain's rules."""

from __future__ import annotations

from datetime import datetime

from services.analytics import domain as d
from services.analytics.filters import Filters
from services.analytics.repository import AnalyticsStore

# Columns of each report's CSV, in order (the JSON rows carry the same keys).
COLUMNS = {
    "funnel": ("stage_id", "name", "status", "reached", "now_in", "conversion_from_previous", "conversion_from_first"),
    "sources": ("value", "leads", "open", "qualified", "unqualified", "qualification_rate", "median_days_to_qualification", "deals_created"),
    "reasons": ("pipeline_id", "reason_id", "reason", "leads", "share"),
    "stages": ("stage_id", "name", "status", "stays", "median_days", "p90_days"),
    "responsible": ("responsible_id", "leads", "qualified", "unqualified", "qualification_rate", "open_tasks", "overdue_tasks"),
    "trend": ("period_start", "created", "qualified"),
}


class UnknownPipeline(LookupError):
    """The funnel or stage times were asked for a pipeline the read model has not seen."""


def _pipeline_stages(store: AnalyticsStore, f: Filters) -> tuple[str, list[d.StageRow]]:
    pipeline_id = f.pipeline_id or d.DEFAULT_PIPELINE
    if f.pipeline_ids is not None and pipeline_id not in f.pipeline_ids:
        raise UnknownPipeline(pipeline_id)  # hidden from the reader: its stages' names too
    stages = store.stages(pipeline_id)
    if stages is None:
        raise UnknownPipeline(pipeline_id)
    return pipeline_id, stages


def build(store: AnalyticsStore, name: str, f: Filters, now: datetime) -> d.Report:
    """Run report ``name`` (one of ``domain.REPORTS``) with filters ``f``; synchronous (DuckDB)."""
    if name == "funnel":
        pipeline_id, stages = _pipeline_stages(store, f)
        reached, now_in = store.funnel_counts(pipeline_id, f)
        return d.Report(name, f, d.funnel_rows(stages, reached, now_in), {"pipeline_id": pipeline_id})
    if name == "stages":
        pipeline_id, stages = _pipeline_stages(store, f)
        return d.Report(name, f, d.stage_rows(stages, store.stage_times(pipeline_id, f)), {"pipeline_id": pipeline_id})
    if name == "sources":
        return d.Report(name, f, d.source_rows(store.source_groups(f)), {"by": f.by})
    if name == "reasons":
        return d.Report(name, f, d.reason_rows(store.reason_groups(f)))
    if name == "responsible":
        leads, tasks = store.responsible_groups(f, now)
        return d.Report(name, f, d.responsible_rows(leads, tasks), {"as_of": now.isoformat()})
    if name == "trend":
        created, qualified = store.trend_counts(f)
        return d.Report(name, f, d.trend_rows(created, qualified, f.period), {"period": f.period})
    raise KeyError(name)
