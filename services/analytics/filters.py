"""Report filters, pure: the query parameters a report is narrowed by, read and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

SOURCE_DIMENSIONS = ("source", "utm_source", "utm_medium", "utm_campaign", "marketing_event")
TREND_PERIODS = ("day", "week")


class FilterError(ValueError):
    """A report parameter that cannot be read; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Filters:
    """What a report is narrowed to; every filter is optional."""

    pipeline_id: str | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    responsible_id: str | None = None
    source: str | None = None
    by: str = "source"
    period: str = "week"
    # The pipelines the reader may see, when some are hidden from them (set by the HTTP side, never a parameter).
    pipeline_ids: tuple[str, ...] | None = None

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links and the dashboard form)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "pipeline_ids":
                continue
            out[f.name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out


def _day_or_time(raw: str, param: str, *, end: bool) -> datetime:
    """A date (``2025-03-01``: the whole day in UTC) or an RFC 3339 time with offset."""
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise FilterError(param, f"{param} must be a date (2025-03-01) or an RFC 3339 time with offset.") from exc
    if value.tzinfo is None:
        raise FilterError(param, f"{param} needs a UTC offset, e.g. 2025-03-01T00:00:00+03:00.")
    return value.astimezone(UTC)


KNOWN_PARAMS = frozenset({"pipeline_id", "created_from", "created_to", "responsible_id", "source", "by", "period", "token"})


def parse_filters(params: Mapping[str, str]) -> Filters:
    """Read report filters from query parameters; a bad value raises FilterError naming it."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise FilterError(unknown[0], f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(KNOWN_PARAMS - {'token'}))}.")
    text = {k: (params.get(k) or "").strip() for k in KNOWN_PARAMS}
    for name in ("pipeline_id", "responsible_id", "source"):
        if len(text[name]) > 200:
            raise FilterError(name, f"{name} is longer than 200 characters.")
    created_from = _day_or_time(text["created_from"], "created_from", end=False) if text["created_from"] else None
    created_to = _day_or_time(text["created_to"], "created_to", end=True) if text["created_to"] else None
    if created_from and created_to and created_from >= created_to:
        raise FilterError("created_to", "created_to must be after created_from.")
    by = text["by"] or "source"
    if by not in SOURCE_DIMENSIONS:
        raise FilterError("by", f"by must be one of {', '.join(SOURCE_DIMENSIONS)}.")
    period = text["period"] or "week"
    if period not in TREND_PERIODS:
        raise FilterError("period", f"period must be one of {', '.join(TREND_PERIODS)}.")
    return Filters(
        pipeline_id=text["pipeline_id"] or None,
        created_from=created_from,
        created_to=created_to,
        responsible_id=text["responsible_id"] or None,
        source=text["source"] or None,
        by=by,
        period=period,
    )
