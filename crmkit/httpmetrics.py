"""ASGI middleware: each HTTP request counted by route template and status, timed, and traced as a span."""

from __future__ import annotations

import time
from typing import Any

from .metrics import Metrics
from . import tracing

# Scrapes and probes are counted like any request but not traced: they would bury the traces that matter.
_UNTRACED = ("/metrics", "/health/live", "/health/ready")


class ObservedHttp:
    """Wraps the service's Starlette app; the route label is the template (``/leads/{lead_id}``), never the path."""

    def __init__(self, app: Any, service: str, metrics: Metrics) -> None:
        self.app = app
        self._service = service
        self._metrics = metrics

    @property
    def routes(self) -> Any:
        return self.app.routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def observed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        method = scope["method"]
        started = time.perf_counter()
        path = scope.get("path", "")
        try:
            if tracing.recording() and path not in _UNTRACED:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
                with tracing.http_span(self._service, method, path, headers) as span:
                    await self.app(scope, receive, observed_send)
                    span.set_attribute("http.response.status_code", status["code"])
                    route = scope.get("route")
                    if route is not None:
                        span.update_name(f"{method} {route.path}")
                        span.set_attribute("http.route", route.path)
            else:
                await self.app(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self._metrics.http_requests.labels(route=template, method=method, status=str(status["code"])).inc()
            self._metrics.http_seconds.labels(route=template, method=method).observe(time.perf_counter() - started)
