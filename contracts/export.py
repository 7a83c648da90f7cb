"""Write the committed JSON Schemas of every message type, or check that they are current."""

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from contracts.registry import PAYLOADS, TOPIC_TYPES, envelope_class

SCHEMAS_DIR = Path(__file__).parent / "schemas"
INDEX_FILE = "index.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def message_schema(type_name: str) -> dict[str, Any]:
    """Return the JSON Schema of a message type's typed envelope."""
    schema = envelope_class(type_name).model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def generate() -> dict[str, str]:
    """Return the rendered schema files by file name: one per message type, plus the topic index."""
    files = {f"{type_name}.json": render(message_schema(type_name)) for type_name in sorted(PAYLOADS)}
    files[INDEX_FILE] = render({topic: list(types) for topic, types in TOPIC_TYPES.items()})
    return files


def render(document: Any) -> str:
    """Render a JSON document the way the committed files are written."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def differences(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Describe how the files in `directory` differ from freshly generated ones; empty when current."""
    expected = generate()
    present = {path.name for path in directory.glob("*.json")} if directory.is_dir() else set()
    problems: list[str] = []
    for name, text in expected.items():
        if name not in present:
            problems.append(f"missing: {name}")
            continue
        committed = (directory / name).read_text(encoding="utf-8")
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(), text.splitlines(), f"committed/{name}", f"generated/{name}", lineterm="", n=1
            )
            problems.append(f"stale: {name}\n" + "\n".join(list(diff)[:40]))
    problems.extend(f"extra: {name} (no such message type)" for name in sorted(present - expected.keys()))
    return problems


def write(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Write every schema file into `directory`, remove stale ones, and return the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = generate()
    for path in directory.glob("*.json"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the schemas, or with --check exit 1 when the committed ones are stale."""
    parser = argparse.ArgumentParser(prog="python -m contracts.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when files are stale")
    parser.add_argument("--dir", type=Path, default=SCHEMAS_DIR, help="schema directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(args.dir)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} schema file(s) out of date; run `python -m contracts.export`", file=sys.stderr)
            return 1
        print("schemas are up to date")
        return 0
    written = write(args.dir)
    print(f"wrote {len(written)} files to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
