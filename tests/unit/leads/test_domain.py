"""Rules of pipelines and leads, checked on plain objects with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.leads import domain as d
from services.leads.domain import Actor, Rejected

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

USER = Actor(user_id="u-1", licensed=True)
OTHER_USER = Actor(user_id="u-2", licensed=True)
ADMIN = Actor(user_id="admin-1", licensed=True, roles=frozenset({"admin"}))
SERVICE = Actor(user_id="svc-qualification", licensed=False, service=True)
UNLICENSED = Actor(user_id="u-9", licensed=False, roles=frozenset({"admin"}))

FIVE_STAGES = [
    {"name": "New", "status": "new"},
    {"name": "Call", "status": "in_progress"},
    {"name": "Meeting", "status": "in_progress"},
    {"name": "Won", "status": "qualified"},
    {"name": "Lost", "status": "unqualified"},
]


def rejected(code: str, call, *args, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


def pipeline(mode: str = "manual", stages=None, pipeline_id: str = "sales") -> d.Pipeline:
    return d.create_pipeline(ADMIN, pipeline_id, "Sales", stages or FIVE_STAGES, mode, NOW).pipeline


def lead(pipe: d.Pipeline | None = None, actor: Actor = USER, lead_id: str = "L1", **data) -> d.Lead:
    data.setdefault("title", "Website request")
    return d.create_lead(actor, lead_id, data, pipe or d.default_pipeline(NOW), NOW).lead


def qualified_lead() -> tuple[d.Lead, d.Pipeline]:
    pipe = d.default_pipeline(NOW)
    return d.apply_qualified(lead(pipe), pipe, "deal-1", "co-1", NOW).lead, pipe


# --- access ---------------------------------------------------------------------------------


def test_unlicensed_actor_is_refused_everywhere() -> None:
    pipe = d.default_pipeline(NOW)
    existing = lead(pipe)
    rejected("not_licensed", d.create_lead, UNLICENSED, "L2", {"title": "x"}, pipe, NOW)
    rejected("not_licensed", d.update_lead, UNLICENSED, existing, {"title": "y"}, [], NOW)
    rejected("not_licensed", d.move_lead, UNLICENSED, existing, pipe, "processing", NOW)
    rejected("not_licensed", d.create_pipeline, UNLICENSED, "p", "P", None, "manual", NOW)


def test_admin_actions_refuse_licensed_users_and_admit_services() -> None:
    rejected("forbidden", d.require_admin, USER)
    d.require_admin(ADMIN)
    d.require_admin(SERVICE)
    d.require_licensed(SERVICE)


# --- pipelines ------------------------------------------------------------------------------


def test_default_pipeline_follows_the_convention() -> None:
    pipe = d.default_pipeline(NOW)
    assert pipe.pipeline_id == "default" and pipe.is_default and pipe.transition_mode == "manual"
    assert [(s.stage_id, s.name, s.status, s.position) for s in pipe.stages] == [
        ("new", "New", "new", 0),
        ("processing", "Processing", "in_progress", 1),
        ("qualified", "Qualified", "qualified", 2),
        ("unqualified", "Unqualified", "unqualified", 3),
    ]
    assert pipe.first_stage().stage_id == "new"
    assert pipe.first_in_progress_stage().stage_id == "processing"
    assert pipe.final_stage("unqualified").stage_id == "unqualified"


def test_create_pipeline_derives_unique_stage_ids_from_names() -> None:
    stages = [
        {"name": "Новый", "status": "new"},
        {"name": "В работе", "status": "in_progress"},
        {"name": "В работе", "status": "in_progress"},
        {"stage_id": "won", "name": "Won", "status": "qualified"},
        {"name": "Lost!", "status": "unqualified"},
    ]
    outcome = d.create_pipeline(ADMIN, "ru", "Продажи", stages, "forward_only", NOW)
    assert [s.stage_id for s in outcome.pipeline.stages] == ["novyy", "v_rabote", "v_rabote_2", "won", "lost"]
    assert outcome.pipeline.version == 1 and not outcome.pipeline.is_default
    assert outcome.events == [d.PipelineCreated(outcome.pipeline)]


def test_create_pipeline_gets_default_stages_when_none_are_given() -> None:
    pipe = d.create_pipeline(ADMIN, "p2", "Second", None, "manual", NOW).pipeline
    assert [s.stage_id for s in pipe.stages] == ["new", "processing", "qualified", "unqualified"]


def test_non_admin_cannot_create_a_pipeline() -> None:
    rejected("forbidden", d.create_pipeline, USER, "p", "P", None, "manual", NOW)


def test_pipeline_names_ids_and_stage_counts_are_bounded() -> None:
    stages = [{"name": "New", "status": "new"}, {"name": "Won", "status": "qualified"}, {"name": "Lost", "status": "unqualified"}]
    long_name = "Воронка " * 30  # 240 characters
    error = rejected("validation", d.create_pipeline, ADMIN, "p1", long_name, stages, None, NOW)
    assert error.errors[0][0] == "name"
    error = rejected("validation", d.create_pipeline, ADMIN, "p" * 101, "Sales", stages, None, NOW)
    assert error.errors[0][0] == "pipeline_id"
    many = [stages[0], *({"name": f"Step {i}", "status": "in_progress"} for i in range(60)), *stages[1:]]
    error = rejected("validation", d.create_pipeline, ADMIN, "p1", "Sales", many, None, NOW)
    assert error.errors[0][0] == "stages" and "50" in error.message
    error = rejected("validation", d.create_pipeline, ADMIN, "p1", "Sales", [{**stages[0], "name": "x" * 201}, *stages[1:]], None, NOW)
    assert error.errors[0][0] == "stages.0.name"
    # A long (allowed) stage name still gets a short generated id.
    made = d.create_pipeline(ADMIN, "p1", "Sales", [{**stages[0], "name": "Этап " * 40}, *stages[1:]], None, NOW).pipeline
    assert len(made.stages[0].stage_id) <= 60


def test_create_pipeline_refuses_an_existing_id_and_a_blank_name() -> None:
    existing = d.default_pipeline(NOW)
    rejected("conflict", d.create_pipeline, ADMIN, "default", "Again", None, "manual", NOW, existing=existing)
    error = rejected("validation", d.create_pipeline, ADMIN, "p", "  ", None, "manual", NOW)
    assert error.errors == [("name", "must not be blank")]
    rejected("validation", d.create_pipeline, ADMIN, "p", "P", None, "sideways", NOW)


@pytest.mark.parametrize(
    "stages",
    [
        [{"name": "Work", "status": "in_progress"}, {"name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}],
        [{"name": "N", "status": "new"}, {"name": "N2", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}],
        [{"name": "N", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "W", "status": "in_progress"}, {"name": "U", "status": "unqualified"}],
        [{"name": "N", "status": "new"}, {"name": "U", "status": "unqualified"}],
        [{"name": "N", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "Q2", "status": "qualified"}, {"name": "U", "status": "unqualified"}],
        [{"name": "", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}],
        [{"stage_id": "a", "name": "N", "status": "new"}, {"stage_id": "a", "name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}],
    ],
    ids=["no-new", "two-new", "final-not-last", "no-qualified", "two-qualified", "blank-name", "repeated-id"],
)
def test_stage_structure_rules(stages) -> None:
    rejected("validation", d.create_pipeline, ADMIN, "p", "P", stages, "manual", NOW)


def test_pipeline_without_in_progress_stage_is_allowed() -> None:
    stages = [{"name": "N", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}]
    pipe = d.create_pipeline(ADMIN, "p", "P", stages, "manual", NOW).pipeline
    assert pipe.first_in_progress_stage() is None


def test_update_pipeline_renames_reorders_and_adds_stages() -> None:
    pipe = pipeline()
    stages = [
        {"stage_id": "new", "name": "Incoming"},
        {"stage_id": "meeting", "name": "Meeting"},
        {"stage_id": "call", "name": "Call"},
        {"name": "Offer"},
        {"stage_id": "won", "name": "Won"},
        {"stage_id": "lost", "name": "Lost"},
    ]
    outcome = d.update_pipeline(ADMIN, pipe, name="Big sales", stages=stages, now=LATER, leads_per_stage={})
    updated = outcome.pipeline
    assert [(s.stage_id, s.status, s.position) for s in updated.stages] == [
        ("new", "new", 0),
        ("meeting", "in_progress", 1),
        ("call", "in_progress", 2),
        ("offer", "in_progress", 3),
        ("won", "qualified", 4),
        ("lost", "unqualified", 5),
    ]
    assert updated.name == "Big sales" and updated.version == pipe.version + 1 and updated.updated_at == LATER
    assert outcome.events == [d.PipelineUpdated(updated)]
    assert pipe.name == "Sales"  # the input is untouched


def test_update_pipeline_without_change_is_a_no_op() -> None:
    pipe = pipeline()
    outcome = d.update_pipeline(
        ADMIN, pipe, name="Sales", stages=[s.model_dump() for s in pipe.stages], now=LATER, leads_per_stage={}
    )
    assert outcome.pipeline is pipe and outcome.events == []


def test_non_admin_cannot_update_a_pipeline() -> None:
    rejected("forbidden", d.update_pipeline, USER, pipeline(), name="X", now=LATER)


@pytest.mark.parametrize("removed", ["new", "won", "lost"])
def test_the_new_and_final_stages_cannot_be_removed(removed: str) -> None:
    pipe = pipeline()
    stages = [s.model_dump() for s in pipe.stages if s.stage_id != removed]
    error = rejected("invalid_state", d.update_pipeline, ADMIN, pipe, stages=stages, now=LATER, leads_per_stage={})
    assert "cannot be removed" in error.message


def test_a_stage_that_holds_leads_cannot_be_removed() -> None:
    pipe = pipeline()
    stages = [s.model_dump() for s in pipe.stages if s.stage_id != "call"]
    error = rejected(
        "invalid_state", d.update_pipeline, ADMIN, pipe, stages=stages, now=LATER, leads_per_stage={"call": 3}
    )
    assert "3 leads" in error.message and "move them" in error.message
    outcome = d.update_pipeline(ADMIN, pipe, stages=stages, now=LATER, leads_per_stage={"call": 0})
    assert [s.stage_id for s in outcome.pipeline.stages] == ["new", "meeting", "won", "lost"]


def test_a_stage_keeps_its_status_kind() -> None:
    pipe = pipeline()
    stages = [s.model_dump() for s in pipe.stages]
    stages[0]["status"] = "in_progress"
    rejected("invalid_state", d.update_pipeline, ADMIN, pipe, stages=stages, now=LATER, leads_per_stage={})


def test_update_pipeline_applies_structure_rules() -> None:
    pipe = pipeline()
    stages = [s.model_dump() for s in pipe.stages] + [{"name": "After", "status": "in_progress"}]
    rejected("validation", d.update_pipeline, ADMIN, pipe, stages=stages, now=LATER, leads_per_stage={})


def test_delete_pipeline_rules() -> None:
    rejected("forbidden", d.delete_pipeline, ADMIN, d.default_pipeline(NOW), lead_count=0, now=LATER)
    rejected("forbidden", d.delete_pipeline, USER, pipeline(), lead_count=0, now=LATER)
    error = rejected("invalid_state", d.delete_pipeline, ADMIN, pipeline(), lead_count=1, now=LATER)
    assert "1 lead;" in error.message
    outcome = d.delete_pipeline(ADMIN, pipeline(), lead_count=0, now=LATER)
    assert outcome.pipeline.deleted and outcome.pipeline.version == 2
    assert outcome.events == [d.PipelineDeleted("sales", 2)]
    again = d.delete_pipeline(ADMIN, outcome.pipeline, lead_count=0, now=LATER)
    assert again.events == [] and again.pipeline.version == 2


# --- creating leads -------------------------------------------------------------------------


def test_create_lead_lands_in_the_first_stage_with_its_history() -> None:
    pipe = d.default_pipeline(NOW)
    data = {
        "title": "  Website request ",
        "contact": {"name": "Иван Иванов", "phone": "+79123456789"},
        "products": [{"product_id": "p-1", "options": {"color": "red"}}],
        "utm_source": "",
        "need_maturity": "urgent",
        "lead_id": "ignored",
        "import_row": 4,
    }
    outcome = d.create_lead(USER, "L1", data, pipe, NOW)
    new = outcome.lead
    assert (new.pipeline_id, new.stage_id, new.status, new.version) == ("default", "new", "new", 1)
    assert new.title == "Website request" and new.utm_source is None
    assert new.responsible_id == "u-1" and new.created_by == "u-1"
    assert new.created_at == new.updated_at == new.data_changed_at == new.status_since == NOW
    assert new.products[0].quantity == 1
    assert new.status_history == [
        d.StatusHistoryEntry(pipeline_id="default", stage_id="new", status="new", entered_at=NOW, actor_id="u-1")
    ]
    assert outcome.events == [d.LeadCreated(new)]


def test_create_lead_keeps_a_named_responsible_and_stage() -> None:
    new = lead(responsible_id="u-7", stage_id="processing", import_id="imp-1")
    assert (new.responsible_id, new.stage_id, new.status, new.import_id) == ("u-7", "processing", "in_progress", "imp-1")


def test_create_lead_needs_a_title() -> None:
    pipe = d.default_pipeline(NOW)
    for data in ({}, {"title": "   "}, {"title": None}):
        error = rejected("validation", d.create_lead, USER, "L1", data, pipe, NOW)
        assert error.errors[0][0] == "title"


def test_create_lead_reports_bad_fields() -> None:
    error = rejected(
        "validation",
        d.create_lead,
        USER,
        "L1",
        {"title": "t", "need_maturity": "someday", "products": [{"quantity": 2}]},
        d.default_pipeline(NOW),
        NOW,
    )
    assert {field for field, _ in error.errors} == {"need_maturity", "products.0.product_id"}


def test_a_create_with_a_bad_card_and_a_bad_stage_is_refused_for_its_card() -> None:
    pipe = d.default_pipeline(NOW)
    error = rejected("validation", d.create_lead, USER, "L1", {"title": "t", "need_maturity": "someday", "stage_id": "nowhere"}, pipe, NOW)
    assert [field for field, _ in error.errors] == ["need_maturity"]
    error = rejected("validation", d.create_lead, USER, "L1", {"title": " ", "stage_id": "nowhere"}, pipe, NOW)
    assert [field for field, _ in error.errors] == ["title"]


def test_create_lead_refuses_unknown_or_final_stages_and_deleted_pipelines() -> None:
    pipe = d.default_pipeline(NOW)
    rejected("invalid_transition", d.create_lead, USER, "L1", {"title": "t", "stage_id": "nowhere"}, pipe, NOW)
    rejected("invalid_transition", d.create_lead, USER, "L1", {"title": "t", "stage_id": "qualified"}, pipe, NOW)
    gone = d.delete_pipeline(ADMIN, pipeline(), lead_count=0, now=NOW).pipeline
    rejected("not_found", d.create_lead, USER, "L1", {"title": "t"}, gone, NOW)


# --- updating leads -------------------------------------------------------------------------


def test_update_lead_changes_fields_and_reports_them() -> None:
    before = lead(source="web")
    outcome = d.update_lead(
        OTHER_USER, before, {"title": "Big order", "utm_campaign": "spring", "lead_id": "L1"}, ["source"], LATER
    )
    after = outcome.lead
    assert (after.title, after.utm_campaign, after.source) == ("Big order", "spring", None)
    assert after.version == before.version + 1
    assert after.updated_at == after.data_changed_at == LATER
    assert outcome.events == [d.LeadUpdated(after, ("title", "source", "utm_campaign"))]
    assert before.title == "Website request" and before.source == "web"


def test_update_lead_without_effective_change_is_a_no_op() -> None:
    before = lead(source="web")
    outcome = d.update_lead(USER, before, {"title": "Website request", "source": "web"}, ["utm_source"], LATER)
    assert outcome.lead is before and outcome.events == []


def test_update_lead_stamps_the_import_only_on_a_real_change() -> None:
    before = lead(source="web")
    assert d.update_lead(USER, before, {"source": "web", "import_id": "imp-2"}, [], LATER).events == []
    after = d.update_lead(USER, before, {"source": "fair", "import_id": "imp-2"}, [], LATER).lead
    assert after.import_id == "imp-2"


def test_update_lead_changing_responsible_reports_the_assignment() -> None:
    before = lead()
    outcome = d.update_lead(USER, before, {"responsible_id": "u-5"}, [], LATER)
    assert outcome.events[0] == d.LeadAssigned("L1", "u-5", "u-1", 2)


def test_update_lead_refusals() -> None:
    before = lead()
    assert rejected("validation", d.update_lead, USER, before, {}, ["title"], LATER).errors[0][0] == "title"
    assert rejected("validation", d.update_lead, USER, before, {}, ["colour"], LATER).errors[0][0] == "colour"
    rejected("validation", d.update_lead, USER, before, {"stage_id": "processing"}, [], LATER)
    rejected("validation", d.update_lead, USER, before, {"qualified_deal_id": "x"}, [], LATER)
    rejected("validation", d.update_lead, USER, before, {"title": "  "}, [], LATER)
    rejected("validation", d.update_lead, USER, before, {"source": "a"}, ["source"], LATER)


def test_a_qualified_lead_is_locked() -> None:
    locked, pipe = qualified_lead()
    error = rejected("invalid_state", d.update_lead, USER, locked, {"title": "new"}, [], LATER)
    assert "reopen" in error.message
    rejected("invalid_state", d.update_lead, ADMIN, locked, {"title": "new"}, [], LATER)
    rejected("invalid_state", d.assign_lead, USER, locked, pipe, "u-2", LATER)
    rejected("invalid_state", d.move_lead, USER, locked, pipe, "processing", LATER)
    rejected("invalid_state", d.change_pipeline, USER, locked, pipeline(), None, LATER)


def test_a_deleted_lead_cannot_be_changed() -> None:
    pipe = d.default_pipeline(NOW)
    gone = d.delete_lead(USER, lead(pipe), NOW).lead
    error = rejected("invalid_state", d.update_lead, USER, gone, {"title": "new"}, [], LATER)
    assert "restore" in error.message
    rejected("invalid_state", d.move_lead, USER, gone, pipe, "processing", LATER)


# --- assigning and moving -------------------------------------------------------------------


def test_assigning_a_new_lead_moves_it_to_processing() -> None:
    pipe = d.default_pipeline(NOW)
    before = lead(pipe)
    outcome = d.assign_lead(USER, before, pipe, "u-2", LATER)
    after = outcome.lead
    assert (after.responsible_id, after.stage_id, after.status) == ("u-2", "processing", "in_progress")
    assert after.version == 2 and after.status_since == LATER and after.data_changed_at == LATER
    assert [(e.stage_id, e.left_at) for e in after.status_history] == [("new", LATER), ("processing", None)]
    assert outcome.events == [
        d.LeadAssigned("L1", "u-2", "u-1", 2),
        d.StageChanged("L1", "default", "new", "processing", "new", "in_progress", 2),
        d.LeadUpdated(after, ("stage_id", "status", "responsible_id", "status_history")),
    ]
    assert before.status_history[0].left_at is None


def test_assigning_in_progress_lead_does_not_move_it_and_repeat_is_a_no_op() -> None:
    pipe = d.default_pipeline(NOW)
    working = d.assign_lead(USER, lead(pipe), pipe, "u-2", NOW).lead
    outcome = d.assign_lead(USER, working, pipe, "u-3", LATER)
    assert outcome.lead.stage_id == "processing" and outcome.lead.version == working.version + 1
    assert [type(e) for e in outcome.events] == [d.LeadAssigned, d.LeadUpdated]
    again = d.assign_lead(USER, outcome.lead, pipe, "u-3", LATER)
    assert again.lead is outcome.lead and again.events == []


def test_assigning_the_creator_takes_the_lead_into_work() -> None:
    pipe = d.default_pipeline(NOW)
    outcome = d.assign_lead(USER, lead(pipe), pipe, "u-1", LATER)
    assert outcome.lead.stage_id == "processing" and outcome.lead.data_changed_at == NOW
    assert [type(e) for e in outcome.events] == [d.StageChanged, d.LeadUpdated]


def test_assigning_without_an_in_progress_stage_only_sets_the_responsible() -> None:
    stages = [{"name": "N", "status": "new"}, {"name": "Q", "status": "qualified"}, {"name": "U", "status": "unqualified"}]
    pipe = pipeline(stages=stages)
    after = d.assign_lead(USER, lead(pipe), pipe, "u-2", LATER).lead
    assert after.stage_id == "n" and after.responsible_id == "u-2"


def test_move_lead_records_history_and_keeps_data_changed_at() -> None:
    pipe = pipeline()
    before = lead(pipe)
    outcome = d.move_lead(USER, before, pipe, "meeting", LATER)
    after = outcome.lead
    assert (after.stage_id, after.status, after.version) == ("meeting", "in_progress", 2)
    assert after.data_changed_at == NOW and after.updated_at == LATER and after.status_since == LATER
    assert after.status_history[-1] == d.StatusHistoryEntry(
        pipeline_id="sales", stage_id="meeting", status="in_progress", entered_at=LATER, actor_id="u-1"
    )
    assert outcome.events == [
        d.StageChanged("L1", "sales", "new", "meeting", "new", "in_progress", 2),
        d.LeadUpdated(after, ("stage_id", "status", "status_history")),
    ]


def test_moving_to_the_current_stage_is_a_no_op() -> None:
    pipe = pipeline()
    before = lead(pipe)
    outcome = d.move_lead(USER, before, pipe, "new", LATER)
    assert outcome.lead is before and outcome.events == []


def test_move_refusals() -> None:
    pipe = pipeline()
    before = lead(pipe)
    error = rejected("invalid_transition", d.move_lead, USER, before, pipe, "processing", LATER)
    assert "crm.lead.change-pipeline" in error.message
    error = rejected("invalid_transition", d.move_lead, USER, before, pipe, "won", LATER)
    assert "crm.lead.qualify / crm.lead.disqualify" in error.message


def test_forward_only_refuses_backward_moves() -> None:
    pipe = pipeline("forward_only")
    at_meeting = d.move_lead(USER, lead(pipe), pipe, "meeting", NOW).lead
    rejected("invalid_transition", d.move_lead, USER, at_meeting, pipe, "call", LATER)
    rejected("invalid_transition", d.move_lead, SERVICE, at_meeting, pipe, "new", LATER)
    assert d.move_lead(USER, lead(pipe), pipe, "call", LATER).lead.stage_id == "call"


def test_process_mode_moves_only_by_services() -> None:
    pipe = pipeline("process")
    before = lead(pipe)
    rejected("forbidden", d.move_lead, USER, before, pipe, "call", LATER)
    rejected("forbidden", d.move_lead, ADMIN, before, pipe, "call", LATER)
    assert d.move_lead(SERVICE, before, pipe, "call", LATER).lead.stage_id == "call"


def test_moving_back_to_new_in_manual_mode() -> None:
    pipe = pipeline()
    at_call = d.move_lead(USER, lead(pipe), pipe, "call", NOW).lead
    assert d.move_lead(USER, at_call, pipe, "new", LATER).lead.status == "new"


def test_the_wrong_pipeline_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        d.move_lead(USER, lead(), pipeline(), "call", LATER)


# --- changing pipeline ----------------------------------------------------------------------


def test_change_pipeline_lands_in_the_first_stage_or_a_named_one() -> None:
    source = d.default_pipeline(NOW)
    target = pipeline()
    before = d.assign_lead(USER, lead(source), source, "u-2", NOW).lead
    outcome = d.change_pipeline(USER, before, target, None, LATER)
    after = outcome.lead
    assert (after.pipeline_id, after.stage_id, after.status, after.version) == ("sales", "new", "new", 3)
    assert outcome.events[0] == d.StageChanged(
        "L1", "sales", "processing", "new", "in_progress", "new", 3, from_pipeline_id="default"
    )
    assert [(e.pipeline_id, e.stage_id) for e in after.status_history][-1] == ("sales", "new")
    assert d.change_pipeline(USER, before, target, "meeting", LATER).lead.stage_id == "meeting"


def test_change_pipeline_refusals() -> None:
    source = d.default_pipeline(NOW)
    before = lead(source)
    rejected("invalid_transition", d.change_pipeline, USER, before, source, None, LATER)
    rejected("invalid_transition", d.change_pipeline, USER, before, pipeline(), "won", LATER)
    rejected("invalid_transition", d.change_pipeline, USER, before, pipeline(), "processing", LATER)
    gone = d.delete_pipeline(ADMIN, pipeline(), lead_count=0, now=NOW).pipeline
    rejected("not_found", d.change_pipeline, USER, before, gone, None, LATER)
    rejected("forbidden", d.change_pipeline, USER, before, pipeline("process"), None, LATER)


# --- deleting, restoring, reopening ---------------------------------------------------------


def test_delete_and_restore_are_soft_and_idempotent() -> None:
    before = lead()
    deleted = d.delete_lead(USER, before, LATER)
    assert deleted.lead.deleted and deleted.lead.deleted_at == LATER and deleted.lead.version == 2
    assert deleted.events == [d.LeadDeleted("L1", 2), d.LeadUpdated(deleted.lead, ("deleted", "deleted_at"))]
    assert d.delete_lead(USER, deleted.lead, LATER).events == []
    pipe = d.default_pipeline(NOW)
    restored = d.restore_lead(USER, deleted.lead, pipe, pipe, LATER)
    assert not restored.lead.deleted and restored.lead.deleted_at is None and restored.lead.version == 3
    assert restored.events[0] == d.LeadRestored("L1", 3)
    assert (restored.lead.pipeline_id, restored.lead.stage_id) == (before.pipeline_id, before.stage_id)
    assert d.restore_lead(USER, restored.lead, pipe, pipe, LATER).events == []


def test_a_lead_whose_pipeline_was_deleted_is_restored_into_the_default_at_its_status() -> None:
    sales = pipeline()
    default = d.default_pipeline(NOW)
    for status in ("new", "in_progress", "unqualified"):
        stage = next(s for s in sales.stages if s.status == status)
        before = lead(sales)
        if status == "unqualified":
            before = d.apply_disqualified(before, sales, "r-1", "no budget", None, NOW).lead
        elif stage.stage_id != before.stage_id:
            before = d.move_lead(USER, before, sales, stage.stage_id, NOW).lead
        deleted = d.delete_lead(ADMIN, before, NOW).lead
        gone = d.delete_pipeline(ADMIN, sales, lead_count=0, now=NOW).pipeline
        restored = d.restore_lead(ADMIN, deleted, gone, default, LATER)
        target = next(s for s in default.stages if s.status == status)
        assert (restored.lead.deleted, restored.lead.pipeline_id, restored.lead.stage_id) == (False, "default", target.stage_id)
        assert restored.lead.status == status and restored.lead.status_history[-1].stage_id == target.stage_id
        assert restored.events[:2] == [
            d.LeadRestored("L1", restored.lead.version),
            d.StageChanged("L1", "default", stage.stage_id, target.stage_id, status, status, restored.lead.version, "sales"),
        ]


def test_only_an_admin_deletes_a_locked_lead() -> None:
    locked, _ = qualified_lead()
    rejected("invalid_state", d.delete_lead, USER, locked, LATER)
    assert d.delete_lead(ADMIN, locked, LATER).lead.deleted


def test_reopen_unlocks_and_clears_the_outcome() -> None:
    locked, pipe = qualified_lead()
    rejected("forbidden", d.reopen_lead, USER, locked, pipe, None, LATER)
    outcome = d.reopen_lead(ADMIN, locked, pipe, None, LATER)
    after = outcome.lead
    assert (after.stage_id, after.status, after.locked) == ("processing", "in_progress", False)
    assert after.qualified_deal_id is None and after.qualified_company_id is None
    assert [e.status for e in after.status_history] == ["new", "qualified", "in_progress"]
    assert d.reopen_lead(ADMIN, locked, pipe, "new", LATER).lead.stage_id == "new"
    rejected("invalid_transition", d.reopen_lead, ADMIN, locked, pipe, "unqualified", LATER)
    rejected("invalid_state", d.reopen_lead, ADMIN, after, pipe, None, LATER)


# --- qualification results ------------------------------------------------------------------


def test_apply_qualified_moves_to_the_final_stage_and_is_idempotent() -> None:
    pipe = d.default_pipeline(NOW)
    before = lead(pipe)
    outcome = d.apply_qualified(before, pipe, "deal-1", "co-1", LATER)
    after = outcome.lead
    assert (after.stage_id, after.status, after.locked) == ("qualified", "qualified", True)
    assert (after.qualified_deal_id, after.qualified_company_id, after.version) == ("deal-1", "co-1", 2)
    assert after.status_history[-1].actor_id is None
    assert [type(e) for e in outcome.events] == [d.StageChanged, d.LeadUpdated]
    again = d.apply_qualified(after, pipe, "deal-1", "co-1", LATER)
    assert again.lead is after and again.events == []


def test_apply_disqualified_records_the_reason() -> None:
    pipe = d.default_pipeline(NOW)
    outcome = d.apply_disqualified(lead(pipe), pipe, "r-1", "No budget", "call back in a year", LATER)
    after = outcome.lead
    assert (after.status, after.disqualification_reason_id, after.disqualification_reason) == (
        "unqualified",
        "r-1",
        "No budget",
    )
    assert d.apply_disqualified(after, pipe, "r-1", "No budget", "call back in a year", LATER).events == []
    changed = d.apply_disqualified(after, pipe, "r-2", "Competitor", None, LATER)
    assert changed.lead.version == after.version + 1
    assert [type(e) for e in changed.events] == [d.LeadUpdated]


def test_qualification_results_do_not_apply_to_deleted_leads() -> None:
    pipe = d.default_pipeline(NOW)
    gone = d.delete_lead(USER, lead(pipe), NOW).lead
    rejected("invalid_state", d.apply_qualified, gone, pipe, "deal-1", "co-1", LATER)


# --- refreshed from other services ----------------------------------------------------------


def test_activity_summary_applies_to_locked_leads_without_touching_data_changed_at() -> None:
    # The activity and qualification services skip this update in their projections (it changes nothing
    # they keep), relying on exactly this: only `activity` named, data_changed_at left as it was.
    locked, _ = qualified_lead()
    summary = d.ActivitySummaryView(next_due_at=LATER, next_task_id="t-1", open_count=1)
    outcome = d.apply_activity_summary(locked, summary, LATER)
    assert outcome.lead.activity == summary and outcome.lead.data_changed_at == locked.data_changed_at
    assert outcome.lead.version == locked.version + 1
    assert outcome.events == [d.LeadUpdated(outcome.lead, ("activity",))]
    assert d.apply_activity_summary(outcome.lead, summary, LATER).events == []


def test_snapshots_follow_their_directory_entries() -> None:
    before = lead(
        contact={"contact_id": "c-1", "name": "Ivan"},
        company={"company_id": "co-1", "name": "Acme"},
        products=[{"product_id": "p-1", "options": {"color": "red", "size": "L"}}, {"product_id": "p-2"}],
    )
    contact = d.apply_contact(before, d.ContactRef(contact_id="c-1", name="Ivan Petrov", phone="+7 912"), LATER)
    assert contact.lead.contact.name == "Ivan Petrov" and contact.lead.version == 2
    assert contact.lead.updated_at == LATER and contact.lead.data_changed_at == NOW
    assert d.apply_contact(before, d.ContactRef(contact_id="c-9", name="Other"), LATER).events == []
    assert d.apply_contact(contact.lead, d.ContactRef(contact_id="c-1", name="Ivan Petrov", phone="+7 912")).events == []
    company = d.apply_company(before, d.CompanyRef(company_id="co-1", name="Acme Ltd", inn="7700000000"), LATER)
    assert company.lead.company.inn == "7700000000"
    product = d.apply_product(before, "p-1", "Sofa", "configurable", ["color"], LATER)
    assert product.lead.products[0].model_dump() == {
        "product_id": "p-1",
        "name": "Sofa",
        "kind": "configurable",
        "quantity": 1,
        "options": {"color": "red"},
    }
    assert product.lead.products[1] == before.products[1]
    assert d.apply_product(product.lead, "p-1", "Sofa", "configurable", None, LATER).events == []


def test_snapshots_refresh_locked_leads_too() -> None:
    pipe = d.default_pipeline(NOW)
    locked = d.apply_qualified(lead(pipe, contact={"contact_id": "c-1"}), pipe, "deal-1", "co-1", NOW).lead
    assert d.apply_contact(locked, d.ContactRef(contact_id="c-1", name="New name"), LATER).lead.contact.name == "New name"


# --- duplicates and merging -----------------------------------------------------------------


def test_record_mark_and_dismiss_duplicates() -> None:
    pipe = d.default_pipeline(NOW)
    first, second = lead(pipe, lead_id="L1"), lead(pipe, lead_id="L2")
    match = d.DuplicateMatch(lead_id="L1", score=0.6, matched_on=["email"])
    found = d.record_duplicates(second, [match, d.DuplicateMatch(lead_id="L2", score=1, matched_on=["email"])], LATER)
    assert found.lead.duplicates == [match]
    assert found.events == [d.DuplicatesFound("L2", (match,), 2), d.LeadUpdated(found.lead, ("duplicates",))]
    assert d.record_duplicates(found.lead, [match], LATER).events == []

    at_creation = d.duplicates_at_creation(second, [match, d.DuplicateMatch(lead_id="L2", score=1, matched_on=["email"])])
    assert at_creation.lead.duplicates == [match] and at_creation.lead.version == second.version == 1
    assert at_creation.events == [d.LeadCreated(at_creation.lead), d.DuplicatesFound("L2", (match,), 1)]
    assert d.duplicates_at_creation(second, [d.DuplicateMatch(lead_id="L2", score=1, matched_on=["email"])]).events == []

    marked = d.mark_duplicate(USER, found.lead, first, LATER)
    assert marked.lead.duplicate_of == "L1" and marked.lead.version == 3
    assert d.mark_duplicate(USER, marked.lead, first, LATER).events == []
    rejected("validation", d.mark_duplicate, USER, first, first, LATER)
    rejected("invalid_state", d.mark_duplicate, USER, first, marked.lead, LATER)

    dismissed = d.dismiss_duplicate(USER, marked.lead, "L1", LATER)
    assert dismissed.lead.duplicates == [] and dismissed.lead.duplicate_of is None
    assert dismissed.events == [d.LeadUpdated(dismissed.lead, ("duplicates", "duplicate_of"))]
    assert d.dismiss_duplicate(USER, dismissed.lead, "L1", LATER).events == []


def test_merge_takes_chosen_fields_and_deletes_the_other() -> None:
    pipe = d.default_pipeline(NOW)
    survivor = lead(pipe, lead_id="L1", title="Old title", source="web")
    survivor = d.record_duplicates(survivor, [d.DuplicateMatch(lead_id="L2", score=0.6, matched_on=["email"])], NOW).lead
    other = lead(pipe, actor=OTHER_USER, lead_id="L2", title="Better title", source="fair", description="Wants 3")
    other = d.assign_lead(OTHER_USER, other, pipe, "u-2", NOW).lead

    kept, gone = d.merge_leads(USER, survivor, other, {"title": "other", "source": "self"}, LATER)

    assert (kept.lead.title, kept.lead.source, kept.lead.description) == ("Better title", "web", "Wants 3")
    assert kept.lead.responsible_id == "u-1" and kept.lead.duplicates == []
    assert kept.lead.version == survivor.version + 1 and kept.lead.data_changed_at == LATER
    assert [(e.stage_id, e.left_at) for e in kept.lead.status_history] == [
        ("new", None),
        ("new", NOW),
        ("processing", LATER),
    ]
    assert kept.events[0] == d.LeadMerged("L1", "L2", kept.lead.version)
    assert (gone.lead.deleted, gone.lead.merged_into, gone.lead.version) == (True, "L1", other.version + 1)
    assert gone.events[0] == d.LeadDeleted("L2", gone.lead.version)
    rejected("invalid_state", d.restore_lead, USER, gone.lead, d.default_pipeline(NOW), d.default_pipeline(NOW), LATER)

    again_kept, again_gone = d.merge_leads(USER, kept.lead, gone.lead, {}, LATER)
    assert again_kept.events == [] and again_gone.events == []


def test_merge_refusals() -> None:
    pipe = d.default_pipeline(NOW)
    one, two = lead(pipe, lead_id="L1"), lead(pipe, lead_id="L2")
    rejected("validation", d.merge_leads, USER, one, one, {}, LATER)
    rejected("validation", d.merge_leads, USER, one, two, {"stage_id": "other"}, LATER)
    rejected("validation", d.merge_leads, USER, one, two, {"title": "both"}, LATER)
    locked = d.apply_qualified(two, pipe, "deal-1", "co-1", NOW).lead
    rejected("invalid_state", d.merge_leads, USER, one, locked, {}, LATER)
    rejected("not_licensed", d.merge_leads, UNLICENSED, one, two, {}, LATER)


# --- read side ------------------------------------------------------------------------------


def test_days_in_status() -> None:
    pipe = d.default_pipeline(NOW)
    working = d.assign_lead(USER, lead(pipe), pipe, "u-2", NOW + timedelta(days=2)).lead
    assert d.days_in_status(working, NOW + timedelta(days=2, hours=23)) == 0
    assert d.days_in_status(working, NOW + timedelta(days=5, hours=1)) == 3


@pytest.mark.parametrize(
    ("due_in", "state", "days_left"),
    [
        (timedelta(days=3, hours=2), "on_time", 3),
        (timedelta(hours=24), "on_time", 1),
        (timedelta(hours=23), "due_soon", 0),
        (timedelta(0), "due_soon", 0),
        (timedelta(hours=-2), "overdue", -1),
        (timedelta(days=-3, hours=-1), "overdue", -4),
    ],
)
def test_last_activity_states_come_from_now(due_in: timedelta, state: str, days_left: int) -> None:
    # The stored state is stale on purpose: the card must not trust it.
    summary = d.ActivitySummaryView(next_due_at=LATER + due_in, next_task_id="t-1", open_count=1, state="on_time")
    with_task = d.apply_activity_summary(lead(), summary, NOW).lead
    assert d.last_activity(with_task, LATER) == {
        "at": LATER + due_in,
        "days_left": days_left,
        "state": state,
        "task_id": "t-1",
    }


def test_last_activity_without_open_task_is_the_last_data_change() -> None:
    changed = d.update_lead(USER, lead(), {"description": "x"}, [], LATER).lead
    empty = d.apply_activity_summary(changed, d.ActivitySummaryView(open_count=0), LATER + timedelta(hours=1)).lead
    assert d.last_activity(empty, LATER + timedelta(days=2)) == {
        "at": LATER,
        "days_left": None,
        "state": None,
        "task_id": None,
    }


# --- contract compatibility -----------------------------------------------------------------


def test_models_validate_as_the_public_cards() -> None:
    from contracts.cards import LeadCard, PipelineCard

    full = d.apply_activity_summary(
        lead(contact={"contact_id": "c-1", "name": "Ivan"}, products=[{"product_id": "p-1"}]),
        d.ActivitySummaryView(next_due_at=LATER, open_count=1),
        NOW,
    ).lead
    assert LeadCard.model_validate(full.model_dump()).lead_id == "L1"
    assert PipelineCard.model_validate(pipeline().model_dump()).pipeline_id == "sales"


def test_contract_enums_and_stage_specs_are_accepted() -> None:
    from contracts.common import LeadStatus, StageSpec, TransitionMode

    specs = [
        StageSpec(name="New", status=LeadStatus.new),
        StageSpec(name="Work", status=LeadStatus.in_progress),
        StageSpec(name="Q", status=LeadStatus.qualified),
        StageSpec(name="U", status=LeadStatus.unqualified),
    ]
    pipe = d.create_pipeline(ADMIN, "p", "P", specs, TransitionMode.forward_only, NOW).pipeline
    assert pipe.transition_mode == "forward_only" and pipe.stages[1].status == "in_progress"


def test_naive_time_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        d.create_lead(USER, "L1", {"title": "t"}, d.default_pipeline(NOW), datetime(2025, 1, 1))
