"""CSV files: encoding and delimiter detected, records parsed strictly, each row with its line number."""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections import Counter
from collections.abc import Iterator

from services.importer.errors import FileRejected
from services.importer.readers.source import Cells, Limits, RowSource, data_rows, first_non_empty, trim
from services.importer.rows import UnreadableRow

DELIMITERS = (",", ";", "\t")
ENCODING_SAMPLE = 256 * 1024
_DELIMITER_SAMPLE = 64 * 1024
_DELIMITER_SAMPLE_RECORDS = 50
# Bytes that never occur in text; tab, LF, FF and CR do, and ESC/SUB show up in old exports.
_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1A, 0x1B}


def detect_encoding(head: bytes) -> str:
    """A Python codec name for the file's text: BOMs first, then UTF-16 by NUL pattern, UTF-8, CP1251."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    order = utf16_byte_order(head)
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


def strip_bom_and_space(head: bytes) -> bytes:
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.replace(b"\x00", b"").strip()


def utf16_byte_order(head: bytes) -> str | None:
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


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    sample = head[:8192]
    controls = sum(1 for byte in sample if byte in _CONTROL_BYTES)
    return controls > 0.05 * len(sample)


def open_csv(
    path: str | os.PathLike[str],
    *,
    encoding: str | None,
    delimiter: str | None,
    limits: Limits,
    start_after_row: int,
) -> RowSource:
    with open(path, "rb") as file:
        head = file.read(ENCODING_SAMPLE)
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
        header_row, header = first_non_empty(records)
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
        rows=data_rows(records, limits, start_after_row),
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
        yield number, trim([cell if cell != "" else None for cell in record]), True
