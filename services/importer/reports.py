"""Error reports and the import template, written as streams to CSV or XLSX files."""

from __future__ import annotations

import csv
import os
from typing import Any, Iterable, Literal, Sequence

from services.importer.mapping import LEAD_FIELDS, canonical_header

ReportFormat = Literal["csv", "xlsx"]

# A spreadsheet treats a cell starting with these as a formula (CSV/formula injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_EXCEL_MAX_CELL_CHARS = 32767
_REPORT_LABELS = {"en": ("row", "column", "reason"), "ru": ("строка", "столбец", "причина")}

TEMPLATE_EXAMPLE: dict[str, dict[str, str]] = {
    "ru": {
        "title": "Заявка с сайта на поставку оборудования",
        "contact_name": "Иванов Иван Иванович",
        "contact_phone": "8 912 345-67-89",
        "contact_email": "ivanov@example.ru",
        "company_name": "ООО «Ромашка»",
        "company_inn": "7701234567",
        "source": "website",
        "marketing_event": "Выставка «Иннопром»",
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "spring_sale",
        "need_maturity": "заинтересован",
        "description": "Просит перезвонить после 15:00",
    },
    "en": {
        "title": "Website enquiry: equipment supply",
        "contact_name": "John Smith",
        "contact_phone": "8 912 345-67-89",
        "contact_email": "john.smith@example.com",
        "company_name": "Acme LLC",
        "company_inn": "7701234567",
        "source": "website",
        "marketing_event": "Innoprom fair",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring_sale",
        "need_maturity": "interested",
        "description": "Call back after 3 pm",
    },
}


def neutralize(value: Any) -> Any:
    """Make a text cell inert in Excel/LibreOffice by quoting a leading formula character."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class ErrorReportWriter:
    """Writes one line per rejected row as the errors arrive, so memory stays flat.

    Columns: row, column, reason, then the row's original cells under the file's header."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Sequence[str],
        *,
        format: ReportFormat = "csv",
        language: str = "en",
    ) -> None:
        if format not in ("csv", "xlsx"):
            raise ValueError(f"format must be 'csv' or 'xlsx', not {format!r}")
        self.path = path
        self.format = format
        self.rows_written = 0
        labels = list(_REPORT_LABELS.get(language, _REPORT_LABELS["en"]))
        self._sink = _CsvSink(path) if format == "csv" else _XlsxSink(path, "errors")
        self._sink.write(labels + [("" if name is None else name) for name in header])

    def write(self, row_number: int, column: str | None, reason: str, cells: Sequence[str | None]) -> None:
        self._sink.write([row_number, column or "", reason, *("" if cell is None else cell for cell in cells)])
        self.rows_written += 1

    def close(self) -> None:
        self._sink.close()

    def __enter__(self) -> ErrorReportWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_error_report(
    path: str | os.PathLike[str],
    header: Sequence[str],
    errors: Iterable[tuple[int, str | None, str, Sequence[str | None]]],
    *,
    format: ReportFormat = "csv",
    language: str = "en",
) -> int:
    """Write (row, column, reason, cells) tuples from any iterable; returns how many were written."""
    with ErrorReportWriter(path, header, format=format, language=language) as writer:
        for row_number, column, reason, cells in errors:
            writer.write(row_number, column, reason, cells)
        return writer.rows_written


def write_template(path: str | os.PathLike[str], format: ReportFormat = "xlsx", language: str = "ru") -> None:
    """An import template: one canonical header per lead field and one example row."""
    header = canonical_header(language)
    example = TEMPLATE_EXAMPLE[language]
    if format == "csv":
        # A Russian Excel opens ';'-separated CSV into columns; an English one expects ','.
        sink: _CsvSink | _XlsxSink = _CsvSink(path, delimiter=";" if language == "ru" else ",")
    elif format == "xlsx":
        sink = _XlsxSink(path, "Лиды" if language == "ru" else "Leads", column_width=22)
    else:
        raise ValueError(f"format must be 'csv' or 'xlsx', not {format!r}")
    sink.write(header)
    sink.write([example.get(name, "") for name in LEAD_FIELDS])
    sink.close()


class _CsvSink:
    def __init__(self, path: str | os.PathLike[str], delimiter: str = ",") -> None:
        # utf-8-sig: the BOM is what makes Excel read the file as UTF-8 and show Cyrillic.
        self._file = open(path, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._file, delimiter=delimiter)

    def write(self, values: list[Any]) -> None:
        self._writer.writerow([neutralize(value) for value in values])

    def close(self) -> None:
        self._file.close()


class _XlsxSink:
    def __init__(self, path: str | os.PathLike[str], title: str, column_width: float | None = None) -> None:
        from openpyxl import Workbook
        from openpyxl.utils import get_column_letter

        self._path = path
        self._workbook = Workbook(write_only=True)
        self._sheet = self._workbook.create_sheet(title)
        if column_width:
            # write_only sheets take column widths only before the first row.
            for index in range(1, 64):
                self._sheet.column_dimensions[get_column_letter(index)].width = column_width

    def write(self, values: list[Any]) -> None:
        self._sheet.append([_xlsx_safe(value) for value in values])

    def close(self) -> None:
        self._workbook.save(self._path)
        self._workbook.close()


def _xlsx_safe(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # openpyxl refuses control characters and Excel cells hold at most 32767 characters.
    return neutralize(ILLEGAL_CHARACTERS_RE.sub("", value)[:_EXCEL_MAX_CELL_CHARS - 1])

