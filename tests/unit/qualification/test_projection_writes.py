"""The qualification service's lead projection writes one version-guarded upsert per lead and version."""

from __future__ import annotations

from services.qualification.repository import LeadChange, folded


def test_a_stage_change_and_the_card_of_the_same_version_make_one_write_that_may_make_the_card():
    stage = LeadChange("L1", 5, {"pipeline_id": "p", "stage_id": "won", "status": "qualified"}, whole=False)
    card = LeadChange("L1", 5, {"pipeline_id": "p", "stage_id": "won", "status": "qualified", "title": "Lead"}, whole=True)
    other = LeadChange("L2", 2, {"deleted": True}, whole=False)
    assert folded([stage, other, card]) == [
        LeadChange("L1", 5, {"pipeline_id": "p", "stage_id": "won", "status": "qualified", "title": "Lead"}, whole=True),
        other,
    ]


def test_changes_of_different_versions_stay_separate_writes_in_order():
    changes = [LeadChange("L1", 5, {"status": "qualified"}, whole=False), LeadChange("L1", 6, {"status": "new"}, whole=False)]
    assert folded(changes) == changes
