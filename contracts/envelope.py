"""The CloudEvents 1.0 envelope (structured JSON mode) every Kafka record value uses."""

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    """A CloudEvents 1.0 message in structured JSON mode; extension attributes are kept."""

    # CloudEvents extensions are top-level attributes; dropping them would lose a producer's data.
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = Field(description="CloudEvents spec version, always \"1.0\".")
    id: str = Field(
        description="Unique message id (UUID). For commands it is the idempotency key: "
        "the same id sent twice acts once.",
        min_length=1,
    )
    type: str = Field(description="Message type, e.g. `crm.lead.create`.", min_length=1)
    source: str = Field(
        description="Producer of the message, e.g. `crm/leads`, `crm/importer`, `ext/website-form`.",
        min_length=1,
    )
    time: AwareDatetime = Field(description="When the message was produced, RFC 3339 with offset.")
    subject: str | None = Field(None, description="The lead id, for lead-scoped messages.")
    datacontenttype: str | None = Field(
        "application/json", description="Media type of `data`; always `application/json`."
    )
    correlationid: str | None = Field(
        None, description="Carried through every message caused by the first one."
    )
    causationid: str | None = Field(None, description="`id` of the message that caused this one.")
    actorid: str | None = Field(
        None,
        description="The user on whose behalf a command is sent; licence-checked. Set on commands.",
    )
    traceparent: str | None = Field(
        None,
        description="W3C trace context (CloudEvents distributed-tracing extension): a command that carries one "
        "continues that trace, and every message published in response carries it on.",
    )
    tracestate: str | None = Field(None, description="W3C tracestate that goes with `traceparent`, when there is one.")
    data: Any = Field(description="The payload of the message type.")

    def to_json_bytes(self) -> bytes:
        """Serialize as the compact JSON record value; unset optional attributes are omitted."""
        # Only top-level attributes are dropped: inside `data` some fields are required yet nullable.
        unset = {name for name, value in self.__dict__.items() if value is None}
        return self.model_dump_json(exclude=unset).encode("utf-8")

    def key_bytes(self) -> bytes:
        """Return the Kafka record key: the subject (lead id) when set, else the message id."""
        return (self.subject or self.id).encode("utf-8")
