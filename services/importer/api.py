"""HTTP side of the importer: uploads, job status, error reports and the import template."""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit import tracing
from crmkit.http import ApiError, authenticate, endpoint, flag, is_ascii_digits, json_response
from crmkit.principals import PrincipalRepository
from services.importer import domain as d
from services.importer.reports import ErrorReportWriter, write_template
from services.importer.repository import ImportRepository
from services.importer.settings import ImporterSettings
from services.importer.uploads import Upload, UploadLimits, read_upload
from services.importer.worker import JobRunner

_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_IMPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}")
FINAL_STATES = ("completed", "failed", "reverted")
MAX_WAIT_S = 30
UPLOAD_FIELDS = frozenset(
    {"pipeline_id", "pipeline", "stage_id", "dry_run", "mapping", "format", "encoding", "delimiter", "sheet",
     "language", "import_id"}
)


def parse_mapping(values: list[str]) -> dict[str, str] | None:
    """`mapping` form fields: a JSON object, or `column=field` entries (repeated or one per line)."""
    mapping: dict[str, str] = {}
    for value in values:
        text = value.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ApiError(400, "validation", f"mapping is not valid JSON: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ApiError(400, "validation", "mapping must be a JSON object of column to field")
            mapping.update({str(k): str(v) for k, v in loaded.items()})
            continue
        for line in text.splitlines():
            column, sep, field = line.rpartition("=")
            if not sep or not column.strip():
                raise ApiError(400, "validation", f"mapping entry {line!r} must look like 'Column=field'")
            mapping[column.strip()] = field.strip()
    return mapping or None


def parse_delimiter(value: str | None) -> str | None:
    if not value:
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}
    delimiter = named.get(value.lower(), value)
    if delimiter not in (",", ";", "\t"):
        raise ApiError(400, "validation", "delimiter must be ',', ';' or tab")
    return delimiter


def status_view(job: d.ImportJob, counts: d.Counts) -> dict[str, Any]:
    base = f"/imports/{job.import_id}"
    started = job.started_at
    end = job.finished_at or datetime.now(UTC)
    elapsed = (end - started).total_seconds() if started else None
    return {
        "import_id": job.import_id,
        "state": job.state,
        "dry_run": job.dry_run,
        "cancelled": job.cancelled or (job.cancel_requested and job.state == "running"),
        "file_name": job.file_name,
        "format": job.format,
        "pipeline_id": job.pipeline_id or "default",
        "rows_read": job.rows_read,
        "rows_sent": job.sent,
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "removed": job.removed,
        "restored": job.restored,
        "unknown_columns": job.unknown_columns,
        "warnings": job.warnings,
        "failure": {"code": job.failure_code, "reason": job.failure_reason} if job.state == "failed" else None,
        "retrying": {"since": job.retrying_since, "error": job.retry_error} if job.retrying_since else None,
        "started_at": started,
        "finished_at": job.finished_at,
        "rows_per_second": round(job.rows_read / elapsed, 1) if elapsed else None,
        "status_url": base,
        "errors_csv_url": f"{base}/errors.csv",
        "errors_xlsx_url": f"{base}/errors.xlsx",
    }


