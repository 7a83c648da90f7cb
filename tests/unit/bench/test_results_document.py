"""The benchmark harness's results document: every figure issue 21 targets, medians with their spread, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.unit.bench.bench_modules import ROOT, load

results = load("results")


def _sections(value: float) -> dict:
    sections: dict = {}
    for key in results.REQUIRED_KEYS:
        section, field = key.split(".", 1)
        sections.setdefault(section, {})[field] = value
    return sections


def test_a_document_with_every_figure_has_no_missing_key_and_is_json():
    document = results.document(_sections(1.5), quick=True, started=datetime.now(UTC), load={"loadavg_start": 1.0})
    assert results.missing_keys(document) == []
    back = json.loads(json.dumps(document))
    assert set(back["meta"]) >= {"date", "machine", "versions", "load", "quick"}
    assert set(back["meta"]["machine"]) >= {"nproc", "memory_gb", "cpu_model"}
    assert set(back["meta"]["versions"]) >= {"python", "kafka", "ferretdb"}


def test_missing_and_non_numeric_figures_are_named():
    sections = _sections(2.0)
    del sections["reads"]["card_p99_ms"]
    sections["latency"]["qualify_p99_ms"] = "slow"
    document = results.document(sections, quick=False, started=datetime.now(UTC), load={})
    assert results.missing_keys(document) == ["latency.qualify_p99_ms", "reads.card_p99_ms"]


def test_repetitions_combine_to_the_median_with_min_and_max():
    combined = results.combine([{"seconds": 3.0, "name": "a"}, {"seconds": 1.0, "name": "a"}, {"seconds": 2.0, "name": "a"}])
    assert combined["seconds"] == 2.0
    assert combined["spread"]["seconds"] == [1.0, 3.0]
    assert combined["repetitions"] == 3 and combined["name"] == "a" and len(combined["runs"]) == 3


def test_targets_read_in_their_direction():
    assert results.verdict("reads.card_p99_ms", 19.0).endswith(": met")
    assert results.verdict("reads.card_p99_ms", 21.0).endswith("NOT met")
    assert results.verdict("qualification.per_second", 1200).endswith(": met")
    assert results.verdict("qualification.per_second", 80).endswith("NOT met")



def test_the_committed_latest_results_carry_every_required_figure():
    document = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    assert results.missing_keys(document) == []
    assert document["meta"]["machine"]["nproc"] >= 1


def test_a_partial_run_replaces_only_its_sections_and_says_so():
    first = results.document(_sections(1.0), quick=False, started=datetime.now(UTC), load={})
    second = results.document({"reads": {"card_p99_ms": 9.0, "board_p99_ms": 9.0, "list_p99_ms": 9.0}},
                              quick=False, started=datetime.now(UTC), load={})
    merged = results.merge(first, second)
    assert merged["reads"]["card_p99_ms"] == 9.0 and merged["latency"]["qualify_p99_ms"] == 1.0
    assert results.missing_keys(merged) == []
    assert [sorted(run["sections"]) for run in merged["meta"]["runs"]] == [
        sorted(set(first) - {"meta", "reads"}), ["reads"]]
