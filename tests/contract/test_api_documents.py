"""The published API documents: committed copies equal the code's, every route is described, and they validate."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from crmctl.apidocs import DOCS, _service, differences
from crmctl.services import SERVICES

NAMES = [spec.name for spec in SERVICES]


def test_committed_api_documents_equal_the_generated_ones():
    assert differences() == [], "run `python -m crmctl.apidocs` and commit docs/api/"


@pytest.mark.parametrize("name", NAMES)
def test_the_openapi_document_is_valid_openapi(name):
    validate(json.loads((DOCS / f"{name}.openapi.json").read_text(encoding="utf-8")))


def _functions(fn, seen=None, owner=None):
    """``fn`` and every function it closes over (the endpoint wrappers close over the route's own function).

    An endpoint that is a method reaches its helpers through ``self`` and its module, so those are followed too."""
    seen = seen if seen is not None else set()
    if inspect.ismethod(fn):
        owner, fn = type(fn.__self__), fn.__func__
    if not inspect.isfunction(fn) or fn in seen:
        return seen
    seen.add(fn)
    for cell in fn.__closure__ or ():
        try:
            _functions(cell.cell_contents, seen)
        except ValueError:  # an empty cell
            continue
    if owner is not None:
        for name in fn.__code__.co_names:
            helper = owner.__dict__.get(name)
            if inspect.isfunction(helper):
                _functions(helper, seen, owner)
            elif inspect.isfunction(fn.__globals__.get(name)):
                _functions(fn.__globals__[name], seen, owner)
    return seen


def query_parameters_read(endpoint) -> set[str]:
    """Query parameter names the route's code reads: ``q.get("x")``, ``q["x"]``, ``query_params.get("x")``, limit helpers."""
    # A route whose parameters are parsed as a whole (the analytics filters) says which it reads.
    found: set[str] = set(getattr(endpoint, "query_parameters", ()))
    for fn in _functions(endpoint):
        if not fn.__module__.startswith("services."):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
                target, key = node.func.value, node.args[0]
            elif isinstance(node, ast.Subscript):
                target, key = node.value, node.slice
            if target is not None and isinstance(key, ast.Constant) and isinstance(key.value, str):
                if (isinstance(target, ast.Name) and target.id == "q") or (isinstance(target, ast.Attribute) and target.attr == "query_params"):
                    found.add(key.value)
            called = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else (
                node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None)
            if called in ("limit_param", "limit_of"):
                found.add("limit")
    return found


@pytest.mark.parametrize("name", NAMES)
def test_every_route_is_described_with_the_query_parameters_its_code_reads(name):
    service = _service(name)
    routes = [r for r in service.http_routes() if isinstance(r, Route)]
    keys = {(m, r.path_format) for r in routes for m in (r.methods or {"GET"}) if m != "HEAD"}
    assert keys == set(service.http_operations), "describe new routes (services/<name>/openapi.py), drop old ones"
    for route in routes:
        for method in (route.methods or {"GET"}) - {"HEAD"}:
            declared = {p.name for p in service.http_operations[(method, route.path_format)].query}
            assert query_parameters_read(route.endpoint) == declared, (method, route.path_format)
