"""How far a job may send ahead of the leads service's answers: ``chunks_in_flight`` chunks, woken by the outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from services.importer import domain as d
from services.importer.repository import ImportRepository
from services.importer.settings import ImporterSettings

log = logging.getLogger("services.importer")


class Pacing:
    """Holds a running job before its next chunk while more than ``chunks_in_flight`` chunks await their answers.

    So a cancel stops within a few chunks of what the leads service has done, and the commands topic
    holds a few chunks of a job rather than the whole file."""

    def __init__(self, settings: ImporterSettings, imports: ImportRepository, owner: str,
                 clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.imports = imports
        self.owner = owner
        self.clock = clock
        self.held: dict[str, asyncio.Event] = {}  # jobs waiting for answers, woken by ``answered``

    def answered(self, import_ids: set[str]) -> None:
        """Outcomes of these jobs were stored: a job held for them looks again."""
        for import_id in import_ids & self.held.keys():
            self.held[import_id].set()

    async def hold(self, job: d.ImportJob) -> bool:
        """Until the job may send its next chunk; False if its lease was lost meanwhile.

        Woken as the consumer stores outcomes (another instance's consumer: seen at the next
        ``poll_interval_s``), renewing the lease while it waits; after ``outcome_timeout_s`` without
        a new answer it goes on, so commands never answered cannot hold a job for ever."""
        bound = self.settings.chunks_in_flight * self.settings.chunk_rows
        answered, quiet_since, renewed_at = -1, self.clock(), self.clock()
        try:
            while not job.dry_run:
                event = self.held[job.import_id] = asyncio.Event()  # before the read: no answer falls between
                confirmed, _ = await self.imports.rows.fast_counts(job.import_id)
                settled = sum(confirmed.get(kind, 0) for kind in ("created", "updated", "rejected"))
                if job.sent - settled <= bound:
                    return True
                now = self.clock()
                if settled != answered:
                    answered, quiet_since = settled, now
                elif now - quiet_since > timedelta(seconds=self.settings.outcome_timeout_s):
                    log.warning("import %s: no answer from the leads service for %.0fs; sending on", job.import_id,
                                self.settings.outcome_timeout_s)
                    return True
                if now - renewed_at > timedelta(seconds=self.settings.job_lease_s / 3):
                    if await self.imports.renew(job.import_id, self.owner, now, self.settings.job_lease_s) is None:
                        return False
                    renewed_at = now
                try:
                    async with asyncio.timeout(self.settings.poll_interval_s):
                        await event.wait()
                except TimeoutError:
                    pass
            return True
        finally:
            self.held.pop(job.import_id, None)
