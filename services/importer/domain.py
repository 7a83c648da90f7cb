"""Pure import rules: the ids of a row, what each checked row becomes, and the job with its counts and refusals."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from contracts.leads import CreateLead
from crmkit.ids import uuid5
from services.importer.rows import RowResult

# Fixed for ever: changing it would give every re-run or resumed import new ids and double leads.
IMPORT_NAMESPACE = uuid.UUID("5b0f6f0e-3c1e-5d7a-9a57-6d1c2b8e4f10")


def command_id(import_id: str, row_number: int) -> str:
    """The CloudEvents id of the create command for a row: the same on every retry or resume."""
    return uuid5(IMPORT_NAMESPACE, f"command:{import_id}:{row_number}")


def derive_lead_id(import_id: str, row_number: int, external_id: str | None, source: str | None) -> str:
    """Stable lead id: by source + external id when there is one (so a re-import updates the
    same lead), else by import and row (so a resumed import never creates a row twice)."""
    if external_id:
        return uuid5(IMPORT_NAMESPACE, f"external:{source or ''}:{external_id}")
    return uuid5(IMPORT_NAMESPACE, f"row:{import_id}:{row_number}")


# --- planning: what each valid row becomes, given what is known about its external id ---------

# Top-level lead fields a row can set (an update records their previous values for revert): the
# contract's card fields of crm.lead.create, less those that name the lead or where it goes.
_NOT_FROM_A_ROW = frozenset({"lead_id", "external_id", "pipeline_id", "stage_id", "import_id", "import_row"})
ROW_FIELDS: tuple[str, ...] = tuple(
    sorted((f for f in CreateLead.model_fields if f not in _NOT_FROM_A_ROW), key=lambda f: (f != "title", f))
)
# Linked objects a row fills partly: what the row does not say is kept from the lead.
_MERGED_FIELDS = ("contact", "company")
_CORRELATION_PREFIX = "crm-import:"


@dataclass(frozen=True)
class KnownLead:
    """What the importer's projection knows about a lead that has an external id."""

    lead_id: str
    fields: dict[str, Any]
    created_by_import: str | None = None


# Numbered external ids share a bucket with this many numbers beside them (see external_id_bucket).
BUCKET_SPAN = 1000
_TRAILING_NUMBER = re.compile(r"[0-9]{1,15}$")


def external_id_bucket(external_id: str) -> str | None:
    """The bucket of a numbered external id, shared with its neighbours ("CRM-01234" → "CRM-\x1f1"); None for others.

    Files number their rows' ids in order far more often than not, so a chunk's ids fall in one or
    two buckets and its lookup reads those; an id without a number is a bucket of its own (None)."""
    match = _TRAILING_NUMBER.search(external_id)
    if match is None:
        return None
    return f"{external_id[:match.start()]}\x1f{int(match.group()) // BUCKET_SPAN}"


@dataclass(frozen=True)
class RowPlan:
    """What to do with one row: `create`, `update`, `unchanged` or `rejected` (validation)."""

    row_number: int
    action: str
    lead_id: str | None = None
    payload: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)


def correlation_id(import_id: str, row_number: int) -> str:
    """The correlation id a row's command carries; the leads service copies it onto the outcome."""
    return f"{_CORRELATION_PREFIX}{import_id}:{row_number}"


def row_of_correlation(correlation: str | None) -> tuple[str, int] | None:
    """(import id, row) back from a correlation id, or None when the message is not an import row's."""
    if not correlation or not correlation.startswith(_CORRELATION_PREFIX):
        return None
    import_id, _, row = correlation[len(_CORRELATION_PREFIX):].rpartition(":")
    if not import_id or not (row.isascii() and row.isdigit()):
        return None
    return import_id, int(row)


def plan_row(
    result: RowResult,
    *,
    import_id: str,
    source: str,
    known: KnownLead | None,
    saved_previous: dict[str, Any] | None = None,
) -> RowPlan:
    """Create a new lead, update the lead with the same external id, or leave it when nothing changes.

    A row resent after a crash must repeat its first command (same id, so the leads service
    applies it once) rather than be judged afresh against a lead the first attempt changed:
    a lead this import created under this row's id is created again, and a row whose previous
    values were saved (`saved_previous`) is updated again with those saved values kept."""
    if not result.ok:
        return RowPlan(result.row_number, "rejected", errors=list(result.errors))
    lead = dict(result.lead or {})
    new_id = derive_lead_id(import_id, result.row_number, lead.get("external_id"), source)
    if known is None or (known.lead_id == new_id and known.created_by_import == import_id):
        return RowPlan(result.row_number, "create", lead_id=new_id, payload=lead)
    changes = {name: lead[name] for name in ROW_FIELDS if name in lead}
    for name in _MERGED_FIELDS:
        if name in changes and isinstance(known.fields.get(name), dict):
            changes[name] = {**_without_none(known.fields[name]), **changes[name]}
    if saved_previous is not None:
        return RowPlan(result.row_number, "update", lead_id=known.lead_id, payload=changes, previous=saved_previous)
    if all(_same(name, changes[name], known.fields.get(name)) for name in changes):
        return RowPlan(result.row_number, "unchanged", lead_id=known.lead_id)
    previous = {name: _empty_is_none(known.fields.get(name)) for name in changes}
    return RowPlan(result.row_number, "update", lead_id=known.lead_id, payload=changes, previous=previous)


