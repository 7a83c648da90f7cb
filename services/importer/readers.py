"""Open an uploaded CSV or XLSX file safely and stream its rows with spreadsheet row numbers."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

from services.importer.domain import DEFAULT_MAX_CELL_CHARS, UnreadableRow
from services.importer.errors import FileRejected

Format = Literal["csv", "xlsx"]
Cells = list[str | None]

DELIMITERS = (",", ";", "\t")
_ENCODING_SAMPLE = 256 * 1024
_DELIMITER_SAMPLE = 64 * 1024
_DELIMITER_SAMPLE_RECORDS = 50
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# Bytes that never occur in text; tab, LF, FF and CR do, and ESC/SUB show up in old exports.
_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1A, 0x1B}
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_XML_BOMBS = tuple(
    marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY") for codec in ("utf-8", "utf-16-le", "utf-16-be")
)
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
        return _open_xlsx(path, sheet=sheet, limits=limits, start_after_row=start_after_row)
    return _open_csv(path, encoding=encoding, delimiter=delimiter, limits=limits, start_after_row=start_after_row)


def detect_format(path: str | os.PathLike[str]) -> Format:
    """'xlsx' for a ZIP, 'csv' for text; refuses OLE2 (encrypted XLSX or .xls), binary and empty files."""
    with open(path, "rb") as file:
        head = file.read(_ENCODING_SAMPLE)
        at_end = not file.read(1)
    if head.startswith(_OLE2_MAGIC[:4]):
        raise FileRejected(
            "protected_or_xls",
            "the file is password-protected or an old .xls; save it as an unprotected .xlsx",
        )
    if head.startswith(_ZIP_MAGICS):
        return "xlsx"
    if at_end and not _strip_bom_and_space(head):
        raise FileRejected("empty_file", "the file is empty")
    if not _utf16_byte_order(head) and _looks_binary(head):
        raise FileRejected(
            "binary_file", "the file is binary, not a CSV; export the data as CSV (UTF-8) or .xlsx"
        )
    return "csv"


def detect_encoding(head: bytes) -> str:
    """A Python codec name for the file's text: BOMs first, then UTF-16 by NUL pattern, UTF-8, CP1251."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    order = _utf16_byte_order(head)
    if order:
        # 'utf-16' reads and drops the BOM itself; without one the byte order has to be named.
        return "utf-16" if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else order
    try:
        # final=False: the sample may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1251"


