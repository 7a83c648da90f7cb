"""The card's own data as a command sends it, validated together so every bad field is reported at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.leads.domain.model import CompanyRef, ContactRef, NeedMaturity, ProductLine, Rejected
from services.leads.domain.rules import _plain


class _CardData(BaseModel):
    """The lead's own data, validated together so every bad field is reported at once."""

    model_config = ConfigDict(extra="ignore")

    title: str | None = None
    responsible_id: str | None = None
    contact: ContactRef | None = None
    company: CompanyRef | None = None
    products: list[ProductLine] = Field(default_factory=list)
    source: str | None = None
    marketing_event: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    need_maturity: NeedMaturity | None = None
    description: str | None = None
    external_id: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)

    @field_validator(
        "title",
        "responsible_id",
        "source",
        "marketing_event",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "description",
        "external_id",
        mode="before",
    )
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        # Forms and spreadsheets send "" or "  " for an empty field.
        if isinstance(value, str):
            return value.strip() or None
        return value


def _card_data(values: Mapping[str, Any]) -> _CardData:
    try:
        card = _CardData.model_validate({key: _plain(value) for key, value in values.items()})
    except ValidationError as exc:
        raise Rejected(
            "validation",
            "the lead data is not valid; fix the fields listed in errors and send it again",
            [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in exc.errors()],
        ) from None
    if card.title is None:
        raise Rejected(
            "validation",
            "a lead needs a title; give it a short name",
            [("title", "title is required and cannot be blank")],
        )
    return card
