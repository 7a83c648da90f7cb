"""The import worker: reads a job's file in chunks, sends each chunk's lead commands, keeps the checkpoint.

It runs as a background task beside the consumers, so a long file never holds up a Kafka batch,
and picks up any job left running by an instance that stopped (from ``last_row_sent``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts import Envelope, build_message
from contracts.imports import ImportProgress, ImportRowRejected, ImportStarted
from contracts.topics import IMPORTS_EVENTS
from crmkit.errors import is_transient
from crmkit.messaging import Bus, Outbound
from services.importer import domain as d
from services.importer.announcements import event_id, final_event
from services.importer.commands import ChunkCommands
from services.importer.errors import FileRejected
from services.importer.mapping import Mapping, build_mapping
from services.importer.pacing import Pacing
from services.importer.readers import Limits, RowSource, open_rows
from services.importer.external_ids import ExternalIdProjection
from services.importer.repository import ImportRepository
from services.importer.revert import revert_commands
from services.importer.rows import RowResult, row_to_lead
from services.importer.settings import ImporterSettings
from services.importer.watch import JobWatch
from services.importer.sources import display_name, resolve_import_file

log = logging.getLogger("services.importer")

class JobRunner:
    """Runs import jobs one at a time; any number of instances share the work through job leases."""

    def __init__(
        self,
        settings: ImporterSettings,
        imports: ImportRepository,
        index: ExternalIdProjection,
        bus: Bus,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.imports = imports
        self.index = index
        self.bus = bus
        self.source = source
        self.clock = clock
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self.waiting: set[str] = set()  # jobs whose every row is sent, their outcomes still arriving
        self.watch = JobWatch()  # status requests waiting for a job's next change
        self.pacing = Pacing(settings, imports, self.owner, clock)
        self.limits = Limits(max_file_bytes=settings.max_file_mb * 1024 * 1024, max_rows=settings.max_rows)

    def wake(self) -> None:
        self._wake.set()

    def outcomes_arrived(self, import_ids: set[str]) -> None:
        """Row outcomes were stored: wake the worker if one of these jobs waits for its last ones.

        A job still being read costs no wake-up; one another instance put in waiting is seen at the next poll."""
        if not import_ids.isdisjoint(self.waiting):
            self._wake.set()
        self.pacing.answered(import_ids)

    async def wait_for_work(self, timeout: float) -> None:
        """Until something wakes the worker, or ``timeout`` seconds."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that lands
        # as the event is set.
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def handle(self, job: d.ImportJob) -> None:
        """The work a claimed job needs now: read and send its file, revert it, or announce its end."""
        if job.state == "running":
            await self._run_guarded(job)
        elif job.state == "reverting":
            await self.revert(job)
        else:
            await self.announce(job)

    async def housekeeping(self) -> None:
        """Complete jobs whose rows all have outcomes, and turn revert requests into reverting jobs."""
        jobs = await self.imports.waiting()
        self.waiting = {job.import_id for job in jobs}
        for job in jobs:
            await self.try_complete(job.import_id)
        for import_id, actor in await self.imports.pending_reverts():
            await self.imports.update(import_id, {"state": "reverting", "revert_actor_id": actor, "announced": False},
                                      expect_state="completed")
            await self.imports.request(import_id, revert_taken=True)

    async def _run_guarded(self, job: d.ImportJob) -> None:
        try:
            await self.run(job)
        except FileRejected as exc:
            await self.fail(job, exc.code, exc.message)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("import %s failed", job.import_id)
            await self.fail(job, "internal_error", f"the import stopped on an unexpected error: {type(exc).__name__}")

    def file_path(self, job: d.ImportJob) -> Path:
        """The checked path of the job's file: an upload under its server name, or a file inside the roots."""
        if job.uploaded:
            return resolve_import_file(job.file_uri, [self.settings.uploads_dir])
        return resolve_import_file(job.file_uri, self.settings.file_roots, forbidden=[self.settings.uploads_dir])

    async def _from_file(self, job: d.ImportJob, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a read of the job's file in a thread; the file's own errors fail this import, never retry."""
        try:
            return await asyncio.to_thread(read, *args, **kwargs)
        except FileRejected:
            raise
        except OSError as exc:
            name = job.file_name or display_name(job.file_uri)
            raise FileRejected("file_unreadable", f"the file {name!r} could not be read ({exc.strerror or type(exc).__name__})") from None

    # --- reading and sending ------------------------------------------------------------------

    async def run(self, job: d.ImportJob) -> None:
        if (await self.imports.requests(job.import_id)).get("cancel"):
            await self.end_cancelled(job)  # cancelled before a row was read
            return
        path = self.file_path(job)
        source: RowSource = await self._from_file(
            job, open_rows, path, format=job.format, encoding=job.encoding, delimiter=job.delimiter,
            sheet=job.sheet, limits=self.limits, start_after_row=job.last_row_sent,
        )
        following: asyncio.Future | None = None
        try:
            mapping = build_mapping(source.header, job.mapping)
            if not job.started_announced:
                await self._announce_start(job, source, mapping)
            # Rows past the checkpoint that an earlier attempt sent (it stopped before checkpointing):
            # they repeat that attempt's commands with its saved values, however the lead changed since.
            resent = {} if job.dry_run else await self.imports.rows.saved_after(job.import_id, job.last_row_sent)
            rows = iter(source)
            chunk = await self._from_file(job, self._read_chunk, rows, mapping, job)
            while chunk:
                # The next chunk is read and checked in its thread while this one is sent and checkpointed.
                following = asyncio.ensure_future(self._from_file(job, self._read_chunk, rows, mapping, job))
                fresh = await self._send_chunk(job, chunk, mapping, resent)
                if fresh is None:
                    log.warning("import %s: lease lost to another instance; leaving it", job.import_id)
                    return
                job = fresh
                await self._progress(job)
                if (await self.imports.requests(job.import_id)).get("cancel"):
                    job.cancel_requested = True
                    break
                chunk = await following
                if chunk and not await self.pacing.hold(job):
                    log.warning("import %s: lease lost to another instance; leaving it", job.import_id)
                    return
        finally:
            if following is not None:
                # The reading thread cannot be stopped: the file is closed only once it is done with it.
                await asyncio.gather(following, return_exceptions=True)
            source.close()
        await self._finish_reading(job, cancelled=job.cancel_requested)

    async def end_cancelled(self, job: d.ImportJob) -> None:
        """End a running job on its cancel request, keeping the rows it sent so far."""
        await self._finish_reading(job, cancelled=True)

    async def _finish_reading(self, job: d.ImportJob, *, cancelled: bool) -> None:
        finished = {"state": "waiting", "cancelled": cancelled, "cancel_requested": cancelled, "last_outcome_at": self.clock()}
        await self.imports.update(job.import_id, finished, expect_state="running")
        self.waiting.add(job.import_id)
        self.watch.changed(job.import_id)
        await self.try_complete(job.import_id)

    def _read_chunk(self, rows: Iterator[tuple[int, list]], mapping: Mapping, job: d.ImportJob) -> list[tuple[list, RowResult]]:
        chunk = []
        for row_number, cells in rows:
            result = row_to_lead(row_number, cells, mapping, pipeline_id=job.pipeline_id, stage_id=job.stage_id)
            chunk.append((cells, result))
            if len(chunk) >= self.settings.chunk_rows:
                break
        return chunk

    async def _announce_start(self, job: d.ImportJob, source: RowSource, mapping: Mapping) -> None:
        started = ImportStarted(
            import_id=job.import_id, file_uri=job.file_name or display_name(job.file_uri), format=source.format,
            pipeline_id=job.pipeline_id or "default", dry_run=job.dry_run,
        )
        await self.bus.publish([self._event(job, started, "started")])
        for name in mapping.unknown_columns:
            log.info("import %s: column %r matches no lead field and is skipped", job.import_id, name)
        fields = {
            "started_announced": True, "started_at": self.clock(), "format": source.format, "header": mapping.header,
            "columns": {field: mapping.column_name(index) for index, field in mapping.columns.items()},
            "unknown_columns": mapping.unknown_columns, "warnings": mapping.warnings,
        }
        await self.imports.update(job.import_id, fields)

    async def _send_chunk(
        self, job: d.ImportJob, chunk: list[tuple[list, RowResult]], mapping: Mapping, resent: dict[int, dict[str, Any]]
    ) -> d.ImportJob | None:
        """Plan, record and send one chunk, then move the checkpoint; the job as it is now, None if the lease was lost."""
        results = [result for _, result in chunk]
        cells_of = {result.row_number: cells for cells, result in chunk}
        external = {r.row_number: r.lead["external_id"] for r in results if r.ok and r.lead.get("external_id")}
        # One `_id $in` lookup per 500 ids, from the index (8 ms for 1,000 new ids at 100,000
        # known leads): nothing about the known leads is held in memory between chunks.
        known = await self.index.by_external_ids(external.values())
        saved = {row: resent[row] for row in external if row in resent}
        plans = [
            d.plan_row(r, import_id=job.import_id, source=self.source,
                       known=known.get(external.get(r.row_number, "")), saved_previous=saved.get(r.row_number))
            for r in results
        ]
        out: list[Outbound] = []
        errors: list[tuple[int, str | None, str, list]] = []
        previous: dict[int, tuple[str, dict[str, Any]]] = {}
        tally = {"create": 0, "update": 0, "unchanged": 0, "rejected": 0}
        sent = 0
        commands = ChunkCommands(job, self.source, self.clock())
        for plan in plans:
            if plan.action in ("create", "update") and not job.dry_run:
                try:
                    out.append(commands.command(plan))
                except ValidationError as exc:
                    plan = d.RowPlan(plan.row_number, "rejected", errors=[
                        (_column_of(job, mapping, ".".join(map(str, e["loc"]))), e["msg"]) for e in exc.errors()
                    ])
                else:
                    sent += 1
                    if plan.action == "update" and plan.row_number not in saved:
                        previous[plan.row_number] = (plan.lead_id, plan.previous or {})
            tally[plan.action] += 1
            for column, reason in plan.errors:
                errors.append((plan.row_number, column, reason, cells_of[plan.row_number]))
        per_row: dict[int, int] = {}
        for row, column, reason, cells in errors:
            index = per_row[row] = per_row.get(row, -1) + 1
            value = mapping.cell(column, cells)
            out.append(self._event(job, ImportRowRejected(import_id=job.import_id, row=row, column=column, reason=reason,
                                                          value=value), "row-rejected", row, index))
        await self.imports.record_errors(job.import_id, errors)
        await self.imports.rows.save_previous(job.import_id, plans[0].row_number, previous)
        await self.bus.publish(out)
        inc = {"rows_read": len(plans), "sent": sent, "rejected_local": tally["rejected"], "unchanged": tally["unchanged"]}
        if job.dry_run:
            inc.update(dry_created=tally["create"], dry_updated=tally["update"])
        # The checkpoint, the counts settled on reading and the lease move in one write: a resent
        # chunk counts once, and an instance that lost the job moves nothing.
        return await self.imports.advance(job.import_id, self.owner, self.clock(), self.settings.job_lease_s,
                                          {"last_row_sent": plans[-1].row_number}, inc)

    async def _progress(self, job: d.ImportJob) -> None:
        counts = await self.counts(job)
        progress = ImportProgress(
            import_id=job.import_id, rows_read=job.rows_read, created=counts.created, updated=counts.updated,
            rejected=counts.rejected, duplicates=counts.duplicates,
        )
        await self.bus.publish([self._event(job, progress, "progress", job.last_row_sent)])
        self.watch.changed(job.import_id)

    # --- finishing ----------------------------------------------------------------------------

    async def counts(self, job: d.ImportJob) -> d.Counts:
        """The job's counts so far, from the consumer's counters (a replayed outcome may count twice until the end)."""
        confirmed = {} if job.dry_run else (await self.imports.rows.fast_counts(job.import_id))[0]
        return d.job_counts(job, confirmed)

    async def try_complete(self, import_id: str) -> bool:
        """Complete a waiting job once every row read has an outcome (or it waited too long)."""
        job = await self.imports.get(import_id)
        if job is None or job.state != "waiting":
            self.waiting.discard(import_id)
            return False
        confirmed, last_outcome_at = ({}, None) if job.dry_run else await self.imports.rows.fast_counts(import_id)
        counts = d.job_counts(job, confirmed)
        latest = max(filter(None, [job.last_outcome_at, last_outcome_at]), default=None)
        quiet = self.clock() - (latest or self.clock())
        # The counters may count a replayed outcome twice, and two consumers racing on FerretDB may
        # lose an addition: the rows are counted one by one when the counters say done, or after a
        # quiet spell, and only that count completes a job.
        if not job.dry_run and (d.is_finished(job, counts) or quiet > timedelta(seconds=min(15.0, self.settings.outcome_timeout_s))):
            counts = d.job_counts(job, await self.imports.rows.exact_counts(import_id))
        stale = quiet > timedelta(seconds=self.settings.outcome_timeout_s)
        if not d.is_finished(job, counts) and not stale:
            return False
        if stale and not d.is_finished(job, counts):
            log.warning("import %s: %d rows without an outcome after %.0fs; completing", import_id,
                        job.rows_read - counts.settled, self.settings.outcome_timeout_s)
        done = await self.imports.update(
            import_id,
            {"state": "completed", "finished_at": self.clock(), "announced": False, "created": counts.created,
             "updated": counts.updated, "rejected": counts.rejected, "duplicates": counts.duplicates,
             "unchanged": counts.unchanged},
            expect_state="waiting",
        )
        self.waiting.discard(import_id)
        if done:
            # Announced here, as fail() and revert() do: going through the scheduler's claim added a
            # housekeeping pass and a claim to every import's end. Should this process stop before the
            # event is out, the job stays completed and unannounced, and any instance's claim announces
            # it (the event id is the job's, so a second announcement is the same record).
            fresh = await self.imports.get(import_id)
            if fresh is not None and fresh.state == "completed" and not fresh.announced:
                await self.announce(fresh)
            else:
                self.watch.changed(import_id)
        return done

    async def announce(self, job: d.ImportJob) -> None:
        """Publish the final event a finished job owes, then remember it went out."""
        await self.bus.publish([self._event(job, final_event(self.settings, job), job.state)])
        await self.imports.update(job.import_id, {"announced": True})
        self.watch.changed(job.import_id)

    async def fail(self, job: d.ImportJob, code: str, reason: str) -> None:
        log.warning("import %s failed: %s: %s", job.import_id, code, reason)
        await self.imports.update(
            job.import_id,
            {"state": "failed", "failure_code": code, "failure_reason": reason, "finished_at": self.clock(),
             "announced": False},
            expect_state="running",
        )
        fresh = await self.imports.get(job.import_id)
        if fresh is not None and fresh.state == "failed":
            await self.announce(fresh)

    # --- revert -------------------------------------------------------------------------------

    async def revert(self, job: d.ImportJob) -> None:
        """Delete the leads the import created; put back the fields it changed on the others."""
        done = {"removed": 0, "restored": 0}
        batch: list[Outbound] = []
        self.watch.changed(job.import_id)
        async for what, command in revert_commands(self.imports.rows, job, self.source, event_id):
            batch.append(command)
            done[what] += 1
            if len(batch) >= self.settings.chunk_rows:
                await self.bus.publish(batch)
                batch.clear()
        await self.bus.publish(batch)
        removed, restored = done["removed"], done["restored"]
        await self.imports.update(
            job.import_id, {"state": "reverted", "removed": removed, "restored": restored, "announced": False},
            expect_state="reverting",
        )
        fresh = await self.imports.get(job.import_id)
        if fresh is not None and fresh.state == "reverted":
            await self.announce(fresh)

    # --- helpers ------------------------------------------------------------------------------

    def _event(self, job: d.ImportJob, payload: Any, *parts: Any) -> Outbound:
        message: Envelope = build_message(
            payload, source=self.source, subject=job.import_id, id=event_id(job.import_id, *parts),
            actorid=job.actor_id, traceparent=job.traceparent,
        )
        return Outbound(IMPORTS_EVENTS, message, key=job.import_id)


def _column_of(job: d.ImportJob, mapping: Mapping, path: str) -> str:
    return mapping.column_for_path(path) or job.columns.get(path.replace(".", "_")) or path
