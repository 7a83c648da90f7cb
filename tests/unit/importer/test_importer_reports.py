"""Error reports (CSV and XLSX) and the import template."""

from __future__ import annotations

import csv

import openpyxl
import pytest

from services.importer.rows import row_to_lead
from services.importer.mapping import LEAD_FIELDS, build_mapping
from services.importer.readers import open_rows
from services.importer.reports import ErrorReportWriter, neutralize, write_error_report, write_template

HEADER = ["Название", "Телефон", "Комментарий"]
DANGEROUS = ["=HYPERLINK(\"http://evil\")", "+7 912", "-1+2", "@SUM(A1)", "\tTAB", "\rCR", "Обычный текст"]


def read_report(path, format):
    if format == "csv":
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to show Cyrillic
        with open(path, encoding="utf-8-sig", newline="") as file:
            return list(csv.reader(file))
    workbook = openpyxl.load_workbook(path, read_only=True)
    rows = [["" if value is None else value for value in values] for values in workbook.active.iter_rows(values_only=True)]
    workbook.close()
    return rows


def test_neutralize_quotes_formula_starts_only():
    assert [neutralize(value) for value in DANGEROUS] == [
        "'=HYPERLINK(\"http://evil\")", "'+7 912", "'-1+2", "'@SUM(A1)", "'\tTAB", "'\rCR", "Обычный текст",
    ]
    assert neutralize(5) == 5


@pytest.mark.parametrize("format", ["csv", "xlsx"])
def test_error_report_columns_and_formula_neutralisation(tmp_path, format):
    path = tmp_path / f"errors.{format}"
    errors = [
        (2, "Телефон", "'12' is not a phone number", ["Лид", "12", None]),
        (5, "Название", "=cmd|' /C calc'!A0", DANGEROUS),
    ]

    written = write_error_report(path, ["=Название", "Телефон", "Комментарий"], errors, format=format)

    rows = read_report(path, format)
    assert written == 2
    assert rows[0] == ["row", "column", "reason", "'=Название", "Телефон", "Комментарий"]
    assert rows[1] == [2 if format == "xlsx" else "2", "Телефон", "'12' is not a phone number", "Лид", "12", ""]
    assert rows[2][2] == "'=cmd|' /C calc'!A0"
    expected = ["'" + value if value[0] in "=+-@\t\r" else value for value in DANGEROUS]
    if format == "xlsx":
        # XML parsers turn a bare CR into LF on reading; the quote in front is what matters.
        expected = [value.replace("\r", "\n") for value in expected]
    assert rows[2][3:] == expected
    for line in rows:
        for value in line:
            assert not (isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"))


def test_xlsx_report_has_no_formula_cells(tmp_path):
    path = tmp_path / "errors.xlsx"
    write_error_report(path, HEADER, [(3, None, "bad", DANGEROUS)], format="xlsx")

    sheet = openpyxl.load_workbook(path).active
    assert all(cell.data_type != "f" for line in sheet.iter_rows() for cell in line)


def test_report_writer_streams_and_drops_control_characters(tmp_path):
    path = tmp_path / "errors.xlsx"
    with ErrorReportWriter(path, HEADER, format="xlsx", language="ru") as writer:
        for number in range(2, 1002):
            writer.write(number, "Телефон", "bad", ["a\x00b\x1fc", "x" * 40_000, None])

    rows = read_report(path, "xlsx")
    assert rows[0][:3] == ["строка", "столбец", "причина"]
    assert len(rows) == 1001
    assert rows[1][3] == "abc" and len(rows[1][4]) < 32_768


@pytest.mark.parametrize("format", ["csv", "xlsx"])
@pytest.mark.parametrize("language", ["ru", "en"])
def test_template_round_trips_through_reader_mapping_and_domain(tmp_path, format, language):
    path = tmp_path / f"template.{format}"

    write_template(path, format=format, language=language)

    with open_rows(path) as source:
        mapping = build_mapping(source.header)
        rows = list(source)
    assert sorted(mapping.columns.values()) == sorted(LEAD_FIELDS)
    assert mapping.unknown_columns == [] and mapping.warnings == []
    assert [number for number, _ in rows] == [2]
    result = row_to_lead(2, rows[0][1], mapping, pipeline_id="default")
    assert result.ok, result.errors
    assert result.lead["contact"]["phone"] == "+79123456789"
    assert result.lead["need_maturity"] == "interested"