def revert_of(previous: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The update that puts saved previous values back: values to set, fields to clear."""
    values = {name: value for name, value in previous.items() if value is not None}
    clear = sorted(name for name, value in previous.items() if value is None and name != "title")
    return values, clear


def _same(name: str, new: Any, old: Any) -> bool:
    if name == "products":
        return _product_keys(new) == _product_keys(old)
    if isinstance(new, dict) or isinstance(old, dict):
        return _without_none(new or {}) == _without_none(old or {})
    return _empty_is_none(new) == _empty_is_none(old)


def _product_keys(lines: Any) -> list[tuple[Any, float, tuple]]:
    keys = []
    for line in lines or []:
        quantity = line.get("quantity")
        keys.append((line.get("product_id"), float(1 if quantity is None else quantity), tuple(sorted((line.get("options") or {}).items()))))
    return keys


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None and v != ""}


def _empty_is_none(value: Any) -> Any:
    if value in ("", [], {}) or (isinstance(value, dict) and not _without_none(value)):
        return None
    return value


# --- the job ---------------------------------------------------------------------------------

# running: rows are being read and sent; waiting: every row sent, outcomes still arriving;
# completed / failed: done and announced once; reverting → reverted: undone.
ACTIVE_STATES = ("running", "reverting")


@dataclass
class ImportJob:
    """One import: its options, where it stands in the file, and the counts kept with the checkpoint."""

    import_id: str
    file_uri: str
    actor_id: str | None
    state: str = "running"
    format: str | None = None
    pipeline_id: str | None = None
    stage_id: str | None = None
    mapping: dict[str, str] | None = None
    dry_run: bool = False
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    language: str | None = None
    file_name: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    header: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # lead field → file column
    unknown_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows_read: int = 0
    last_row_sent: int = 0
    sent: int = 0
    # Outcomes known when the row is read, counted with the checkpoint (exactly once).
    rejected_local: int = 0
    unchanged: int = 0
    dry_created: int = 0
    dry_updated: int = 0
    cancel_requested: bool = False
    cancelled: bool = False
    failure_code: str | None = None
    failure_reason: str | None = None
    created: int = 0
    updated: int = 0
    rejected: int = 0
    duplicates: int = 0
    announced: bool = False
    started_announced: bool = False
    revert_actor_id: str | None = None
    removed: int = 0
    restored: int = 0
    last_outcome_at: dt.datetime | None = None
    traceparent: str | None = None  # the trace the import runs in (its upload's or start command's)
    uploaded: bool = False  # file_uri is a server-named upload, not a file named by the command
    retrying_since: dt.datetime | None = None
    retry_error: str | None = None


@dataclass(frozen=True)
class Counts:
    """Outcomes so far: rows confirmed by the leads service plus those settled on reading."""

    created: int = 0
    updated: int = 0
    rejected: int = 0
    duplicates: int = 0
    unchanged: int = 0

    @property
    def settled(self) -> int:
        return self.created + self.updated + self.rejected + self.unchanged


def job_counts(job: ImportJob, confirmed: dict[str, int]) -> Counts:
    """Combine the leads service's confirmed outcomes with the job's own (dry run: only its own)."""
    if job.dry_run:
        return Counts(created=job.dry_created, updated=job.dry_updated, rejected=job.rejected_local, unchanged=job.unchanged)
    return Counts(
        created=confirmed.get("created", 0),
        updated=confirmed.get("updated", 0),
        rejected=confirmed.get("rejected", 0) + job.rejected_local,
        duplicates=confirmed.get("duplicates", 0),
        unchanged=job.unchanged,
    )


def is_finished(job: ImportJob, counts: Counts) -> bool:
    """Every row read has an outcome and no more rows will be read."""
    return job.state == "waiting" and counts.settled >= job.rows_read


def command_refusal(
    command_type: str, actor_id: str | None, licensed: bool, admin: bool, job: ImportJob | None
) -> tuple[str, str] | None:
    """Why an import command cannot be carried out, as (reason code, message), or None to go ahead.

    The licence is checked before the job is looked at, so an unlicensed sender learns nothing
    about which imports exist; a job belongs to the user who started it (and to administrators).
    """
    if not actor_id or not licensed:
        return "not_licensed", "only users holding a CRM licence may import leads; ask an administrator for one"
    if command_type == "crm.import.start":
        if job is not None and job.actor_id != actor_id and not admin:
            return "forbidden", "an import with this id was started by another user; choose another import_id"
        return None  # a repeated start of an existing job is simply a no-op
    if job is None:
        return "not_found", "there is no such import"
    if job.actor_id != actor_id and not admin:
        return "forbidden", "only the user who started an import, or an administrator, may cancel or revert it"
    if command_type == "crm.import.cancel" and job.state != "running":
        return "invalid_state", f"the import is {job.state}; only an import still reading its file can be cancelled"
    if command_type == "crm.import.revert":
        if job.dry_run:
            return "invalid_state", "a dry run wrote nothing, so there is nothing to revert"
        if job.state != "completed":
            return "invalid_state", f"the import is {job.state}; only a completed import can be reverted"
    return None


def may_see(job: ImportJob, user_id: str, admin: bool) -> bool:
    """Whether a user may read an import's status and error reports: its owner and administrators."""
    return admin or job.actor_id == user_id


def rejection_errors(message: str, errors: Sequence[tuple[str, str]], columns: dict[str, str]) -> list[tuple[str | None, str]]:
    """A refusal of the leads service as (file column, reason) pairs, naming columns the file has."""
    if not errors:
        return [(None, message)]
    found = []
    for path, reason in errors:
        key = path.replace(".", "_")
        column = columns.get(key) or columns.get(path.split(".")[0]) or path
        found.append((column, f"{message}: {path}: {reason}"))
    return found
