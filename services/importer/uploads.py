"""Uploads read as they stream in: the file to a server-named path, every other field bounded, 413 at a limit.

Starlette's ``request.form()`` keeps each field in memory up to one size shared with the file
part (a 150 MB ``mapping`` field took the importer from 147 MB to 1.77 GB) and spools the file
whole before anyone can look at its size; here each limit is applied to the bytes as they come,
so neither memory nor disk grows past it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from crmkit.http import ApiError
from services.importer.sources import display_name, upload_path

FILE_FIELD = "file"


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may hold."""

    max_file_bytes: int
    max_field_bytes: int
    fields: frozenset[str]  # the form fields the endpoint knows, besides the file
    max_parts: int = 40


@dataclass
class Upload:
    """A received upload: its form fields and where its file was stored."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    file_name: str | None = None
    size: int = 0

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.data = bytearray()


async def read_upload(
    request: Request,
    uploads_dir: str,
    limits: UploadLimits,
    before_file: Callable[[Upload], Awaitable[None]],
) -> Upload:
    """Parse a multipart body chunk by chunk; ``before_file`` runs when the file part starts, before a byte is written."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(400, "validation", "send multipart/form-data with the file in the field 'file'")
    budget = limits.max_file_bytes + limits.max_parts * (limits.max_field_bytes + 1024)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > budget:
        raise ApiError(413, "file_too_large", _too_large(limits.max_file_bytes))
    events: list[tuple[str, Any]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def header_end() -> None:
        events.append(("header", (bytes(header["field"]).lower(), bytes(header["value"]))))
        header["field"].clear()
        header["value"].clear()

    parser = MultipartParser(boundary, {
        "on_part_begin": lambda: events.append(("begin", None)),
        "on_header_field": lambda data, start, end: header["field"].extend(data[start:end]),
        "on_header_value": lambda data, start, end: header["value"].extend(data[start:end]),
        "on_header_end": header_end,
        "on_headers_finished": lambda: events.append(("headers", None)),
        "on_part_data": lambda data, start, end: events.append(("data", bytes(data[start:end]))),
        "on_part_end": lambda: events.append(("end", None)),
    }, max_size=budget)
    upload = Upload()
    receiver = _Receiver(upload, uploads_dir, limits, before_file)
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise ApiError(400, "validation", f"the multipart body is malformed: {exc}") from None
            for kind, value in events:
                await receiver.on(kind, value)
            events.clear()
        parser.finalize()
        receiver.close()
    except BaseException:
        receiver.close()
        upload.discard()
        raise
    if upload.path is None:
        raise ApiError(400, "validation", "send the file as the multipart field 'file'")
    return upload


class _Receiver:
    """Applies the parser's events: fields into memory within their limit, the file part onto disk within its."""

    def __init__(self, upload: Upload, uploads_dir: str, limits: UploadLimits,
                 before_file: Callable[[Upload], Awaitable[None]]) -> None:
        self.upload = upload
        self.uploads_dir = uploads_dir
        self.limits = limits
        self.before_file = before_file
        self.part: _Part | None = None
        self.parts = 0
        self.target: Any = None

    async def on(self, kind: str, value: Any) -> None:
        if kind == "begin":
            self.parts += 1
            if self.parts > self.limits.max_parts:
                raise ApiError(413, "too_many_fields", f"an upload holds at most {self.limits.max_parts} form fields")
            self.part = _Part()
        elif kind == "header" and self.part is not None:
            self.part.headers[value[0]] = value[1]
        elif kind == "headers" and self.part is not None:
            await self._part_starts(self.part)
        elif kind == "data" and self.part is not None:
            self._data(self.part, value)
        elif kind == "end" and self.part is not None:
            self._part_ends(self.part)
            self.part = None

    async def _part_starts(self, part: _Part) -> None:
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if part.name == FILE_FIELD:
            if self.upload.path is not None:
                raise ApiError(400, "validation", "send one file per upload")
            await self.before_file(self.upload)
            self.upload.file_name = display_name(part.filename or "upload")
            self.upload.path = upload_path(self.uploads_dir, part.filename)
            self.upload.path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: a server-chosen name that somehow exists is never overwritten.
            fd = os.open(self.upload.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self.target = os.fdopen(fd, "wb")
        elif part.name not in self.limits.fields:
            known = ", ".join(sorted(self.limits.fields))
            raise ApiError(400, "validation", f"unknown form field {part.name[:60]!r}; this endpoint takes 'file' and {known}")

    def _data(self, part: _Part, data: bytes) -> None:
        if part.name == FILE_FIELD:
            self.upload.size += len(data)
            if self.upload.size > self.limits.max_file_bytes:
                raise ApiError(413, "file_too_large", _too_large(self.limits.max_file_bytes))
            self.target.write(data)
            return
        part.data.extend(data)
        if len(part.data) > self.limits.max_field_bytes:
            raise ApiError(413, "field_too_large",
                           f"the form field {part.name!r} is over {self.limits.max_field_bytes // 1024} KB; send a shorter value")

    def _part_ends(self, part: _Part) -> None:
        if part.name == FILE_FIELD:
            self.close()
            return
        try:
            text = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "validation", f"the form field {part.name!r} is not UTF-8 text") from None
        self.upload.fields.setdefault(part.name, []).append(text)

    def close(self) -> None:
        if self.target is not None:
            self.target.close()
            self.target = None


def _too_large(limit: int) -> str:
    return f"the file is over the limit of {limit // 1048576} MB (IMPORTER_MAX_FILE_MB); split it"
