"""Stage-entry actions and pipeline visibility as pure rules: what a pipeline may be given, who sees it, what is published."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.leads import domain as d
from services.leads.actions.signing import signature, verify
from services.leads.domain import Actor, Rejected

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ADMIN = Actor(user_id="admin-1", licensed=True, roles=frozenset({"admin"}))
MEMBER = Actor(user_id="u-1", licensed=True, groups=frozenset({"wholesale"}))
DIRECTOR = Actor(user_id="u-2", licensed=True, roles=frozenset({"director"}))
OUTSIDER = Actor(user_id="u-3", licensed=True, groups=frozenset({"retail"}))
SECRET = "a-secret-of-twenty-chars"


def stages(*actions, final_actions=()):
    return [
        {"stage_id": "new", "name": "New", "status": "new"},
        {"stage_id": "quote", "name": "Quote", "status": "in_progress", "on_enter": list(actions)},
        {"stage_id": "won", "name": "Won", "status": "qualified", "on_enter": list(final_actions)},
        {"stage_id": "lost", "name": "Lost", "status": "unqualified"},
    ]


def hook(url="https://erp.example.ru/hook", **extra):
    return {"action_id": "erp", "kind": "webhook", "url": url, "secret": SECRET, **extra}


def create(stage_specs, visible_to=None, private_hosts=frozenset()):
    return d.create_pipeline(ADMIN, "p", "P", stage_specs, "manual", NOW, visible_to=visible_to, private_hosts=private_hosts).pipeline


def problems(stage_specs, **kwargs):
    with pytest.raises(Rejected) as info:
        create(stage_specs, **kwargs)
    assert info.value.code == "validation"
    return dict(info.value.errors)


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://erp.example.ru/x", "only http and https"),
    ("https:///nohost", "no host"),
    ("http://10.0.0.7/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://[::1]:8080/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "private"),
    ("http://localhost:9000/x", "private"),
    ("http://erp.internal/x", "private"),
    ("http://localhost./x", "private"),
    ("http://[::ffff:127.0.0.1]/x", "private"),  # IPv6 forms that reach IPv4 loopback or private networks
    ("http://[64:ff9b::a00:1]/x", "private"),
    ("http://[2002:7f00:1::]/x", "private"),
    ("https://u:p@erp.example.ru/x", "credentials"),
    ("https://erp.example.ru:99999/x", "not a valid address"),
])
def test_webhook_addresses_refused_name_the_field(url, words):
    found = problems(stages(hook(url)))
    assert words in found["stages.1.on_enter.0.url"]


def test_a_resolved_address_is_private_whatever_its_notation():
    for address in ("fe80::1%eth0", "::ffff:10.1.2.3", "64:ff9b::7f00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "0.0.0.0", "::"):
        assert d.is_private_host(address), address
    for address in ("93.184.215.14", "2a00:1450:4001:80b::200e", "64:ff9b::5db8:d70e", "erp.example.ru"):
        assert not d.is_private_host(address), address


def test_a_private_host_is_allowed_only_when_listed():
    assert "stages.1.on_enter.0.url" in problems(stages(hook("http://127.0.0.1:8080/h")))
    assert create(stages(hook("http://127.0.0.1:8080/h")), private_hosts=frozenset({"127.0.0.1"})).stage("quote").on_enter
    assert create(stages(hook("http://127.0.0.1:8080/h")), private_hosts=frozenset({"127.0.0.1:8080"})).stage("quote").on_enter
    assert "stages.1.on_enter.0.url" in problems(stages(hook("http://127.0.0.1:9/h")), private_hosts=frozenset({"127.0.0.1:8080"}))


def test_field_actions_are_limited_to_plain_fields_and_open_stages():
    found = problems(stages({"kind": "set_fields", "set_fields": {"title": "x", "need_maturity": "hot", "source": ""}}))
    assert set(found) == {"stages.1.on_enter.0.set_fields.title", "stages.1.on_enter.0.set_fields.need_maturity",
                          "stages.1.on_enter.0.set_fields.source"}
    locked = problems(stages(final_actions=[{"kind": "set_fields", "set_fields": {"source": "won"}}]))
    assert "locked" in locked["stages.2.on_enter.0.set_fields"]
    assert "secret" in problems(stages(hook(secret="short")))["stages.1.on_enter.0.secret"]
    assert "kind" in " ".join(problems(stages({"kind": "email"})))


def test_an_update_keeps_a_webhooks_secret_and_the_stages_actions_when_not_repeated():
    pipeline = create(stages(hook(), {"action_id": "tag", "kind": "set_fields", "set_fields": {"source": "b2b"}}))
    assert [a.action_id for a in pipeline.stage("quote").on_enter] == ["erp", "tag"]
    repeated = [{**s, "on_enter": [hook(secret=None)]} if s["stage_id"] == "quote" else s for s in stages()]
    updated = d.update_pipeline(ADMIN, pipeline, stages=repeated, now=NOW, leads_per_stage={}).pipeline
    assert updated.stage("quote").on_enter[0].secret == SECRET
    untouched = [{k: v for k, v in s.items() if k != "on_enter"} for s in stages()]
    same = d.update_pipeline(ADMIN, pipeline, stages=untouched, now=NOW, leads_per_stage={})
    assert same.events == [] and same.pipeline.stage("quote").on_enter == pipeline.stage("quote").on_enter
    cleared = d.update_pipeline(ADMIN, pipeline, stages=[{**s, "on_enter": []} for s in stages()], now=NOW, leads_per_stage={})
    assert cleared.pipeline.stage("quote").on_enter == []


def test_the_published_pipeline_shows_no_secret():
    public = d.public_pipeline(create(stages(hook())))
    action = public["stages"][1]["on_enter"][0]
    assert action["secret_set"] is True and "secret" not in action
    assert SECRET not in str(public)


def test_visibility_groups_roles_admins_and_everyone_by_default():
    shown = create(stages(), visible_to={"groups": ["wholesale"], "roles": ["director"]})
    assert [d.can_see(a, shown) for a in (ADMIN, MEMBER, DIRECTOR, OUTSIDER)] == [True, True, True, False]
    everyone = create(stages())
    assert everyone.visible_to is None and d.can_see(OUTSIDER, everyone)
    assert create(stages(), visible_to={"groups": [" "], "roles": []}).visible_to is None  # naming nobody is everyone
    opened = d.update_pipeline(ADMIN, shown, visible_to={"groups": []}, now=NOW).pipeline
    assert opened.visible_to is None and d.can_see(OUTSIDER, opened)


def test_a_capture_form_creates_into_its_pipeline_even_when_that_is_shown_to_some_groups_only():
    shown = create(stages(), visible_to={"groups": ["wholesale"]})
    form = Actor(user_id="capture-form:wholesale-site", licensed=True)
    assert d.can_see(form, shown)
    assert not d.can_see(Actor(user_id="capture-form-lookalike", licensed=True), shown)


def test_a_hidden_lead_and_a_missing_one_get_the_same_refusal():
    hidden = create(stages(), visible_to={"groups": ["wholesale"]})
    lead = d.create_lead(ADMIN, "L1", {"title": "x"}, hidden, NOW).lead
    pipelines = {"p": hidden}
    with pytest.raises(Rejected) as seen:
        d.require_visible(OUTSIDER, lead, "L1", pipelines)
    with pytest.raises(Rejected) as missing:
        d.require_visible(OUTSIDER, None, "L2", pipelines)
    assert seen.value.code == missing.value.code == "forbidden"
    assert seen.value.message.replace("L1", "X") == missing.value.message.replace("L2", "X")
    d.require_visible(MEMBER, lead, "L1", pipelines)
    d.require_visible(OUTSIDER, None, "L2", {"p": create(stages())})  # nothing hidden: not_found is the rule's
    with pytest.raises(Rejected) as into:
        d.visible_pipeline(pipelines, "p", OUTSIDER)
    with pytest.raises(Rejected) as nowhere:
        d.visible_pipeline(pipelines, "q", OUTSIDER)
    assert into.value.code == nowhere.value.code == "not_found"
    assert into.value.message.replace(" p ", " X ") == nowhere.value.message.replace(" q ", " X ")


def test_signatures_verify_only_with_the_secret_the_body_and_a_recent_time():
    body = b'{"id":"1"}'
    header = signature(SECRET, 1_700_000_000, body)
    assert verify(SECRET, header, body, now=1_700_000_010)
    assert not verify("another-secret-value", header, body, now=1_700_000_010)
    assert not verify(SECRET, header, body + b" ", now=1_700_000_010)
    assert not verify(SECRET, header, body, now=1_700_001_000)  # a replay long after
    assert not verify(SECRET, "garbage", body, now=1_700_000_010)
