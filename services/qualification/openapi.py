"""What the qualification HTTP routes' code cannot say by itself, for the OpenAPI document."""

from contracts.qualification import DealCreated
from crmkit.openapi import CURSOR, LIMIT, Operation, Param

OPERATIONS = {
    ("GET", "/deals/{deal_id}"): Operation(ok="A deal created by qualifying a lead, as announced in crm.deal.created.",
                                           errors=("404",), model=DealCreated),
    ("GET", "/deals"): Operation(query=(Param("lead_id", "Only the deals of this lead."), LIMIT, CURSOR),
                                 ok="Deals, newest first; `next_cursor` asks for the next page.",
                                 model=DealCreated, page=True),
    ("GET", "/pipelines/{pipeline_id}/disqualification-reasons"): Operation(
        ok="The disqualification reasons a pipeline offers.", errors=("404",)),
}
