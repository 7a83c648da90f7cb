"""Base classes shared by every contract model: forward-compatible parsing and message types."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ContractModel(BaseModel):
    """A value carried inside a message; unknown fields are ignored."""

    # Within v1 producers may add optional fields; older readers must keep working.
    model_config = ConfigDict(extra="ignore")


class Payload(ContractModel):
    """The `data` of one message type; subclasses set `TYPE` to the CloudEvents type."""

    TYPE: ClassVar[str] = ""
