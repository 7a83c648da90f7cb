"""HTTP side of the importer: uploads, job status, error reports and the import template."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmkit.http import ApiError, authenticate, endpoint, flag, json_response
from crmkit.principals import PrincipalRepository
from services.importer import domain as d
from services.importer.reports import ErrorReportWriter, write_template
from services.importer.repository import ImportRepository
from services.importer.settings import ImporterSettings
from services.importer.worker import JobRunner

_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_SAFE_NAME = re.compile(r"[^\w.\-]+")


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
    async def auth(request: Request):
        return await authenticate(request, settings.tokens, principals)

    async def job_of(request: Request) -> d.ImportJob:
        job = await imports.get(request.path_params["import_id"])
        if job is None:
            raise ApiError(404, "not_found", f"Import {request.path_params['import_id']} does not exist.")
        return job

    @endpoint
    async def upload(request: Request) -> Response:
        """Multipart `file` plus the options of crm.import.start as form fields; 202 with the status URL."""
        principal = await auth(request)
        form = await request.form(max_part_size=settings.max_file_mb * 1024 * 1024)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "validation", "send the file as the multipart field 'file'")
        import_id = str(form.get("import_id") or uuid.uuid4())
        if not re.fullmatch(r"[\w.\-]{1,100}", import_id):
            raise ApiError(400, "validation", "import_id may hold letters, digits, '.', '_' and '-' only")
        format_ = (form.get("format") or "") or None
        if format_ not in (None, "csv", "xlsx"):
            raise ApiError(400, "validation", "format must be 'csv' or 'xlsx'")
        name = _SAFE_NAME.sub("_", Path(upload.filename or "upload").name)[:120] or "upload"
        folder = Path(settings.uploads_dir) / import_id
        path = folder / name
        await asyncio.to_thread(_store, upload, folder, path, settings.max_file_mb * 1024 * 1024)
        job = d.ImportJob(
            import_id=import_id, file_uri=str(path.resolve()), actor_id=principal.user_id, format=format_,
            pipeline_id=(form.get("pipeline_id") or form.get("pipeline") or None), stage_id=form.get("stage_id") or None,
            mapping=parse_mapping([str(v) for v in form.getlist("mapping")]),
            dry_run=flag(form.get("dry_run"), "dry_run"), encoding=form.get("encoding") or None,
            delimiter=parse_delimiter(form.get("delimiter")), sheet=form.get("sheet") or None,
            language=form.get("language") or None, file_name=upload.filename, created_at=clock(),
        )
        await upload.close()
        if not await imports.create(job):
            raise ApiError(409, "conflict", f"Import {import_id} exists already; GET /imports/{import_id} shows it.")
        runner.wake()
        return json_response({"import_id": import_id, "state": job.state, "status_url": f"/imports/{import_id}"}, 202)

    @endpoint
    async def status(request: Request) -> Response:
        await auth(request)
        job = await job_of(request)
        return json_response(status_view(job, await runner.counts(job)))

    @endpoint
    async def errors(request: Request) -> Response:
        await auth(request)
        job = await job_of(request)
        format_ = request.path_params["format"]
        language = request.query_params.get("language") or job.language or "en"
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"errors.{format_}")
            writer = ErrorReportWriter(path, job.header, format=format_, language=language)
            try:
                async for row, column, reason, cells in imports.errors(job.import_id):
                    writer.write(row, column, reason, cells)
            finally:
                writer.close()
            body = Path(path).read_bytes()
        disposition = f'attachment; filename="import-{job.import_id}-errors.{format_}"'
        return Response(body, media_type=_MEDIA[format_], headers={"Content-Disposition": disposition})

    @endpoint
    async def template(request: Request) -> Response:
        await auth(request)
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

    return [
        Route("/imports", upload, methods=["POST"]),
        Route("/imports/template.{format:str}", _only_formats(template)),
        Route("/imports/{import_id}/errors.{format:str}", _only_formats(errors)),
        Route("/imports/{import_id}", status),
    ]


def _only_formats(handler):
    @endpoint
    async def wrapper(request: Request) -> Response:
        if request.path_params["format"] not in _MEDIA:
            raise ApiError(404, "not_found", "Reports and templates come as .csv or .xlsx.")
        return await handler(request)

    wrapper.__name__ = handler.__name__
    return wrapper


def _store(upload: UploadFile, folder: Path, path: Path, limit: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    upload.file.seek(0)
    with open(path, "wb") as target:
        while chunk := upload.file.read(1024 * 1024):
            written += len(chunk)
            if written > limit:
                target.close()
                path.unlink(missing_ok=True)
                raise ApiError(413, "file_too_large", f"the file is over the limit of {limit // 1048576} MB; split it")
            target.write(chunk)
