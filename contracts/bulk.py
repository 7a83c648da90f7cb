"""Mass actions on leads: one command changes many leads, each as if sent alone, reported as one job."""

from enum import Enum

from pydantic import Field

from contracts.base import ContractModel, Payload
from contracts.common import LeadStatus, ReasonCode


class BulkAction(str, Enum):
    """What a mass action does to each lead."""

    move = "move"
    assign = "assign"
    change_pipeline = "change_pipeline"
    delete = "delete"
    restore = "restore"


class BulkState(str, Enum):
    """Where a mass action stands."""

    running = "running"
    completed = "completed"
    cancelled = "cancelled"


class LeadFilter(ContractModel):
    """Which leads a mass action takes, as `GET /leads` filters them (all given filters at once)."""

    pipeline_id: str | None = Field(None, description="Leads in this pipeline.")
    stage_id: str | None = Field(None, description="Leads in this stage.")
    status: LeadStatus | None = Field(None, description="Leads of this status kind.")
    responsible_id: str | None = Field(None, description="Leads this user is responsible for.")
    source: str | None = Field(None, description="Leads with this source.")
    q: str | None = Field(None, description="Leads whose title, contact or company match these words (as `GET /leads?q=`).")
    include_deleted: bool = Field(False, description="Deleted leads too (needed to restore them).")


class BulkUpdateLeads(Payload):
    """Change many leads at once: each lead gets its own command, with its own rules, history and events."""

    TYPE = "crm.leads.bulk-update"

    bulk_id: str | None = Field(None, description="Id of the job; derived from the message id when absent.")
    action: BulkAction = Field(description="What to do to each lead.")
    lead_ids: list[str] | None = Field(None, description="The leads, by id (up to 1,000); give these or `filter`.")
    filter: LeadFilter | None = Field(None, description="The leads, by the list endpoint's filters; give this or `lead_ids`.")
    stage_id: str | None = Field(None, description="`move`: the stage to move to (required); `change_pipeline`: the stage of the new pipeline.")
    pipeline_id: str | None = Field(None, description="`change_pipeline`: the pipeline to move to (required).")
    responsible_id: str | None = Field(None, description="`assign`: the user to make responsible (required).")


class CancelBulkUpdate(Payload):
    """Stop a mass action: leads not yet changed are left as they are (its owner or an administrator)."""

    TYPE = "crm.leads.bulk-cancel"

    bulk_id: str = Field(description="Job to stop.")


class BulkLeadRefusal(ContractModel):
    """One lead a mass action could not change, and why (the lead's own `crm.command.rejected`)."""

    lead_id: str = Field(description="Lead that was not changed.")
    reason_code: ReasonCode = Field(description="Why it was refused.")
    message: str = Field(description="Why it was refused, human readable.")


class BulkCounts(ContractModel):
    """How many of a job's leads ended which way."""

    total: int = Field(description="Leads the job took.", ge=0)
    applied: int = Field(0, description="Leads changed.", ge=0)
    unchanged: int = Field(0, description="Leads already as asked (nothing to do).", ge=0)
    refused: int = Field(0, description="Leads whose change was refused by their own rules.", ge=0)
    cancelled: int = Field(0, description="Leads left alone because the job was cancelled.", ge=0)


class BulkUpdateStarted(Payload):
    """A mass action took its leads and started sending their commands."""

    TYPE = "crm.leads.bulk-started"

    bulk_id: str = Field(description="Id of the job.")
    action: BulkAction = Field(description="What the job does to each lead.")
    total: int = Field(description="Leads the job took.", ge=0)
    requested_by: str = Field(description="User the job acts for (each lead's command carries this actor).")


class BulkUpdateCompleted(Payload):
    """A mass action ended (every lead answered, or the job was cancelled), with counts and per-lead refusals."""

    TYPE = "crm.leads.bulk-completed"

    bulk_id: str = Field(description="Id of the job.")
    action: BulkAction = Field(description="What the job did to each lead.")
    state: BulkState = Field(description="`completed`, or `cancelled` when it was stopped.")
    counts: BulkCounts = Field(description="How the job's leads ended.")
    refusals: list[BulkLeadRefusal] = Field(
        default_factory=list, description="The refused leads with their reasons (the first 1,000; `GET /bulk/{id}/refusals` pages through them all)."
    )
    requested_by: str = Field(description="User the job acted for.")


BULK_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (BulkUpdateLeads, CancelBulkUpdate)
BULK_EVENT_PAYLOADS: tuple[type[Payload], ...] = (BulkUpdateStarted, BulkUpdateCompleted)
