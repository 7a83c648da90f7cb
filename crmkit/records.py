"""What a record or a message says about itself for operations: the group a DLQ replay is for, a refusal's reason."""

from __future__ import annotations

from typing import Any

from contracts import Envelope
from contracts.topics import DLQ_REPLAY_GROUP

REJECTED_TYPE = "crm.command.rejected"
# The qualification's own refusal of a qualify, with its reasons (the contract keeps both types).
QUALIFICATION_REJECTED_TYPE = "crm.qualification.rejected"


def rejection_of(message: Envelope) -> tuple[str, str] | None:
    """(command type, reason code) when ``message`` refuses a command, else None."""
    data = message.data
    if message.type == REJECTED_TYPE:
        command_type, code = getattr(data, "command_type", "?"), getattr(data, "reason_code", "?")
    elif message.type == QUALIFICATION_REJECTED_TYPE:
        reasons = getattr(data, "reasons", None) or []
        command_type, code = "crm.lead.qualify", (reasons[0].code if reasons else "?")
    else:
        return None
    return command_type, getattr(code, "value", code)


# Why a record was parked (header dlq-reason-code, label of crm_dead_lettered_total).
DLQ_REASON_CODES = ("invalid_message", "handler_error", "too_large")


def record_type(record: Any) -> str | None:
    """The message type a record's ``ce-type`` header names (the services' producers set it), or None."""
    for key, value in record.headers or ():
        if key == "ce-type":
            return value.decode(errors="replace")
    return None


def replay_group(record: Any) -> str | None:
    """The group a replayed record is meant for (header dlq-replay-group), None for an ordinary record."""
    for key, value in record.headers or ():
        if key == DLQ_REPLAY_GROUP:
            return value.decode(errors="replace")
    return None
