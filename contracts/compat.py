"""Find changes between two JSON Schemas of a message type that would break existing readers."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

_SCALARS = {"string", "integer", "number", "boolean", "null"}
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
_INDEX_FILE = "index.json"


def breaking_changes(old_schema: Schema, new_schema: Schema) -> list[str]:
    """List the changes from `old_schema` to `new_schema` that break readers or producers of v1.

    Breaking: a removed property, a changed or narrowed type, a removed enum value, a property
    that became required, a new required property. Adding an optional property is not breaking.
    """
    return _Comparison(old_schema, new_schema).run()


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.changes: list[str] = []
        self.seen: set[tuple[int, int]] = set()
        # Ids are only unique while the objects live; keep every compared pair alive.
        self.compared: list[tuple[Schema, Schema]] = []

    def run(self) -> list[str]:
        self.compare(self.old_root, self.new_root, "")
        return self.changes

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        old_branches = _branches(old, self.old_root)
        new_branches = _branches(new, self.new_root)
        # Recursive schemas would loop forever; each pair of subschemas needs comparing once.
        key = (id(old), id(new))
        if key in self.seen:
            return
        self.seen.add(key)
        self.compared.append((old, new))

        old_types = {t for b in old_branches for t in _types(b)}
        new_types = {t for b in new_branches for t in _types(b)}
        lost = {t for t in old_types if not _covered(t, new_types)}
        if lost:
            self.report(path, f"type changed from {_fmt_types(old_types)} to {_fmt_types(new_types)}")
            return

        old_values = _scalar_values(old_branches)
        new_values = _scalar_values(new_branches)
        for json_type, new_allowed in new_values.items():
            if new_allowed is None or json_type not in old_values:
                continue
            old_allowed = old_values[json_type]
            if old_allowed is None:
                self.report(path, f"now restricted to the values {_fmt_values(new_allowed)}")
            elif removed := old_allowed - new_allowed:
                self.report(path, f"enum value(s) removed: {_fmt_values(removed)}")

        old_object, new_object = _pick(old_branches, "object"), _pick(new_branches, "object")
        if old_object is not None and new_object is not None:
            self.compare_objects(old_object, new_object, path)
        old_array, new_array = _pick(old_branches, "array"), _pick(new_branches, "array")
        if old_array is not None and new_array is not None:
            old_items, new_items = old_array.get("items"), new_array.get("items")
            if isinstance(old_items, dict) and isinstance(new_items, dict):
                self.compare(old_items, new_items, f"{path}[]")

    def compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.report(_join(path, name), "property removed")
            else:
                self.compare(old_prop, new_props[name], _join(path, name))
        old_required = set(old.get("required", ()))
        for name in new.get("required", ()):
            if name in old_required:
                continue
            if name in old_props:
                self.report(_join(path, name), "became required")
            else:
                self.report(_join(path, name), "new required property")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare(old_extra, new_extra, f"{path}{{*}}")

    def report(self, path: str, change: str) -> None:
        self.changes.append(f"{path or '(root)'}: {change}")


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow `$ref` (and single-item `allOf`) to the schema it names, keeping sibling keywords."""
    for _ in range(64):
        if "$ref" in schema:
            target = _pointer(root, schema["$ref"])
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            inner = schema["allOf"][0]
            schema = {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
        else:
            return schema
    raise ValueError("$ref chain too deep")


def _pointer(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[1:].split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _branches(schema: Schema, root: Schema) -> list[Schema]:
    """Flatten a schema into the alternatives it accepts."""
    schema = _resolve(schema, root)
    for keyword in ("anyOf", "oneOf"):
        if isinstance(schema.get(keyword), list):
            return [b for alternative in schema[keyword] for b in _branches(alternative, root)]
    return [schema]


def _types(branch: Schema) -> set[str]:
    declared = branch.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    if "const" in branch:
        return {_json_type(branch["const"])}
    if "enum" in branch:
        return {_json_type(v) for v in branch["enum"]}
    if "properties" in branch:
        return {"object"}
    return {"any"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "object" if isinstance(value, dict) else "array")


def _covered(json_type: str, accepted: set[str]) -> bool:
    return json_type in accepted or "any" in accepted or (json_type == "integer" and "number" in accepted)


def _scalar_values(branches: list[Schema]) -> dict[str, frozenset[str] | None]:
    """Per scalar JSON type, the values allowed (as JSON text), or None when any value of it is."""
    allowed: dict[str, frozenset[str] | None] = {}
    for branch in branches:
        if "const" in branch:
            values: list[Any] | None = [branch["const"]]
        elif "enum" in branch:
            values = list(branch["enum"])
        else:
            values = None
        for json_type in _types(branch) & _SCALARS:
            if json_type == "null":
                continue
            if values is None:
                allowed[json_type] = None
            elif json_type not in allowed or allowed[json_type] is not None:
                texts = frozenset(json.dumps(v) for v in values if _json_type(v) == json_type)
                allowed[json_type] = (allowed.get(json_type) or frozenset()) | texts
    return allowed


def _pick(branches: list[Schema], json_type: str) -> Schema | None:
    for branch in branches:
        if json_type in _types(branch):
            return branch
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fmt_types(types: set[str]) -> str:
    return "|".join(sorted(types)) or "nothing"


def _fmt_values(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def compare_directories(old_dir: Path, new_dir: Path) -> list[str]:
    """Breaking changes between two directories of exported schemas (see `contracts.export`)."""
    changes: list[str] = []
    for old_path in sorted(old_dir.glob("*.json")):
        new_path = new_dir / old_path.name
        if not new_path.exists():
            changes.append(f"{old_path.stem}: message type removed")
            continue
        old_doc = json.loads(old_path.read_text(encoding="utf-8"))
        new_doc = json.loads(new_path.read_text(encoding="utf-8"))
        if old_path.name == _INDEX_FILE:
            changes.extend(_index_changes(old_doc, new_doc))
        else:
            changes.extend(f"{old_path.stem}: {change}" for change in breaking_changes(old_doc, new_doc))
    return changes


def _index_changes(old_index: dict[str, list[str]], new_index: dict[str, list[str]]) -> list[str]:
    changes = []
    for topic, old_types in old_index.items():
        if topic not in new_index:
            changes.append(f"topic {topic} removed")
            continue
        changes.extend(
            f"topic {topic}: type {type_name} no longer allowed"
            for type_name in old_types
            if type_name not in new_index[topic]
        )
    return changes


def main(argv: list[str] | None = None) -> int:
    """Command line: print the breaking changes from OLD_DIR to NEW_DIR; exit 1 when there are any."""
    parser = argparse.ArgumentParser(prog="python -m contracts.compat", description=__doc__)
    parser.add_argument("old_dir", type=Path, help="directory of the published schemas")
    parser.add_argument("new_dir", type=Path, help="directory of the proposed schemas")
    args = parser.parse_args(argv)
    changes = compare_directories(args.old_dir, args.new_dir)
    for change in changes:
        print(change)
    if changes:
        print(f"{len(changes)} breaking change(s)", file=sys.stderr)
        return 1
    print("no breaking changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
