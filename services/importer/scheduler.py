"""The import scheduler: runs several imports side by side, each one retrying only its own outages.

One job that is slow, stuck on a huge file or waiting out an outage holds one of
``max_concurrent_jobs`` slots and nothing else: the next upload starts in another slot, and a
cancel reaches a job in any slot (or one that has no slot yet) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from crmkit.errors import is_transient
from crmkit.service import stop_if_cancelled
from services.importer import domain as d
from services.importer.repository import ImportRepository
from services.importer.settings import ImporterSettings
from services.importer.worker import JobRunner

log = logging.getLogger("services.importer")


@dataclass
class Retrying:
    """A job waiting out an error: since when, and the last error (its type and text, never file content)."""

    since: datetime
    error: str


class JobScheduler:
    """Claims jobs up to the concurrency limit and runs each in a task of its own."""

    def __init__(
        self,
        settings: ImporterSettings,
        imports: ImportRepository,
        runner: JobRunner,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.imports = imports
        self.runner = runner
        self.clock = clock
        self.active: dict[str, asyncio.Task[None]] = {}
        self.retrying: dict[str, Retrying] = {}
        Gauge("crm_import_jobs_active", "Imports this instance is running now", registry=registry).set_function(
            lambda: len(self.active))
        Gauge("crm_import_jobs_retrying", "Imports of this instance waiting out an error", registry=registry).set_function(
            lambda: len(self.retrying))
        Gauge("crm_import_retry_seconds_max", "How long the longest-retrying import has been retrying",
              registry=registry).set_function(self._longest_retry_s)

    # --- the loop -----------------------------------------------------------------------------

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    await self.runner.housekeeping()
                    await self.fill()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if is_transient(exc):
                        log.warning("import scheduler: dependency unavailable (%s: %s)", type(exc).__name__, exc)
                    else:
                        log.exception("import scheduler step failed")
                stop_if_cancelled()
                await self.runner.wait_for_work(self.settings.poll_interval_s)
                stop_if_cancelled()
        finally:
            await self._stop_jobs()

    async def fill(self) -> None:
        """Start claimed jobs while slots are free; a cancelled job is taken even when none is."""
        while len(self.active) < self.settings.max_concurrent_jobs:
            job = await self.imports.claim(self.runner.owner, self.clock(), self.settings.job_lease_s, exclude=list(self.active))
            if job is None:
                break
            self._start(job)
        for import_id in await self.imports.cancelled_running(exclude=list(self.active)):
            job = await self.imports.claim(self.runner.owner, self.clock(), self.settings.job_lease_s,
                                           exclude=list(self.active), only=[import_id])
            if job is not None:
                self._start(job)

    def _start(self, job: d.ImportJob) -> None:
        task = asyncio.create_task(self._work(job), name=f"import-{job.import_id}")
        self.active[job.import_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self.active.pop(job.import_id, None)
            self.runner.wake()  # a slot is free

        task.add_done_callback(done)

    async def _stop_jobs(self) -> None:
        tasks = list(self.active.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- one job ------------------------------------------------------------------------------

    async def _work(self, job: d.ImportJob) -> None:
        """Do what the job needs; on an error, back off and try again, renewing the lease, until done."""
        delay = 0.5
        try:
            while True:
                try:
                    await self.runner.handle(job)
                    if job.import_id in self.retrying:
                        await self._retry_over(job.import_id)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._retry_begins(job.import_id, exc)
                await asyncio.sleep(delay)
                stop_if_cancelled()
                delay = min(delay * 2, self.settings.retry_backoff_max_s)
                try:
                    fresh = await self.imports.renew(job.import_id, self.runner.owner, self.clock(), self.settings.job_lease_s)
                    if fresh is not None and fresh.state == "running" and (await self.imports.requests(job.import_id)).get("cancel"):
                        await self.runner.end_cancelled(fresh)  # a cancel ends a job that cannot get going
                        return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    continue
                if fresh is None:
                    log.warning("import %s: lease lost to another instance; leaving it", job.import_id)
                    return
                job = fresh
        finally:
            self.retrying.pop(job.import_id, None)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.imports.release(job.import_id, self.runner.owner)

    async def _retry_begins(self, import_id: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if is_transient(exc):
            log.warning("import %s: dependency unavailable, retrying (%s)", import_id, error)
        else:
            log.exception("import %s: step failed, retrying", import_id)
        known = self.retrying.get(import_id)
        since = known.since if known else self.clock()
        self.retrying[import_id] = Retrying(since, error)
        with contextlib.suppress(Exception):  # the database may be the outage
            await self.imports.update(import_id, {"retrying_since": since, "retry_error": error})

    async def _retry_over(self, import_id: str) -> None:
        self.retrying.pop(import_id, None)
        with contextlib.suppress(Exception):
            await self.imports.update(import_id, {"retrying_since": None, "retry_error": None})

    # --- what operators see -------------------------------------------------------------------

    def _longest_retry_s(self) -> float:
        now = self.clock()
        return max(((now - r.since).total_seconds() for r in self.retrying.values()), default=0.0)

    def readiness(self) -> dict[str, Any]:
        """For /health/ready: the imports retrying for longer than ``retry_alert_s``."""
        now = self.clock()
        stuck = [
            {"import_id": import_id, "since": r.since.isoformat(), "error": r.error}
            for import_id, r in self.retrying.items()
            if (now - r.since).total_seconds() >= self.settings.retry_alert_s
        ]
        return {"imports_running": len(self.active), "imports_retrying_too_long": stuck}
