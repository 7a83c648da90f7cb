"""HTTP side of the analytics service: the reports as JSON, CSV and SVG, the dashboard, rebuild and status."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
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
from crmkit.visibility import sees
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
    return AnalyticsApi(settings, store, principals, status, rebuild, clock).routes()


def _filters_of(request: Request) -> Filters:
    try:
        return parse_filters(request.query_params)
    except FilterError as exc:
        raise ApiError(400, "validation", exc.message) from exc


class AnalyticsApi:
    """The report, dashboard and admin endpoints over the read model, each narrowed to the pipelines the caller sees."""

    def __init__(
        self, settings: AnalyticsSettings, store: AnalyticsStore, principals: PrincipalRepository,
        status: Callable[[], dict[str, Any]], rebuild: Callable[[], None], clock: Callable[[], datetime],
    ) -> None:
        self.settings, self.store, self.principals = settings, store, principals
        self.status, self.rebuild, self.clock = status, rebuild, clock

    def routes(self) -> list[Route]:
        report, page = endpoint(self.report), endpoint(self.page)
        # The filters are read as a whole by the domain's parser, which names any unknown one.
        report.query_parameters = page.query_parameters = KNOWN_PARAMS  # type: ignore[attr-defined]
        return [
            Route("/", page),
            Route("/sign-in", self.sign_in, methods=["POST"]),
            Route("/reports/{name}", report),
            Route("/admin/rebuild", endpoint(self.start_rebuild), methods=["POST"]),
            Route("/admin/status", endpoint(self.show_status)),
        ]

    async def report(self, request: Request) -> Response:
        principal = await self._who(request)
        raw = request.path_params["name"]
        name, dot, ext = raw.partition(".")
        fmt = _FORMATS.get(dot + ext)
        if name not in d.REPORTS or fmt is None:
            raise ApiError(404, "not_found", f"No report {raw!r}; reports: {', '.join(d.REPORTS)} (add .csv or .svg).")
        result = await self._run(name, await self._seen_by(principal, _filters_of(request)))
        if fmt == "csv":
            return Response(to_csv(result), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f"attachment; filename={name}.csv"})
        if fmt == "svg":
            return Response(charts.chart(result), media_type="image/svg+xml")
        return json_response(result.as_json())

    async def page(self, request: Request) -> Response:
        signed_in = "authorization" in request.headers or request.cookies.get(SESSION_COOKIE) or request.query_params.get("token")
        if not signed_in:
            return HTMLResponse(dashboard.sign_in(), status_code=401)
        try:
            principal = await self._who(request)
        except ApiError as exc:
            if exc.status != 401:
                raise
            return HTMLResponse(dashboard.sign_in(exc.message), status_code=401)
        try:
            f = await self._seen_by(principal, _filters_of(request))
            error = None
        except ApiError as exc:
            f, error = await self._seen_by(principal, Filters()), exc.message
        found: dict[str, d.Report | str] = {}
        for name in dashboard.DASHBOARD_REPORTS:
            try:
                found[name] = await self._run(name, f)
            except ApiError as exc:
                found[name] = exc.message
        pipelines, responsibles, sources = await asyncio.to_thread(self._choices, f)
        html = dashboard.render(
            # A token that came in the link stays in the page's links; a signed-in browser's stays in its cookie.
            found, f, token=request.query_params.get("token"), pipelines=pipelines, responsibles=responsibles, sources=sources
        )
        if error:
            html = html.replace("<form", f"<p class='error' id='filter-error'>{escape(error)}</p><form", 1)
        return HTMLResponse(html, status_code=400 if error else 200)

    async def sign_in(self, request: Request) -> Response:
        """The dashboard's sign-in form: the token goes into an HttpOnly cookie, never into a URL."""
        form = await request.form(max_files=0, max_fields=2, max_part_size=4096)
        token = str(form.get("token") or "").strip()
        if self.settings.tokens.get(token) is None:
            return HTMLResponse(dashboard.sign_in("Unknown token; the tokens are set per deployment."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    async def start_rebuild(self, request: Request) -> Response:
        principal = await self._who(request)
        if not principal.is_admin:
            raise ApiError(403, "forbidden", "Only administrators may rebuild the analytics read model.")
        self.rebuild()
        return json_response({"rebuilding": True, **self.status()}, status=202)

    async def show_status(self, request: Request) -> Response:
        await self._who(request)
        return json_response(self.status())

    async def _who(self, request: Request) -> Principal:
        """The bearer token; for a browser, the sign-in cookie (or ``?token=``: a plain page cannot send a header)."""
        if "authorization" not in request.headers:
            token = request.cookies.get(SESSION_COOKIE) or request.query_params.get("token")
            if token:
                scope = dict(request.scope)
                scope["headers"] = [*request.scope["headers"], (b"authorization", f"Bearer {token}".encode())]
                request = Request(scope)
        return await authenticate(request, self.settings.tokens, self.principals)

    async def _seen_by(self, principal: Principal, f: Filters) -> Filters:
        """The filters narrowed to the pipelines ``principal`` sees; a hidden pipeline asked for reads as unknown."""
        shown = await asyncio.to_thread(self.store.visibility)
        visible = {p for p, (groups, roles) in shown.items() if sees(principal, groups, roles)}
        if len(visible) == len(shown):
            return f
        if f.pipeline_id and f.pipeline_id not in visible:
            raise ApiError(404, "not_found", f"pipeline_id {f.pipeline_id!r} is not a pipeline the analytics read model knows.")
        if not f.pipeline_id and d.DEFAULT_PIPELINE not in visible:
            # The funnel and stage times show the default pipeline when none is named (seeing none, they are 404).
            f = dataclasses.replace(f, pipeline_id=min(visible)) if visible else f
        return dataclasses.replace(f, pipeline_ids=tuple(sorted(visible)))

    async def _run(self, name: str, f: Filters) -> d.Report:
        try:
            return await asyncio.to_thread(reports.build, self.store, name, f, self.clock())
        except reports.UnknownPipeline as exc:
            raise ApiError(404, "not_found", f"pipeline_id {exc.args[0]!r} is not a pipeline the analytics read model knows.") from exc

    def _choices(self, f: Filters) -> tuple[list[dict], list[str], list[str]]:
        """The dashboard's filter lists, from the pipelines ``f`` is narrowed to: those pipelines, and the
        responsibles and sources of their leads (a name seen only in a hidden pipeline is not offered)."""
        pipelines = self.store.pipelines()
        if f.pipeline_ids is not None:
            pipelines = [p for p in pipelines if p["pipeline_id"] in f.pipeline_ids]
        return (pipelines, self.store.distinct_values("responsible_id", f.pipeline_ids),
                self.store.distinct_values("source", f.pipeline_ids))
