"""Which message types go on which topic, typed envelopes per type, and one-step parsing."""

from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal, Union
from uuid import uuid4

from pydantic import Field, TypeAdapter, ValidationError, create_model

from contracts.activity import ACTIVITY_COMMAND_PAYLOADS, ACTIVITY_EVENT_PAYLOADS
from contracts.base import Payload
from contracts.bulk import BULK_COMMAND_PAYLOADS, BULK_EVENT_PAYLOADS
from contracts.capture import CAPTURE_COMMAND_PAYLOADS, CAPTURE_EVENT_PAYLOADS
from contracts.directory import DIRECTORY_EVENT_PAYLOADS
from contracts.envelope import Envelope
from contracts.imports import IMPORTS_COMMAND_PAYLOADS, IMPORTS_EVENT_PAYLOADS
from contracts.leads import LEADS_COMMAND_PAYLOADS, LEADS_EVENT_PAYLOADS
from contracts.qualification import QUALIFICATION_COMMAND_PAYLOADS, QUALIFICATION_EVENT_PAYLOADS
from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    ALL_TOPICS,
    DIRECTORY_EVENTS,
    IMPORTS_COMMANDS,
    IMPORTS_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
)

TOPIC_PAYLOADS: dict[str, tuple[type[Payload], ...]] = {
    # Capture forms and mass actions (issue 20) are leads-service messages kept in modules of their own.
    LEADS_COMMANDS: LEADS_COMMAND_PAYLOADS + CAPTURE_COMMAND_PAYLOADS + BULK_COMMAND_PAYLOADS,
    LEADS_EVENTS: LEADS_EVENT_PAYLOADS + CAPTURE_EVENT_PAYLOADS + BULK_EVENT_PAYLOADS,
    QUALIFICATION_COMMANDS: QUALIFICATION_COMMAND_PAYLOADS,
    QUALIFICATION_EVENTS: QUALIFICATION_EVENT_PAYLOADS,
    IMPORTS_COMMANDS: IMPORTS_COMMAND_PAYLOADS,
    IMPORTS_EVENTS: IMPORTS_EVENT_PAYLOADS,
    ACTIVITY_COMMANDS: ACTIVITY_COMMAND_PAYLOADS,
    ACTIVITY_EVENTS: ACTIVITY_EVENT_PAYLOADS,
    DIRECTORY_EVENTS: DIRECTORY_EVENT_PAYLOADS,
}
assert tuple(TOPIC_PAYLOADS) == ALL_TOPICS, "every topic needs its payload list"

TOPIC_TYPES: dict[str, tuple[str, ...]] = {
    topic: tuple(p.TYPE for p in payloads) for topic, payloads in TOPIC_PAYLOADS.items()
}

PAYLOADS: dict[str, type[Payload]] = {p.TYPE: p for payloads in TOPIC_PAYLOADS.values() for p in payloads}

TYPE_TOPICS: dict[str, tuple[str, ...]] = {
    type_name: tuple(t for t, types in TOPIC_TYPES.items() if type_name in types) for type_name in PAYLOADS
}

_MAX_REPORTED_ERRORS = 10


class ContractError(ValueError):
    """A record does not satisfy the contract; `reason` says what is wrong, human readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def payload_class(type_name: str) -> type[Payload]:
    """Return the payload model of a message type."""
    try:
        return PAYLOADS[type_name]
    except KeyError:
        raise ContractError(f"unknown message type {type_name!r}") from None


def _make_envelope_class(payload: type[Payload]) -> type[Envelope]:
    summary = (payload.__doc__ or "").strip().split("\n")[0]
    return create_model(
        f"{payload.__name__}Message",
        __base__=Envelope,
        __doc__=f"`{payload.TYPE}`: {summary}",
        __module__=__name__,
        type=(Literal[payload.TYPE], Field(description="Message type.")),  # type: ignore[valid-type]
        data=(payload, Field(description=f"Payload of `{payload.TYPE}`.")),
    )


_ENVELOPES: dict[str, type[Envelope]] = {name: _make_envelope_class(p) for name, p in PAYLOADS.items()}


def envelope_class(type_name: str) -> type[Envelope]:
    """Return the typed envelope model (type fixed, data typed) of a message type."""
    try:
        return _ENVELOPES[type_name]
    except KeyError:
        raise ContractError(f"unknown message type {type_name!r}") from None


@cache
def topic_adapter(topic: str) -> TypeAdapter[Any]:
    """Return the cached validator of every message allowed on `topic`, discriminated on `type`."""
    if topic not in TOPIC_TYPES:
        raise ContractError(f"unknown topic {topic!r} (known: {', '.join(ALL_TOPICS)})")
    members = tuple(_ENVELOPES[t] for t in TOPIC_TYPES[topic])
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007


def parse_message(topic: str, value: bytes | str) -> Envelope:
    """Parse and validate one record value of `topic` into its typed envelope, or raise ContractError."""
    adapter = topic_adapter(topic)
    try:
        return adapter.validate_json(value)
    except ValidationError as exc:
        raise ContractError(_explain(topic, exc)) from None


def build_message(
    payload: Payload,
    *,
    source: str,
    subject: str | None = None,
    actorid: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    id: str | None = None,  # noqa: A002 - named after the CloudEvents attribute
    time: datetime | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """Wrap `payload` in its typed envelope; subject defaults to the payload's `lead_id`."""
    envelope = envelope_class(payload.TYPE)
    if subject is None:
        # Lead-scoped messages must be keyed by the lead so one lead's messages stay in order.
        subject = getattr(payload, "lead_id", None)
    return envelope(
        specversion="1.0",
        id=id or str(uuid4()),
        type=payload.TYPE,
        source=source,
        time=time or datetime.now(UTC),
        subject=subject,
        actorid=actorid,
        correlationid=correlationid,
        causationid=causationid,
        traceparent=traceparent,
        tracestate=tracestate,
        data=payload,
    )


def topics_for(type_name: str) -> tuple[str, ...]:
    """Return the topics a message type may be published on."""
    payload_class(type_name)
    return TYPE_TOPICS[type_name]


def _explain(topic: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    reasons = [_explain_one(topic, error) for error in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        reasons.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more errors")
    return "; ".join(reasons)


def _explain_one(topic: str, error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "json_invalid":
        return f"not valid JSON: {ctx.get('error', error['msg'])}"
    if kind == "union_tag_not_found":
        return "missing attribute 'type'"
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        allowed = ", ".join(TOPIC_TYPES[topic])
        elsewhere = TYPE_TOPICS.get(tag)
        hint = f"; it belongs on {', '.join(elsewhere)}" if elsewhere else ""
        return f"type {tag!r} is not allowed on topic {topic} (allowed: {allowed}){hint}"
    loc = list(error["loc"])
    if not loc and kind in {"model_attributes_type", "model_type", "dict_type"}:
        return "message is not a JSON object"
    # The discriminated union puts the tag first in the location; readers think in attribute paths.
    if loc and loc[0] in TYPE_TOPICS:
        loc = loc[1:]
    path = _format_loc(loc)
    message = error["msg"]
    if kind != "missing" and _is_short_scalar(error.get("input")) and not _SECRET_FIELDS & {str(part) for part in loc}:
        message = f"{message} (got {error['input']!r})"
    return f"{path}: {message}" if path else message


def _format_loc(loc: list[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


# Fields whose values are secrets: an error names them and never repeats what was sent (it goes to the DLQ and the log).
_SECRET_FIELDS = frozenset({"secret", "secret_key"})


def _is_short_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 80
    return value is None or isinstance(value, bool | int | float)