def detect_delimiter(sample_text: str) -> str:
    """',' ';' or tab: the one splitting the first records into the most consistent field count."""
    lines = sample_text.splitlines(keepends=True)
    if len(lines) > 1 and not sample_text.endswith(("\n", "\r")):
        lines = lines[:-1]  # a cut-off last line would skew the counts
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        counts = []
        try:
            for record in csv.reader(lines, delimiter=delimiter):
                if any(cell.strip() for cell in record):
                    counts.append(len(record))
                if len(counts) >= _DELIMITER_SAMPLE_RECORDS:
                    break
        except csv.Error:
            continue
        if not counts:
            continue
        width, seen = Counter(counts).most_common(1)[0]
        if width < 2:
            continue
        score = (seen / len(counts), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


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


def _strip_bom_and_space(head: bytes) -> bytes:
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.replace(b"\x00", b"").strip()


def _utf16_byte_order(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    sample = head[:4096]
    pairs = len(sample) // 2
    if pairs < 2 or b"\x00" not in sample:
        return None
    even_zeros = sample[0 : pairs * 2 : 2].count(0)
    odd_zeros = sample[1 : pairs * 2 : 2].count(0)
    # Text in UTF-16 has ASCII (digits, spaces, delimiters, newlines) every few characters,
    # so one byte position is often zero and the other almost never is.
    if odd_zeros >= 0.1 * pairs and even_zeros <= 0.02 * pairs:
        order = "utf-16-le"
    elif even_zeros >= 0.1 * pairs and odd_zeros <= 0.02 * pairs:
        order = "utf-16-be"
    else:
        return None
    try:
        text = codecs.getincrementaldecoder(order)().decode(sample[: pairs * 2], final=False)
    except UnicodeDecodeError:
        return None
    controls = sum(1 for char in text if char < " " and char not in "\t\r\n")
    return order if controls <= 0.05 * max(len(text), 1) else None


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    sample = head[:8192]
    controls = sum(1 for byte in sample if byte in _CONTROL_BYTES)
    return controls > 0.05 * len(sample)


def _is_empty(cells: Cells) -> bool:
    if isinstance(cells, UnreadableRow):
        return False  # reported, not skipped
    return all(cell is None or not cell.strip() for cell in cells)


def _trim(cells: Cells) -> Cells:
    end = len(cells)
    while end and (cells[end - 1] is None or cells[end - 1] == ""):
        end -= 1
    return cells[:end] if end != len(cells) else cells


def _too_many_rows(limits: Limits) -> FileRejected:
    return FileRejected(
        "too_many_rows",
        f"the file has more than {limits.max_rows:,} data rows; split it into smaller files",
    )


# ---------------------------------------------------------------- CSV


def _open_csv(
    path: str | os.PathLike[str],
    *,
    encoding: str | None,
    delimiter: str | None,
    limits: Limits,
    start_after_row: int,
) -> RowSource:
    with open(path, "rb") as file:
        head = file.read(_ENCODING_SAMPLE)
    encoding = encoding or detect_encoding(head)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise FileRejected("unknown_encoding", f"unknown encoding {encoding!r}; use e.g. utf-8, cp1251 or utf-16")
    if delimiter is None:
        sample = head[: _DELIMITER_SAMPLE]
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
        delimiter = detect_delimiter(text)
    elif len(delimiter) != 1:
        raise FileRejected("bad_delimiter", f"the delimiter must be one character, not {delimiter!r}")
    del head

    binary = open(path, "rb")
    text_file = io.TextIOWrapper(binary, encoding=encoding, newline="")
    records = _csv_records(text_file, delimiter, encoding)
    try:
        header_row, header = _first_non_empty(records)
    except BaseException:
        text_file.close()
        raise
    if header_row == 0:
        text_file.close()
        raise FileRejected("empty_file", "the file is empty")
    if isinstance(header, UnreadableRow):
        text_file.close()
        raise FileRejected("malformed_csv", f"the header (row {header_row}) cannot be read: {header.reason}")
    return RowSource(
        header=[(cell or "").strip().lstrip("\ufeff") for cell in header],
        header_row=header_row,
        format="csv",
        rows=_data_rows(records, limits, start_after_row),
        close=text_file.close,
        encoding=encoding,
        delimiter=delimiter,
    )


def _csv_records(text_file: io.TextIOWrapper, delimiter: str, encoding: str) -> Iterator[tuple[int, Cells, bool]]:
    """(row number, cells, converted?) per record; every record counts as a row, as in Excel."""
    # Strict: a quote that never closes is an error, not a cell that silently swallows every row
    # after it; text after a closing quote is an error, not a cell quietly losing its quotes.
    reader = csv.reader(text_file, delimiter=delimiter, strict=True)
    number = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as error:
            raise FileRejected(
                "encoding_error",
                f"the file is not valid {encoding} near row {number + 1} ({error.reason}); "
                "save it as UTF-8 or name its encoding",
            ) from None
        except csv.Error as error:
            text = str(error)
            if "unexpected end of data" in text:
                raise FileRejected(
                    "malformed_csv",
                    f'row {number + 1} opens a quote (") that never closes, so it would swallow every row after '
                    "it; close the quote or remove it",
                ) from None
            if "field larger than field limit" in text:
                raise FileRejected(
                    "malformed_csv",
                    f"row {number + 1} has a cell over {csv.field_size_limit():,} characters: a quote that never "
                    f"closes, or a cell far longer than a lead field holds; fix that row",
                ) from None
            # Only this record is unreadable (the parser goes on at the next line): the row is
            # reported, the rest imported.
            number += 1
            yield number, UnreadableRow(f"the row cannot be read as CSV ({text}); check its quotes"), True
            continue
        number += 1
        yield number, _trim([cell if cell != "" else None for cell in record]), True


def _first_non_empty(records: Iterator[tuple[int, Cells, bool]]) -> tuple[int, Cells]:
    for number, cells, _ in records:
        if not _is_empty(cells):
            return number, cells
    return 0, []


def _data_rows(
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
            cells = _trim([to_text(value) for value in cells])
        if _is_empty(cells):
            continue
        count += 1
        if count > limits.max_rows:
            raise _too_many_rows(limits)
        yield number, cells


def _has_value(cells: Any, converted: bool) -> bool:
    if converted:
        return not _is_empty(cells)
    return any(value is not None and value != "" for value in cells)


# ---------------------------------------------------------------- XLSX


def inspect_xlsx(path: str | os.PathLike[str], limits: Limits = Limits()) -> int:
    """Refuse corrupt, bomb-like or non-XLSX archives before any parser sees them.

    Returns the uncompressed size of the worksheet XML (it decides the reader engine)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise FileRejected("corrupt_zip", "the file is not a valid XLSX (corrupt zip)") from None
    with archive:
        members = archive.infolist()
        names = {info.filename.lower() for info in members}
        if "[content_types].xml" not in names or not any(n.endswith("workbook.xml") for n in names):
            raise FileRejected(
                "not_xlsx", "the file is not an XLSX (it has no workbook.xml); save it as an Excel .xlsx workbook"
            )
        total = sum(info.file_size for info in members)
        if total > limits.max_uncompressed_bytes:
            raise FileRejected(
                "zip_bomb",
                f"the XLSX unpacks to {total / 1048576:.0f} MB, over the limit of "
                f"{limits.max_uncompressed_bytes / 1048576:.0f} MB; split it into smaller files",
            )
        for info in members:
            if info.flag_bits & 0x1:
                raise FileRejected(
                    "protected_or_xls", "the file is password-protected; save it as an unprotected .xlsx"
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size >= limits.ratio_check_min_bytes and ratio > limits.max_compression_ratio:
                raise FileRejected(
                    "zip_bomb",
                    f"the XLSX part {info.filename} is compressed {ratio:.0f}:1, which only a zip bomb does; "
                    "the file is refused",
                )
        sheet_bytes = 0
        for info in members:
            if info.filename.lower().endswith(_XML_SUFFIXES):
                _scan_xml_part(archive, info)
            if info.filename.lower().startswith(("xl/worksheets/", "xl/sharedstrings")):
                sheet_bytes += info.file_size
        return sheet_bytes


def _scan_xml_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Stream one part looking for DTDs; reading it whole also checks its CRC, so the sizes
    the archive declares (and the bomb checks rely on) cannot lie."""
    overlap = max(len(marker) for marker in _XML_BOMBS) - 1
    tail = b""
    try:
        with archive.open(info) as part:
            while chunk := part.read(1024 * 1024):
                window = tail + chunk
                if any(marker in window for marker in _XML_BOMBS):
                    raise FileRejected(
                        "xml_entities",
                        f"the XLSX part {info.filename} declares a DOCTYPE or entities, which Excel never writes; "
                        "the file is refused",
                    )
                tail = window[-overlap:]
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError):
        raise FileRejected("corrupt_zip", "the file is not a valid XLSX (corrupt zip)") from None


def _pick_sheet(names: list[str], wanted: str | None) -> str:
    if not names:
        raise FileRejected("no_sheets", "the workbook has no worksheets")
    if wanted is None:
        return names[0]
    if wanted in names:
        return wanted
    folded = [name for name in names if name.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise FileRejected(
        "sheet_not_found",
        f"the workbook has no sheet {wanted!r}; available sheets: {', '.join(repr(n) for n in names)}",
    )


def _open_xlsx(
    path: str | os.PathLike[str],
    *,
    sheet: str | None,
    limits: Limits,
    start_after_row: int,
) -> RowSource:
    sheet_bytes = inspect_xlsx(path, limits)
    engine = "calamine" if sheet_bytes <= limits.calamine_max_sheet_bytes else "openpyxl"
    if engine == "calamine":
        try:
            name, raw_rows, close = _calamine_rows(path, sheet)
        except FileRejected:
            raise
        except Exception:  # calamine is an accelerator; openpyxl is the reference reader
            engine = "openpyxl"
    if engine == "openpyxl":
        name, raw_rows, close = _openpyxl_rows(path, sheet)

    records = _xlsx_records(raw_rows)
    header_row, header_values = 0, []
    try:
        for number, values, _ in records:
            cells = _trim([to_text(value) for value in values])
            if not _is_empty(cells):
                header_row, header_values = number, cells
                break
    except BaseException:
        close()
        raise
    if header_row == 0:
        close()
        raise FileRejected("empty_file", f"the sheet {name!r} is empty")
    return RowSource(
        header=[(cell or "").strip() for cell in header_values],
        header_row=header_row,
        format="xlsx",
        rows=_data_rows(records, limits, start_after_row),
        close=close,
        sheet=name,
        engine=engine,
    )


def _xlsx_records(raw_rows: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, list[Any], bool]]:
    try:
        for number, values in raw_rows:
            yield number, list(values), False
    except FileRejected:
        raise
    except Exception as error:  # a parser failing half way must still end as a clear rejection
        raise FileRejected("corrupt_xlsx", f"the XLSX cannot be read ({error}); re-save it in Excel") from None


def _calamine_rows(path: str | os.PathLike[str], wanted: str | None):
    import python_calamine

    workbook = python_calamine.CalamineWorkbook.from_path(os.fspath(path))
    try:
        names = [
            meta.name for meta in workbook.sheets_metadata if meta.typ == python_calamine.SheetTypeEnum.WorkSheet
        ]
        name = _pick_sheet(names, wanted)
        data = workbook.get_sheet_by_name(name)
    except BaseException:
        workbook.close()
        raise
    start = data.start
    # iter_rows pads the rows above the data but starts at the first used column.
    skipped_columns = [None] * (start[1] if start else 0)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for number, values in enumerate(data.iter_rows(), start=1):
            yield number, skipped_columns + values if skipped_columns else values

    return name, rows(), workbook.close


def _openpyxl_rows(path: str | os.PathLike[str], wanted: str | None):
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(os.fspath(path), read_only=True, data_only=True)
    except Exception as error:
        raise FileRejected("corrupt_xlsx", f"the XLSX cannot be read ({error}); re-save it in Excel") from None
    try:
        name = _pick_sheet([ws.title for ws in workbook.worksheets], wanted)
        worksheet = workbook[name]
    except BaseException:
        workbook.close()
        raise

    def rows() -> Iterator[tuple[int, tuple[Any, ...]]]:
        # read_only mode yields the empty rows in between too, so positions are row numbers.
        yield from enumerate(worksheet.iter_rows(values_only=True), start=1)

    return name, rows(), workbook.close
