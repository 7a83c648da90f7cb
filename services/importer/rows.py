"""One row of a file as ``crm.lead.create`` data: its cells read by lead field, each field checked, errors named by column."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crmkit.phones import normalize_phone
from services.importer.mapping import Mapping

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

# Fields copied as they are (trimmed); the others below are checked or shaped first.
_PLAIN_FIELDS = ("responsible_id", "external_id", "source", "marketing_event", "utm_source", "utm_medium", "utm_campaign",
                 "description")

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_DATE_DMY_RE = re.compile(r"^(\d{1,2})[./](\d{1,2})[./](\d{4})$")
# Excel's day zero; 1900-02-29 never existed but Excel counts it, so serials from 61 on line
# up with this epoch and the rare serials 1..60 are off by one day (Excel's own bug).
_EXCEL_EPOCH = dt.date(1899, 12, 30)


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
    errors: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lead is not None


class _Row:
    """The non-empty cells of one row by lead field, with the errors found so far."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.values: dict[str, str] = {}
        self.errors: list[tuple[str | None, str]] = []

    def column(self, field_name: str) -> str:
        """The file's column behind a lead field, as the person who made the file named it."""
        index = self.mapping.index_of(field_name)
        return self.mapping.column_name(index) if index is not None else field_name

    def error(self, field_name: str, reason: str) -> None:
        self.errors.append((self.column(field_name), reason))


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
    row = _read_cells(cells, mapping, max_cell_chars)
    lead: dict[str, Any] = {"pipeline_id": pipeline_id} if pipeline_id else {}
    _title(row, lead)
    lead.update({name: row.values[name] for name in _PLAIN_FIELDS if name in row.values})
    if row.values.get("stage_id") or stage_id:
        lead["stage_id"] = row.values.get("stage_id") or stage_id
    _need_maturity(row, lead)
    _contact(row, lead)
    _company(row, lead)
    _product(row, lead)
    _dates(row, lead)
    if row.errors:
        return RowResult(row_number=row_number, errors=row.errors)
    return RowResult(row_number=row_number, lead=lead)


def _read_cells(cells: Sequence[str | None], mapping: Mapping, max_cell_chars: int) -> _Row:
    row = _Row(mapping)
    for index, field_name in mapping.columns.items():
        raw = cells[index] if index < len(cells) else None
        if raw is None:
            continue
        if len(raw) > max_cell_chars:
            row.errors.append((mapping.column_name(index),
                               f"the value is {len(raw)} characters long, over the limit of {max_cell_chars}; shorten it"))
            continue
        text = raw.strip()
        if text:
            row.values[field_name] = text
    return row


def _title(row: _Row, lead: dict[str, Any]) -> None:
    # A file of companies or people has no title column: the name stands in for it.
    title = row.values.get("title") or row.values.get("company_name") or row.values.get("contact_name")
    if title:
        lead["title"] = _collapse(title)
    elif not any(column == row.column("title") for column, _ in row.errors):
        row.error("title", "title is empty; fill in the lead title, a company name or a contact name")


def _need_maturity(row: _Row, lead: dict[str, Any]) -> None:
    if "need_maturity" not in row.values:
        return
    given = row.values["need_maturity"]
    maturity = NEED_MATURITY_VALUES.get(given.casefold().replace("ё", "е"))
    if maturity:
        lead["need_maturity"] = maturity
    else:
        row.error("need_maturity", f"'{given}' is not a need maturity; use aware, interested or urgent "
                                   "(осведомлён, заинтересован, срочно)")


def _contact(row: _Row, lead: dict[str, Any]) -> None:
    values, contact = row.values, {}
    if "contact_id" in values:
        contact["contact_id"] = values["contact_id"]
    if "contact_name" in values:
        contact["name"] = _collapse(values["contact_name"])
    if "contact_phone" in values:
        phone = normalize_phone(values["contact_phone"])  # one rule for the system: crmkit.phones
        if phone:
            contact["phone"] = phone
        else:
            row.error("contact_phone", f"'{values['contact_phone']}' is not a phone number; write one number per cell, "
                                       "e.g. +7 912 345-67-89 or 8 912 345 67 89")
    if "contact_email" in values:
        if _EMAIL_RE.match(values["contact_email"]):
            contact["email"] = values["contact_email"]
        else:
            row.error("contact_email", f"'{values['contact_email']}' is not an email address; "
                                       "write one address like name@example.com")
    if contact:
        lead["contact"] = contact


def _company(row: _Row, lead: dict[str, Any]) -> None:
    values, company = row.values, {}
    if "company_id" in values:
        company["company_id"] = values["company_id"]
    if "company_name" in values:
        company["name"] = _collapse(values["company_name"])
    if "company_inn" in values:
        inn = re.sub(r"[\s-]", "", values["company_inn"])
        if inn.isascii() and inn.isdigit() and len(inn) in (10, 12):
            company["inn"] = inn
        else:
            row.error("company_inn", f"'{values['company_inn']}' is not an INN; it must have 10 (company) or 12 "
                                     "(individual) digits; if Excel dropped a leading zero, format the column as text")
    if company:
        lead["company"] = company


def _product(row: _Row, lead: dict[str, Any]) -> None:
    values = row.values
    product: dict[str, Any] = {"product_id": values["product_id"]} if "product_id" in values else {}
    if "product_quantity" in values:
        quantity = _parse_quantity(values["product_quantity"])
        if quantity is None:
            row.error("product_quantity", f"'{values['product_quantity']}' is not a positive number; "
                                          "write a quantity like 1 or 2.5")
        elif not product:
            row.error("product_quantity", "a quantity is given without a product ID; fill in the product ID")
        else:
            product["quantity"] = quantity
    if product:
        lead["products"] = [product]


def _dates(row: _Row, lead: dict[str, Any]) -> None:
    for name in DATE_FIELDS:
        if name in row.values:
            parsed = parse_date(row.values[name])
            if parsed is None:
                row.error(name, f"'{row.values[name]}' is not a date; write it as 2024-01-31 or 31.01.2024")
            else:
                lead[name] = parsed.isoformat()


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
