"""The shared command checks (crmkit.access): actor, licence, bounded fields, ownership, the rejection."""

from __future__ import annotations

import uuid

import pytest

from contracts import build_message, payload_class
from crmkit import access
from crmkit.principals import Principal

NS = uuid.UUID("00000000-0000-0000-0000-000000000015")
LICENSED = Principal("bob", frozenset({"crm"}))
ADMIN = Principal("alice", frozenset({"crm"}), frozenset({"admin"}))
UNLICENSED = Principal("mallory")


def cmd(type_name: str, actor: str | None = "bob", **data):
    return build_message(payload_class(type_name).model_validate(data), source="test", actorid=actor)


def field_names(refusal: access.Refusal | None) -> set[str]:
    assert refusal is not None
    return {name for name, _ in refusal.errors}


@pytest.mark.parametrize("actor", [None, "", "   "])
def test_no_actor_is_not_licensed(actor) -> None:
    refusal = access.screen(cmd("crm.lead.create", actor, title="x"))
    assert refusal is not None and refusal.code == "not_licensed" and field_names(refusal) == {"actorid"}


def test_a_malformed_actor_is_not_licensed_and_not_looked_up() -> None:
    message = cmd("crm.lead.create", "bob\x00", title="x")
    assert access.screen(message).code == "not_licensed"
    assert access.actor_ids([message, cmd("crm.lead.create", "bob", title="y")]) == {"bob"}


def test_the_licence_decides_whatever_the_target() -> None:
    message = cmd("crm.lead.update", "mallory", lead_id="any", title="x")
    refusal = access.licence_refusal(message, {"mallory": UNLICENSED})
    assert refusal is not None and refusal.code == "not_licensed"
    assert access.licence_refusal(message, {}) == refusal  # an actor never seen: the very same answer
    assert access.licence_refusal(cmd("crm.lead.update", "bob", lead_id="any"), {"bob": LICENSED}) is None


def test_a_service_name_is_nobody_unless_the_deployment_trusts_it() -> None:
    named = Principal("svc-importer")
    assert not named.licensed and not named.is_admin
    trusted = Principal("loadgen", service=True)
    assert trusted.licensed and trusted.is_admin


def test_admin_refusal() -> None:
    assert access.admin_refusal(UNLICENSED, "do it").code == "not_licensed"
    assert access.admin_refusal(LICENSED, "edit pipelines").code == "forbidden"
    assert "edit pipelines" in access.admin_refusal(LICENSED, "edit pipelines").message
    assert access.admin_refusal(ADMIN, "do it") is None


def test_owner_or_admin() -> None:
    assert access.owner_or_admin(LICENSED, "bob")
    assert not access.owner_or_admin(LICENSED, "alice")
    assert not access.owner_or_admin(LICENSED, None)
    assert access.owner_or_admin(ADMIN, "bob")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"title": "x" * 100_000}, "title", "100,000 characters, at most 1,000"),
        ({"title": "ok", "lead_id": "L\x001"}, "lead_id", "U+0000"),
        ({"title": "ok", "contact": {"email": "a@b\x00.c"}}, "contact.email", "U+0000"),
        ({"title": "ok", "contact": {"phone": "+7\u202e912"}}, "contact.phone", "U+202E"),
        ({"title": "ok", "contact": {"name": "n" * 501}}, "contact.name", "at most 500"),
        ({"title": "ok", "description": "d" * 32_769}, "description", "at most 32,768"),
        ({"title": "ok", "description": "nul\x00inside"}, "description", "NUL"),
        ({"title": "ok", "external_id": "e" * 101}, "external_id", "at most 100"),
        ({"title": "ok", "utm_source": "u" * 201}, "utm_source", "at most 200"),
        ({"title": "ok", "products": [{"product_id": "p\x01"}]}, "products.0.product_id", "U+0001"),
        ({"title": "ok", "products": [{"product_id": "p", "options": {"k" * 201: "v"}}]}, "products.0.options", "key"),
    ],
)
def test_fields_out_of_bounds_are_named(data, field, words) -> None:
    refusal = access.screen(cmd("crm.lead.create", **data))
    assert refusal is not None and refusal.code == "validation"
    assert field_names(refusal) == {field}
    assert words in dict(refusal.errors)[field] and field in refusal.message


def test_within_bounds_passes_and_free_text_keeps_its_lines() -> None:
    message = cmd(
        "crm.lead.create", lead_id="L1", title="t" * 1_000, description="line one\nline two\ttabbed",
        contact={"name": "Иван Петров", "phone": "+7 (912) 345-67-89", "email": "ivan@example.com"},
        products=[{"product_id": "p1", "options": {"colour": "red"}}],
    )
    assert access.screen(message) is None


def test_every_field_error_is_listed() -> None:
    refusal = access.screen(cmd("crm.lead.create", title="x" * 2_000, lead_id="a\x00", contact={"email": "\x00"}))
    assert field_names(refusal) == {"title", "lead_id", "contact.email"}


def test_the_rejection_is_stable_and_keyed_by_a_well_formed_lead() -> None:
    message = cmd("crm.lead.update", lead_id="L1", title="x")
    refusal = access.Refusal("validation", "bad", (("title", "too long"),))
    first = access.rejection(message, refusal, source="crm/test", namespace=NS, lead_id="L1")
    again = access.rejection(message, refusal, source="crm/test", namespace=NS, lead_id="L1")
    assert first.id == again.id and first.subject == "L1" and first.causationid == message.id
    assert first.data.reason_code == "validation" and first.data.errors[0].field == "title"
    malformed = access.rejection(message, refusal, source="crm/test", namespace=NS, lead_id="L\x001")
    assert malformed.subject is None and malformed.data.lead_id is None


def test_field_errors_reads_plain_mappings_too() -> None:
    """What the importer can check a row's planned lead with, before it sends the command."""
    row = {"title": "x" * 2_000, "contact": {"email": "a@b\x00.c", "name": "ok"}, "products": [{"options": {"k\x00": "v"}}]}
    assert [path for path, _ in access.field_errors(row)] == ["title", "contact.email", "products.0.options"]
    assert access.field_errors({"description": "multi\nline", "options": {"Цвет\nкорпуса": "red"}}) == []
