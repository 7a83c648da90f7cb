"""The activity projection writes one version-guarded upsert per lead and version, whatever number of events made it."""

from __future__ import annotations

from services.activity.projection import folded


def test_the_events_of_one_change_make_one_write_with_the_later_facts_winning():
    facts = [
        ("L1", 3, {"pipeline_id": "p", "status": "qualified"}),  # crm.lead.stage-changed
        ("L2", 1, {"status": "new", "title": "Other"}),
        ("L1", 3, {"pipeline_id": "p", "status": "qualified", "title": "Lead", "deleted": False}),  # crm.lead.updated
    ]
    assert folded(facts) == [
        ("L1", 3, {"pipeline_id": "p", "status": "qualified", "title": "Lead", "deleted": False}),
        ("L2", 1, {"status": "new", "title": "Other"}),
    ]


def test_changes_of_different_versions_stay_separate_writes_in_order():
    facts = [("L1", 3, {"status": "in_progress"}), ("L1", 4, {"status": "qualified"})]
    assert folded(facts) == facts
