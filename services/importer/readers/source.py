"""What every reader gives: the limits a file must keep, the rows it yields with their numbers, and cell text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from services.importer.errors import FileRejected
from services.importer.rows import DEFAULT_MAX_CELL_CHARS, UnreadableRow

Format = Literal["csv", "xlsx"]
Cells = list[str | None]

# Excel error values: calamine gives an empty cell, openpyxl the code; both become empty.
_EXCEL_ERRORS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"})


@dataclass(frozen=True)
class Limits:
    """Guards against files that would exhaust the importer; all sizes in bytes."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_rows: int = 1_000_000
    max_cell_chars: int = DEFAULT_MAX_CELL_CHARS
    max_uncompressed_bytes: int = 500 * 1024 * 1024
    max_compression_ratio: float = 200.0
    # Members smaller than this are never a bomb, however well they compress.
    ratio_check_min_bytes: int = 1024 * 1024
    # calamine holds the whole sheet in native memory (about 1.5x the sheet XML); above this
    # the openpyxl streaming reader keeps memory flat instead.
    calamine_max_sheet_bytes: int = 32 * 1024 * 1024


class RowSource:
    """An open file's header and its data rows as (spreadsheet row number, cells)."""

    def __init__(
        self,
        *,
        header: list[str],
        header_row: int,
        format: Format,
        rows: Iterator[tuple[int, Cells]],
        close: Callable[[], None],
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | None = None,
        engine: str | None = None,
    ) -> None:
        self.header = header
        self.header_row = header_row
        self.format = format
        self.encoding = encoding
        self.delimiter = delimiter
        self.sheet = sheet
        self.engine = engine
        self._rows = rows
        self._close = close
        self._closed = False

    def __iter__(self) -> Iterator[tuple[int, Cells]]:
        try:
            yield from self._rows
        finally:
            self.close()

    def close(self) -> None:
        # Also called when iteration ends, and calamine refuses a second close.
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def to_text(value: Any) -> str | None:
    """A spreadsheet value as the text an importer works with; None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if value == "" or value in _EXCEL_ERRORS else value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # Phones and INNs arrive as floats (79123456789.0); they must not gain a '.0'.
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def is_empty(cells: Cells) -> bool:
    if isinstance(cells, UnreadableRow):
        return False  # reported, not skipped
    return all(cell is None or not cell.strip() for cell in cells)


def trim(cells: Cells) -> Cells:
    end = len(cells)
    while end and (cells[end - 1] is None or cells[end - 1] == ""):
        end -= 1
    return cells[:end] if end != len(cells) else cells


def too_many_rows(limits: Limits) -> FileRejected:
    return FileRejected(
        "too_many_rows",
        f"the file has more than {limits.max_rows:,} data rows; split it into smaller files",
    )


def first_non_empty(records: Iterator[tuple[int, Cells, bool]]) -> tuple[int, Cells]:
    for number, cells, _ in records:
        if not is_empty(cells):
            return number, cells
    return 0, []


def data_rows(
    records: Iterator[tuple[int, Any, bool]],
    limits: Limits,
    start_after_row: int,
) -> Iterator[tuple[int, Cells]]:
    """Skip empty rows and rows already done, and enforce the row limit."""
    count = 0
    for number, cells, converted in records:
        if number <= start_after_row:
            # Counted without converting so a resumed import still meets the same limit.
            if _has_value(cells, converted):
                count += 1
            continue
        if not converted:
            cells = trim([to_text(value) for value in cells])
        if is_empty(cells):
            continue
        count += 1
        if count > limits.max_rows:
            raise too_many_rows(limits)
        yield number, cells


def _has_value(cells: Any, converted: bool) -> bool:
    if converted:
        return not is_empty(cells)
    return any(value is not None and value != "" for value in cells)
