"""Decisions a lead command needs before or after its rule: whether the lead exists, whether its card fits."""

from __future__ import annotations

import json
from collections.abc import Callable

from services.leads.domain.events import LeadCreated, LeadUpdated, Outcome
from services.leads.domain.model import Lead, Rejected


def require_new(lead_id: str, existing: Lead | None) -> None:
    """A create names a lead that must not exist yet (same lead id, or same source and external id).

    The answer names only the id the sender chose, and is the same whether or not the sender may see
    the lead holding it: it tells a lead of a hidden pipeline from a visible one in nothing.
    """
    if existing is not None:
        raise Rejected(
            "conflict",
            f"lead id {lead_id} is taken (the same lead_id, or the same source and external_id, was created before); "
            "create the lead under another id, or send crm.lead.update to change a lead you may see.",
            [("lead_id", "taken")],
        )


def require_exists(lead_id: str, lead: Lead | None) -> Lead:
    """Every other lead message names a lead that exists."""
    if lead is None:
        raise Rejected("not_found", f"Lead {lead_id} does not exist.")
    return lead


def check_card_size(outcome: Outcome, card_bytes: Callable[[Lead], int], limit: int) -> None:
    """Refuse a change whose card would not fit the events that carry it, naming the biggest field.

    ``card_bytes`` measures the card as it will be sent (the caller's one serialisation of it).
    """
    if not any(isinstance(event, (LeadCreated, LeadUpdated)) for event in outcome.events):
        return
    size = card_bytes(outcome.lead)
    if size <= limit:
        return
    fields = outcome.lead.model_dump(mode="json")
    biggest = max(fields, key=lambda name: len(json.dumps(fields[name], ensure_ascii=False)))
    biggest_size = len(json.dumps(fields[biggest], ensure_ascii=False).encode())
    raise Rejected(
        "validation",
        f"the lead card would take {size:,} bytes, more than the {limit:,} a lead may hold; "
        f"shorten {biggest} ({biggest_size:,} bytes) and send it again",
        [(biggest, f"{biggest_size:,} bytes; the whole card may take {limit:,}")],
    )
