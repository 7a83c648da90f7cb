"""Whole-aggregate views carried by events: the lead card and the pipeline card."""

from pydantic import AwareDatetime, Field

from contracts.actions import PipelineVisibility
from contracts.base import ContractModel
from contracts.common import (
    ActivitySummaryView,
    CompanyRef,
    ContactRef,
    DuplicateMatch,
    LeadStatus,
    NeedMaturity,
    ProductLine,
    Stage,
    StatusHistoryEntry,
    TransitionMode,
)


class LeadFields(ContractModel):
    """The lead's own data that commands may set; every field optional."""

    responsible_id: str | None = Field(
        None, description="User responsible for the lead; defaults to the creator."
    )
    external_id: str | None = Field(
        None, description="Id of the lead in the outside system that sent it; re-imports match on it."
    )
    contact: ContactRef | None = Field(None, description="Linked contact and its snapshot.")
    company: CompanyRef | None = Field(None, description="Linked company and its snapshot.")
    products: list[ProductLine] | None = Field(None, description="Products the client is interested in.")
    source: str | None = Field(None, description="Where the lead came from, e.g. `website`, `phone`.")
    marketing_event: str | None = Field(None, description="Marketing event that brought the lead.")
    utm_source: str | None = Field(None, description="UTM source.")
    utm_medium: str | None = Field(None, description="UTM medium.")
    utm_campaign: str | None = Field(None, description="UTM campaign.")
    need_maturity: NeedMaturity | None = Field(None, description="How mature the client's need is.")
    description: str | None = Field(None, description="Free-text description of the lead.")


class LeadCard(LeadFields):
    """The whole lead card as stored by the leads service, so consumers never need to call back."""

    lead_id: str = Field(description="Id of the lead.")
    pipeline_id: str = Field(description="Pipeline the lead is in.")
    stage_id: str = Field(description="Stage the lead stands in.")
    status: LeadStatus = Field(description="Status kind of the lead's stage.")
    version: int = Field(description="Version of the card; grows by one with every change.", ge=0)
    title: str = Field(description="Title of the lead.")
    created_by: str | None = Field(None, description="User who created the lead, if any.")
    products: list[ProductLine] = Field(
        default_factory=list, description="Products the client is interested in."
    )
    external_ids: dict[str, str] = Field(
        default_factory=dict, description="Ids of the lead in outside systems: source to id."
    )
    created_at: AwareDatetime = Field(description="When the lead was created.")
    updated_at: AwareDatetime = Field(description="When the card last changed in any way.")
    data_changed_at: AwareDatetime = Field(
        description="Last change to the lead's own data (not stage, links or activity)."
    )
    status_since: AwareDatetime = Field(description="When the lead entered its current status.")
    status_history: list[StatusHistoryEntry] = Field(
        default_factory=list, description="Stages the lead stood in, oldest first."
    )
    deleted: bool = Field(False, description="Whether the lead is (soft) deleted.")
    deleted_at: AwareDatetime | None = Field(None, description="When the lead was deleted.")
    qualified_deal_id: str | None = Field(None, description="Deal the lead was qualified into.")
    qualified_company_id: str | None = Field(None, description="Company the lead was qualified into.")
    disqualification_reason_id: str | None = Field(
        None, description="Id of the reason the lead was disqualified for."
    )
    disqualification_reason: str | None = Field(
        None, description="Text of the reason the lead was disqualified for."
    )
    disqualification_comment: str | None = Field(None, description="Comment given when disqualifying.")
    activity: ActivitySummaryView | None = Field(
        None, description="The lead's open CRM tasks in brief, as last reported by the activity service."
    )
    duplicates: list[DuplicateMatch] = Field(
        default_factory=list, description="Other leads that look like the same client, not yet resolved."
    )
    duplicate_of: str | None = Field(None, description="Lead this one was marked a duplicate of.")
    merged_into: str | None = Field(None, description="Lead this one was merged into.")
    import_id: str | None = Field(None, description="Import that last wrote the lead.")


class PipelineCard(ContractModel):
    """A pipeline and its ordered stages as stored by the leads service."""

    pipeline_id: str = Field(description="Id of the pipeline; the default pipeline's is `default`.")
    name: str = Field(description="Display name of the pipeline.")
    stages: list[Stage] = Field(description="Stages of the pipeline, in order.")
    transition_mode: TransitionMode = Field(description="Which stage moves the pipeline allows.")
    is_default: bool = Field(description="Whether this is the default pipeline (it cannot be deleted).")
    version: int = Field(description="Version of the pipeline; grows by one with every change.", ge=0)
    created_at: AwareDatetime | None = Field(None, description="When the pipeline was created.")
    updated_at: AwareDatetime | None = Field(None, description="When the pipeline last changed.")
    visible_to: PipelineVisibility | None = Field(
        None, description="Groups and roles that see the pipeline and its leads; absent: every licensed user."
    )
