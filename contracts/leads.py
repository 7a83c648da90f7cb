"""Messages of the leads service: pipeline and lead commands and the events it publishes."""

from typing import Literal

from pydantic import Field

from contracts.actions import PipelineVisibility, RunStageAction, StageActionFailed
from contracts.base import Payload
from contracts.cards import LeadCard, LeadFields, PipelineCard
from contracts.common import (
    CompanyRef,
    ContactRef,
    DuplicateMatch,
    LeadStatus,
    StageSpec,
    TransitionMode,
    default_stage_specs,
)
from contracts.rejections import CommandRejected

# --- commands (crm.leads.commands.v1) ---


class CreatePipeline(Payload):
    """Create a pipeline (administrators only)."""

    TYPE = "crm.pipeline.create"

    pipeline_id: str | None = Field(None, description="Id for the new pipeline; generated when absent.")
    name: str = Field(description="Display name of the pipeline.", min_length=1)
    stages: list[StageSpec] = Field(
        default_factory=default_stage_specs,
        description="Ordered stages; New, Processing, Qualified and Unqualified when absent.",
    )
    transition_mode: TransitionMode = Field(
        TransitionMode.manual, description="Which stage moves the pipeline allows."
    )
    visible_to: PipelineVisibility | None = Field(
        None, description="Groups and roles that see the pipeline and its leads; every licensed user when absent."
    )


class UpdatePipeline(Payload):
    """Rename a pipeline, change its mode, or rename, reorder, add and remove its stages."""

    TYPE = "crm.pipeline.update"

    pipeline_id: str = Field(description="Pipeline to change.")
    name: str | None = Field(None, description="New display name; unchanged when absent.", min_length=1)
    stages: list[StageSpec] | None = Field(
        None,
        description="The full new ordered list of stages: entries with a `stage_id` keep (and may rename) "
        "that stage, entries without one add a stage, stages left out are removed. Unchanged when absent.",
    )
    transition_mode: TransitionMode | None = Field(None, description="New transition mode; unchanged when absent.")
    visible_to: PipelineVisibility | None = Field(
        None, description="Who sees the pipeline from now on; unchanged when absent; empty lists: every licensed user."
    )


class DeletePipeline(Payload):
    """Delete a pipeline (never the default one)."""

    TYPE = "crm.pipeline.delete"

    pipeline_id: str = Field(description="Pipeline to delete.")


class CreateLead(LeadFields, Payload):
    """Create a lead in a pipeline; it lands in the pipeline's first stage unless a stage is named."""

    TYPE = "crm.lead.create"

    lead_id: str | None = Field(
        None,
        description="Id of the new lead. When absent the service derives a stable id from `source` + "
        "`external_id`, or from the message `id`.",
    )
    pipeline_id: str | None = Field(None, description="Pipeline of the lead; the default pipeline when absent.")
    stage_id: str | None = Field(None, description="Stage to create the lead in; the first stage when absent.")
    title: str = Field(description="Title of the lead; the only required field.", min_length=1)
    import_id: str | None = Field(None, description="Import that sends this command, for correlation.")
    import_row: int | None = Field(None, description="Row of the import file this lead comes from.", ge=1)


class UpdateLead(LeadFields, Payload):
    """Change fields of a lead; absent fields stay as they are, fields named in `clear` are emptied."""

    TYPE = "crm.lead.update"

    lead_id: str = Field(description="Lead to change.")
    title: str | None = Field(None, description="New title of the lead.", min_length=1)
    import_id: str | None = Field(None, description="Import that sends this command, for correlation.")
    import_row: int | None = Field(None, description="Row of the import file this update comes from.", ge=1)
    clear: list[str] = Field(
        default_factory=list, description="Names of optional fields to empty, e.g. `contact`, `utm_source`."
    )


class AssignLead(Payload):
    """Make a user responsible for a lead; a lead in New moves to Processing."""

    TYPE = "crm.lead.assign"

    lead_id: str = Field(description="Lead to assign.")
    responsible_id: str = Field(description="User to make responsible.")


