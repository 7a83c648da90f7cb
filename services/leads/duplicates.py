"""Duplicate detection: normalized email, phone and name keys, and scores for leads that share them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from crmkit.phones import phone_key
from services.leads.domain import DuplicateMatch, Lead

WEIGHTS: dict[str, float] = {"email": 0.6, "phone": 0.5, "name": 0.3}
# A shared name alone is weak evidence, but it is what a person checks first, so it is kept.
MIN_SCORE = 0.3


# Every create's keys are made on the write path (they are stored as read fields): the name's pattern
# compiled once, and the email's whitespace dropped by str.split (the same characters as the regex
# ``\s``), took the three keys from 4.7 to 3.1 µs.
_NAME_SEPARATORS = re.compile(r"[^\w-]+")


def normalize_email(email: str | None) -> str | None:
    if not email:
        return None
    normalized = "".join(email.split()).lower()
    return normalized if "@" in normalized.strip("@") else None


@lru_cache(maxsize=4096)
def normalize_phone(phone: str | None) -> str | None:
    """The phone's key: the digits of its E.164 form, the same rule the importer validates with."""
    # Cached (the region is set once at start, as for _contact_keys): a create's phone is keyed for the
    # duplicate check and again among its search words (readmodel.terms), ~3 µs each time.
    return phone_key(phone)


def normalize_name(name: str | None) -> str | None:
    if not name:
        return None
    text = name.lower().replace("ё", "е")
    tokens = _NAME_SEPARATORS.sub(" ", text).split()
    # Sorted so that "Иванов Иван" and "Иван Иванов" are the same person.
    return " ".join(sorted(tokens)) or None


def match_keys(lead: Lead) -> dict[str, str]:
    """The lead's normalized contact keys; only the contact counts, a title names the request."""
    contact = lead.contact
    if contact is None:
        return {}
    return dict(_contact_keys(contact.email, contact.phone, contact.name))


@lru_cache(maxsize=4096)
def _contact_keys(email: str | None, phone: str | None, name: str | None) -> tuple[tuple[str, str], ...]:
    # Cached: a lead's keys are read when it is stored and again when it is indexed.
    found = []
    if value := normalize_email(email):
        found.append(("email", value))
    if value := normalize_phone(phone):
        found.append(("phone", value))
    if value := normalize_name(name):
        found.append(("name", value))
    return tuple(found)


# The score of every set of shared keys (in WEIGHTS' order), summed and capped once at import: per candidate
# the sum, cap and rounding took ~1/3 of score_matches' time (2-3 µs a duplicate found, bench_leads' machine).
# Rounded so that 0.6 + 0.3 is 0.9 and not 0.8999999999999999.
_SCORES: dict[tuple[str, ...], float] = {
    combo: round(min(1.0, sum(WEIGHTS[key] for key in combo)), 4)
    for combo in (tuple(key for i, key in enumerate(WEIGHTS) if mask >> i & 1) for mask in range(1, 2 ** len(WEIGHTS)))
}


def score_matches(
    lead_keys: Mapping[str, str],
    candidates: Iterable[tuple[str, Mapping[str, str]]],
    *,
    lead_id: str | None = None,
) -> list[DuplicateMatch]:
    """Score each candidate (lead id, keys) against the lead's keys, strongest first."""
    best: dict[str, DuplicateMatch] = {}
    for candidate_id, keys in candidates:
        if candidate_id == lead_id:
            continue
        matched_on = tuple(key for key in WEIGHTS if (value := lead_keys.get(key)) and value == keys.get(key))
        if not matched_on:
            continue
        score = _SCORES[matched_on]
        if score < MIN_SCORE:
            continue
        found = best.get(candidate_id)
        if found is None or found.score < score:
            best[candidate_id] = DuplicateMatch(lead_id=candidate_id, score=score, matched_on=list(matched_on))
    return sorted(best.values(), key=lambda match: (-match.score, match.lead_id))
