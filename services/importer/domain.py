"""Pure import rules: one spreadsheet row in, one `crm.lead.create` payload or its errors out."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from crmkit.ids import uuid5

if TYPE_CHECKING:
    from services.importer.mapping import Mapping

# Fixed for ever: changing it would give every re-run or resumed import new ids and double leads.
IMPORT_NAMESPACE = uuid.UUID("5b0f6f0e-3c1e-5d7a-9a57-6d1c2b8e4f10")

DEFAULT_MAX_CELL_CHARS = 32 * 1024

NEED_MATURITY_VALUES = {
    "aware": "aware",
    "interested": "interested",
    "urgent": "urgent",
    "осведомлен": "aware",
    "осведомлена": "aware",
    "заинтересован": "interested",
    "заинтересована": "interested",
    "срочно": "urgent",
    "срочная": "urgent",
    "срочный": "urgent",
}

# Fields whose cells are dates. The v1 `crm.lead.create` payload has none yet; a date field
# added to the contract is validated by listing it here.
DATE_FIELDS: frozenset[str] = frozenset()

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_DATE_DMY_RE = re.compile(r"^(\d{1,2})[./](\d{1,2})[./](\d{4})$")
# Excel's day zero; 1900-02-29 never existed but Excel counts it, so serials from 61 on line
# up with this epoch and the rare serials 1..60 are off by one day (Excel's own bug).
_EXCEL_EPOCH = dt.date(1899, 12, 30)


class FileRejected(Exception):
    """The whole file cannot be imported; `code` is stable for machines, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnreadableRow(list):
    """A CSV record the parser could not read: no cells, and why (reported as that row's error)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


@dataclass(frozen=True)
class RowResult:
    """Outcome of one data row: a payload when valid, else the (column, reason) errors."""

    row_number: int
    lead: dict[str, Any] | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lead is not None


def command_id(import_id: str, row_number: int) -> str:
    """The CloudEvents id of the create command for a row: the same on every retry or resume."""
    return uuid5(IMPORT_NAMESPACE, f"command:{import_id}:{row_number}")


def derive_lead_id(import_id: str, row_number: int, external_id: str | None, source: str | None) -> str:
    """Stable lead id: by source + external id when there is one (so a re-import updates the
    same lead), else by import and row (so a resumed import never creates a row twice)."""
    if external_id:
        return uuid5(IMPORT_NAMESPACE, f"external:{source or ''}:{external_id}")
    return uuid5(IMPORT_NAMESPACE, f"row:{import_id}:{row_number}")


def normalize_phone(value: str) -> str | None:
    """Digits with a leading +; Russian 8/7/+7 forms become the same +7 number. None if invalid."""
    text = value.strip()
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+") or text.startswith("00")
    if text.startswith("00"):
        digits = digits[2:]
    if len(digits) == 11 and digits[0] in "78" and not (international and digits[0] == "8"):
        return "+7" + digits[1:]
    # Russian area and mobile codes start with 3, 4, 8 or 9; people often drop the 8/+7.
    if len(digits) == 10 and digits[0] in "3489" and not international:
        return "+7" + digits
    if international and 8 <= len(digits) <= 15:
        return "+" + digits
    return None


def parse_date(value: str) -> dt.date | None:
    """ISO (yyyy-mm-dd, optionally with a time), dd.mm.yyyy or an Excel serial day number."""
    text = value.strip()
    try:
        return dt.date.fromisoformat(text[:10]) if len(text) >= 10 and text[4] == "-" else _parse_other_date(text)
    except ValueError:
        return None


def _parse_other_date(text: str) -> dt.date | None:
    match = _DATE_DMY_RE.match(text)
    if match:
        day, month, year = (int(part) for part in match.groups())
        return dt.date(year, month, day)
    try:
        serial = float(text.replace(",", "."))
    except ValueError:
        return None
    # 1..2958465 is Excel's whole date range (1900-01-01 .. 9999-12-31); a fraction is the time.
    if 1 <= serial < 2958466:
        return _EXCEL_EPOCH + dt.timedelta(days=int(serial))
    return None


def row_to_lead(
    row_number: int,
    cells: Sequence[str | None],
    mapping: Mapping,
    *,
    pipeline_id: str | None,
    stage_id: str | None = None,
    max_cell_chars: int = DEFAULT_MAX_CELL_CHARS,
) -> RowResult:
    """Validate one row and shape it as `crm.lead.create` data (only non-empty values)."""
    if isinstance(cells, UnreadableRow):
        return RowResult(row_number, errors=[(None, cells.reason)])
    errors: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    for index, field_name in mapping.columns.items():
        raw = cells[index] if index < len(cells) else None
        if raw is None:
            continue
        if len(raw) > max_cell_chars:
            errors.append(
                (
                    mapping.column_name(index),
                    f"the value is {len(raw)} characters long, over the limit of {max_cell_chars}; shorten it",
                )
            )
            continue
        text = raw.strip()
        if text:
            values[field_name] = text

    def column(field_name: str) -> str:
        index = mapping.index_of(field_name)
        return mapping.column_name(index) if index is not None else field_name

    lead: dict[str, Any] = {}
    if pipeline_id:
        lead["pipeline_id"] = pipeline_id

    title = values.get("title") or values.get("company_name") or values.get("contact_name")
    if title:
        lead["title"] = _collapse(title)
    elif not any(col == column("title") for col, _ in errors):
        errors.append((column("title"), "title is empty; fill in the lead title, a company name or a contact name"))

    for name in ("responsible_id", "external_id", "source", "marketing_event", "utm_source", "utm_medium", "utm_campaign"):
        if name in values:
            lead[name] = values[name]
    if "description" in values:
        lead["description"] = values["description"]
    row_stage = values.get("stage_id") or stage_id
    if row_stage:
        lead["stage_id"] = row_stage

    if "need_maturity" in values:
        maturity = NEED_MATURITY_VALUES.get(values["need_maturity"].casefold().replace("ё", "е"))
        if maturity:
            lead["need_maturity"] = maturity
        else:
            errors.append(
                (
                    column("need_maturity"),
                    f"'{values['need_maturity']}' is not a need maturity; use aware, interested or urgent "
                    "(осведомлён, заинтересован, срочно)",
                )
            )

    contact: dict[str, str] = {}
    if "contact_id" in values:
        contact["contact_id"] = values["contact_id"]
    if "contact_name" in values:
        contact["name"] = _collapse(values["contact_name"])
    if "contact_phone" in values:
        phone = normalize_phone(values["contact_phone"])
        if phone:
            contact["phone"] = phone
        else:
            errors.append(
                (
                    column("contact_phone"),
                    f"'{values['contact_phone']}' is not a phone number; write one number per cell, "
                    "e.g. +7 912 345-67-89 or 8 912 345 67 89",
                )
            )
    if "contact_email" in values:
        email = values["contact_email"]
        if _EMAIL_RE.match(email):
            contact["email"] = email
        else:
            errors.append(
                (column("contact_email"), f"'{email}' is not an email address; write one address like name@example.com")
            )
    if contact:
        lead["contact"] = contact

    company: dict[str, str] = {}
    if "company_id" in values:
        company["company_id"] = values["company_id"]
    if "company_name" in values:
        company["name"] = _collapse(values["company_name"])
    if "company_inn" in values:
        inn = re.sub(r"[\s-]", "", values["company_inn"])
        if inn.isascii() and inn.isdigit() and len(inn) in (10, 12):
            company["inn"] = inn
        else:
            errors.append(
                (
                    column("company_inn"),
                    f"'{values['company_inn']}' is not an INN; it must have 10 (company) or 12 (individual) digits; "
                    "if Excel dropped a leading zero, format the column as text",
                )
            )
    if company:
        lead["company"] = company

    product: dict[str, Any] = {}
    if "product_id" in values:
        product["product_id"] = values["product_id"]
    if "product_quantity" in values:
        quantity = _parse_quantity(values["product_quantity"])
        if quantity is None:
            errors.append(
                (
                    column("product_quantity"),
                    f"'{values['product_quantity']}' is not a positive number; write a quantity like 1 or 2.5",
                )
            )
        elif "product_id" not in values:
            errors.append((column("product_quantity"), "a quantity is given without a product ID; fill in the product ID"))
        else:
            product["quantity"] = quantity
    if "product_id" in product:
        lead["products"] = [product]

    for name in DATE_FIELDS:
        if name in values:
            parsed = parse_date(values[name])
            if parsed is None:
                errors.append(
                    (column(name), f"'{values[name]}' is not a date; write it as 2024-01-31 or 31.01.2024")
                )
            else:
                lead[name] = parsed.isoformat()

    if errors:
        return RowResult(row_number=row_number, errors=errors)
    return RowResult(row_number=row_number, lead=lead)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _parse_quantity(text: str) -> int | float | None:
    try:
        number = float(text.replace(" ", "").replace("\u00a0", "").replace(",", "."))
    except ValueError:
        return None
    if not number > 0 or number == float("inf"):
        return None
    return int(number) if number.is_integer() else number


# --- planning: what each valid row becomes, given what is known about its external id ---------

# Top-level lead fields a row can set; an update records their previous values for revert.
ROW_FIELDS: tuple[str, ...] = (
    "title",
    "responsible_id",
    "contact",
    "company",
    "products",
    "source",
    "marketing_event",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "need_maturity",
    "description",
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
    deleted: bool = False


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