class MoveLead(Payload):
    """Move a lead to another stage of its pipeline, as the pipeline's mode allows."""

    TYPE = "crm.lead.move"

    lead_id: str = Field(description="Lead to move.")
    stage_id: str = Field(description="Stage to move it to.")


class ChangeLeadPipeline(Payload):
    """Move a lead to another pipeline, into its New stage unless a stage is named."""

    TYPE = "crm.lead.change-pipeline"

    lead_id: str = Field(description="Lead to move.")
    pipeline_id: str = Field(description="Pipeline to move it to.")
    stage_id: str | None = Field(None, description="Stage of that pipeline; its first stage when absent.")


class DeleteLead(Payload):
    """Soft-delete a lead; it can be restored."""

    TYPE = "crm.lead.delete"

    lead_id: str = Field(description="Lead to delete.")


class RestoreLead(Payload):
    """Undo the deletion of a lead."""

    TYPE = "crm.lead.restore"

    lead_id: str = Field(description="Lead to restore.")


class ReopenLead(Payload):
    """Unlock a qualified or unqualified lead (administrators only)."""

    TYPE = "crm.lead.reopen"

    lead_id: str = Field(description="Lead to reopen.")
    stage_id: str | None = Field(
        None, description="Stage to put it in; the pipeline's first in-progress stage when absent."
    )


class MarkLeadDuplicate(Payload):
    """Link a lead to the lead it duplicates."""

    TYPE = "crm.lead.mark-duplicate"

    lead_id: str = Field(description="The duplicate lead.")
    original_lead_id: str = Field(description="The lead it duplicates.")


class MergeLeads(Payload):
    """Merge another lead into this one, field by field; the other lead is then deleted."""

    TYPE = "crm.lead.merge"

    lead_id: str = Field(description="The surviving lead.")
    other_lead_id: str = Field(description="The lead merged into the survivor.")
    fields: dict[str, Literal["self", "other"]] = Field(
        default_factory=dict,
        description="Per field name, whose value wins: `self` (the survivor) or `other`. Fields not named "
        "keep the survivor's value, or take the other's when the survivor has none.",
    )


class DismissLeadDuplicate(Payload):
    """Declare that a recorded duplicate match is not a duplicate."""

    TYPE = "crm.lead.dismiss-duplicate"

    lead_id: str = Field(description="Lead the match is recorded on.")
    duplicate_lead_id: str = Field(description="Matched lead that is not a duplicate.")


class RefreshLeadSnapshot(Payload):
    """Internal: refresh a lead's snapshot of a changed upstream record (sent by the leads service to itself).

    The leads service turns one `crm.contact.upserted` / `crm.company.upserted` /
    `crm.product.upserted` into one of these per linked lead, keyed by lead id, so that every change to
    a lead is applied by the one instance that owns the lead's partition. Outside systems never send it.
    """

    TYPE = "crm.lead.refresh-snapshot"

    lead_id: str = Field(description="The lead whose snapshot is refreshed.")
    contact: ContactRef | None = Field(None, description="The contact's current data, when a contact changed.")
    company: CompanyRef | None = Field(None, description="The company's current data, when a company changed.")
    product_id: str | None = Field(None, description="The product that changed, when a product changed.")
    product_name: str | None = Field(None, description="The product's current name.")
    product_kind: str | None = Field(None, description="The product's kind: `simple` or `configurable`.")
    product_options: list[str] | None = Field(
        None, description="Option names the product offers now; chosen options it no longer offers are dropped."
    )
    record_version: int = Field(description="Upstream version of the record this snapshot comes from.", ge=0)


# --- events (crm.leads.events.v1) ---


class PipelineCreated(PipelineCard, Payload):
    """A pipeline was created."""

    TYPE = "crm.pipeline.created"


