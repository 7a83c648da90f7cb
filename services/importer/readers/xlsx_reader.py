"""XLSX files: zip and XML bombs refused before reading, then calamine (fast) or openpyxl (flat memory) rows."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from typing import Any


from services.importer.errors import FileRejected
from services.importer.readers.source import Limits, RowSource, data_rows, is_empty, trim, to_text

_XML_SUFFIXES = (".xml", ".rels", ".vml")
_XML_BOMBS = tuple(
    marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY") for codec in ("utf-8", "utf-16-le", "utf-16-be")
)


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


def open_xlsx(
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
            cells = trim([to_text(value) for value in values])
            if not is_empty(cells):
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
        rows=data_rows(records, limits, start_after_row),
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
