"""Rules of qualification, checked on plain objects with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.qualification import domain as d

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
USER = d.Actor(user_id="u-1", licensed=True)
ADMIN = d.Actor(user_id="admin-1", licensed=True, is_admin=True)
UNLICENSED = d.Actor(user_id="u-9", licensed=False)
PIPELINES = ["default", "b2b"]


def lead(**changes) -> d.Lead:
    values = dict(
        lead_id="L1", version=3, pipeline_id="default", stage_id="processing", status="in_progress",
        title="Website request", responsible_id="u-2", contact=d.ContactRef(name="Ivan", phone="+7912"),
        products=[d.ProductLine(product_id="p-1", quantity=2)], source="website",
        utm_source="google", utm_medium="cpc", utm_campaign="spring",
    )
    values.update(changes)
    return d.Lead(**values)


def request(**changes) -> d.QualifyRequest:
    values = dict(
        lead_id="L1", qualification_type="deal_and_company", has_new_company=True, new_company_name="ООО Ромашка",
        new_company_inn="7701234567", deal_pipeline_id="default",
    )
    values.update(changes)
    return d.QualifyRequest(**values)


def check(req=None, the_lead=..., actor=USER, closing=None, company_known=None):
    return d.check_qualification(
        req or request(), lead() if the_lead is ... else the_lead, actor, closing, "cmd-1", PIPELINES, company_known
    )


def codes(problems) -> list[tuple[str, str | None]]:
    return [(p.code, p.field) for p in problems]


# --- checks -----------------------------------------------------------------------------------


def test_a_good_request_passes() -> None:
    assert check() == []
    assert check(request(qualification_type="company_only", deal_pipeline_id=None)) == []
    assert check(request(has_new_company=False, new_company_name=None, company_id="co-7"), company_known=True) == []


def test_every_failing_reason_is_reported_not_only_the_first() -> None:
    problems = check(
        request(has_new_company=False, new_company_name=None, deal_pipeline_id=None),
        the_lead=lead(status="qualified", deleted=True),
        actor=UNLICENSED,
    )
    assert codes(problems) == [
        ("invalid_state", "lead_id"),
        ("invalid_state", "lead_id"),
        ("not_licensed", None),
        ("validation", "company_id"),
        ("validation", "deal_pipeline_id"),
    ]
    assert all(p.message for p in problems)


def test_unknown_lead_and_unknown_company() -> None:
    problems = check(request(has_new_company=False, company_id="co-x"), the_lead=None, company_known=False)
    assert codes(problems) == [("not_found", "lead_id"), ("not_found", "company_id")]


def test_both_company_id_and_new_company_is_refused() -> None:
    assert codes(check(request(company_id="co-1"), company_known=True)) == [("validation", "company_id")]


def test_deal_pipeline_must_be_configured() -> None:
    problems = check(request(deal_pipeline_id="retail"))
    assert codes(problems) == [("validation", "deal_pipeline_id")]
    assert "retail" in problems[0].message and "default" in problems[0].message


def test_a_lead_closed_by_this_service_is_refused_before_the_leads_service_catches_up() -> None:
    done = d.plan_qualification(request(), lead(), USER, "cmd-0", NOW)
    assert codes(check(closing=d.advanced(done, "done"))) == [("invalid_state", "lead_id")]
    assert codes(check(closing=done)) == [("conflict", "lead_id")]
    # The same command resuming its own process is not refused by it.
    assert d.check_qualification(request(), lead(), USER, done, "cmd-0", PIPELINES, None) == []


# --- the plan and its steps -------------------------------------------------------------------


def test_the_plan_carries_the_lead_into_the_deal_with_stable_ids() -> None:
    plan = d.plan_qualification(request(industry="retail", segment="smb"), lead(), USER, "cmd-1", NOW)
    again = d.plan_qualification(request(industry="retail", segment="smb"), lead(), USER, "cmd-2", NOW)
    assert plan.company_id == again.company_id == d.company_id_for("L1")
    assert plan.deal.deal_id == again.deal.deal_id == d.deal_id_for("L1")
    assert plan.company_id != plan.deal.deal_id
    deal = plan.deal
    assert (deal.title, deal.responsible_id, deal.source) == ("Website request", "u-2", "website")
    assert (deal.utm_source, deal.utm_medium, deal.utm_campaign) == ("google", "cpc", "spring")
    assert deal.contact.name == "Ivan" and deal.products[0].quantity == 2
    assert deal.company_id == plan.company_id and deal.deal_pipeline_id == "default"
    assert plan.new_company.name == "ООО Ромашка" and plan.new_company.industry == "retail"


def test_existing_company_and_company_only() -> None:
    plan = d.plan_qualification(
        request(has_new_company=False, new_company_name=None, company_id="co-7", qualification_type="company_only"),
        lead(), USER, "cmd-1", NOW,
    )
    assert plan.company_id == "co-7" and plan.new_company is None and plan.deal is None


def test_responsible_falls_back_to_the_creator_then_the_qualifier() -> None:
    assert d.plan_qualification(request(), lead(responsible_id=None, created_by="u-3"), USER, "c", NOW).deal.responsible_id == "u-3"
    assert d.plan_qualification(request(), lead(responsible_id=None), USER, "c", NOW).deal.responsible_id == "u-1"


def test_the_process_walks_its_states_in_order() -> None:
    plan = d.plan_qualification(request(), lead(), USER, "cmd-1", NOW)
    walked = []
    while (step := d.next_step(plan)) is not None:
        walked.append((step.create, step.to_state))
        plan = d.advanced(plan, step.to_state)
    assert walked == [("company", "company_created"), ("deal", "deal_created"), (None, "done")]
    only = d.plan_qualification(
        request(has_new_company=False, company_id="co-7", qualification_type="company_only"), lead(), USER, "c", NOW
    )
    assert [d.next_step(only).create, d.next_step(d.advanced(only, "company_created")).create] == [None, None]


def test_what_is_left_to_create_follows_the_state_reached() -> None:
    plan = d.plan_qualification(request(), lead(), USER, "cmd-1", NOW)
    left = {state: d.creates_left(d.advanced(plan, state)) for state in ("started", "company_created", "deal_created", "done")}
    assert left == {"started": ["company", "deal"], "company_created": ["deal"], "deal_created": [], "done": []}
    only = d.plan_qualification(
        request(has_new_company=False, company_id="co-7", qualification_type="company_only"), lead(), USER, "c", NOW
    )
    assert d.creates_left(only) == []


def test_naive_time_is_a_bug() -> None:
    with pytest.raises(ValueError):
        d.plan_qualification(request(), lead(), USER, "cmd-1", datetime(2025, 1, 1))


# --- disqualification -------------------------------------------------------------------------


def test_disqualify_needs_a_reason_from_the_list() -> None:
    reasons = d.default_reasons()
    ok = d.check_disqualification("L1", "no_budget", lead(), USER, None, "cmd-1", reasons)
    assert ok == []
    problems = d.check_disqualification("L1", "they were rude", lead(), USER, None, "cmd-1", reasons)
    assert codes(problems) == [("validation", "reason_id")]
    for reason_id in ("no_contact", "lost_interest", "no_budget", "competitor", "duplicate"):
        assert reason_id in problems[0].message
    closing = d.plan_disqualification(lead(), d.reason_of(reasons, "no_budget"), "  frozen till Q3 ", "cmd-1", NOW)
    assert (closing.reason, closing.comment, closing.state) == ("No budget", "frozen till Q3", "done")


def test_disqualify_refuses_closed_unknown_and_unlicensed() -> None:
    reasons = d.default_reasons()
    assert codes(d.check_disqualification("L1", "no_budget", None, UNLICENSED, None, "c", reasons)) == [
        ("not_found", "lead_id"), ("not_licensed", None)
    ]
    assert codes(d.check_disqualification("L1", "no_budget", lead(status="unqualified"), USER, None, "c", reasons)) == [
        ("invalid_state", "lead_id")
    ]


def test_default_reasons_are_bilingual_with_stable_ids() -> None:
    reasons = {r.reason_id: r for r in d.default_reasons()}
    assert set(reasons) == {"no_contact", "lost_interest", "no_budget", "competitor", "duplicate"}
    assert reasons["no_contact"].text_ru == "Не удалось связаться с клиентом"
    assert reasons["competitor"].text == "Chose a competitor"


def test_only_administrators_edit_reasons() -> None:
    reasons = d.default_reasons()
    new = d.Reason(reason_id="too_small", text="Too small", text_ru="Слишком мал")
    added, problems = d.add_reason(ADMIN, "default", True, reasons, new)
    assert problems == [] and added[-1] == new
    assert d.add_reason(ADMIN, "default", True, added, new) == (added, [])  # the same again changes nothing
    assert codes(d.add_reason(USER, "default", True, reasons, new)[1]) == [("forbidden", None)]
    assert codes(d.add_reason(UNLICENSED, "default", True, reasons, new)[1]) == [("not_licensed", None)]
    clash = d.Reason(reason_id="no_budget", text="Something else")
    assert codes(d.add_reason(ADMIN, "default", True, reasons, clash)[1]) == [("conflict", "reason_id")]
    assert codes(d.add_reason(ADMIN, "nope", False, [], new)[1]) == [("not_found", "pipeline_id")]
    removed, problems = d.remove_reason(ADMIN, "default", True, reasons, "duplicate")
    assert problems == [] and "duplicate" not in {r.reason_id for r in removed}
    assert codes(d.remove_reason(ADMIN, "default", True, removed, "duplicate")[1]) == [("not_found", "reason_id")]


def test_a_reopened_lead_may_be_closed_again_with_ids_of_its_own() -> None:
    first = d.plan_qualification(request(), lead(version=3), USER, "cmd-0", NOW)
    done = first.model_copy(update={"state": "done"})
    # Seen qualified at version 4 (this process landed), then reopened at version 5.
    reopened = lead(version=5, status="in_progress", closed_version=4)
    assert d.reopened_since(reopened, done)
    assert check(the_lead=reopened, closing=done) == []
    second = d.plan_qualification(request(), reopened, USER, "cmd-9", NOW, previous=done)
    assert second.deal.deal_id != first.deal.deal_id and second.company_id != first.company_id
    assert second.previous_command_id == "cmd-0" and second.lead_version == 5
    assert d.event_id(second, "crm.lead.qualified") != d.event_id(first, "crm.lead.qualified")
    # The same command planned twice fixes the same ids (a redelivery replays, never doubles).
    assert d.plan_qualification(request(), reopened, USER, "cmd-9", NOW, previous=done).deal.deal_id == second.deal.deal_id


def test_an_open_lead_whose_closing_has_not_landed_is_not_reopened() -> None:
    done = d.plan_qualification(request(), lead(version=3), USER, "cmd-0", NOW).model_copy(update={"state": "done"})
    # The leads service has not applied the qualification yet: open, never seen closed since.
    assert not d.reopened_since(lead(version=4, status="in_progress"), done)
    assert [p.code for p in check(the_lead=lead(version=4), closing=done)] == ["invalid_state"]
    # Closed by an earlier process, reopened, then this one planned: its own closing has not landed.
    assert not d.reopened_since(lead(version=9, status="in_progress", closed_version=6), done.model_copy(update={"lead_version": 8}))
