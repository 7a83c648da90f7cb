"""Pure rules of capture forms, submissions and mass actions: no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.leads import domain as d
from services.leads.domain import bulk, capture

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = d.Actor(user_id="alice", licensed=True, roles=frozenset({"admin"}))
MANAGER = d.Actor(user_id="bob", licensed=True)
PIPELINES = {"default": d.default_pipeline(NOW)}
# The rules take the sealing function as a parameter; the real one (scrypt) is tested in test_capture_keys.py.
SEAL = "sealed:{}".format
SETTINGS = {"name": "Contact us", "allowed_origins": ["https://shop.example"], "allowed_fields": ["contact.name", "contact.email"],
            "presets": {"source": "website", "utm_source": "site"}}


def _form(**changes):
    return capture.create_form(ADMIN, "web1", {**SETTINGS, **changes}, PIPELINES, NOW, None, SEAL).form


def _fields(error: d.Rejected) -> list[str]:
    return [field for field, _ in error.errors]


def test_a_form_is_an_administrators_and_needs_a_key_or_origins():
    with pytest.raises(d.Rejected) as refused:
        capture.create_form(MANAGER, "web1", SETTINGS, PIPELINES, NOW, None, SEAL)
    assert refused.value.code == "forbidden"
    with pytest.raises(d.Rejected) as refused:
        capture.create_form(ADMIN, "web1", {"name": "Open"}, PIPELINES, NOW, None, SEAL)
    assert _fields(refused.value) == ["secret_key"]
    with pytest.raises(d.Rejected) as refused:
        _form(stage_id="qualified", allowed_fields=["salary"], allowed_origins=["https://shop.example/page"])
    assert set(_fields(refused.value)) == {"stage_id", "allowed_fields", "allowed_origins"}
    form = _form()
    assert (form.pipeline_id, form.created_by, form.version, form.actor_id) == ("default", "alice", 1, "capture-form:web1")


def test_update_and_delete_keep_versions_and_refuse_a_deleted_form():
    form = _form(secret_key="a-long-enough-secret")
    changed = capture.update_form(ADMIN, form, "web1", {"presets": {"source": "landing"}}, ["secret_key"], PIPELINES, NOW, SEAL).form
    assert (changed.presets, changed.secret_key_hash, changed.version) == ({"source": "landing"}, None, 2)
    deleted = capture.delete_form(ADMIN, changed, "web1", NOW).form
    assert deleted.deleted and deleted.version == 3
    with pytest.raises(d.Rejected) as refused:
        capture.update_form(ADMIN, deleted, "web1", {"name": "x"}, [], PIPELINES, NOW, SEAL)
    assert refused.value.code == "not_found"


def test_a_form_keeps_its_key_only_sealed_and_a_change_without_one_keeps_it():
    form = _form(secret_key="a-long-enough-secret")
    assert form.secret_key_hash == "sealed:a-long-enough-secret"
    assert "a-long-enough-secret" not in str({k: v for k, v in form.model_dump().items() if k != "secret_key_hash"})
    kept = capture.update_form(ADMIN, form, "web1", {"name": "Renamed"}, [], PIPELINES, NOW, SEAL).form
    assert kept.secret_key_hash == form.secret_key_hash
    renewed = capture.update_form(ADMIN, kept, "web1", {"secret_key": "another-long-secret"}, [], PIPELINES, NOW, SEAL).form
    assert renewed.secret_key_hash == "sealed:another-long-secret"
    with pytest.raises(d.Rejected) as refused:
        capture.update_form(ADMIN, kept, "web1", {"secret_key": "short"}, [], PIPELINES, NOW, SEAL)
    assert _fields(refused.value) == ["secret_key"] and "short" not in refused.value.message
    # Only a key: clearing it leaves a form nobody may post to, refused.
    keyed = capture.create_form(ADMIN, "srv", {"name": "Server", "secret_key": "a-long-enough-secret"}, PIPELINES, NOW, None, SEAL).form
    with pytest.raises(d.Rejected) as refused:
        capture.update_form(ADMIN, keyed, "srv", {}, ["secret_key"], PIPELINES, NOW, SEAL)
    assert _fields(refused.value) == ["secret_key"]


def test_a_submission_takes_presets_then_query_utm_then_its_fields():
    form = _form()
    values = capture.flatten({"contact": {"name": "Anna", "email": "A@B.CO"}, "utm_campaign": "spring"})
    submission = capture.read_submission(form, values)
    data = capture.lead_fields(form, submission, {"utm_source": "google", "utm_medium": "cpc"})
    assert data["contact"] == {"name": "Anna", "email": "a@b.co"}
    assert (data["source"], data["utm_source"], data["utm_medium"], data["utm_campaign"]) == ("website", "google", "cpc", "spring")
    assert (data["title"], data["responsible_id"], data["pipeline_id"]) == ("Contact us: Anna", "alice", "default")


def test_a_submission_names_the_field_it_is_refused_for():
    form = _form()
    with pytest.raises(capture.SubmissionError) as refused:
        capture.read_submission(form, {"salary": "1"})
    assert refused.value.field == "salary"
    with pytest.raises(capture.SubmissionError) as refused:
        capture.lead_fields(form, capture.read_submission(form, {"contact.email": "nope"}), {})
    assert refused.value.field == "contact.email"
    with pytest.raises(capture.SubmissionError) as refused:
        capture.flatten({"contact": {"name": ["a", "b"]}})
    assert refused.value.field == "contact.name"
    assert capture.read_submission(form, {"_hp": "http://spam", "contact.name": "Bot"}).spam


def test_a_retry_keeps_its_key_and_the_body_key_is_per_window():
    form = _form()
    one = capture.read_submission(form, {"contact.name": "Anna", "submission_id": "s-1"})
    other = capture.read_submission(form, {"contact.name": "Anna Other", "submission_id": "s-1"})
    # the client's id decides, from wherever it retries
    assert capture.submission_key("web1", one, 1, "10.0.0.1") == capture.submission_key("web1", other, 2, "10.0.0.2")
    plain = capture.read_submission(form, {"contact.name": "  Anna  "})
    same = capture.read_submission(form, {"contact.name": "anna"})
    assert capture.submission_key("web1", plain, 7, "10.0.0.1") == capture.submission_key("web1", same, 7, "10.0.0.1")
    assert capture.submission_key("web1", plain, 7, "10.0.0.1") != capture.submission_key("web1", plain, 8, "10.0.0.1")
    # the same fields from another address are another submission: a guesser learns nothing of the visitor's
    assert capture.submission_key("web1", plain, 7, "10.0.0.1") != capture.submission_key("web1", same, 7, "10.0.0.9")


def test_a_bulk_request_names_what_it_lacks_and_each_lead_gets_the_single_command():
    with pytest.raises(d.Rejected) as refused:
        bulk.check_request("b1", {"action": "move", "lead_ids": ["L1"], "filter": {"stage_id": "new"}}, "bob")
    assert set(_fields(refused.value)) == {"lead_ids", "stage_id"}
    with pytest.raises(d.Rejected) as refused:
        bulk.check_request("b1", {"action": "delete", "lead_ids": ["L1"], "responsible_id": "carol"}, "bob")
    assert _fields(refused.value) == ["responsible_id"]
    request = bulk.check_request("b1", {"action": "change_pipeline", "lead_ids": ["L1", "L2", "L1"], "pipeline_id": "p2"}, "bob")
    assert request.lead_ids == ("L1", "L2")
    assert bulk.lead_command(request.action, request.params, "L2") == ("crm.lead.change-pipeline", {"lead_id": "L2", "pipeline_id": "p2"})
    assert [bulk.outcome_of(t) for t in (["crm.command.rejected"], ["crm.lead.stage-changed"], [])] == ["refused", "applied", "unchanged"]


def test_only_its_owner_or_an_administrator_cancels_a_running_job():
    bulk.check_cancel("running", "b1", "bob", "bob", False)
    bulk.check_cancel("running", "b1", "bob", "alice", True)
    for state, actor, code in (("running", "carol", "forbidden"), ("completed", "bob", "invalid_state"), (None, "bob", "not_found")):
        with pytest.raises(d.Rejected) as refused:
            bulk.check_cancel(state, "b1", "bob", actor, False)
        assert refused.value.code == code
    assert [bulk.job_state(c, n) for c, n in ((False, 3), (True, 0), (False, 0))] == ["running", "cancelled", "completed"]
