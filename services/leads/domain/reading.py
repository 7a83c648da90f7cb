"""What the read side derives from a card at a given time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


from services.leads.domain.model import DUE_SOON_WITHIN, Lead


# --- read side ------------------------------------------------------------------------------


def days_in_status(lead: Lead, now: datetime) -> int:
    return max(0, (now - lead.status_since).days)


def last_activity(lead: Lead, now: datetime) -> dict[str, Any]:
    """The card's "last activity": the nearest open task's due time, else the last data change."""
    summary = lead.activity
    if summary is None or summary.next_due_at is None:
        return {"at": lead.data_changed_at, "days_left": None, "state": None, "task_id": None}
    left = summary.next_due_at - now
    # Computed from `now`: the stored state is as old as the last summary the activity service sent.
    if left < timedelta(0):
        state = "overdue"
    elif left < DUE_SOON_WITHIN:
        state = "due_soon"
    else:
        state = "on_time"
    return {"at": summary.next_due_at, "days_left": left.days, "state": state, "task_id": summary.next_task_id}
