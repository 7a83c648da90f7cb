"""Normalized duplicate keys and match scores."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from services.leads import domain as d
from services.leads.duplicates import match_keys, normalize_email, normalize_name, normalize_phone, score_matches

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Foo@Example.COM ", "foo@example.com"),
        ("foo@example.com", "foo@example.com"),
        ("foo @ example.com", "foo@example.com"),
        ("", None),
        (None, None),
        ("not an email", None),
    ],
)
def test_normalize_email(raw, expected) -> None:
    assert normalize_email(raw) == expected


def test_an_email_loses_every_character_the_regex_whitespace_class_matches_and_no_other() -> None:
    # normalize_email drops whitespace with str.split; the key must stay the one re.sub(r"\s+", "") made.
    for code in range(0x3000 + 1):  # U+3000 is the last whitespace character
        char = chr(code)
        assert (normalize_email(f"a{char}b@x.ru") == "ab@x.ru") == bool(re.fullmatch(r"\s", char)), f"U+{code:04X}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 (912) 345-67-89", "79123456789"),
        ("+79123456789", "79123456789"),
        ("+7 912 345 67 89", "79123456789"),
        ("9123456789", "79123456789"),
        ("+44 20 7946 0958", "442079460958"),
        ("345-67-89", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_phone(raw, expected) -> None:
    assert normalize_phone(raw) == expected


def test_normalize_name_ignores_order_case_and_yo() -> None:
    assert normalize_name("Иванов  Иван") == normalize_name("иван ИВАНОВ") == "иван иванов"
    assert normalize_name("Пётр Сёмин") == normalize_name("Петр Семин")
    assert normalize_name("   ") is None


def lead_with(lead_id: str, **contact) -> d.Lead:
    return d.create_lead(
        d.Actor(user_id="u-1", licensed=True), lead_id, {"title": "t", "contact": contact}, d.default_pipeline(NOW), NOW
    ).lead


def test_match_keys_holds_only_present_keys() -> None:
    full = lead_with("L1", name="Иван Иванов", phone="8 (912) 345-67-89", email="  Foo@Example.COM ")
    assert match_keys(full) == {"email": "foo@example.com", "phone": "79123456789", "name": "иван иванов"}
    assert match_keys(lead_with("L2", phone="12")) == {}
    no_contact = d.create_lead(
        d.Actor(user_id="u-1", licensed=True), "L3", {"title": "t"}, d.default_pipeline(NOW), NOW
    ).lead
    assert match_keys(no_contact) == {}


def test_score_matches_weighs_caps_sorts_and_skips_the_lead_itself() -> None:
    mine = match_keys(lead_with("L1", name="Иван Иванов", phone="+79123456789", email="foo@example.com"))
    candidates = [
        ("L1", mine),
        ("L2", match_keys(lead_with("L2", phone="8 (912) 345-67-89"))),
        ("L3", match_keys(lead_with("L3", name="Иванов Иван", email="  Foo@Example.COM ", phone="+79123456789"))),
        ("L4", match_keys(lead_with("L4", name="иванов иван"))),
        ("L5", match_keys(lead_with("L5", name="Пётр Петров", email="bar@example.com"))),
        ("L6", match_keys(lead_with("L6", email="FOO@example.com", name="Someone Else"))),
    ]
    matches = score_matches(mine, candidates, lead_id="L1")
    assert [(m.lead_id, m.score, m.matched_on) for m in matches] == [
        ("L3", 1.0, ["email", "phone", "name"]),
        ("L6", 0.6, ["email"]),
        ("L2", 0.5, ["phone"]),
        ("L4", 0.3, ["name"]),
    ]


def test_every_set_of_shared_keys_scores_its_weights_summed_capped_and_rounded() -> None:
    import itertools

    from services.leads.duplicates import MIN_SCORE, WEIGHTS

    mine = {"email": "a@b.c", "phone": "79120000000", "name": "ann lee"}
    for size in range(1, len(WEIGHTS) + 1):
        for shared in itertools.combinations(WEIGHTS, size):
            expected = round(min(1.0, sum(WEIGHTS[key] for key in shared)), 4)
            found = score_matches(mine, [("L2", {key: mine[key] for key in shared})])
            assert [(m.score, m.matched_on) for m in found] == ([(expected, list(shared))] if expected >= MIN_SCORE else [])


def test_the_card_and_its_notice_share_the_matches_json_values() -> None:
    from services.leads.messages import Cards

    lead = lead_with("L1", name="Ann Lee", email="ann@example.com")
    matches = [d.DuplicateMatch(lead_id="L2", score=0.9, matched_on=["email", "name"])]
    created = d.duplicates_at_creation(lead, matches)
    cards = Cards()
    cards.with_duplicates(created.lead, lead)
    notice = created.events[1]
    assert cards.matches(notice.matches) is cards.cached(created.lead)["duplicates"]  # dumped once
    assert cards.matches(notice.matches) == [m.model_dump(mode="json") for m in matches]


def test_score_matches_with_no_keys_finds_nothing() -> None:
    assert score_matches({}, [("L2", {"email": "a@b.c"})]) == []


def test_stored_candidates_are_found_by_their_keys_only() -> None:
    from services.leads.index import LeadIndex, StoredKeys

    stored = {
        "S1": {"email": "a@x.ru", "name": "ivan"},
        "S2": {"phone": "79120000000"},
        "S3": {"name": "petr"},
        "S4": {"email": "b@x.ru", "name": "ivan"},
    }
    index = LeadIndex()
    index.put("S3", {"name": "pavel"})  # changed in this batch: its keys here win over the stored ones
    by_key = StoredKeys(stored)
    for keys, expected in [
        ({"name": "ivan"}, ["S1", "S4"]),
        ({"email": "a@x.ru", "phone": "79120000000"}, ["S1", "S2"]),
        ({"name": "petr"}, []),
        ({"email": "nobody@x.ru"}, []),
    ]:
        found = index.candidates(keys, by_key)
        assert [lead_id for lead_id, _ in found] == expected
        assert found == index.candidates(keys, stored)  # a plain mapping answers the same
    assert dict(index.candidates({"name": "ivan"}, by_key))["S4"] == {"email": "b@x.ru", "name": "ivan"}


def test_a_lead_this_batch_deleted_or_changed_is_matched_as_the_batch_left_it() -> None:
    from services.leads.index import LeadIndex

    stored = {"S1": {"email": "a@x.ru", "name": "ivan"}, "S2": {"name": "ivan"}}
    index = LeadIndex()
    index.put("S1", {})  # deleted here: no longer a candidate, though the stored copy still has keys
    index.put("N1", {"name": "ivan", "phone": "79120000001"})
    assert [lead_id for lead_id, _ in index.candidates({"name": "ivan"}, stored)] == ["N1", "S2"]
    index.put("N1", {"name": "petr"})  # its name changed later in the batch: found by the new one only
    assert [lead_id for lead_id, _ in index.candidates({"name": "ivan"}, stored)] == ["S2"]
    assert index.candidates({"phone": "79120000001"}) == []
    assert index.candidates({"name": "petr"}) == [("N1", {"name": "petr"})]
    assert len(index) == 2
