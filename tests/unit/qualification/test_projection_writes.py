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


def _updated(**data):
    from contracts.examples import EXAMPLES
    from contracts.registry import envelope_class

    example = EXAMPLES["crm.lead.updated"]
    return envelope_class("crm.lead.updated").model_validate({**example, "data": {**example["data"], **data}})


def test_a_card_update_of_fields_outside_the_projection_writes_nothing_and_any_other_does():
    from services.qualification.messages import lead_change

    assert lead_change(_updated(changed_fields=["activity"])) is None  # the activity summary's echo
    kept = lead_change(_updated(changed_fields=["activity", "title"]))
    assert kept is not None and kept.whole and kept.fields["title"] == _updated().data.title
    assert lead_change(_updated(changed_fields=[])) is not None  # no names given: the whole card may have changed
