"""The layering the code keeps: import-linter's contracts (pyproject.toml), and no reach into a service's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_import_contracts_are_kept():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _owner(path: Path) -> str | None:
    """The service a file belongs to: its own package, or its own unit tests (tests/unit/<svc>/)."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "services" and len(parts) > 2:
        return f"services.{parts[1]}"
    if parts[:2] in (("tests", "unit"), ("tests", "component")) and len(parts) > 3:
        return f"services.{parts[2]}"
    return None


def _private_uses(path: Path) -> list[str]:
    """Private names of a service used from outside it: imported, or read off an imported module."""
    owner = _owner(path)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the service module it stands for
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("services."):
            service = ".".join(node.module.split(".")[:2])
            for alias in node.names:
                if service == owner:
                    continue
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = service
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("services.") and ".".join(alias.name.split(".")[:2]) != owner:
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_nothing_outside_a_service_uses_its_private_names():
    files = [p for folder in ("services", "crmkit", "crmctl", "bench", "tests") for p in (ROOT / folder).rglob("*.py")]
    found = [line for path in files for line in _private_uses(path)]
    assert not found, "\n".join(found)
