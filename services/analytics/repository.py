"""The analytics read model in DuckDB: rows fed from the topics, the offsets they came from, and the report queries.

Why DuckDB: the reports group and rank every lead of a period (a million at the targets) by
pipeline, stage, source or user, with any mix of filters, so no precomputed counter fits them;
DuckDB scans the few columns a report names, in parallel, and answered every report in tens of
milliseconds at 1,000,000 leads here (bench/bench_analytics.py, README "Analytics"), where
FerretDB 1.24 can only ``$group`` with ``$sum``/``$count`` and has no percentile at all. The
offsets of the records applied are stored in the same transaction as their rows, so a restart
resumes exactly where the data stands and a redelivered record is applied once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from services.analytics import domain as d
from services.analytics.filters import Filters, SOURCE_DIMENSIONS
from services.analytics.tables import META, SCHEMA_VERSION, TABLES, filter_clause, naive


@dataclass
class Changes:
    """What one batch of records adds to the read model, with the offsets it reaches."""

    leads: list[d.LeadFacts] = field(default_factory=list)
    pipelines: list[d.PipelineFacts] = field(default_factory=list)
    tasks: list[d.TaskRow] = field(default_factory=list)
    deals: list[d.DealRow] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # (contract topic, partition) -> next offset


def _columns(rows: Sequence[tuple]) -> list[list]:
    width = len(rows[0])
    return [[row[i] for row in rows] for i in range(width)]


class StoreUnavailable(OSError):
    """The DuckDB file cannot be written now (disk full, I/O error, out of memory): an outage, retried."""


class AnalyticsStore:
    """One replica's whole read model in one DuckDB file (or in memory for ``:memory:``)."""

    def __init__(self, path: str, *, memory_limit: str = "2GB", threads: int = 0) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        config = {"memory_limit": memory_limit, **({"threads": threads} if threads else {})}
        self._con = duckdb.connect(path, config=config)
        self._write_lock = threading.Lock()
        self._ensure_schema()

    def close(self) -> None:
        self._con.close()

    # --- schema and checkpoint ----------------------------------------------------------------

    def _ensure_schema(self) -> None:
        con = self._con
        con.execute(f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR, value VARCHAR)")
        found = con.execute(f"SELECT value FROM {META} WHERE key = 'schema'").fetchone()
        if found and found[0] != SCHEMA_VERSION:
            for table in TABLES:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(f"DELETE FROM {META}")
        for table, columns in TABLES.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        if not found or found[0] != SCHEMA_VERSION:
            con.execute(f"INSERT INTO {META} VALUES ('schema', ?), ('replica', ?)", [SCHEMA_VERSION, uuid.uuid4().hex])

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (contract topic, partition); absent means from the beginning."""
        rows = self._cursor().execute("SELECT topic, part, next_offset FROM offsets").fetchall()
        return {(t, p): o for t, p, o in rows}

    def reset(self) -> None:
        """Empty the read model and its offsets at once: the feed then reads every topic from the beginning."""
        with self._write_lock:
            cur = self._con.cursor()
            cur.execute("BEGIN")
            for table in TABLES:
                cur.execute(f"DELETE FROM {table}")
            cur.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        cur = self._cursor()
        return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("leads", "tasks", "deals", "pipelines")}

    # --- writes -------------------------------------------------------------------------------

    def apply(self, changes: Changes) -> None:
        """Store a batch's rows and its offsets in one transaction; older versions than those held are ignored."""
        with self._write_lock:
            cur = self._con.cursor()
            cur.execute("BEGIN")
            try:
                self._apply_leads(cur, changes.leads)
                self._apply_pipelines(cur, changes.pipelines)
                self._apply_deals(cur, changes.deals)
                self._apply_tasks(cur, changes.tasks)
                self._apply_offsets(cur, changes.offsets)
                cur.execute("COMMIT")
            except (duckdb.IOException, duckdb.OutOfMemoryException) as exc:
                cur.execute("ROLLBACK")
                # Not the records' fault: retried like an outage instead of parking them in the DLQ.
                raise StoreUnavailable(f"the analytics store cannot be written: {exc}") from exc
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    @staticmethod
    def _held_versions(cur: Any, table: str, key: str, ids: list[str]) -> dict[str, int]:
        rows = cur.execute(f"SELECT {key}, version FROM {table} WHERE {key} IN (SELECT unnest(?))", [ids]).fetchall()
        return dict(rows)

    @staticmethod
    def _insert(cur: Any, table: str, rows: Sequence[tuple]) -> None:
        """Insert many rows as one statement of column lists: DuckDB's executemany ran 240 rows/s here, this 60,000."""
        if not rows:
            return
        cols = _columns(rows)
        select = ", ".join(f"unnest(${i + 1})" for i in range(len(cols)))
        cur.execute(f"INSERT INTO {table} SELECT {select}", cols)

    def _apply_leads(self, cur: Any, facts: list[d.LeadFacts]) -> None:
        if not facts:
            return
        held = self._held_versions(cur, "leads", "lead_id", [f.lead.lead_id for f in facts])
        fresh = [f for f in facts if f.lead.version > held.get(f.lead.lead_id, -1)]
        if not fresh:
            return
        ids = [f.lead.lead_id for f in fresh]
        for table in ("leads", "visits", "stays"):
            cur.execute(f"DELETE FROM {table} WHERE lead_id IN (SELECT unnest(?))", [ids])
        with_deal = {r[0] for r in cur.execute("SELECT DISTINCT lead_id FROM deals WHERE lead_id IN (SELECT unnest(?))", [ids]).fetchall()}
        leads, visits, stays = [], [], []
        for f in fresh:
            x = f.lead
            created = naive(x.created_at)
            leads.append(
                (x.lead_id, x.version, x.pipeline_id, x.stage_id, x.status, x.responsible_id, x.source, x.utm_source,
                 x.utm_medium, x.utm_campaign, x.marketing_event, created, naive(x.qualified_at), x.deleted,
                 x.reason_id, x.reason, x.lead_id in with_deal)
            )
            tail = (created, x.responsible_id, x.source, x.deleted)
            visits.extend((v.lead_id, v.pipeline_id, v.stage_id, *tail) for v in f.visits)
            stays.extend((s.lead_id, s.pipeline_id, s.stage_id, s.days, *tail) for s in f.stays)
        self._insert(cur, "leads", leads)
        self._insert(cur, "visits", visits)
        self._insert(cur, "stays", stays)
        # The leads' tasks take the cards' new pipeline, responsible, source and deletion.
        cols = _columns([(r[0], r[2], r[11], r[5], r[6], r[13]) for r in leads])
        cur.execute(
            "UPDATE tasks SET pipeline_id = b.pipeline_id, created_at = b.created_at, responsible_id = b.responsible_id,"
            " source = b.source, deleted = b.deleted FROM (SELECT unnest($1) AS lead_id, unnest($2) AS pipeline_id,"
            " unnest($3) AS created_at, unnest($4) AS responsible_id, unnest($5) AS source, unnest($6) AS deleted) b"
            " WHERE tasks.lead_id = b.lead_id",
            cols,
        )

    def _apply_pipelines(self, cur: Any, pipelines: list[d.PipelineFacts]) -> None:
        if not pipelines:
            return
        held = self._held_versions(cur, "pipelines", "pipeline_id", [p.pipeline_id for p in pipelines])
        fresh = [p for p in pipelines if p.version > held.get(p.pipeline_id, -1)]
        if not fresh:
            return
        ids = [p.pipeline_id for p in fresh]
        # A deletion carries no card: the pipeline stays shown to whom it was (its old leads' figures too).
        shown = {r[0]: (tuple(r[1] or ()), tuple(r[2] or ())) for r in cur.execute(
            "SELECT pipeline_id, visible_groups, visible_roles FROM pipelines WHERE pipeline_id IN (SELECT unnest(?))", [ids]).fetchall()}
        fresh = [p._replace(groups=shown[p.pipeline_id][0], roles=shown[p.pipeline_id][1])
                 if p.deleted and not p.stages and p.pipeline_id in shown else p for p in fresh]
        cur.execute("DELETE FROM pipelines WHERE pipeline_id IN (SELECT unnest(?))", [ids])
        # A deletion carries no stages: the stages last known stay, so old leads still read in order.
        replaced = [p.pipeline_id for p in fresh if p.stages]
        if replaced:
            cur.execute("DELETE FROM stages WHERE pipeline_id IN (SELECT unnest(?))", [replaced])
        self._insert(cur, "pipelines", [(p.pipeline_id, p.version, p.name, p.deleted, list(p.groups), list(p.roles)) for p in fresh])
        self._insert(cur, "stages", [(s.pipeline_id, s.stage_id, s.name, s.status, s.position) for p in fresh for s in p.stages])

    def _apply_tasks(self, cur: Any, tasks: list[d.TaskRow]) -> None:
        if not tasks:
            return
        held = self._held_versions(cur, "tasks", "task_id", [t.task_id for t in tasks])
        fresh = [t for t in tasks if t.version > held.get(t.task_id, -1)]
        if not fresh:
            return
        cur.execute("DELETE FROM tasks WHERE task_id IN (SELECT unnest(?))", [[t.task_id for t in fresh]])
        known = {
            row[0]: row[1:]
            for row in cur.execute(
                "SELECT lead_id, pipeline_id, created_at, responsible_id, source, deleted FROM leads WHERE lead_id IN (SELECT unnest(?))",
                [list({t.lead_id for t in fresh})],
            ).fetchall()
        }
        unknown = (None, None, None, None, True)  # counted once the lead's card arrives
        self._insert(
            cur, "tasks",
            [(t.task_id, t.version, t.lead_id, t.assignee_id, t.status, naive(t.due_at), *known.get(t.lead_id, unknown)) for t in fresh],
        )

    def _apply_deals(self, cur: Any, deals: list[d.DealRow]) -> None:
        if not deals:
            return
        ids = [x.deal_id for x in deals]
        held = {row[0] for row in cur.execute("SELECT deal_id FROM deals WHERE deal_id IN (SELECT unnest(?))", [ids]).fetchall()}
        new = [(x.deal_id, x.lead_id) for x in {x.deal_id: x for x in deals}.values() if x.deal_id not in held]
        self._insert(cur, "deals", new)
        if new:
            cur.execute("UPDATE leads SET has_deal = true WHERE lead_id IN (SELECT unnest(?))", [[lead for _, lead in new]])

    def _apply_offsets(self, cur: Any, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        rows = list(offsets.items())
        for (topic, part), _ in rows:
            cur.execute("DELETE FROM offsets WHERE topic = ? AND part = ?", [topic, part])
        self._insert(cur, "offsets", [(topic, part, offset) for (topic, part), offset in rows])

    # --- reads --------------------------------------------------------------------------------

    def _cursor(self) -> Any:
        """A cursor of its own per call: reads run in worker threads beside the feed's writes."""
        return self._con.cursor()

    def pipelines(self) -> list[dict]:
        rows = self._cursor().execute("SELECT pipeline_id, name, deleted FROM pipelines ORDER BY pipeline_id").fetchall()
        return [{"pipeline_id": p, "name": n, "deleted": x} for p, n, x in rows]

    def visibility(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Each pipeline's (groups, roles) that see it; both empty: every licensed user."""
        rows = self._cursor().execute("SELECT pipeline_id, visible_groups, visible_roles FROM pipelines").fetchall()
        return {p: (tuple(g or ()), tuple(r or ())) for p, g, r in rows}

    def stages(self, pipeline_id: str) -> list[d.StageRow] | None:
        cur = self._cursor()
        if cur.execute("SELECT 1 FROM pipelines WHERE pipeline_id = ?", [pipeline_id]).fetchone() is None:
            return None
        rows = cur.execute(
            "SELECT pipeline_id, stage_id, name, status, position FROM stages WHERE pipeline_id = ? ORDER BY position", [pipeline_id]
        ).fetchall()
        return [d.StageRow(*row) for row in rows]

    def funnel_counts(self, pipeline_id: str, f: Filters) -> tuple[dict[str, int], dict[str, int]]:
        where, params = filter_clause(f, pipeline=False)
        cur = self._cursor()
        reached = cur.execute(
            f"SELECT stage_id, count(*) FROM visits WHERE pipeline_id = ? AND {where} GROUP BY stage_id", [pipeline_id, *params]
        ).fetchall()
        now_in = cur.execute(
            f"SELECT stage_id, count(*) FROM leads WHERE pipeline_id = ? AND {where} GROUP BY stage_id", [pipeline_id, *params]
        ).fetchall()
        return dict(reached), dict(now_in)

    def source_groups(self, f: Filters) -> list[dict]:
        if f.by not in SOURCE_DIMENSIONS:  # the column name is spliced: only the known ones
            raise ValueError(f"unknown dimension {f.by!r}")
        where, params = filter_clause(f)
        rows = self._cursor().execute(
            f"""
            SELECT {f.by}, count(*),
                   count(*) FILTER (WHERE status IN ('new', 'in_progress')),
                   count(*) FILTER (WHERE status = 'qualified'),
                   count(*) FILTER (WHERE status = 'unqualified'),
                   quantile_cont((epoch(qualified_at) - epoch(created_at)) / 86400.0, 0.5) FILTER (WHERE status = 'qualified'),
                   count(*) FILTER (WHERE has_deal)
            FROM leads WHERE {where} GROUP BY 1
            """,
            params,
        ).fetchall()
        keys = ("value", "leads", "open", "qualified", "unqualified", "median_days", "deals")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def reason_groups(self, f: Filters) -> list[dict]:
        where, params = filter_clause(f)
        rows = self._cursor().execute(
            f"SELECT pipeline_id, reason_id, min(reason), count(*) FROM leads WHERE status = 'unqualified' AND {where} GROUP BY 1, 2",
            params,
        ).fetchall()
        return [dict(zip(("pipeline_id", "reason_id", "reason", "leads"), row, strict=True)) for row in rows]

    def stage_times(self, pipeline_id: str, f: Filters) -> dict[str, dict]:
        where, params = filter_clause(f, pipeline=False)
        rows = self._cursor().execute(
            f"SELECT stage_id, count(*), quantile_cont(days, 0.5), quantile_cont(days, 0.9) FROM stays"
            f" WHERE pipeline_id = ? AND {where} GROUP BY stage_id",
            [pipeline_id, *params],
        ).fetchall()
        return {s: {"stays": n, "median": m, "p90": p} for s, n, m, p in rows}

    def responsible_groups(self, f: Filters, now: datetime) -> tuple[list[dict], list[dict]]:
        cur = self._cursor()
        where, params = filter_clause(f)
        leads = cur.execute(
            f"SELECT responsible_id, count(*), count(*) FILTER (WHERE status = 'qualified'),"
            f" count(*) FILTER (WHERE status = 'unqualified') FROM leads WHERE {where} GROUP BY 1",
            params,
        ).fetchall()
        # Tasks count against the user they are assigned to, on the leads the other filters select.
        where, params = filter_clause(f, responsible=False)
        if f.responsible_id:
            where += " AND assignee_id = ?"
            params.append(f.responsible_id)
        tasks = cur.execute(
            f"SELECT assignee_id, count(*), count(*) FILTER (WHERE due_at < ?) FROM tasks WHERE status = 'open' AND {where} GROUP BY 1",
            [naive(now), *params],
        ).fetchall()
        return (
            [dict(zip(("user", "leads", "qualified", "unqualified"), row, strict=True)) for row in leads],
            [dict(zip(("user", "open", "overdue"), row, strict=True)) for row in tasks],
        )

    def trend_counts(self, f: Filters) -> tuple[dict[date, int], dict[date, int]]:
        unit = "week" if f.period == "week" else "day"
        where, params = filter_clause(f)
        cur = self._cursor()
        created = cur.execute(
            f"SELECT CAST(date_trunc('{unit}', created_at) AS DATE), count(*) FROM leads WHERE {where} GROUP BY 1", params
        ).fetchall()
        qualified = cur.execute(
            f"SELECT CAST(date_trunc('{unit}', qualified_at) AS DATE), count(*) FROM leads"
            f" WHERE status = 'qualified' AND qualified_at IS NOT NULL AND {where} GROUP BY 1",
            params,
        ).fetchall()
        return dict(created), dict(qualified)

    def distinct_values(self, column: str, pipeline_ids: tuple[str, ...] | None = None, limit: int = 200) -> list[str]:
        """Values seen for a filter (the dashboard's choices), on the leads of ``pipeline_ids`` only when given."""
        if column not in ("responsible_id", "source", "pipeline_id"):
            raise ValueError(column)
        where, params = filter_clause(Filters(pipeline_ids=pipeline_ids))
        rows = self._cursor().execute(
            f"SELECT DISTINCT {column} FROM leads WHERE {column} IS NOT NULL AND {where} ORDER BY 1 LIMIT ?", [*params, limit]
        ).fetchall()
        return [r[0] for r in rows]


def changes_offsets(items: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """The next offset per partition after the given (topic, partition, offset) records."""
    out: dict[tuple[str, int], int] = {}
    for topic, part, offset in items:
        key = (topic, part)
        out[key] = max(out.get(key, 0), offset + 1)
    return out
