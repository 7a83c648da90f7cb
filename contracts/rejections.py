"""`crm.command.rejected`: a valid command that was not allowed, published by the service that refused it."""

from pydantic import Field

from contracts.base import Payload
from contracts.common import FieldError, ReasonCode


class CommandRejected(Payload):
    """A command was refused and changed nothing."""

    TYPE = "crm.command.rejected"

    command_id: str = Field(description="`id` of the rejected message.")
    command_type: str = Field(description="`type` of the rejected message.")
    reason_code: ReasonCode = Field(description="Why the command was refused.")
    message: str = Field(description="Why the command was refused, human readable.")
    errors: list[FieldError] | None = Field(None, description="Problems with individual fields, if any.")
    lead_id: str | None = Field(None, description="Lead the command was about, when there is one.")
