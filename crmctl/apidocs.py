"""The published API documents: each service's OpenAPI and AsyncAPI, generated from the code into docs/api/.

Run ``python -m crmctl.apidocs`` after changing a route or a contract, and commit docs/api/; a test
fails while the committed documents differ from the generated ones.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from .services import SERVICES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"


def _service(name: str) -> Any:
    """The service as ``create_app`` builds it, with fixed endpoints so the documents do not depend on the machine."""
    settings_module = importlib.import_module(f"services.{name}.settings")
    settings_class = next(v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings"
                          and getattr(v, "__module__", "") == settings_module.__name__)
    spec = next(s for s in SERVICES if s.name == name)
    settings = settings_class(kafka_bootstrap_servers="127.0.0.1:9092", mongodb_url="mongodb://127.0.0.1:27017/",
                              topic_prefix="", http_port=spec.port)
    return importlib.import_module(f"services.{name}.app").create_app(settings)


def documents() -> dict[str, dict[str, Any]]:
    """File name → document, for every service."""
    found: dict[str, dict[str, Any]] = {}
    for spec in SERVICES:
        service = _service(spec.name)
        found[f"{spec.name}.openapi.json"] = service.openapi()
        found[f"{spec.name}.asyncapi.json"] = service.asyncapi()
    return found


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def differences(folder: Path = DOCS) -> list[str]:
    """Names of the documents whose committed copy is missing or differs from the code's."""
    return [name for name, doc in documents().items()
            if not (folder / name).exists() or (folder / name).read_text(encoding="utf-8") != render(doc)]


def write(folder: Path = DOCS) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in documents().items():
        (folder / name).write_text(render(doc), encoding="utf-8")
        written.append(name)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    for name in write(target):
        print(target / name)
