"""Snapshots kept current from other services' facts: activity, contact, company, product."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from services.leads.domain.model import (
    ActivitySummaryView,
    CompanyRef,
    ContactRef,
    Lead,
    ProductLine,
    Rejected,
    _BOOKKEEPING,
)
from services.leads.domain.events import LeadUpdated, Outcome
from services.leads.domain.rules import _check_now, _coerce, _next, _text


# --- leads: refreshed from other services ---------------------------------------------------
# These follow facts other services own, so they apply to locked and deleted leads too.


def apply_activity_summary(lead: Lead, summary: ActivitySummaryView, now: datetime) -> Outcome:
    return _refresh(lead, now, activity=_coerce(ActivitySummaryView, summary))


def apply_contact(lead: Lead, contact: ContactRef, now: datetime | None = None) -> Outcome:
    """Refresh the snapshot of a linked contact; `now` stamps `updated_at` (kept when absent)."""
    contact = _coerce(ContactRef, contact)
    if lead.contact is None or contact.contact_id is None or lead.contact.contact_id != contact.contact_id:
        return Outcome(lead, [])
    return _refresh(lead, now, contact=contact)


def apply_company(lead: Lead, company: CompanyRef, now: datetime | None = None) -> Outcome:
    """Refresh the snapshot of a linked company; `now` stamps `updated_at` (kept when absent)."""
    company = _coerce(CompanyRef, company)
    if lead.company is None or company.company_id is None or lead.company.company_id != company.company_id:
        return Outcome(lead, [])
    return _refresh(lead, now, company=company)


def apply_product(
    lead: Lead,
    product_id: str,
    name: str | None,
    kind: str | None,
    options: Iterable[str] | None,
    now: datetime | None = None,
) -> Outcome:
    """Refresh the snapshot of a catalog product on every line of it.

    `options` are the option names the product offers now; chosen options it no longer offers are
    dropped, and all are kept when the catalog does not say.
    """
    offered = None if options is None else set(options)
    products = [
        line.model_copy(
            update={
                "name": name,
                "kind": _text(kind) or None,
                "options": line.options
                if offered is None
                else {key: value for key, value in line.options.items() if key in offered},
            }
        )
        if line.product_id == product_id
        else line
        for line in lead.products
    ]
    return _refresh(lead, now, products=[ProductLine.model_validate(line.model_dump()) for line in products])


def _refresh(lead: Lead, now: datetime | None, **updates: Any) -> Outcome:
    if now is not None:
        _check_now(now)
    updates = {key: value for key, value in updates.items() if getattr(lead, key) != value}
    if not updates:
        return Outcome(lead, [])
    changed = _next(lead, now or lead.updated_at, **updates)
    # What differs is exactly what was updated (a copy shares every other field): no need to compare
    # the two whole cards as _diff does.
    changed_fields = tuple(name for name in Lead.model_fields if name in updates and name not in _BOOKKEEPING)
    return Outcome(changed, [LeadUpdated(changed, changed_fields)])


# --- snapshots taken at creation and update -------------------------------------------------

Records = Mapping[str, Mapping[str, Any]]  # upstream records as stored, by id


def with_snapshots(fields: dict[str, Any], contacts: Records, companies: Records, products: Records) -> dict[str, Any]:
    """Fill linked contact/company/product snapshots from what upstream told us (if it has yet).

    A product line whose options the product does not offer is refused, naming the option.
    """
    contact = fields.get("contact")
    if contact and contact.get("contact_id") in contacts:
        known = contacts[contact["contact_id"]]
        fields["contact"] = {**contact, **{k: known.get(k) for k in ("name", "phone", "email")}}
    company = fields.get("company")
    if company and company.get("company_id") in companies:
        known = companies[company["company_id"]]
        fields["company"] = {**company, **{k: known.get(k) for k in ("name", "inn")}}
    if fields.get("products"):
        fields["products"] = [_product_line(line, products.get(line.get("product_id"))) for line in fields["products"]]
    return fields


def _product_line(line: dict[str, Any], known: Mapping[str, Any] | None) -> dict[str, Any]:
    if not known:
        return line
    offered = known.get("options") or {}
    for option, value in (line.get("options") or {}).items():
        if option not in offered or (offered[option] and value not in offered[option]):
            raise Rejected(
                "validation",
                f"Product {line['product_id']} has no option {option}={value!r}.",
                [(f"products.{line['product_id']}.options.{option}", f"allowed: {offered.get(option) or sorted(offered)}")],
            )
    return {**line, "name": known.get("name"), "kind": known.get("kind")}


def refresh_snapshot(lead: Lead, kind: str, known: Mapping[str, Any] | None, now: datetime) -> Outcome:
    """Refresh a lead's snapshot of an upstream record (``kind``: contact, company or product).

    ``known`` is the record as this service stored it from the directory topic, not a copy sent with
    the command (anyone who may write the commands topic could send one): a record the service
    never received changes nothing.
    """
    if known is None:
        return Outcome(lead, [])
    if kind == "contact":
        return apply_contact(lead, ContactRef.model_validate({k: known.get(k) for k in ("contact_id", "name", "phone", "email")}), now)
    if kind == "company":
        return apply_company(lead, CompanyRef.model_validate({k: known.get(k) for k in ("company_id", "name", "inn")}), now)
    options = known.get("options")
    return apply_product(lead, known["product_id"], known.get("name"), known.get("kind"), list(options) if options is not None else None, now)
