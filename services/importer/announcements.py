"""What an import tells the imports events topic: event ids stable across crashes, and the final event of a job."""

from __future__ import annotations

import uuid
from typing import Any

from contracts.imports import ImportCompleted, ImportFailed, ImportReverted
from crmkit.ids import uuid5
from services.importer import domain as d
from services.importer.settings import ImporterSettings

# Event ids derive from the import, so a re-published event after a crash is the same event.
_EVENT_NAMESPACE = uuid.UUID("0c3f1d7e-8a52-4c61-9e0b-2f4a6d8c1b35")


def event_id(import_id: str, *parts: Any) -> str:
    return uuid5(_EVENT_NAMESPACE, "\x1f".join([import_id, *map(str, parts)]))


def report_uri(settings: ImporterSettings, import_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/imports/{import_id}/errors.csv"


def final_event(settings: ImporterSettings, job: d.ImportJob) -> Any:
    """The event a finished job owes: completed, reverted or failed."""
    if job.state == "completed":
        return ImportCompleted(
            import_id=job.import_id, rows_total=job.rows_read, created=job.created, updated=job.updated,
            rejected=job.rejected, duplicates=job.duplicates, dry_run=job.dry_run, cancelled=job.cancelled,
            error_report_uri=report_uri(settings, job.import_id) if job.rejected else None,
        )
    if job.state == "reverted":
        return ImportReverted(import_id=job.import_id, removed=job.removed, restored=job.restored)
    return ImportFailed(import_id=job.import_id, reason=job.failure_reason or "failed", code=job.failure_code)
