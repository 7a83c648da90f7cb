"""Stage-entry actions and pipeline visibility: what administrators configure on pipelines, and what actions report."""

from typing import Literal

from pydantic import AwareDatetime, Field

from contracts.base import ContractModel, Payload

StageActionKind = Literal["set_fields", "webhook"]


class StageAction(ContractModel):
    """One action run when a lead enters the stage, as a pipeline command asks for it."""

    action_id: str | None = Field(
        None, description="Id of the action within its stage (keeps a stored webhook's secret on update); derived when absent."
    )
    kind: StageActionKind = Field(
        description="`set_fields`: set values on the lead's card; `webhook`: POST the lead card as a CloudEvent to `url`."
    )
    set_fields: dict[str, str] | None = Field(
        None,
        description="For `set_fields`: card field name to value, among `responsible_id`, `source`, `marketing_event`, "
        "`utm_source`, `utm_medium`, `utm_campaign`, `need_maturity`, `description`.",
    )
    url: str | None = Field(None, description="For `webhook`: the http(s) address posted to.")
    secret: str | None = Field(
        None,
        description="For `webhook`: the HMAC-SHA256 key the request is signed with (write-only: never published). "
        "Absent on an update of an action with the same `action_id`: the stored secret is kept.",
    )


class StageActionView(ContractModel):
    """A stage-entry action as pipeline cards show it: the webhook secret is never shown."""

    action_id: str = Field(description="Id of the action within its stage.")
    kind: StageActionKind = Field(description="`set_fields` or `webhook`.")
    set_fields: dict[str, str] | None = Field(None, description="For `set_fields`: card field name to value.")
    url: str | None = Field(None, description="For `webhook`: the address posted to.")
    secret_set: bool = Field(False, description="For `webhook`: whether a signing secret is stored.")


class PipelineVisibility(ContractModel):
    """Who sees a pipeline and its leads: users in any of the groups or holding any of the roles (administrators always)."""

    groups: list[str] = Field(default_factory=list, description="Groups (from `crm.user.group-granted`) that see the pipeline.")
    roles: list[str] = Field(default_factory=list, description="Roles (from `crm.user.role-granted`) that see the pipeline.")


class RunStageAction(Payload):
    """Internal: apply a stage's `set_fields` action to a lead that entered the stage (the leads service to itself).

    Carries no values: the leads service applies what the pipeline's configuration says, so a sender
    can only trigger what an administrator configured. Keyed by lead id; its id is derived from the
    entering event and the action, so it is applied once.
    """

    TYPE = "crm.lead.run-stage-action"

    lead_id: str = Field(description="The lead that entered the stage.")
    pipeline_id: str = Field(description="Pipeline of the stage.")
    stage_id: str = Field(description="The stage entered.")
    action_id: str = Field(description="The stage's action to apply.")
    entered_version: int = Field(description="Version of the lead card when it entered the stage.", ge=0)


class StageActionFailed(Payload):
    """A stage-entry action failed: a webhook attempt that did not succeed, or a field update refused."""

    TYPE = "crm.stage-action.failed"

    lead_id: str = Field(description="The lead whose stage entry ran the action.")
    pipeline_id: str = Field(description="Pipeline of the stage.")
    stage_id: str = Field(description="The stage entered.")
    action_id: str = Field(description="The action that failed.")
    kind: StageActionKind = Field(description="`set_fields` or `webhook`.")
    attempt: int = Field(1, description="Which attempt failed (webhooks are retried with exponential backoff).", ge=1)
    will_retry: bool = Field(False, description="Whether another attempt is scheduled.")
    next_attempt_at: AwareDatetime | None = Field(None, description="When the next attempt is due, if any.")
    reason: str = Field(description="What went wrong, human readable.")
    status_code: int | None = Field(None, description="For a webhook: the HTTP status the endpoint answered, if it answered.")
    delivery_id: str | None = Field(None, description="For a webhook: the delivery's id (the posted CloudEvent's `id`).")


class StageEntered(ContractModel):
    """Not a Kafka message: the `data` of the CloudEvent a webhook action POSTs (type `crm.lead.stage-entered`).

    The request body is a CloudEvents 1.0 structured-mode JSON object (`Content-Type:
    application/cloudevents+json`) whose `id` is the delivery id (the same on every retry),
    `subject` the lead id and `data` this object. The header `CRM-Signature: t=<unix seconds>,v1=<hex>`
    holds HMAC-SHA256(secret, "<t>." + body).
    """

    pipeline_id: str = Field(description="Pipeline of the stage entered.")
    stage_id: str = Field(description="The stage entered.")
    action_id: str = Field(description="The webhook action.")
    lead: dict = Field(description="The lead card (as `crm.lead.updated` carries it) when it entered the stage.")
