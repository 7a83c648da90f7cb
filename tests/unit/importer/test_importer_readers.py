"""Reading CSV and XLSX files: detection, cell values, row numbers, guards and limits."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest

from services.importer import readers
from services.importer.readers import xlsx_reader
from services.importer.rows import UnreadableRow, row_to_lead
from services.importer.errors import FileRejected
from services.importer.mapping import build_mapping
from services.importer.readers import Limits, detect_delimiter, detect_encoding, detect_format, open_rows

CYRILLIC_CSV = "Название;Телефон;Компания\nЗаявка;8 912 345-67-89;ООО «Ромашка»\nВторая;+79120000000;Ёлка\n"


def read_all(path: Path, **options) -> tuple[list[str], list[tuple[int, list[str | None]]], readers.RowSource]:
    with open_rows(path, **options) as source:
        return source.header, list(source), source


# ---------------------------------------------------------------- CSV encodings and delimiters


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("cp1251", "cp1251"),
        ("utf-16", "utf-16"),  # Python writes a BOM and native (little-endian) order
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_each_encoding_reads_cyrillic(write_csv, codec, expected):
    path = write_csv(CYRILLIC_CSV, encoding=codec)

    header, rows, source = read_all(path)

    assert source.encoding == expected
    assert source.delimiter == ";"
    assert header == ["Название", "Телефон", "Компания"]
    assert rows == [
        (2, ["Заявка", "8 912 345-67-89", "ООО «Ромашка»"]),
        (3, ["Вторая", "+79120000000", "Ёлка"]),
    ]


def test_utf16_le_with_bom_is_detected_from_head():
    head = "\ufeffИмя,Телефон\n".encode("utf-16-le")
    assert detect_encoding(head) == "utf-16"
    assert detect_encoding("Имя,Телефон\n".encode("utf-16-le")) == "utf-16-le"
    assert detect_encoding("Имя".encode("utf-8")[:-1]) == "utf-8"  # cut inside a character
    assert detect_encoding("Имя".encode("cp1251")) == "cp1251"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_each_delimiter_is_detected(write_csv, delimiter):
    lines = [["Title", "Phone", "Description"], ["A", "89123456789", "x, y; z"], ["B", "", "w"]]
    text = "".join(
        delimiter.join(f'"{cell}"' if ("," in cell or ";" in cell) else cell for cell in line) + "\n"
        for line in lines
    )
    path = write_csv(text)

    header, rows, source = read_all(path)

    assert source.delimiter == delimiter
    assert header == ["Title", "Phone", "Description"]
    assert rows == [(2, ["A", "89123456789", "x, y; z"]), (3, ["B", None, "w"])]


def test_delimiter_detection_respects_quotes():
    sample = 'name,comment\n"Ivanov; Ivan","a;b;c"\n"Petrov","d;e"\n'
    assert detect_delimiter(sample) == ","
    assert detect_delimiter("single column\nvalue\n") == ","


def test_encoding_and_delimiter_overrides(write_csv):
    # Pure-ASCII-looking bytes in CP1251 would be detected; the override must win anyway.
    path = write_csv("Title|Phone\nЛид|89123456789\n", encoding="cp1251")

    header, rows, source = read_all(path, encoding="cp1251", delimiter="|")

    assert (source.encoding, source.delimiter) == ("cp1251", "|")
    assert header == ["Title", "Phone"]
    assert rows == [(2, ["Лид", "89123456789"])]


def test_wrong_encoding_override_is_a_clear_error(write_csv):
    path = write_csv("Название\nЛид\n", encoding="cp1251")

    with pytest.raises(FileRejected) as caught:
        read_all(path, encoding="utf-8")

    assert caught.value.code == "encoding_error"


def test_csv_rows_keep_record_numbers_and_skip_empty_rows(write_csv):
    path = write_csv('Title,Description\n\nA,"line one\nline two"\n,\nB,\n  , \nC,x,,,\n')

    header, rows, _ = read_all(path)

    assert header == ["Title", "Description"]
    # Row 2 is blank, row 4 and 6 only hold empty cells; the quoted newline stays one row.
    assert rows == [(3, ["A", "line one\nline two"]), (5, ["B"]), (7, ["C", "x"])]


def test_unclosed_quote_rejects_the_file(write_csv):
    path = write_csv('Title,Description\nA,"never closed\n' + "x" * 200_000 + "\n")

    with pytest.raises(FileRejected) as caught:
        read_all(path)

    assert caught.value.code == "malformed_csv"


def test_a_short_unclosed_quote_rejects_the_file_instead_of_swallowing_the_rows_after_it(write_csv):
    # Under the field limit, a lenient parser would return one cell holding "B,2\nC,3\n" and two rows lost.
    path = write_csv('Title,Phone\nA,"1\nB,2\nC,3\n')

    with pytest.raises(FileRejected) as caught:
        read_all(path)

    assert caught.value.code == "malformed_csv" and "row 2" in caught.value.message and "never closes" in caught.value.message


def test_text_after_a_closing_quote_makes_that_row_an_error_and_the_rest_is_read(write_csv):
    path = write_csv('Title,Phone\nA,"1"2\nB,3\n')

    _, rows, _ = read_all(path)

    assert [number for number, _ in rows] == [2, 3]
    assert isinstance(rows[0][1], UnreadableRow) and "quote" in rows[0][1].reason
    assert rows[1] == (3, ["B", "3"])
    mapping = build_mapping(["Title", "Phone"], None)
    result = row_to_lead(2, rows[0][1], mapping, pipeline_id=None)
    assert not result.ok and result.errors == [(None, rows[0][1].reason)]


def test_an_unreadable_header_rejects_the_file(write_csv):
    with pytest.raises(FileRejected) as caught:
        read_all(write_csv('"Ti"tle,Phone\nA,1\n'))

    assert caught.value.code == "malformed_csv" and "header" in caught.value.message


# ---------------------------------------------------------------- refused files


def test_ole2_header_is_refused(tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 1024)

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "protected_or_xls"
    assert "password-protected or an old .xls; save it as an unprotected .xlsx" in caught.value.message


def test_binary_file_renamed_csv_is_refused(tmp_path):
    with_nuls = tmp_path / "a.csv"
    with_nuls.write_bytes(bytes(range(256)) * 64)
    controls = tmp_path / "b.csv"
    controls.write_bytes(bytes([0x01, 0x02, 0x41, 0x03, 0x7F, 0x42, 0x05]) * 500)

    for path in (with_nuls, controls):
        with pytest.raises(FileRejected) as caught:
            open_rows(path)
        assert caught.value.code == "binary_file"
        assert "binary, not a CSV" in caught.value.message


@pytest.mark.parametrize("content", [b"", b"   \r\n\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n", b"\xff\xfe"])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "leads.csv"
    path.write_bytes(content)

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "empty_file"
    assert caught.value.message == "the file is empty"


def test_file_size_limit(write_csv):
    path = write_csv("Title\n" + "lead\n" * 100)

    with pytest.raises(FileRejected) as caught:
        open_rows(path, limits=Limits(max_file_bytes=100))

    assert caught.value.code == "file_too_large"


def test_row_limit_counts_data_rows(write_csv):
    path = write_csv("Title\n" + "lead\n" * 5)

    assert len(read_all(path, limits=Limits(max_rows=5))[1]) == 5
    with pytest.raises(FileRejected) as caught:
        read_all(path, limits=Limits(max_rows=4))
    assert caught.value.code == "too_many_rows"


def test_corrupt_zip_is_refused(tmp_path, write_xlsx):
    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"PK\x03\x04" + b"\x17" * 2000)
    good = write_xlsx({"Leads": [["Title"], ["A"]]})
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    for path in (garbage, truncated):
        with pytest.raises(FileRejected) as caught:
            open_rows(path)
        assert caught.value.code == "corrupt_zip"
        assert caught.value.message == "the file is not a valid XLSX (corrupt zip)"


def test_zip_without_workbook_is_not_xlsx(tmp_path):
    path = tmp_path / "document.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "not_xlsx"


def test_zip_bomb_by_compression_ratio_is_refused(tmp_path):
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            chunk = b" " * (1024 * 1024)
            for _ in range(40):  # 40 MB of spaces packs into a few dozen KB
                member.write(chunk)
    assert path.stat().st_size < 1024 * 1024

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "zip_bomb"


def test_zip_bomb_by_total_size_is_refused(write_xlsx):
    path = write_xlsx({"Leads": [["Title"], ["A"]]})

    with pytest.raises(FileRejected) as caught:
        open_rows(path, limits=Limits(max_uncompressed_bytes=1000))

    assert caught.value.code == "zip_bomb"


def test_xml_entity_bomb_is_refused(tmp_path, write_xlsx, rewrite):
    good = write_xlsx({"Leads": [["Title"], ["A"]]})
    doctype = b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'

    def add_doctype(name: str, data: bytes) -> bytes:
        if name != "xl/worksheets/sheet1.xml":
            return data
        return b'<?xml version="1.0" encoding="UTF-8"?>' + doctype + data.replace(b">A<", b">&lol2;<")

    path = rewrite(good, tmp_path / "entities.xlsx", add_doctype)

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "xml_entities"


# ---------------------------------------------------------------- XLSX values and sheets


def make_typed_workbook(write_xlsx) -> Path:
    return write_xlsx(
        {
            "Leads": {
                "A1": "Title", "B1": "Phone", "C1": "Date", "D1": "Created at", "E1": "Quantity", "F1": "INN",
                "A2": "First", "B2": 79123456789, "C2": 45000, "D2": dt.datetime(2024, 1, 15, 10, 30),
                "E2": 2.0, "F2": "0123456789",
                # row 3 empty: row numbers must stay the spreadsheet's
                "A4": "Second", "B4": 79123456789.0, "C4": dt.date(2024, 2, 29), "E4": 2.5, "F4": "#N/A",
                "G4": None, "A5": None,
                "A6": "Third", "B6": "+7 912 000-00-00", "C6": dt.datetime(2024, 3, 1), "E6": True,
            },
            "Other": [["Title"], ["Elsewhere"]],
        },
        formats={"C2": "dd.mm.yyyy", "D2": "yyyy-mm-dd hh:mm"},
    )


def add_trailing_blanks(path: Path) -> Path:
    import openpyxl
    from openpyxl.styles import Font

    workbook = openpyxl.load_workbook(path)
    sheet = workbook["Leads"]
    # Styled but empty cells stretch the used range: trailing empty columns and rows.
    for cell in ("K1", "K6", "A20", "M30"):
        sheet[cell].font = Font(bold=True)
    sheet["L7"] = ""
    workbook.save(path)
    return path


def test_xlsx_values_dates_phones_and_row_numbers(write_xlsx):
    path = add_trailing_blanks(make_typed_workbook(write_xlsx))

    header, rows, source = read_all(path)

    assert (source.format, source.sheet, source.engine) == ("xlsx", "Leads", "calamine")
    assert header == ["Title", "Phone", "Date", "Created at", "Quantity", "INN"]
    assert rows == [
        (2, ["First", "79123456789", "2023-03-15", "2024-01-15T10:30:00", "2", "0123456789"]),
        (4, ["Second", "79123456789", "2024-02-29", None, "2.5"]),
        (6, ["Third", "+7 912 000-00-00", "2024-03-01", None, "TRUE"]),
    ]


def test_calamine_and_openpyxl_give_the_same_rows(write_xlsx, tmp_path):
    offset = write_xlsx({"Data": {"C3": "Title", "D3": "Phone", "C4": "A", "D4": 79001112233.0, "E9": 1.25}}, name="o.xlsx")
    for path in (add_trailing_blanks(make_typed_workbook(write_xlsx)), offset):
        fast = read_all(path)
        streaming = read_all(path, limits=Limits(calamine_max_sheet_bytes=0))

        assert fast[2].engine == "calamine" and streaming[2].engine == "openpyxl"
        assert fast[0] == streaming[0]
        assert fast[1] == streaming[1]
        assert fast[2].header_row == streaming[2].header_row

    assert read_all(offset)[1] == [(4, [None, None, "A", "79001112233"]), (9, [None, None, None, None, "1.25"])]


def test_calamine_failure_falls_back_to_openpyxl(write_xlsx, monkeypatch):
    path = make_typed_workbook(write_xlsx)
    expected = read_all(path)[1]

    def broken(*args, **kwargs):
        raise RuntimeError("calamine cannot read this")

    monkeypatch.setattr(xlsx_reader, "_calamine_rows", broken)
    header, rows, source = read_all(path)

    assert source.engine == "openpyxl"
    assert rows == expected


def test_named_sheet_and_missing_sheet(write_xlsx):
    path = make_typed_workbook(write_xlsx)

    header, rows, source = read_all(path, sheet="Other")
    assert (source.sheet, header, rows) == ("Other", ["Title"], [(2, ["Elsewhere"])])
    assert read_all(path, sheet=" other ")[2].sheet == "Other"

    with pytest.raises(FileRejected) as caught:
        open_rows(path, sheet="Лиды")
    assert caught.value.code == "sheet_not_found"
    assert "'Leads', 'Other'" in caught.value.message


def test_empty_sheet_is_refused(write_xlsx):
    path = write_xlsx({"Empty": []})

    with pytest.raises(FileRejected) as caught:
        open_rows(path)

    assert caught.value.code == "empty_file"


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_resume_after_a_row_yields_only_later_rows(write_csv, write_xlsx, kind):
    lines = [["Title", "Phone"]] + [[f"Lead {i}", f"8912000000{i}"] for i in range(2, 10)]
    if kind == "csv":
        path = write_csv("".join(",".join(line) + "\n" for line in lines))
    else:
        path = write_xlsx({"Leads": lines})

    full = read_all(path)[1]
    resumed = read_all(path, start_after_row=6)[1]

    assert [number for number, _ in full] == list(range(2, 10))
    assert resumed == [row for row in full if row[0] > 6]
    # The skipped rows still count towards the row limit.
    with pytest.raises(FileRejected):
        read_all(path, start_after_row=6, limits=Limits(max_rows=7))


def test_detect_format_by_magic_bytes(write_csv, write_xlsx):
    assert detect_format(write_csv("Title\nA\n")) == "csv"
    assert detect_format(write_xlsx({"Leads": [["Title"]]}, name="named-like-a.csv")) == "xlsx"


def test_to_text_normalises_spreadsheet_values():
    assert readers.to_text(79123456789.0) == "79123456789"
    assert readers.to_text(1.5) == "1.5"
    assert readers.to_text(dt.datetime(2024, 5, 1)) == "2024-05-01"
    assert readers.to_text(dt.time(9, 5)) == "09:05:00"
    assert readers.to_text("") is None
    assert readers.to_text("#DIV/0!") is None
