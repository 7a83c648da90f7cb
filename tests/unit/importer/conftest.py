"""Builders for the importer's unit tests: every file is made in tmp_path, none is committed."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import openpyxl
import pytest


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, *, encoding: str = "utf-8", name: str = "leads.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return path

    return write


@pytest.fixture
def write_xlsx(tmp_path: Path) -> Callable[..., Path]:
    """Sheets as {name: {cell: value}} or {name: [row, ...]}; number formats via 'formats'."""

    def write(sheets: dict[str, Any], *, name: str = "leads.xlsx", formats: dict[str, str] | None = None) -> Path:
        workbook = openpyxl.Workbook()
        workbook.remove(workbook.active)
        for title, content in sheets.items():
            sheet = workbook.create_sheet(title)
            if isinstance(content, dict):
                for cell, value in content.items():
                    sheet[cell] = value
            else:
                for row in content:
                    sheet.append(row)
            for cell, number_format in (formats or {}).items():
                sheet[cell].number_format = number_format
        path = tmp_path / name
        workbook.save(path)
        return path

    return write


def rewrite_zip(source: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy an archive member by member; `change` returns new bytes, the same bytes, or None to drop."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
    return target


@pytest.fixture
def rewrite() -> Callable[..., Path]:
    return rewrite_zip
