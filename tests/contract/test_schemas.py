"""Committed JSON Schemas match the models, and the compatibility check catches breaking changes."""

import copy
import json
from pathlib import Path

import pytest

from contracts import PAYLOADS
from contracts.compat import breaking_changes, compare_directories
from contracts.compat import main as compat_main
from contracts.export import SCHEMAS_DIR, differences, generate, message_schema, write
from contracts.export import main as export_main


def _committed(type_name: str) -> dict:
    return json.loads((SCHEMAS_DIR / f"{type_name}.json").read_text(encoding="utf-8"))


def _data_def(schema: dict) -> dict:
    ref = schema["properties"]["data"]["$ref"]
    return schema["$defs"][ref.rsplit("/", 1)[1]]


def test_committed_schemas_equal_freshly_generated_ones():
    assert differences() == [], "run `python -m contracts.export` and commit contracts/schemas/"


def test_there_is_one_schema_per_type_and_an_index():
    assert set(generate()) == {f"{t}.json" for t in PAYLOADS} | {"index.json"}


@pytest.mark.parametrize("type_name", sorted(PAYLOADS))
def test_models_do_not_break_the_committed_schemas(type_name: str):
    assert breaking_changes(_committed(type_name), message_schema(type_name)) == []


def test_a_removed_field_is_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    del _data_def(new)["properties"]["utm_source"]

    assert breaking_changes(old, new) == ["data.utm_source: property removed"]


def test_a_removed_required_field_is_breaking():
    old = _committed("crm.lead.move")
    new = copy.deepcopy(old)
    data = _data_def(new)
    del data["properties"]["stage_id"]
    data["required"].remove("stage_id")

    assert breaking_changes(old, new) == ["data.stage_id: property removed"]


def test_a_retyped_field_is_breaking():
    old = _committed("crm.lead.stage-changed")
    new = copy.deepcopy(old)
    _data_def(new)["properties"]["version"] = {"type": "string", "description": "now a string"}

    assert breaking_changes(old, new) == ["data.version: type changed from integer to string"]


def test_an_optional_field_losing_null_is_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    _data_def(new)["properties"]["source"] = {"type": "string", "description": "no longer nullable"}

    assert breaking_changes(old, new) == ["data.source: type changed from null|string to string"]


def test_a_new_required_field_is_breaking():
    old = _committed("crm.lead.assign")
    new = copy.deepcopy(old)
    data = _data_def(new)
    data["properties"]["reason"] = {"type": "string", "description": "why"}
    data["required"].append("reason")

    assert breaking_changes(old, new) == ["data.reason: new required property"]


def test_an_optional_field_becoming_required_is_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    _data_def(new)["required"].append("pipeline_id")

    assert breaking_changes(old, new) == ["data.pipeline_id: became required"]


def test_a_dropped_enum_value_is_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    new["$defs"]["NeedMaturity"]["enum"].remove("urgent")

    assert breaking_changes(old, new) == ['data.need_maturity: enum value(s) removed: "urgent"']


def test_a_dropped_enum_value_in_a_list_item_is_breaking():
    old = _committed("crm.lead.created")
    new = copy.deepcopy(old)
    new["$defs"]["LeadStatus"]["enum"].remove("qualified")

    changes = breaking_changes(old, new)

    assert 'data.status: enum value(s) removed: "qualified"' in changes
    assert 'data.status_history[].status: enum value(s) removed: "qualified"' in changes


def test_a_nested_field_becoming_required_is_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    new["$defs"]["ContactRef"]["required"] = ["email"]

    assert breaking_changes(old, new) == ["data.contact.email: became required"]


def test_an_added_optional_field_is_not_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    _data_def(new)["properties"]["referrer"] = {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
        "description": "Referring page.",
    }

    assert breaking_changes(old, new) == []


def test_an_added_enum_value_is_not_breaking():
    old = _committed("crm.lead.create")
    new = copy.deepcopy(old)
    new["$defs"]["NeedMaturity"]["enum"].append("dormant")

    assert breaking_changes(old, new) == []


def test_compat_cli_reports_broken_copies_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    write(old_dir)
    write(new_dir)
    schema = json.loads((new_dir / "crm.lead.move.json").read_text())
    del _data_def(schema)["properties"]["stage_id"]
    (new_dir / "crm.lead.move.json").write_text(json.dumps(schema))
    (new_dir / "crm.task.overdue.json").unlink()

    exit_code = compat_main([str(old_dir), str(new_dir)])

    out = capsys.readouterr().out
    assert exit_code == 1
    assert "crm.lead.move: data.stage_id: property removed" in out
    assert "crm.task.overdue: message type removed" in out


def test_compat_cli_passes_on_identical_directories(tmp_path: Path):
    write(tmp_path)

    assert compare_directories(tmp_path, tmp_path) == []
    assert compat_main([str(tmp_path), str(tmp_path)]) == 0


def test_export_check_fails_and_lists_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write(tmp_path)
    (tmp_path / "crm.lead.move.json").write_text("{}\n")
    (tmp_path / "crm.task.overdue.json").unlink()
    (tmp_path / "crm.lead.teleport.json").write_text("{}\n")

    exit_code = export_main(["--check", "--dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert exit_code == 1
    assert "stale: crm.lead.move.json" in out
    assert "missing: crm.task.overdue.json" in out
    assert "extra: crm.lead.teleport.json" in out


def test_export_check_passes_on_fresh_files(tmp_path: Path):
    write(tmp_path)

    assert export_main(["--check", "--dir", str(tmp_path)]) == 0
