"""Events a service publishes without a validated ``Envelope``: attributes and data as the values of their JSON.

What reads a published message takes its id, type, subject, causation and trace context, and its data
only to tell a refusal; so an event made from a domain model that was validated already (a lead's card,
a task) need not be validated into a contract envelope and its payload again just to be sent. Its
attributes are made by ``event_attributes`` from the validated command that caused it, its data from
the domain model; its record value is the contract's JSON of the same message, written by orjson.
tests/unit/leads/test_wire.py and tests/unit/activity/test_wire.py hold the bytes equal to the
contract path's (``build_message(...).to_json_bytes()``).

Measured where it is used: a lead's card event 5-6 µs of a create's 115 on the validated path; a
task's event 33-40 against 25-27 µs (a ``crm.task.created`` alone, AMD EPYC machine, best of five).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from contracts import Envelope
from contracts.base import Payload


def form_json(values: Any) -> bytes:
    """JSON of values made by ``model_dump`` (python mode), as pydantic writes the contract's JSON
    (UTC times end in ``Z``, whole seconds without a fraction)."""
    return orjson.dumps(values, option=orjson.OPT_UTC_Z)


# The envelope's attributes in its fields' order, the order of its JSON.
ATTRIBUTE_ORDER = tuple(name for name in Envelope.model_fields if name != "data")


def event_attributes(
    cause: Envelope, *, id: str, kind: str, source: str, subject: str | None, time: Any, actorid: str | None = None,
) -> dict[str, Any]:
    """An event's envelope attributes as JSON values, unset ones left out, in the envelope's field order.

    ``time`` is the JSON value of the service's clock (``pydantic_core.to_jsonable_python``); the
    correlation, causation, actor (unless given) and trace context are the cause's, as crmkit carries them.
    """
    attributes = {
        "specversion": "1.0", "id": id, "type": kind, "source": source, "time": time, "subject": subject,
        "datacontenttype": "application/json", "correlationid": cause.correlationid or cause.id,
        "causationid": cause.id, "actorid": actorid or cause.actorid,
        "traceparent": cause.traceparent, "tracestate": cause.tracestate,
    }
    return {name: value for name, value in attributes.items() if value is not None}


def _attribute(name: str) -> Any:
    """A ``JsonMessage`` attribute read from the attributes it was made with."""
    return property(lambda message: message.attributes.get(name), doc=f"The envelope's ``{name}``.")


class JsonMessage:
    """A message this service made, as it is published: its envelope attributes, and its data as the values of its JSON.

    The trace context may be set once it is made (the bus starts a trace for a message without one);
    its record value then carries it.
    """

    __slots__ = ("attributes", "data", "traceparent", "tracestate")

    def __init__(self, attributes: dict[str, Any], data: JsonPayload) -> None:
        self.attributes = attributes  # as ``event_attributes`` makes them: JSON values in the envelope's order
        self.data = data
        self.traceparent: str | None = attributes.get("traceparent")
        self.tracestate: str | None = attributes.get("tracestate")

    def __repr__(self) -> str:
        return f"JsonMessage(id={self.id!r}, type={self.type!r}, subject={self.subject!r})"

    # The envelope's attributes, read from those it was made with (None: unset).
    specversion = _attribute("specversion")
    id = _attribute("id")
    type = _attribute("type")
    source = _attribute("source")
    subject = _attribute("subject")
    datacontenttype = _attribute("datacontenttype")
    correlationid = _attribute("correlationid")
    causationid = _attribute("causationid")
    actorid = _attribute("actorid")

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.attributes["time"])

    def to_json_bytes(self) -> bytes:
        attributes = self.attributes
        if self.traceparent != attributes.get("traceparent") or self.tracestate != attributes.get("tracestate"):
            traced = {**attributes, "traceparent": self.traceparent, "tracestate": self.tracestate}
            attributes = {name: traced[name] for name in ATTRIBUTE_ORDER if traced.get(name) is not None}
        return form_json({**attributes, "data": self.data.values})

    def envelope(self) -> Envelope:
        """The message as the contract's envelope; its `data` is validated only if some code reads it."""
        return Envelope.model_validate({**self.attributes, "time": self.time, "data": self.data})


class JsonPayload:
    """A message's data: the values of its JSON, validated into the contract model ``cls`` if read."""

    __slots__ = ("_cls", "values", "_model")

    def __init__(self, cls: type[Payload], values: dict[str, Any]) -> None:
        self._cls = cls
        self.values = values
        self._model: Payload | None = None

    def __getattr__(self, name: str) -> Any:
        # A name the payload does not have (the bus asks every message for a `command_id`) is answered
        # without validating: that validation cost 8% of the leads service's CPU per create.
        if name not in self._cls.model_fields and not hasattr(self._cls, name):
            raise AttributeError(name)
        if self._model is None:
            self._model = self._cls.model_validate(self.values)
        return getattr(self._model, name)
