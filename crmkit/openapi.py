"""The OpenAPI 3.1 document of a service's HTTP API, built from its routes and their declared parameters."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import Route

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer: a machine code and a message a person can act on.",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Machine code: validation, unauthorized, not_licensed, forbidden, "
                  "not_found, conflict, too_large, unsupported, rate_limited, unavailable.", "examples": ["validation"]},
        "message": {"type": "string", "description": "What went wrong, naming the parameter when one is at fault."},
    },
}
_ERRORS = {
    "400": "A parameter is invalid (the message names it).",
    "401": "No bearer token, or an unknown one.",
    "403": "The user holds no CRM licence, or asked for what only administrators may read.",
    "404": "No such resource, or one of another user's that the caller may not see.",
    "409": "Conflicts with the resource's state.",
    "413": "The request is larger than the configured limit.",
    "415": "The body is of a media type the endpoint does not take.",
    "429": "Too many requests from this client; `Retry-After` says when to try again.",
    "503": "A dependency did not answer in time; try again.",
}


@dataclass(frozen=True)
class Param:
    """A query parameter of an operation."""

    name: str
    description: str
    type: str = "string"  # JSON Schema type
    enum: tuple[str, ...] = ()
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class Operation:
    """What a route's code cannot say by itself: its query parameters, body and answers."""

    query: tuple[Param, ...] = ()
    ok: str = "The resource, as JSON."
    ok_status: str = "200"
    ok_media: str = "application/json"
    errors: tuple[str, ...] = ("400", "401", "403")
    request_body: dict[str, Any] | None = None
    public: bool = False  # no bearer token needed
    extra: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # a pydantic model whose JSON Schema the answer follows (extra fields may be added)
    page: bool = False  # the answer is {"items": [model, ...], ...}


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for name, convertor in route.param_convertors.items():
        kind = "integer" if isinstance(convertor, IntegerConvertor) else "number" if isinstance(convertor, FloatConvertor) else "string"
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind},
                       "description": f"The {name.replace('_', ' ')}."})
    return params


def _doc(endpoint: Any) -> tuple[str, str]:
    text = inspect.cleandoc(endpoint.__doc__ or "")
    summary, _, rest = text.partition("\n")
    return summary.strip() or endpoint.__name__.replace("_", " "), rest.strip()


def build_openapi(
    *, title: str, version: str, description: str, routes: list[Any], operations: dict[tuple[str, str], Operation]
) -> dict[str, Any]:
    """Every route with its methods, path and query parameters, answers and the shared error shape.

    A route missing from ``operations`` is still documented (its path parameters, docstring and the
    usual errors); the drift test makes sure none is missing.
    """
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = route.path_format
        for method in sorted(route.methods or {"GET"}):
            if method == "HEAD":
                continue
            op = operations.get((method, path), Operation())
            summary, details = _doc(route.endpoint)
            responses: dict[str, Any] = {
                op.ok_status: {"description": op.ok, "content": {op.ok_media: {"schema": _answer_schema(op, schemas)}}}
            }
            errors = op.errors if op.public else tuple(dict.fromkeys(("401", "403", *op.errors)))
            for status in errors:
                responses[status] = {"description": _ERRORS[status], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}_{route.endpoint.__name__}",
                "summary": summary,
                "parameters": _path_parameters(route) + [
                    {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema()}
                    for p in op.query
                ],
                "responses": responses,
                **op.extra,
            }
            if details:
                operation["description"] = details
            if op.request_body is not None:
                operation["requestBody"] = op.request_body
            operation["security"] = [] if op.public else [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token mapped to a user id by the deployment (<PREFIX>_TOKENS)."}},
        },
    }


def _answer_schema(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    """The answer's schema; a model's JSON Schema (and those it uses) goes to the components once."""
    if op.ok_media != "application/json":
        return {"type": "string", "format": "binary"} if "octet" in op.ok_media else {"type": "string"}
    if op.model is None:
        return {"type": "object"}
    name = op.model.__name__
    if name not in schemas:
        schema = op.model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    ref = {"$ref": f"#/components/schemas/{name}"}
    if not op.page:
        return ref
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": ref}}}


LIMIT = Param("limit", "Page size.", "integer", minimum=1)
CURSOR = Param("cursor", "The `next_cursor` of the previous page; absent for the first page.")

# The routes every service answers (crmkit.service adds them).
COMMON_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health/live"): Operation(ok="The process runs: `{\"status\": \"live\"}`.", public=True, errors=()),
    ("GET", "/health/ready"): Operation(
        ok="Started and both Kafka and MongoDB answer now; the body lists each check and the service's own figures.",
        public=True, errors=("503",)),
    ("GET", "/metrics"): Operation(ok="Prometheus text exposition format.", ok_media="text/plain", public=True, errors=()),
    ("GET", "/asyncapi.json"): Operation(ok="The AsyncAPI 3.0 document of the topics the service reads and writes.", public=True, errors=()),
    ("GET", "/openapi.json"): Operation(ok="This OpenAPI 3.1 document.", public=True, errors=()),
}
