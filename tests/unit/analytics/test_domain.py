"""Analytics rules on plain values: filters, the funnel's conversions, the trend's buckets, a card's visits and stays."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.analytics import domain as d
from services.analytics.filters import FilterError, parse_filters
from tests import analytics_data as data

STAGES = [
    d.StageRow("p", "new", "New", "new", 0),
    d.StageRow("p", "work", "Work", "in_progress", 1),
    d.StageRow("p", "won", "Won", "qualified", 2),
    d.StageRow("p", "lost", "Lost", "unqualified", 3),
]


def test_filters_read_dates_as_whole_utc_days_and_times_with_offsets() -> None:
    f = parse_filters({"created_from": "2025-03-01", "created_to": "2025-03-31", "by": "utm_campaign"})
    assert f.created_from == datetime(2025, 3, 1, tzinfo=UTC)
    assert f.created_to == datetime(2025, 4, 1, tzinfo=UTC)  # the 31st is included
    assert f.by == "utm_campaign" and f.period == "week"
    f = parse_filters({"created_from": "2025-03-01T00:00:00+03:00"})
    assert f.created_from == datetime(2025, 2, 28, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"created_from": "March"}, "created_from"),
        ({"created_to": "2025-03-01T10:00:00"}, "created_to"),  # no offset
        ({"created_from": "2025-03-02", "created_to": "2025-03-01"}, "created_to"),
        ({"by": "colour"}, "by"),
        ({"period": "month"}, "period"),
        ({"pipeline": "default"}, "pipeline"),  # misspelt: refused, not ignored
        ({"source": "x" * 201}, "source"),
    ],
)
def test_bad_filters_name_the_parameter(params: dict, param: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filters(params)
    assert info.value.param == param and param in info.value.message


def test_final_stages_convert_from_the_last_working_stage() -> None:
    rows = d.funnel_rows(STAGES, {"new": 10, "work": 4, "won": 2, "lost": 3}, {"new": 6, "work": 1})
    assert [(r["stage_id"], r["conversion_from_previous"], r["conversion_from_first"]) for r in rows] == [
        ("new", None, 1.0), ("work", 0.4, 0.4), ("won", 0.5, 0.2), ("lost", 0.75, 0.3)
    ]
    assert [r["now_in"] for r in rows] == [6, 1, 0, 0]
    assert [r["conversion_from_first"] for r in d.funnel_rows(STAGES, {}, {})] == [None] * 4  # no leads: no ratio


def test_trend_buckets_start_on_monday_and_gaps_are_zero() -> None:
    rows = d.trend_rows({date(2025, 3, 3): 2, date(2025, 3, 17): 1}, {date(2025, 3, 3): 1}, "week")
    assert rows == [
        {"period_start": "2025-03-03", "created": 2, "qualified": 1},
        {"period_start": "2025-03-10", "created": 0, "qualified": 0},
        {"period_start": "2025-03-17", "created": 1, "qualified": 0},
    ]
    assert d.bucket_start(date(2025, 3, 9), "week") == date(2025, 3, 3)  # a Sunday
    assert d.trend_rows({}, {}, "day") == []


def test_a_card_moved_back_counts_each_stage_once_and_every_finished_stay() -> None:
    l4 = data.leads_events()[10].data  # new -> processing -> new -> processing
    facts = d.lead_facts(l4)
    assert [(v.pipeline_id, v.stage_id) for v in facts.visits] == [("default", "new"), ("default", "processing")]
    assert [(s.stage_id, s.days) for s in facts.stays] == [("new", 1.0), ("processing", 2.0), ("new", 1.0)]
    assert facts.lead.qualified_at is None and facts.lead.status == "in_progress"


def test_a_qualified_card_dates_its_qualification_and_a_reopened_one_loses_its_reason() -> None:
    l1 = d.lead_facts(data.leads_events()[4].data)
    assert l1.lead.status == "qualified" and l1.lead.qualified_at == data.d(3)
    reopened = [m for m in data.leads_events() if m.subject == "L7"][-1].data
    facts = d.lead_facts(reopened)
    assert facts.lead.reason_id is None and facts.lead.status == "in_progress"
    assert ("default", "unqualified") in [(v.pipeline_id, v.stage_id) for v in facts.visits]


def test_the_newest_version_in_a_batch_wins() -> None:
    rows = [d.TaskRow("K", 2, "L", "a", "done", data.T0), d.TaskRow("K", 1, "L", "a", "open", data.T0), d.TaskRow("J", 1, "L", "a", "open", data.T0)]
    assert sorted(d.newest(rows, lambda t: t.task_id, lambda t: t.version)) == [rows[2], rows[0]]


def test_reason_shares_are_within_their_pipeline() -> None:
    rows = d.reason_rows([
        {"pipeline_id": "a", "reason_id": "x", "reason": "X", "leads": 3},
        {"pipeline_id": "a", "reason_id": None, "reason": None, "leads": 1},
        {"pipeline_id": "b", "reason_id": "x", "reason": "X", "leads": 2},
    ])
    assert [(r["pipeline_id"], r["reason_id"], r["share"]) for r in rows] == [("a", "x", 0.75), ("a", "(none)", 0.25), ("b", "x", 1.0)]
