"""Web-to-lead capture forms: the commands administrators send to define them and the events that follow."""

from pydantic import AwareDatetime, Field

from contracts.base import ContractModel, Payload
from contracts.common import NeedMaturity


class CapturePresets(ContractModel):
    """Values every lead a form makes starts with; a submission may override those its allowed fields name."""

    title: str | None = Field(None, description="Title of the lead when the submission sends none; the form's name when absent.")
    responsible_id: str | None = Field(None, description="User responsible for the form's leads; the form's creator when absent.")
    source: str | None = Field(None, description="Source of the form's leads, e.g. `website`.")
    marketing_event: str | None = Field(None, description="Marketing event of the form's leads.")
    need_maturity: NeedMaturity | None = Field(None, description="Need maturity of the form's leads.")
    utm_source: str | None = Field(None, description="UTM source when neither the submission nor its query string sends one.")
    utm_medium: str | None = Field(None, description="UTM medium when neither the submission nor its query string sends one.")
    utm_campaign: str | None = Field(None, description="UTM campaign when neither the submission nor its query string sends one.")
    description: str | None = Field(None, description="Description of the form's leads when the submission sends none.")


class CaptureFormSettings(ContractModel):
    """What a form is: where its leads go, what a submission may set, who may post to it, how often."""

    name: str | None = Field(None, description="Display name of the form.", min_length=1)
    pipeline_id: str | None = Field(None, description="Pipeline the form's leads go to; the default pipeline when absent.")
    stage_id: str | None = Field(None, description="Stage the form's leads land in; the pipeline's first stage when absent.")
    presets: CapturePresets | None = Field(None, description="Values every lead of the form starts with.")
    allowed_fields: list[str] | None = Field(
        None,
        description="Submission fields the form accepts (`title`, `contact.name`, `contact.email`, `contact.phone`, "
        "`company.name`, `company.inn`, `description`, `need_maturity`, `marketing_event`); any other field is "
        "refused with 400. `utm_source`, `utm_medium`, `utm_campaign` and `submission_id` are always accepted.",
    )
    allowed_origins: list[str] | None = Field(
        None, description="Origins (`https://example.com`) whose pages may post to the form; any origin when empty and a key is set."
    )
    secret_key: str | None = Field(
        None,
        description="A key a submission must carry (header `X-Capture-Key` or field `_key`), for servers posting to the form. "
        "A form needs a key or allowed origins. At least 16 characters; the leads service keeps only a salted hash of it, "
        "never publishes or shows it (`has_secret_key` on the form's events).",
    )
    rate_limit_per_minute: int | None = Field(
        None, description="Submissions one client address may make per minute; 10 when absent.", ge=1, le=100_000
    )
    honeypot_field: str | None = Field(
        None, description="Name of a hidden field people leave empty; a submission filling it is accepted and dropped. `_hp` when absent."
    )
    redirect_url: str | None = Field(
        None, description="Where a browser posting the HTML form is sent after its submission (303); a JSON answer when absent."
    )


class CreateCaptureForm(CaptureFormSettings, Payload):
    """Define a web-to-lead form (administrators only); `POST /capture/{form_id}` then takes submissions."""

    TYPE = "crm.capture-form.create"

    form_id: str | None = Field(None, description="Id of the form (it is in the capture URL); derived from the message id when absent.")
    name: str = Field(description="Display name of the form.", min_length=1)


class UpdateCaptureForm(CaptureFormSettings, Payload):
    """Change a form's settings (administrators only); absent settings stay as they are."""

    TYPE = "crm.capture-form.update"

    form_id: str = Field(description="Form to change.")
    clear: list[str] = Field(
        default_factory=list, description="Settings to empty, e.g. `secret_key`, `allowed_origins`, `redirect_url`."
    )


class DeleteCaptureForm(Payload):
    """Delete a form (administrators only): its URL answers 404 from then on."""

    TYPE = "crm.capture-form.delete"

    form_id: str = Field(description="Form to delete.")


class CaptureFormCard(ContractModel):
    """A form as stored, without its secret key."""

    form_id: str = Field(description="Id of the form.")
    name: str = Field(description="Display name of the form.")
    pipeline_id: str = Field(description="Pipeline the form's leads go to.")
    stage_id: str | None = Field(None, description="Stage the form's leads land in; the pipeline's first stage when absent.")
    presets: CapturePresets = Field(default_factory=CapturePresets, description="Values every lead of the form starts with.")
    allowed_fields: list[str] = Field(default_factory=list, description="Submission fields the form accepts.")
    allowed_origins: list[str] = Field(default_factory=list, description="Origins whose pages may post to the form.")
    has_secret_key: bool = Field(False, description="Whether submissions must carry the form's key (the key is never published).")
    rate_limit_per_minute: int = Field(description="Submissions one client address may make per minute.")
    honeypot_field: str = Field(description="Name of the spam-trap field.")
    redirect_url: str | None = Field(None, description="Where a browser is sent after a submission.")
    created_by: str = Field(description="Administrator who created the form.")
    version: int = Field(description="Version of the form; grows by one with every change.", ge=1)
    deleted: bool = Field(False, description="Whether the form was deleted.")
    updated_at: AwareDatetime = Field(description="When the form last changed.")


class CaptureFormCreated(CaptureFormCard, Payload):
    """A capture form was defined."""

    TYPE = "crm.capture-form.created"


class CaptureFormUpdated(CaptureFormCard, Payload):
    """A capture form's settings changed."""

    TYPE = "crm.capture-form.updated"


class CaptureFormDeleted(Payload):
    """A capture form was deleted; its URL answers 404."""

    TYPE = "crm.capture-form.deleted"

    form_id: str = Field(description="Id of the form.")
    version: int = Field(description="Version of the form after the deletion.", ge=1)


CAPTURE_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (CreateCaptureForm, UpdateCaptureForm, DeleteCaptureForm)
CAPTURE_EVENT_PAYLOADS: tuple[type[Payload], ...] = (CaptureFormCreated, CaptureFormUpdated, CaptureFormDeleted)
