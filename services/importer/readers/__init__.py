"""Open an uploaded CSV or XLSX file safely and stream its rows with spreadsheet row numbers."""

from __future__ import annotations

import os

from services.importer.errors import FileRejected
from services.importer.readers.csv_reader import (
    ENCODING_SAMPLE,
    detect_delimiter,
    detect_encoding,
    looks_binary,
    open_csv,
    strip_bom_and_space,
    utf16_byte_order,
)
from services.importer.readers.source import Cells, Format, Limits, RowSource, to_text
from services.importer.readers.xlsx_reader import open_xlsx, inspect_xlsx

__all__ = ["Cells", "Format", "Limits", "RowSource", "detect_delimiter", "detect_encoding", "detect_format",
           "inspect_xlsx", "open_rows", "to_text"]

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def open_rows(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    limits: Limits = Limits(),
    start_after_row: int = 0,
) -> RowSource:
    """Open a CSV or XLSX file; rows up to `start_after_row` (a spreadsheet row number) are
    skipped without being converted, so a resumed import continues where it stopped."""
    size = os.path.getsize(path)
    if size > limits.max_file_bytes:
        raise FileRejected(
            "file_too_large",
            f"the file is {size / 1048576:.1f} MB, over the limit of {limits.max_file_bytes / 1048576:.0f} MB; "
            "split it into smaller files",
        )
    detected = detect_format(path)
    chosen = format or detected
    if chosen not in ("csv", "xlsx"):
        raise FileRejected("unsupported_format", f"format must be 'csv' or 'xlsx', not {chosen!r}")
    if chosen == "xlsx":
        return open_xlsx(path, sheet=sheet, limits=limits, start_after_row=start_after_row)
    return open_csv(path, encoding=encoding, delimiter=delimiter, limits=limits, start_after_row=start_after_row)


def detect_format(path: str | os.PathLike[str]) -> Format:
    """'xlsx' for a ZIP, 'csv' for text; refuses OLE2 (encrypted XLSX or .xls), binary and empty files."""
    with open(path, "rb") as file:
        head = file.read(ENCODING_SAMPLE)
        at_end = not file.read(1)
    if head.startswith(_OLE2_MAGIC[:4]):
        raise FileRejected(
            "protected_or_xls",
            "the file is password-protected or an old .xls; save it as an unprotected .xlsx",
        )
    if head.startswith(_ZIP_MAGICS):
        return "xlsx"
    if at_end and not strip_bom_and_space(head):
        raise FileRejected("empty_file", "the file is empty")
    if not utf16_byte_order(head) and looks_binary(head):
        raise FileRejected(
            "binary_file", "the file is binary, not a CSV; export the data as CSV (UTF-8) or .xlsx"
        )
    return "csv"
