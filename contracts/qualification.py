"""Messages of the qualification service: qualify and disqualify leads, and what that creates."""

from pydantic import Field

from contracts.base import ContractModel, Payload
from contracts.common import ContactRef, ProductLine, QualificationType, ReasonCode
from contracts.rejections import CommandRejected

# --- commands (crm.qualification.commands.v1) ---


class NewCompany(ContractModel):
    """Data for a company the qualification creates."""

    name: str = Field(description="Company name.", min_length=1)
    inn: str | None = Field(None, description="Company taxpayer number (INN).")


class QualifyLead(Payload):
    """Qualify a lead into a company, and a deal for `deal_and_company`."""

    TYPE = "crm.lead.qualify"

    lead_id: str = Field(description="Lead to qualify.")
    qualification_type: QualificationType = Field(description="What the qualification creates.")
    company_id: str | None = Field(
        None, description="Existing company to link; give this or `new_company`."
    )
    new_company: NewCompany | None = Field(
        None, description="Company to create; give this or `company_id`."
    )
    industry: str | None = Field(None, description="Industry of the company.")
    segment: str | None = Field(None, description="Client segment of the company.")
    deal_pipeline_id: str | None = Field(
        None, description="Deal pipeline for the new deal; required for `deal_and_company`."
    )


class DisqualifyLead(Payload):
    """Close a lead as unqualified, with a reason from its pipeline's list."""

    TYPE = "crm.lead.disqualify"

    lead_id: str = Field(description="Lead to disqualify.")
    reason_id: str = Field(description="Reason from the pipeline's list of disqualification reasons.")
    comment: str | None = Field(None, description="Free-text comment.")


class AddDisqualificationReason(Payload):
    """Add a reason to a pipeline's list of disqualification reasons (administrators only)."""

    TYPE = "crm.disqualification-reason.add"

    pipeline_id: str = Field(description="Pipeline whose list to extend.")
    reason_id: str | None = Field(None, description="Id for the reason; generated when absent.")
    text: str = Field(description="Text of the reason.", min_length=1)
    text_ru: str | None = Field(None, description="Russian text of the reason.")


class RemoveDisqualificationReason(Payload):
    """Remove a reason from a pipeline's list of disqualification reasons (administrators only)."""

    TYPE = "crm.disqualification-reason.remove"

    pipeline_id: str = Field(description="Pipeline whose list to change.")
    reason_id: str = Field(description="Reason to remove.")


# --- events (crm.qualification.events.v1, public) ---


class CompanyCreated(Payload):
    """Qualifying a lead created a company."""

    TYPE = "crm.company.created"

    company_id: str = Field(description="Id of the new company.")
    lead_id: str = Field(description="Lead whose qualification created it.")
    name: str = Field(description="Company name.")
    inn: str | None = Field(None, description="Company taxpayer number (INN).")
    industry: str | None = Field(None, description="Industry of the company.")
    segment: str | None = Field(None, description="Client segment of the company.")


class DealCreated(Payload):
    """Qualifying a lead created a deal; the lead's data carries over."""

    TYPE = "crm.deal.created"

    deal_id: str = Field(description="Id of the new deal.")
    lead_id: str = Field(description="Lead it was qualified from.")
    company_id: str = Field(description="Company of the deal.")
    contact: ContactRef | None = Field(None, description="Contact of the deal, from the lead.")
    products: list[ProductLine] = Field(description="Products of the deal, from the lead.")
    title: str = Field(description="Title of the deal, from the lead.")
    responsible_id: str = Field(description="Responsible user, from the lead.")
    # Present but possibly null: the contract lists them as always sent, the lead may lack them.
    source: str | None = Field(description="Source, from the lead; null when the lead had none.")
    utm_source: str | None = Field(description="UTM source, from the lead; null when the lead had none.")
    utm_medium: str | None = Field(description="UTM medium, from the lead; null when the lead had none.")
    utm_campaign: str | None = Field(description="UTM campaign, from the lead; null when the lead had none.")
    deal_pipeline_id: str = Field(description="Deal pipeline the deal starts in.")


class LeadQualified(Payload):
    """A lead was qualified and locked."""

    TYPE = "crm.lead.qualified"

    lead_id: str = Field(description="The lead.")
    qualification_type: QualificationType = Field(description="What the qualification created.")
    company_id: str = Field(description="Company the lead was qualified into.")
    deal_id: str | None = Field(None, description="Deal the lead was qualified into, for `deal_and_company`.")


class LeadDisqualified(Payload):
    """A lead was closed as unqualified and locked."""

    TYPE = "crm.lead.disqualified"

    lead_id: str = Field(description="The lead.")
    reason_id: str = Field(description="Id of the disqualification reason.")
    reason: str = Field(description="Text of the disqualification reason.")
    comment: str | None = Field(None, description="Free-text comment.")


class RejectionReason(ContractModel):
    """One reason a qualification failed."""

    code: ReasonCode = Field(description="Kind of problem.")
    field: str | None = Field(None, description="Offending field of the command, if any.")
    message: str = Field(description="What is wrong, human readable.")


class QualificationRejected(Payload):
    """Qualifying a lead failed; the lead was left as it was."""

    TYPE = "crm.qualification.rejected"

    lead_id: str = Field(description="The lead.")
    command_id: str = Field(description="`id` of the qualify command that failed.")
    reasons: list[RejectionReason] = Field(description="Why it failed.", min_length=1)


QUALIFICATION_COMMAND_PAYLOADS: tuple[type[Payload], ...] = (
    QualifyLead,
    DisqualifyLead,
    AddDisqualificationReason,
    RemoveDisqualificationReason,
)

QUALIFICATION_EVENT_PAYLOADS: tuple[type[Payload], ...] = (
    CompanyCreated,
    DealCreated,
    LeadQualified,
    LeadDisqualified,
    QualificationRejected,
    CommandRejected,
)
