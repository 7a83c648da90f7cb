"""Rules of CRM tasks, checked on plain objects with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.activity import domain as d
from services.activity.domain import Actor, LeadInfo, Rejected

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

USER = Actor(user_id="u-1", licensed=True)
ADMIN = Actor(user_id="admin-1", licensed=True, is_admin=True)
UNLICENSED = Actor(user_id="u-9", licensed=False, is_admin=True)
LEAD = LeadInfo(lead_id="L1", version=3, pipeline_id="default", status="in_progress")


def rejected(code: str, call, *args, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


def fields(**overrides):
    values = dict(
        lead_id="L1", type="call", title="Call back", start_at=NOW + HOUR, due_at=NOW + 2 * HOUR,
        assignee_id="u-1", priority="normal", contact_id=None,
    )
    values.update(overrides)
    return values


def task(task_id: str = "T1", **overrides) -> d.Task:
    return d.create_task(USER, LEAD, task_id, fields(**overrides), {}, NOW).task


# --- create ---------------------------------------------------------------------------------


def test_create_makes_an_open_task_with_a_created_event():
    change = d.create_task(USER, LEAD, "T1", fields(priority="high", contact_id="C1"), {}, NOW)
    t = change.task
    assert (t.status, t.version, t.priority, t.contact_id, t.created_by) == ("open", 1, "high", "C1", "u-1")
    assert [type(e) for e in change.events] == [d.TaskCreated]


def test_create_normalises_times_to_utc_milliseconds():
    msk = datetime(2025, 3, 15, 12, 0, 0, 123456, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Moscow"))
    t = task(start_at=msk, due_at=msk)
    assert t.due_at == datetime(2025, 3, 15, 9, 0, 0, 123000, tzinfo=UTC) and t.due_at.tzinfo == UTC


def test_create_takes_custom_types_and_refuses_unknown_ones():
    assert d.create_task(USER, LEAD, "T1", fields(type="site-visit"), {"site-visit": "Site visit"}, NOW).task.type == "site-visit"
    error = rejected("validation", d.create_task, USER, LEAD, "T1", fields(type="séance"), {}, NOW)
    assert error.errors[0][0] == "type"


def test_create_refuses_due_before_start():
    error = rejected("validation", d.create_task, USER, LEAD, "T1", fields(start_at=NOW + 2 * HOUR, due_at=NOW + HOUR), {}, NOW)
    assert error.errors == [("due_at", "must not be before start_at")]
    assert d.create_task(USER, LEAD, "T1", fields(start_at=NOW, due_at=NOW), {}, NOW).changed  # due at start is fine


@pytest.mark.parametrize(
    ("lead", "code", "words"),
    [
        (None, "not_found", "unknown"),
        (LeadInfo(lead_id="L1", version=2), "not_found", "unknown"),  # only partial facts, never the card
        (LEAD.model_copy(update={"deleted": True}), "invalid_state", "deleted"),
        (LEAD.model_copy(update={"status": "unqualified"}), "invalid_state", "unqualified"),
        (LEAD.model_copy(update={"status": "qualified"}), "invalid_state", "qualified"),
    ],
)
def test_create_refuses_leads_tasks_cannot_go_on(lead, code, words):
    assert words in rejected(code, d.create_task, USER, lead, "T1", fields(), {}, NOW).message


def test_create_refuses_unlicensed_actors_first():
    rejected("not_licensed", d.create_task, UNLICENSED, None, "T1", fields(type="nope"), {}, NOW)


def test_create_refuses_an_existing_task_id():
    rejected("conflict", d.create_task, USER, LEAD, "T1", fields(), {}, NOW, existing=task())


# --- update ---------------------------------------------------------------------------------


def test_update_reschedules_and_reassigns_and_resets_due_flags():
    t = task().model_copy(update={"due_soon_notified": True})
    change = d.update_task(USER, t, LEAD, {"due_at": NOW + 5 * HOUR, "assignee_id": "u-2", "title": None}, NOW + HOUR)
    assert change.task.due_at == NOW + 5 * HOUR and change.task.assignee_id == "u-2"
    assert change.task.version == 2 and change.task.updated_at == NOW + HOUR
    assert change.task.due_soon_notified is False
    assert change.events[0].changed_fields == ("due_at", "assignee_id")


def test_update_without_a_real_change_changes_nothing():
    t = task()
    change = d.update_task(USER, t, LEAD, {"title": t.title}, NOW)
    assert not change.changed and change.task is t


def test_update_keeps_due_after_start_across_fields():
    rejected("validation", d.update_task, USER, task(), LEAD, {"start_at": NOW + 3 * HOUR}, NOW)


def test_update_refuses_closed_tasks_and_closed_leads():
    cancelled = d.cancel_task(USER, task(), None, NOW).task
    rejected("invalid_state", d.update_task, USER, cancelled, LEAD, {"title": "x"}, NOW)
    rejected("invalid_state", d.update_task, USER, task(), LEAD.model_copy(update={"status": "qualified"}), {"title": "x"}, NOW)


# --- complete -------------------------------------------------------------------------------


def complete(t: d.Task, lead: LeadInfo | None = LEAD, actor: Actor = USER, **kwargs):
    args = dict(outcome=None, comment=None, next_call_at=None, reason_id=None, call_id="NEXT", now=NOW + HOUR)
    args.update(kwargs)
    return d.complete_task(actor, t, lead, **args)


def test_complete_defaults_to_done():
    change = complete(task(), comment="Talked")
    t = change.task
    assert (t.status, t.outcome, t.comment, t.completed_at, t.completed_by, t.version) == ("done", "done", "Talked", NOW + HOUR, "u-1", 2)
    assert [type(e) for e in change.events] == [d.TaskCompleted] and change.follow_up is None


def test_no_answer_with_next_call_schedules_exactly_that_call():
    change = complete(task(), outcome="no_answer", next_call_at=NOW + 24 * HOUR)
    call = change.follow_up
    assert call.task_id == "NEXT" and call.type == "call" and call.status == "open"
    assert call.start_at == NOW + 24 * HOUR and call.due_at == NOW + 25 * HOUR  # keeps the original length
    assert (call.lead_id, call.assignee_id, call.title) == ("L1", "u-1", "Call back")
    assert [type(e) for e in change.events] == [d.TaskCompleted, d.TaskCreated]
    # Derived from the completed task alone, so a redelivery derives the very same call.
    assert d.next_call(change.task, "NEXT") == call


def test_no_answer_without_next_call_schedules_nothing():
    change = complete(task(), outcome="no_answer")
    assert change.follow_up is None and change.task.outcome == "no_answer"


def test_no_answer_is_for_calls_and_next_call_only_for_no_answer():
    rejected("validation", complete, task(type="email"), outcome="no_answer")
    rejected("validation", complete, task(), outcome="done", next_call_at=NOW + 24 * HOUR)


def test_close_lead_completes_and_asks_to_disqualify_as_the_actor():
    change = complete(task(), outcome="close_lead", reason_id="no-budget", comment="Frozen till Q3")
    assert change.task.outcome == "close_lead"
    asked = change.events[-1]
    assert asked == d.DisqualifyRequested("L1", "no-budget", "Frozen till Q3", "u-1")


def test_close_lead_needs_a_reason_and_a_live_open_lead():
    rejected("validation", complete, task(), outcome="close_lead")
    rejected("invalid_state", complete, task(), LEAD.model_copy(update={"status": "unqualified"}), outcome="close_lead", reason_id="r")
    rejected("invalid_state", complete, task(), LEAD.model_copy(update={"deleted": True}), outcome="close_lead", reason_id="r")


def test_completing_a_cancelled_or_done_task_is_refused():
    cancelled = d.cancel_task(USER, task(), "no longer needed", NOW).task
    assert "cancelled" in rejected("invalid_state", complete, cancelled).message
    done = complete(task()).task
    assert "already done" in rejected("invalid_state", complete, done).message


def test_complete_and_cancel_refuse_unlicensed_actors():
    rejected("not_licensed", complete, task(), actor=UNLICENSED)
    rejected("not_licensed", d.cancel_task, UNLICENSED, task(), None, NOW)


def test_a_plain_completion_still_works_on_a_qualified_lead():
    assert complete(task(), LEAD.model_copy(update={"status": "qualified"})).task.status == "done"


# --- task types -----------------------------------------------------------------------------


def test_only_admins_add_new_task_types():
    assert d.add_task_type(ADMIN, "site-visit", "Site visit", {}) == ("site-visit", "Site visit")
    rejected("forbidden", d.add_task_type, USER, "site-visit", "Site visit", {})
    rejected("not_licensed", d.add_task_type, UNLICENSED, "site-visit", "Site visit", {})
    rejected("conflict", d.add_task_type, ADMIN, "call", "Call", {})
    rejected("conflict", d.add_task_type, ADMIN, "site-visit", "Visit", {"site-visit": "Site visit"})


# --- the lead's fate ------------------------------------------------------------------------


def test_disqualification_completes_open_tasks_with_the_reason():
    change = d.complete_with_lead_disqualified(task(), "No budget", "Frozen", NOW + HOUR)
    assert change.task.status == "done" and "No budget" in change.task.comment and "Frozen" in change.task.comment
    assert not d.complete_with_lead_disqualified(change.task, "No budget", None, NOW).changed


def test_deletion_cancels_open_tasks_and_restoration_reopens_only_those():
    cancelled = d.cancel_with_lead_deleted(task(), NOW + HOUR).task
    assert cancelled.status == "cancelled" and cancelled.cancelled_with_lead
    reopened = d.reopen_with_lead_restored(cancelled, NOW + 2 * HOUR)
    assert reopened.task.status == "open" and reopened.task.completed_at is None and not reopened.task.cancelled_with_lead
    assert reopened.task.version == 3
    by_hand = d.cancel_task(USER, task(), "not needed", NOW).task
    assert not d.reopen_with_lead_restored(by_hand, NOW).changed
    done = complete(task()).task
    assert not d.cancel_with_lead_deleted(done, NOW).changed


def test_lead_reaction_follows_the_lead_state():
    assert d.lead_reaction(LEAD.model_copy(update={"deleted": True})) == "cancel_open"
    assert d.lead_reaction(LEAD) == "reopen_cancelled"


# --- time -----------------------------------------------------------------------------------


def test_activity_state_boundaries():
    due = NOW + 48 * HOUR
    assert d.activity_state(due, due - 24 * HOUR) == "on_time"
    assert d.activity_state(due, due - 23 * HOUR) == "due_soon"
    assert d.activity_state(due, due) == "due_soon"
    assert d.activity_state(due, due + timedelta(milliseconds=1)) == "overdue"


def test_summary_names_the_nearest_open_task_and_counts():
    a = task("A", start_at=NOW - 5 * HOUR, due_at=NOW - HOUR)
    b = task("B", start_at=NOW, due_at=NOW + 3 * HOUR)
    c = task("C", start_at=NOW, due_at=NOW + 72 * HOUR)
    closed = complete(task("D", start_at=NOW - 9 * HOUR, due_at=NOW - 8 * HOUR)).task
    other = task("E", lead_id="L2", start_at=NOW - 9 * HOUR, due_at=NOW - 9 * HOUR)
    s = d.summarize("L1", [c, b, a, closed, other], NOW)
    assert (s.next_task_id, s.next_due_at, s.open_count, s.overdue_count, s.state) == ("A", NOW - HOUR, 3, 1, "overdue")
    s = d.summarize("L1", [c, b], NOW)
    assert (s.next_task_id, s.overdue_count, s.state) == ("B", 0, "due_soon")
    assert d.summarize("L1", [c], NOW).state == "on_time"
    assert d.summarize("L1", [], NOW) == d.Summary("L1", None, None, 0, 0, None)


def test_due_notices_come_once_per_transition():
    t = task(start_at=NOW, due_at=NOW + 48 * HOUR)
    assert d.due_notice(t, NOW) is None
    soon = d.due_notice(t, NOW + 30 * HOUR)
    assert soon == d.Notice("due_soon", True, False)
    t = t.model_copy(update={"due_soon_notified": True})
    assert d.due_notice(t, NOW + 31 * HOUR) is None
    late = d.due_notice(t, NOW + 49 * HOUR)
    assert late == d.Notice("overdue", True, True)
    t = t.model_copy(update={"overdue_notified": True})
    assert d.due_notice(t, NOW + 50 * HOUR) is None


def test_a_missed_due_soon_goes_straight_to_overdue_and_closed_tasks_get_none():
    t = task(start_at=NOW, due_at=NOW + HOUR)
    assert d.due_notice(t, NOW + 2 * HOUR).kind == "overdue"
    assert d.due_notice(complete(t).task, NOW + 2 * HOUR) is None


def test_my_day_splits_today_and_overdue():
    day_start, day_end = NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)
    late = task("late", start_at=day_start - 5 * HOUR, due_at=day_start - HOUR)
    late_done = complete(task("late-done", start_at=day_start - 5 * HOUR, due_at=day_start - HOUR)).task
    today = task("today", start_at=NOW, due_at=NOW + HOUR)
    today_done = complete(task("today-done", start_at=NOW, due_at=NOW + 2 * HOUR)).task
    today_cancelled = d.cancel_task(USER, task("today-x", start_at=NOW, due_at=NOW + HOUR), None, NOW).task
    tomorrow = task("tomorrow", start_at=NOW, due_at=day_end + HOUR)
    got_today, got_overdue = d.my_day([tomorrow, today_done, today, late, late_done, today_cancelled], day_start, day_end)
    assert [t.task_id for t in got_today] == ["today", "today-done"]
    assert [t.task_id for t in got_overdue] == ["late"]


def test_times_must_be_aware():
    with pytest.raises(ValueError):
        d.utc(datetime(2025, 1, 1))


def test_only_the_assignee_or_an_administrator_works_a_task():
    colleague = Actor(user_id="u-2", licensed=True)
    mine = task()
    for call, args in (
        (d.update_task, (colleague, mine, LEAD, {"title": "taken over"}, NOW)),
        (d.cancel_task, (colleague, mine, None, NOW)),
    ):
        assert "assigned to another user" in rejected("forbidden", call, *args).message
    rejected("forbidden", d.complete_task, colleague, mine, LEAD, outcome=None, comment=None, next_call_at=None,
             reason_id=None, call_id="C", now=NOW)
    assert d.update_task(USER, mine, LEAD, {"assignee_id": "u-2"}, NOW).task.assignee_id == "u-2"  # handing it over
    assert d.cancel_task(ADMIN, mine, None, NOW).task.status == "cancelled"
