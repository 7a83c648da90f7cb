"""Every command checked the same way: who acts, may they, are its fields bounded, and the rejection sent back."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from contracts import Envelope, build_message
from contracts.common import FieldError
from contracts.rejections import CommandRejected

from .ids import uuid5
from .principals import Principal

# The maxima of command fields, by field name (documented in the README's "Security" section).
# A field not named here is free text bounded like an imported cell (the importer's 32,768).
ID_MAX_CHARS = 100
EMAIL_MAX_CHARS = 254  # RFC 5321's longest forward path
PHONE_MAX_CHARS = 50
TITLE_MAX_CHARS = 1_000
NAME_MAX_CHARS = 500
SHORT_TEXT_MAX_CHARS = 200
TEXT_MAX_CHARS = 32_768
KEY_MAX_CHARS = 200  # keys of a mapping, e.g. a product's chosen options
LIST_MAX_ITEMS = 1_000

_TITLES = frozenset({"title"})
_NAMES = frozenset({"name", "text", "text_ru", "product_name"})
_SHORT = frozenset({
    "source", "marketing_event", "utm_source", "utm_medium", "utm_campaign", "inn", "industry", "segment",
    "product_kind",
})
_EMAILS = frozenset({"email"})
_PHONES = frozenset({"phone"})
# Mappings whose keys are data (an option's name, a file's column), not field names.
_DATA_MAPPINGS = frozenset({"options", "fields", "mapping", "external_ids", "product_options"})
# Ids name things (keys, lookups, record keys); a task's `type` is the id of its type.
_IDS_ALSO = frozenset({"type", "type_id"})

# Control (Cc), invisible format (bidi overrides, zero-width) and line/paragraph separators: never
# part of an id, an email or a phone, and the way to make two different ids look alike.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


@dataclass(frozen=True)
class Refusal:
    """Why a command is refused: a contract reason code, a message a person can act on, field errors."""

    code: str
    message: str
    errors: tuple[tuple[str, str], ...] = ()


# --- the fields ---------------------------------------------------------------------------


@cache
def _rule(name: str) -> tuple[int, bool]:
    """(maximum characters, refuse invisible characters) for a field name."""
    if name in _EMAILS:
        return EMAIL_MAX_CHARS, True
    if name in _PHONES:
        return PHONE_MAX_CHARS, True
    if name == "id" or name.endswith("_id") or name in _IDS_ALSO:
        return ID_MAX_CHARS, True
    if name in _TITLES:
        return TITLE_MAX_CHARS, False
    if name in _NAMES:
        return NAME_MAX_CHARS, False
    if name in _SHORT:
        return SHORT_TEXT_MAX_CHARS, False
    return TEXT_MAX_CHARS, False


def text_error(name: str, value: str) -> str | None:
    """What is wrong with one string field named ``name`` (its last path part), or None."""
    limit, strict = _rule(name)
    if len(value) > limit:
        return f"{len(value):,} characters, at most {limit:,}"
    if strict:
        found = _INVISIBLE.search(value)
        if found:
            return f"holds the control character U+{ord(found.group()):04X} at position {found.start()}"
    elif "\x00" in value:
        return f"holds a NUL character at position {value.index(chr(0))}"
    return None


def field_errors(value: Any, path: str = "", name: str = "") -> list[tuple[str, str]]:
    """Every bounded-field problem in a payload (a model, mapping, list or scalar), as (dotted path, problem).

    A string's rule comes from the name of the field holding it (``name``, the last part of ``path``);
    the keys of a mapping that is data (a product's options) are bounded as keys, those of any other
    mapping are field names.
    """
    if isinstance(value, str):
        problem = text_error(name, value)
        return [(path or name or "value", problem)] if problem else []
    if isinstance(value, BaseModel):
        # The model's own fields only: extras (unknown fields, ignored by the contract) are not in __dict__.
        errors: list[tuple[str, str]] = []
        for key, item in value.__dict__.items():
            if item is None:
                continue
            # Most fields are strings: checked here, the path made only for an error (with the cached
            # rule per name, screening a benchmark create went from 4.0 to 2.5 µs of CPU).
            if isinstance(item, str):
                if problem := text_error(key, item):
                    errors.append((f"{path}.{key}" if path else key, problem))
            else:
                errors += field_errors(item, f"{path}.{key}" if path else key, key)
        return errors
    if isinstance(value, Mapping):
        data_keys = name in _DATA_MAPPINGS  # else its keys are field names, as in a model
        errors = []
        for key, item in value.items():
            key = str(key)
            problem = _key_error(key) if data_keys else None
            if problem:
                errors.append((path or name or "value", problem))
                continue
            errors += field_errors(item, f"{path}.{key}" if path else key, name if data_keys else key)
        return errors
    if isinstance(value, (list, tuple)):
        if len(value) > LIST_MAX_ITEMS:
            return [(path or name or "value", f"{len(value):,} items, at most {LIST_MAX_ITEMS:,}")]
        errors = []
        for index, item in enumerate(value):
            errors += field_errors(item, f"{path}.{index}", name)
        return errors
    return []


def _key_error(key: str) -> str | None:
    # Keys are names people gave (option names, a file's column headers, which may hold a line break).
    if len(key) > KEY_MAX_CHARS:
        return f"a key of {len(key):,} characters, at most {KEY_MAX_CHARS}"
    if "\x00" in key:
        return "a key holds a NUL character"
    return None


def bounds_refusal(message: Envelope) -> Refusal | None:
    """A `validation` refusal naming each over-long or malformed field of a command, or None."""
    errors: list[tuple[str, str]] = []
    named = getattr(message.data, "lead_id", None)
    if message.subject is not None and message.subject != named and (problem := text_error("id", message.subject)):
        errors.append(("subject", problem))  # a subject that repeats the payload's lead id is reported there
    errors += field_errors(message.data)
    if not errors:
        return None
    shown = "; ".join(f"{field}: {problem}" for field, problem in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return Refusal("validation", f"fields out of bounds: {shown}{more}; fix them and send the command again", tuple(errors))


# --- the actor ----------------------------------------------------------------------------


def actor_refusal(message: Envelope) -> Refusal | None:
    """`not_licensed` when a command names no actor, or something that cannot be a user id."""
    actor = message.actorid
    if actor is None or not actor.strip():
        return Refusal(
            "not_licensed",
            "the command names no actor: set `actorid` to the id of the licensed user it is sent for",
            (("actorid", "missing"),),
        )
    problem = text_error("id", actor)
    if problem:
        return Refusal("not_licensed", f"`actorid` is not a user id ({problem})", (("actorid", problem),))
    return None


def screen(message: Envelope) -> Refusal | None:
    """What is wrong with a command before anything is looked up: no or malformed actor, fields out of bounds.

    Depends on the message alone, so a redelivered command is screened the same way every time.
    """
    return actor_refusal(message) or bounds_refusal(message)


def actor_ids(messages: Iterable[Envelope]) -> set[str]:
    """The actors worth looking up: those ``screen`` lets through."""
    return {m.actorid for m in messages if m.actorid and actor_refusal(m) is None}


def licence_refusal(message: Envelope, principals: Mapping[str, Principal]) -> Refusal | None:
    """`not_licensed` unless the command's actor holds the CRM licence (checked before the command's target is read)."""
    refused = actor_refusal(message)
    if refused is not None:
        return refused
    principal = principals.get(message.actorid or "")
    if principal is None or not principal.licensed:
        return Refusal(
            "not_licensed",
            f"user {message.actorid} holds no CRM licence; ask an administrator to grant one, then send the command again",
        )
    return None


def admin_refusal(principal: Principal, action: str) -> Refusal | None:
    """`not_licensed` or `forbidden` unless ``principal`` is a licensed administrator."""
    if not principal.licensed:
        return Refusal("not_licensed", f"user {principal.user_id} holds no CRM licence; ask an administrator to grant one")
    if not principal.is_admin:
        return Refusal("forbidden", f"only administrators may {action}; user {principal.user_id} is not one, ask an administrator")
    return None


def owner_or_admin(principal: Principal, owner_id: str | None) -> bool:
    """Whether ``principal`` may see or act on what ``owner_id`` owns: its owner, or an administrator."""
    return principal.is_admin or (owner_id is not None and principal.user_id == owner_id)


# --- the answer ---------------------------------------------------------------------------


def rejection(
    cause: Envelope,
    refusal: Refusal,
    *,
    source: str,
    namespace: uuid.UUID,
    lead_id: str | None = None,
    message_id: str | None = None,
) -> Envelope:
    """The `crm.command.rejected` for ``cause``: a stable id (a redelivery repeats it), keyed by the lead when known.

    ``message_id`` overrides the id derived from ``namespace``, for a service that answers one command
    with two events.
    """
    if lead_id is not None and text_error("id", lead_id):
        lead_id = None  # a malformed id is not a record key; the command id keys the rejection instead
    payload = CommandRejected(
        command_id=cause.id,
        command_type=cause.type,
        reason_code=refusal.code,
        message=refusal.message,
        errors=[FieldError(field=f, message=m) for f, m in refusal.errors] or None,
        lead_id=lead_id,
    )
    return build_message(
        payload,
        source=source,
        subject=lead_id,
        id=message_id or uuid5(namespace, f"{cause.id}\x1frejected"),
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        actorid=cause.actorid if cause.actorid and not text_error("id", cause.actorid) else None,
        traceparent=cause.traceparent,
        tracestate=cause.tracestate,
    )
