"""HTTP helpers shared by the read sides: bearer-token authentication and JSON errors."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .mongo import QueryTimeout
from .principals import Principal, PrincipalRepository


class ApiError(Exception):
    """An HTTP error with a machine code and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})  # e.g. Retry-After on a 429

    def response(self) -> Response:
        headers = {"WWW-Authenticate": "Bearer", **self.headers} if self.status == 401 else self.headers or None
        return JSONResponse({"error": self.code, "message": self.message}, status_code=self.status, headers=headers)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def flag(value: Any, name: str, default: bool = False) -> bool:
    """A yes/no parameter; anything else is refused rather than read as "no" (``dry_run=ture`` must not import)."""
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "validation", f"{name} must be true or false (or 1/0, yes/no, on/off), not {str(value)[:40]!r}")


def limit_param(request: Request, default: int, maximum: int) -> int:
    """The page size a list endpoint was asked for (``limit``), from 1 to ``maximum``."""
    raw = request.query_params.get("limit", str(default))
    if not is_ascii_digits(raw) or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "validation", f"limit must be a whole number from 1 to {maximum}.")
    return int(raw)


def is_ascii_digits(text: str) -> bool:
    """Only 0-9: ``str.isdigit`` also takes '²' and other digits ``int()`` refuses (a 500 before)."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=_default, ensure_ascii=False), status_code=status, media_type="application/json")


def bearer_user(request: Request, tokens: dict[str, str]) -> str:
    """The user of ``Authorization: Bearer <token>``, else 401; no I/O (the licence is checked apart)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <token>'; the tokens are set per deployment.")
    user_id = tokens.get(token.strip())
    if user_id is None:
        raise ApiError(401, "unauthorized", "Unknown bearer token.")
    return user_id


async def authenticate(request: Request, tokens: dict[str, str], principals: PrincipalRepository) -> Principal:
    """Map ``Authorization: Bearer <token>`` to a licensed user, else 401 (who?) or 403 (not allowed)."""
    return await licensed(bearer_user(request, tokens), principals)


async def licensed(user_id: str, principals: PrincipalRepository) -> Principal:
    """The user's principal, else 403 when it holds no licence."""
    principal = await principals.get(user_id)
    if not principal.licensed:
        raise ApiError(403, "not_licensed", f"User {user_id} holds no CRM licence; ask an administrator to grant one.")
    return principal


def endpoint(fn):
    """Turn ApiError raised by a route into its JSON response (and a query past its time limit into a 503)."""

    async def wrapper(*args: Any) -> Response:  # (request) or, on a method, (self, request)
        try:
            return await fn(*args)
        except ApiError as exc:
            return exc.response()
        except QueryTimeout as exc:
            return ApiError(503, "timeout", str(exc)).response()

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