def routes(
    settings: ImporterSettings,
    imports: ImportRepository,
    runner: JobRunner,
    principals: PrincipalRepository,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    return ImportsApi(settings, imports, runner, principals, clock).routes()


class ImportsApi:
    """Uploads, job status (long-polled), error reports and templates; a job is shown to its owner and administrators."""

    def __init__(self, settings: ImporterSettings, imports: ImportRepository, runner: JobRunner,
                 principals: PrincipalRepository, clock: Callable[[], datetime]) -> None:
        self.settings, self.imports, self.runner, self.principals, self.clock = settings, imports, runner, principals, clock
        self.limits = UploadLimits(
            max_file_bytes=settings.max_file_mb * 1024 * 1024, max_field_bytes=settings.max_field_kb * 1024,
            fields=UPLOAD_FIELDS,
        )

    def routes(self) -> list[Route]:
        return [
            Route("/imports", endpoint(self.upload), methods=["POST"]),
            Route("/imports/template.{format:str}", _only_formats(self.template)),
            Route("/imports/{import_id}/errors.{format:str}", _only_formats(self.errors)),
            Route("/imports/{import_id}", endpoint(self.status)),
        ]

    async def _auth(self, request: Request):
        return await authenticate(request, self.settings.tokens, self.principals)

    async def _job_of(self, request: Request) -> d.ImportJob:
        job = await self.imports.get(request.path_params["import_id"])
        if job is None:
            raise ApiError(404, "not_found", f"Import {request.path_params['import_id']} does not exist.")
        return job

    async def _owned_job(self, request: Request) -> d.ImportJob:
        principal = await self._auth(request)
        return _shown_to(await self._job_of(request), principal)

    async def upload(self, request: Request) -> Response:
        """Multipart `file` plus the options of crm.import.start as form fields; 202 with the status URL."""
        principal = await self._auth(request)

        async def id_is_free(received: Upload) -> None:
            # Checked when the file part begins, before a byte of it is written.
            import_id = received.get("import_id")
            if import_id is not None:
                await _free_import_id(self.imports, _valid_import_id(import_id))

        form = await read_upload(request, self.settings.uploads_dir, self.limits, id_is_free)
        try:
            import_id = _valid_import_id(form.get("import_id")) if form.get("import_id") else str(uuid.uuid4())
            job = _upload_job(form, import_id, principal.user_id, self.clock())
            if not await self.imports.create(job):
                raise ApiError(409, "conflict", f"Import {import_id} exists already; GET /imports/{import_id} shows it.")
        except BaseException:
            form.discard()
            raise
        self.runner.wake()
        return json_response({"import_id": import_id, "state": job.state, "status_url": f"/imports/{import_id}"}, 202)

    async def status(self, request: Request) -> Response:
        """The job's status; with ``wait=N`` (seconds, up to 30) answered at its next change, at once when it has ended."""
        raw_wait = request.query_params.get("wait", "0")
        if raw_wait != "0" and (not is_ascii_digits(raw_wait) or int(raw_wait) > MAX_WAIT_S):
            raise ApiError(400, "validation", f"wait must be a whole number of seconds from 0 to {MAX_WAIT_S}.")
        principal = await self._auth(request)
        wait = int(raw_wait)
        watch = self.runner.watch
        # Watched before the job is read, so a change between the read and the wait is not missed.
        changed = watch.start(request.path_params["import_id"]) if wait else None
        try:
            job = _shown_to(await self._job_of(request), principal)
            if changed is not None and job.state not in FINAL_STATES:
                # Only this instance's changes wake the request; another instance's are seen at the deadline.
                await watch.wait(job.import_id, changed, wait)
                changed = None
                job = await self._job_of(request)
        finally:
            if changed is not None:
                watch.stop(request.path_params["import_id"], changed)
        return json_response(status_view(job, await self.runner.counts(job)))

    async def errors(self, request: Request) -> Response:
        job = await self._owned_job(request)
        format_ = request.path_params["format"]
        language = request.query_params.get("language") or job.language or "en"
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"errors.{format_}")
            writer = ErrorReportWriter(path, job.header, format=format_, language=language)
            try:
                async for row, column, reason, cells in self.imports.errors(job.import_id):
                    writer.write(row, column, reason, cells)
            finally:
                writer.close()
            body = Path(path).read_bytes()
        disposition = f'attachment; filename="import-{job.import_id}-errors.{format_}"'
        return Response(body, media_type=_MEDIA[format_], headers={"Content-Disposition": disposition})

    async def template(self, request: Request) -> Response:
        await self._auth(request)
        format_ = request.path_params["format"]
        language = request.query_params.get("language", "ru")
        if language not in ("ru", "en"):
            raise ApiError(400, "validation", "language must be 'ru' or 'en'")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"template.{format_}")
            write_template(path, format=format_, language=language)
            body = Path(path).read_bytes()
        disposition = f'attachment; filename="leads-import-template-{language}.{format_}"'
        return Response(body, media_type=_MEDIA[format_], headers={"Content-Disposition": disposition})


def _shown_to(job: d.ImportJob, principal) -> d.ImportJob:
    # Another user's import answers as one that does not exist: a 403 would confirm that the id is real.
    if not d.may_see(job, principal.user_id, principal.is_admin):
        raise ApiError(404, "not_found", f"Import {job.import_id} does not exist, or belongs to another user "
                                         f"(only they and administrators may see it).")
    return job


def _only_formats(handler):
    @endpoint
    async def wrapper(request: Request) -> Response:
        if request.path_params["format"] not in _MEDIA:
            raise ApiError(404, "not_found", "Reports and templates come as .csv or .xlsx.")
        return await handler(request)

    wrapper.__name__ = handler.__name__
    return wrapper


def _valid_import_id(value: str | None) -> str:
    """A client's import id: a fixed pattern, so it can never name a path or hide a control character."""
    if value is None or not _IMPORT_ID.fullmatch(value):
        raise ApiError(400, "validation", "import_id must be 1 to 100 ASCII letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit")
    return value


async def _free_import_id(imports: ImportRepository, import_id: str) -> None:
    if await imports.get(import_id) is not None:
        raise ApiError(409, "conflict", f"Import {import_id} exists already; GET /imports/{import_id} shows it.")


def _upload_job(form: Upload, import_id: str, actor_id: str, now: datetime) -> d.ImportJob:
    format_ = form.get("format") or None
    if format_ not in (None, "csv", "xlsx"):
        raise ApiError(400, "validation", "format must be 'csv' or 'xlsx'")
    return d.ImportJob(
        import_id=import_id, file_uri=str(form.path), uploaded=True, actor_id=actor_id, format=format_,
        pipeline_id=(form.get("pipeline_id") or form.get("pipeline") or None), stage_id=form.get("stage_id") or None,
        mapping=parse_mapping(form.fields.get("mapping", [])),
        dry_run=flag(form.get("dry_run"), "dry_run"), encoding=form.get("encoding") or None,
        delimiter=parse_delimiter(form.get("delimiter")), sheet=form.get("sheet") or None,
        language=form.get("language") or None, file_name=form.file_name, created_at=now,
        traceparent=tracing.current()[0],  # the upload's request span: the import runs in its trace
    )