class PipelineUpdated(PipelineCard, Payload):
    """A pipeline or its stages changed."""

    TYPE = "crm.pipeline.updated"


class PipelineDeleted(Payload):
    """A pipeline was deleted."""

    TYPE = "crm.pipeline.deleted"

    pipeline_id: str = Field(description="The deleted pipeline.")
    version: int = Field(description="Version of the pipeline after the deletion.", ge=0)


class LeadCreated(LeadCard, Payload):
    """A lead was created; carries the whole card."""

    TYPE = "crm.lead.created"

    changed_fields: list[str] = Field(default_factory=list, description="Card fields this change set.")


class LeadUpdated(LeadCard, Payload):
    """A lead changed in any way; carries the whole card."""

    TYPE = "crm.lead.updated"

    changed_fields: list[str] = Field(default_factory=list, description="Card fields this change touched.")


class LeadAssigned(Payload):
    """A lead got a new responsible user."""

    TYPE = "crm.lead.assigned"

    lead_id: str = Field(description="The lead.")
    responsible_id: str = Field(description="The new responsible user.")
    previous_responsible_id: str | None = Field(None, description="The previous responsible user, if any.")
    version: int = Field(description="Version of the lead card after the change.", ge=0)


class LeadStageChanged(Payload):
    """A lead moved to another stage (or pipeline)."""

    TYPE = "crm.lead.stage-changed"

    lead_id: str = Field(description="The lead.")
    pipeline_id: str = Field(description="Pipeline the lead is in now.")
    from_stage_id: str = Field(description="Stage the lead left.")
    to_stage_id: str = Field(description="Stage the lead entered.")
    from_status: LeadStatus = Field(description="Status kind of the stage it left.")
    to_status: LeadStatus = Field(description="Status kind of the stage it entered.")
    version: int = Field(description="Version of the lead card after the change.", ge=0)
    from_pipeline_id: str | None = Field(
        None, description="Pipeline the lead left, when it changed pipeline; absent otherwise."
    )


class LeadDeleted(Payload):
    """A lead was soft-deleted."""

    TYPE = "crm.lead.deleted"

    lead_id: str = Field(description="The lead.")
    version: int = Field(description="Version of the lead card after the change.", ge=0)


class LeadRestored(Payload):
    """A deleted lead was restored."""

    TYPE = "crm.lead.restored"

    lead_id: str = Field(description="The lead.")
    version: int = Field(description="Version of the lead card after the change.", ge=0)


class LeadDuplicatesFound(Payload):
    """Possible duplicates of a lead were found."""

    TYPE = "crm.lead.duplicates-found"

    lead_id: str = Field(description="The lead.")
    matches: list[DuplicateMatch] = Field(description="Leads that look like the same client.")
    version: int = Field(description="Version of the lead card after the change.", ge=0)


class LeadMerged(Payload):
    """Another lead was merged into this one."""

    TYPE = "crm.lead.merged"

    lead_id: str = Field(description="The surviving lead.")
    merged_lead_id: str = Field(description="The lead merged into it (now deleted).")
    version: int = Field(description="Version of the surviving lead's card after the merge.", ge=0)


LEADS_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (
    CreatePipeline,
    UpdatePipeline,
    DeletePipeline,
    CreateLead,
    UpdateLead,
    AssignLead,
    MoveLead,
    ChangeLeadPipeline,
    DeleteLead,
    RestoreLead,
    ReopenLead,
    MarkLeadDuplicate,
    MergeLeads,
    DismissLeadDuplicate,
    RefreshLeadSnapshot,
    RunStageAction,
)

LEADS_EVENT_PAYLOADS: tuple[type[Payload], ...] = (
    PipelineCreated,
    PipelineUpdated,
    PipelineDeleted,
    LeadCreated,
    LeadUpdated,
    LeadAssigned,
    LeadStageChanged,
    LeadDeleted,
    LeadRestored,
    LeadDuplicatesFound,
    LeadMerged,
    CommandRejected,
    StageActionFailed,
)
