"""What operators see of the imports on /metrics: jobs by state and the reading speed of running jobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge

from crmkit.service import stop_if_cancelled
from services.importer.repository import ImportRepository

log = logging.getLogger("services.importer")


class ImportMetrics:
    """``crm_import_jobs{state}`` and ``crm_import_rows_per_second{import_id}``, refreshed from the database."""

    def __init__(self, imports: ImportRepository, registry: CollectorRegistry,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._imports = imports
        self._clock = clock
        self.jobs = Gauge("crm_import_jobs", "Import jobs by state (all instances: read from the database)", ["state"],
                          registry=registry)
        self.rows_per_second = Gauge("crm_import_rows_per_second", "Rows read per second since start, of each running import",
                                     ["import_id"], registry=registry)

    async def refresh(self) -> None:
        counts = await self._imports.count_by_state()
        running = await self._imports.running()
        now = self._clock()
        # Replaced in one step with no await in between, so a scrape never sees a half-filled set.
        self.jobs.clear()
        for state in ("waiting", "running", "completed", "failed", *counts):
            self.jobs.labels(state=state).set(counts.get(state, 0))
        self.rows_per_second.clear()
        for job in running:
            if job.started_at is not None:
                started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
                elapsed = (now - started).total_seconds()
                self.rows_per_second.labels(import_id=job.import_id).set(round(job.rows_read / elapsed, 1) if elapsed > 0 else 0)

    async def run_forever(self, interval_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a view only: the next pass tries again
                log.info("import metrics not refreshed (%s: %s)", type(exc).__name__, exc)
            stop_if_cancelled()
            await asyncio.sleep(interval_s)
