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


def test_only_the_card_update_for_the_lead_s_own_summary_is_skipped():
    from contracts.examples import EXAMPLES
    from contracts.registry import envelope_class
    from services.activity.messages import changes_no_fact

    def updated(changed):
        example = EXAMPLES["crm.lead.updated"]
        return envelope_class("crm.lead.updated").model_validate({**example, "data": {**example["data"], "changed_fields": changed}})

    assert changes_no_fact(updated(["activity"]))
    assert not changes_no_fact(updated(["activity", "title"]))
    assert not changes_no_fact(updated(["contact"]))  # a contact changed by a user moves data_changed_at
    assert not changes_no_fact(updated([]))
    created = EXAMPLES["crm.lead.created"]
    assert not changes_no_fact(envelope_class("crm.lead.created").model_validate(created))
