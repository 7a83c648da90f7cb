"""pyflakes over the code: no unused imports or variables, no undefined names."""

from __future__ import annotations

from pathlib import Path

import pytest

pyflakes_api = pytest.importorskip("pyflakes.api")
from pyflakes.reporter import Reporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = ("contracts", "crmkit", "crmctl", "services", "bench", "tests")


class _Collect(Reporter):
    def __init__(self) -> None:
        self.found: list[str] = []

    def unexpectedError(self, filename, message):  # noqa: N802  (pyflakes' interface)
        self.found.append(f"{filename}: {message}")

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        text = str(message)
        # A package's __init__ re-exports what it imports: that is its purpose, not a leftover.
        if text.split(":", 1)[0].endswith("__init__.py") and "imported but unused" in text:
            return
        self.found.append(text)


def test_the_code_is_clean_for_pyflakes():
    reporter = _Collect()
    paths = [str(path) for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py")) if ".venv" not in path.parts]
    for path in paths:
        pyflakes_api.checkPath(path, reporter)
    assert reporter.found == [], "\n".join(reporter.found)
