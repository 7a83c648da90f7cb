"""HTTP side of the analytics service: the reports as JSON, CSV and SVG, the dashboard, rebuild and status."""

from __future__ import annotations

import asyncio
import csv
import io
from html import escape
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from crmkit.http import ApiError, authenticate, endpoint, json_response
from crmkit.principals import Principal, PrincipalRepository
from services.analytics import charts, dashboard, reports
from services.analytics import domain as d
from services.analytics.filters import FilterError, Filters, KNOWN_PARAMS, parse_filters
from services.analytics.repository import AnalyticsStore
from services.analytics.settings import AnalyticsSettings

_FORMATS = {"": "json", ".csv": "csv", ".svg": "svg"}
SESSION_COOKIE = "crm_token"


def to_csv(report: d.Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = reports.COLUMNS[report.name]
    writer.writerow(columns)
    for row in report.rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()


def routes(
    settings: AnalyticsSettings,
    store: AnalyticsStore,
    principals: PrincipalRepository,
    status: Callable[[], dict[str, Any]],
    rebuild: Callable[[], None],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    async def who(request: Request) -> Principal:
        """The bearer token; for a browser, the sign-in cookie (or ``?token=``: a plain page cannot send a header)."""
        if "authorization" not in request.headers:
            token = request.cookies.get(SESSION_COOKIE) or request.query_params.get("token")
            if token:
                scope = dict(request.scope)
                scope["headers"] = [*request.scope["headers"], (b"authorization", f"Bearer {token}".encode())]
                request = Request(scope)
        return await authenticate(request, settings.tokens, principals)

    def filters_of(request: Request) -> Filters:
        try:
            return parse_filters(request.query_params)
        except FilterError as exc:
            raise ApiError(400, "validation", exc.message) from exc

    async def run(name: str, f: Filters) -> d.Report:
        try:
            return await asyncio.to_thread(reports.build, store, name, f, clock())
        except reports.UnknownPipeline as exc:
            raise ApiError(404, "not_found", f"pipeline_id {exc.args[0]!r} is not a pipeline the analytics read model knows.") from exc

    @endpoint
    async def report(request: Request) -> Response:
        await who(request)
        raw = request.path_params["name"]
        name, dot, ext = raw.partition(".")
        fmt = _FORMATS.get(dot + ext)
        if name not in d.REPORTS or fmt is None:
            raise ApiError(404, "not_found", f"No report {raw!r}; reports: {', '.join(d.REPORTS)} (add .csv or .svg).")
        result = await run(name, filters_of(request))
        if fmt == "csv":
            return Response(to_csv(result), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f"attachment; filename={name}.csv"})
        if fmt == "svg":
            return Response(charts.chart(result), media_type="image/svg+xml")
        return json_response(result.as_json())

    @endpoint
    async def page(request: Request) -> Response:
        signed_in = "authorization" in request.headers or request.cookies.get(SESSION_COOKIE) or request.query_params.get("token")
        if not signed_in:
            return HTMLResponse(dashboard.sign_in(), status_code=401)
        try:
            await who(request)
        except ApiError as exc:
            if exc.status != 401:
                raise
            return HTMLResponse(dashboard.sign_in(exc.message), status_code=401)
        try:
            f = filters_of(request)
            error = None
        except ApiError as exc:
            f, error = Filters(), exc.message
        found: dict[str, d.Report | str] = {}
        for name in dashboard.DASHBOARD_REPORTS:
            try:
                found[name] = await run(name, f)
            except ApiError as exc:
                found[name] = exc.message
        lists = await asyncio.to_thread(
            lambda: (store.pipelines(), store.distinct_values("responsible_id"), store.distinct_values("source"))
        )
        html = dashboard.render(
            # A token that came in the link stays in the page's links; a signed-in browser's stays in its cookie.
            found, f, token=request.query_params.get("token"), pipelines=lists[0], responsibles=lists[1], sources=lists[2]
        )
        if error:
            html = html.replace("<form", f"<p class='error' id='filter-error'>{escape(error)}</p><form", 1)
        return HTMLResponse(html, status_code=400 if error else 200)

    async def sign_in(request: Request) -> Response:
        """The dashboard's sign-in form: the token goes into an HttpOnly cookie, never into a URL."""
        form = await request.form(max_files=0, max_fields=2, max_part_size=4096)
        token = str(form.get("token") or "").strip()
        if settings.tokens.get(token) is None:
            return HTMLResponse(dashboard.sign_in("Unknown token; the tokens are set per deployment."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @endpoint
    async def start_rebuild(request: Request) -> Response:
        principal = await who(request)
        if not principal.is_admin:
            raise ApiError(403, "forbidden", "Only administrators may rebuild the analytics read model.")
        rebuild()
        return json_response({"rebuilding": True, **status()}, status=202)

    @endpoint
    async def show_status(request: Request) -> Response:
        await who(request)
        return json_response(status())

    # The filters are read as a whole by the domain's parser, which names any unknown one.
    report.query_parameters = page.query_parameters = KNOWN_PARAMS  # type: ignore[attr-defined]
    return [
        Route("/", page),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/reports/{name}", report),
        Route("/admin/rebuild", start_rebuild, methods=["POST"]),
        Route("/admin/status", show_status),
    ]
