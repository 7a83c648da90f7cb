"""The read side's fields of a stored lead: list keys in last-change order, search terms, duplicate keys (pure).

Every list of ``GET /leads`` and every board column is one range of one indexed string field,
read in that field's order, newest change first:

    ix_<filter> = <L|D> <hash of the filter's value> ":" <13-digit ms of updated_at> <hex of lead id>

``L``/``D`` splits live from deleted leads, the hash keeps the value's characters out of the key
(so the key is plain ASCII, which JSON never escapes, and sorts in SQLite as in MongoDB), and
the tail makes the key unique, so a page's last key is the keyset cursor of the next page. The
patched FerretDB answers such a range with ``ORDER BY ... LIMIT`` from the field's index and
counts it from the index (crmctl/ferretdb_patches.py); MongoDB does the same from the index.

Search terms are the normalised words of the title, contact name, company name, phone and
email in one string ``" word word ... "``; a query word matches the start of a word.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from datetime import UTC, datetime, timedelta
from typing import Any

from services.leads.domain import Lead
from services.leads.duplicates import match_keys, normalize_phone

# Bumped when the fields below change: stored leads of an older version are rewritten at start.
READ_FIELDS_VERSION = 1

# The filters a list can be keyed by, the most selective first (a list with several filters is
# read by the first one it has and checked for the others row by row).
KEYED_FILTERS = ("stage", "responsible", "source", "status", "pipeline")

Q_MAX_CHARS = 200  # longest text search (GET /leads?q=)
Q_MAX_WORDS = 8
TERMS_MAX_CHARS = 4000  # what of a lead's text is searchable

_WORD = re.compile(r"[^\W_]+")


@lru_cache(maxsize=8192)  # a few pipelines, stages, statuses, sources and users: nearly every lead hits
def _hash(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=6).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Made once: building it in each key_tail call took half its time (key_tail 1.28 -> 0.63 µs, measured alone).
_MILLISECOND = timedelta(milliseconds=1)


def key_tail(updated_at: datetime, lead_id: str) -> str:
    """The end of every list key of a lead: its last change (ms, as MongoDB stores it), then its id."""
    millis = (updated_at - _EPOCH) // _MILLISECOND
    return f"{millis:013d}{lead_id.encode().hex()}"


def prefix(filter_name: str, value: tuple[str, ...] | None, *, deleted: bool) -> str:
    """The key prefix of one list: every key of that list starts with it and ends after ``:``."""
    flag = "D" if deleted else "L"
    return f"{flag}{_hash(*value) if value else ''}:"


def list_keys(lead: Lead) -> dict[str, str | None]:
    """The ``ix_<filter>`` fields of a lead."""
    tail = key_tail(lead.updated_at, lead.lead_id)
    starts = _starts(lead.pipeline_id, lead.stage_id, lead.status, lead.responsible_id, lead.source, lead.deleted)
    return {field: start + tail if start is not None else None for field, start in starts}


@lru_cache(maxsize=4096)
def _starts(pipeline_id: str, stage_id: str, status: str, responsible_id: str | None, source: str | None,
            deleted: bool) -> tuple[tuple[str, str | None], ...]:
    """Each ``ix_<filter>`` field with its keys' prefix for a lead standing here (None: the lead has no value for
    that filter, e.g. no source). Made once per place a lead can stand (a few pipelines, stages, statuses, users
    and sources, so nearly every lead hits): list_keys 4.7 -> 3.0 µs a create (alone, AMD EPYC, best of seven)."""
    values = {
        "all": (),
        "pipeline": (pipeline_id,),
        "stage": (pipeline_id, stage_id),
        "status": (status,),
        "responsible": (responsible_id,) if responsible_id else None,
        "source": (source,) if source else None,
    }
    return tuple((_KEY_FIELDS[name], prefix(name, value, deleted=deleted) if value is not None else None) for name, value in values.items())


# The fields' names made once, not per lead (with _MILLISECOND: list_keys 4.4 -> 3.5 µs, a create's six keys).
_KEY_FIELDS = {name: f"ix_{name}" for name in ("all", *KEYED_FILTERS)}


def words(text: str | None) -> list[str]:
    """Normalised words: lower case, ``ё`` as ``е``, letters and digits of any script."""
    if not text:
        return []
    return _WORD.findall(text.lower().replace("ё", "е"))


def _phone_words(phone: str | None) -> list[str]:
    digits = normalize_phone(phone)
    if not digits:
        return words(phone)
    found = [digits, *words(phone)]
    if len(digits) == 11 and digits[0] == "7":
        found += [digits[1:], "8" + digits[1:]]  # as dialled at home, with or without the trunk 8
    return found


def terms(lead: Lead) -> str:
    """The lead's search terms as one string, each word between spaces."""
    contact = lead.contact
    found = words(lead.title)
    if contact is not None:
        found += words(contact.name) + _phone_words(contact.phone) + words(contact.email)
    if lead.company is not None:
        found += words(lead.company.name)
    text = " ".join(sorted(set(found)))[:TERMS_MAX_CHARS]
    return f" {text} "


def query_words(q: str) -> list[str]:
    """The words of a text search; ValueError (a 400 for the caller) when it is too long or has none."""
    if len(q) > Q_MAX_CHARS:
        raise ValueError(f"q is at most {Q_MAX_CHARS} characters (this one has {len(q)}); search for fewer words.")
    found = list(dict.fromkeys(words(q)))
    if len(found) > Q_MAX_WORDS:
        raise ValueError(f"q has at most {Q_MAX_WORDS} words (this one has {len(found)}).")
    if not found and q.strip():
        raise ValueError("q has no letters or digits to search for.")
    # A phone written as 8 912 ... or +7 912 ... is one word among the lead's terms.
    joined = "".join(found)
    if joined.isdigit() and (digits := normalize_phone(joined)) and len(found) > 1:
        return [digits]
    return found


def read_fields(lead: Lead) -> dict[str, Any]:
    """Every read-side field of the stored lead document."""
    keys = match_keys(lead) if not lead.deleted and not lead.merged_into else {}
    products = sorted({p.product_id for p in lead.products if p.product_id})
    return {
        **list_keys(lead),
        "ix_terms": terms(lead),
        "ix_email": keys.get("email"),
        "ix_phone": keys.get("phone"),
        "ix_name": keys.get("name"),
        "ix_contact": lead.contact.contact_id if lead.contact and lead.contact.contact_id else None,
        "ix_company": lead.company.company_id if lead.company and lead.company.company_id else None,
        "product_ids": products or None,
        "ix_products": f" {' '.join(products)} " if products else None,
        "ixv": READ_FIELDS_VERSION,
    }
