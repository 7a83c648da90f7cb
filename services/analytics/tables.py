"""The analytics read model's DuckDB tables, their schema version, and the report filters as SQL on their filter columns."""

from __future__ import annotations

from datetime import UTC, datetime

from services.analytics.filters import Filters

# Bump when the tables change: a store of another schema is rebuilt from the topics at start.
SCHEMA_VERSION = "3"  # 3: pipelines carry who sees them

_FILTER_COLUMNS = "created_at TIMESTAMP, responsible_id VARCHAR, source VARCHAR, deleted BOOLEAN"
TABLES = {
    "leads": (
        "lead_id VARCHAR, version BIGINT, pipeline_id VARCHAR, stage_id VARCHAR, status VARCHAR, responsible_id VARCHAR,"
        " source VARCHAR, utm_source VARCHAR, utm_medium VARCHAR, utm_campaign VARCHAR, marketing_event VARCHAR,"
        " created_at TIMESTAMP, qualified_at TIMESTAMP, deleted BOOLEAN, reason_id VARCHAR, reason VARCHAR, has_deal BOOLEAN"
    ),
    # Visits and stays repeat the lead's filter columns so the funnel and stage times need no join.
    "visits": f"lead_id VARCHAR, pipeline_id VARCHAR, stage_id VARCHAR, {_FILTER_COLUMNS}",
    "stays": f"lead_id VARCHAR, pipeline_id VARCHAR, stage_id VARCHAR, days DOUBLE, {_FILTER_COLUMNS}",
    "pipelines": "pipeline_id VARCHAR, version BIGINT, name VARCHAR, deleted BOOLEAN, visible_groups VARCHAR[], visible_roles VARCHAR[]",
    "stages": "pipeline_id VARCHAR, stage_id VARCHAR, name VARCHAR, status VARCHAR, position INTEGER",
    # Tasks repeat their lead's pipeline and filter columns (deleted while the lead is unknown): no join either.
    "tasks": f"task_id VARCHAR, version BIGINT, lead_id VARCHAR, assignee_id VARCHAR, status VARCHAR, due_at TIMESTAMP,"
    f" pipeline_id VARCHAR, {_FILTER_COLUMNS}",
    "deals": "deal_id VARCHAR, lead_id VARCHAR",
    "offsets": "topic VARCHAR, part INTEGER, next_offset BIGINT",
}
META = "meta"


def naive(at: datetime | None) -> datetime | None:
    """UTC without an offset: the store keeps TIMESTAMP (no time-zone setting can shift a day)."""
    return None if at is None else at.astimezone(UTC).replace(tzinfo=None)


def filter_clause(f: Filters, *, pipeline: bool = True, responsible: bool = True) -> tuple[str, list]:
    """The filters on a table with the lead's filter columns (leads, visits, stays, tasks)."""
    clauses, params = ["NOT deleted"], []
    if pipeline and f.pipeline_id:
        clauses.append("pipeline_id = ?")
        params.append(f.pipeline_id)
    if f.pipeline_ids is not None and not f.pipeline_ids:
        clauses.append("FALSE")  # the reader sees no pipeline (and an empty list parameter has no type to bind)
    elif f.pipeline_ids is not None:
        clauses.append("pipeline_id IN (SELECT unnest(?))")
        params.append(list(f.pipeline_ids))
    if f.created_from:
        clauses.append("created_at >= ?")
        params.append(naive(f.created_from))
    if f.created_to:
        clauses.append("created_at < ?")
        params.append(naive(f.created_to))
    if responsible and f.responsible_id:
        clauses.append("responsible_id = ?")
        params.append(f.responsible_id)
    if f.source:
        clauses.append("source = ?")
        params.append(f.source)
    return " AND ".join(clauses), params
