"""What the leads HTTP routes' code cannot say by itself, for the OpenAPI document: query parameters and answers."""

from contracts.cards import LeadCard, PipelineCard
from crmkit.openapi import LIMIT, Operation, Param

OPERATIONS = {
    ("GET", "/leads/{lead_id}"): Operation(
        ok="The lead card as stored, plus `locked`, `days_in_status` and `last_activity`.", errors=("404",), model=LeadCard),
    ("GET", "/leads"): Operation(
        query=(
            Param("pipeline_id", "Only leads of this pipeline."),
            Param("stage_id", "Only leads in this stage."),
            Param("status", "Only leads with this status.", enum=("new", "in_progress", "qualified", "unqualified")),
            Param("responsible_id", "Only leads of this responsible user."),
            Param("source", "Only leads from this source."),
            Param("q", "Search in title, contact and company names, phones and e-mails (bounded length)."),
            Param("include_deleted", "Include deleted leads.", "boolean"),
            Param("cursor", "The `next_cursor` of the previous page."),
            LIMIT,
        ),
        ok="A page of lead cards with `next_cursor` (absent on the last page).", errors=("400", "503"), model=LeadCard, page=True),
    ("GET", "/pipelines"): Operation(ok="Every live pipeline with its stages, the default first.", model=PipelineCard, page=True),
    ("GET", "/pipelines/{pipeline_id}/board"): Operation(
        query=(LIMIT,), ok="The pipeline's stages, each with its count and first leads.", errors=("400", "404")),
}
