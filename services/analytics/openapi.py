"""What the analytics HTTP routes' code cannot say by itself, for the OpenAPI document."""

from crmkit.openapi import Operation, Param
from services.analytics.domain import REPORTS
from services.analytics.filters import SOURCE_DIMENSIONS

_FILTERS = (
    Param("pipeline_id", "Only leads of this pipeline (the funnel and stages: the pipeline shown; `default` when absent)."),
    Param("created_from", "Only leads created from this date (2025-03-01) or RFC 3339 time with offset."),
    Param("created_to", "Only leads created up to this date (inclusive) or before this RFC 3339 time."),
    Param("responsible_id", "Only leads this user is responsible for."),
    Param("source", "Only leads with this source."),
    Param("by", "What `sources` groups by.", enum=tuple(SOURCE_DIMENSIONS)),
    Param("period", "What `trend` counts by (weeks from Monday, UTC).", enum=("day", "week")),
    _TOKEN := Param("token", "The bearer token, for a browser that cannot send the header (keep such links to yourself)."),
)

OPERATIONS = {
    ("GET", "/"): Operation(query=_FILTERS, ok="The dashboard: server-rendered HTML with inline SVG charts and the filters as a form.",
                            ok_media="text/html"),
    ("GET", "/reports/{name}"): Operation(
        query=_FILTERS,
        ok=f"A report ({', '.join(REPORTS)}) as JSON; `<name>.csv` gives it as CSV, `<name>.svg` as a chart.",
        errors=("400", "401", "403", "404")),
    ("POST", "/sign-in"): Operation(
        ok="Sets the HttpOnly sign-in cookie from the form field `token` and redirects (303) to the dashboard.",
        ok_status="303", errors=("401",), public=True,
        request_body={"content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}}}}),
    ("POST", "/admin/rebuild"): Operation(query=(_TOKEN,), ok="The read model is emptied and re-read from the start of the topics (administrators).",
                                          ok_status="202", errors=("401", "403")),
    ("GET", "/admin/status"): Operation(query=(_TOKEN,), ok="How far the read model is: leads, tasks and deals held, records behind."),
}
