"""A known set of leads as the leads, qualification and activity services publish them, for the analytics tests.

T0 is Monday 2025-03-03 09:00 UTC; ``d(n)`` is n days later. The leads (current state):

| lead | pipeline now | stage now   | source  | utm    | resp  | created | what it shows                         |
|------|--------------|-------------|---------|--------|-------|---------|---------------------------------------|
| L1   | default      | qualified   | web     | google | alice | d0      | qualified at d3, deal D1              |
| L2   | default      | unqualified | web     |        | bob   | d1      | disqualified (r-budget) at d2.5       |
| L3   | default      | qualified   | phone   |        | alice | d2      | skipped processing, qualified at d4   |
| L4   | default      | processing  | phone   |        | bob   | d7      | moved backwards to new, then forward  |
| L5   | p2           | call        | partner |        | alice | d8      | moved from default to p2 at d9        |
| L6   | default      | new         | web     |        | alice | d2      | deleted: counted nowhere              |
| L7   | default      | processing  | web     | google | bob   | d3      | disqualified (r-spam) at d5, reopened |
| L8   | p2           | won         | partner |        | carol | d9      | qualified at d12, deal D8             |
| L9   | p2           | lost        | web     |        | carol | d10     | disqualified (r-competitor) at d11    |
| L10  | default      | new         | (none)  |        | alice | d14     | no source                             |
| L11  | default      | unqualified | phone   |        | bob   | d15     | disqualified (r-budget) at d16        |
| L12  | default      | unqualified | web     |        | alice | d15     | disqualified (r-spam) at d15.5        |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import Envelope, build_message, payload_class
from contracts.topics import ACTIVITY_EVENTS, LEADS_EVENTS, QUALIFICATION_EVENTS

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PAST = datetime(2020, 1, 1, tzinfo=UTC)  # due long ago: overdue whenever the test runs
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def d(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _event(type_name: str, origin: str, data: dict, subject: str | None = None) -> Envelope:
    return build_message(payload_class(type_name).model_validate(data), source=origin, subject=subject)


DEFAULT_STAGES = [("new", "New", "new"), ("processing", "Processing", "in_progress"), ("qualified", "Qualified", "qualified"), ("unqualified", "Unqualified", "unqualified")]
P2_STAGES = [("new", "New", "new"), ("call", "Call", "in_progress"), ("meeting", "Meeting", "in_progress"), ("won", "Won", "qualified"), ("lost", "Lost", "unqualified")]
STATUS = {s: k for s, _, k in DEFAULT_STAGES} | {s: k for s, _, k in P2_STAGES}


def pipeline(pipeline_id: str, name: str, stages: list[tuple[str, str, str]], version: int = 1) -> Envelope:
    return _event(
        "crm.pipeline.created",
        "crm/leads",
        {
            "pipeline_id": pipeline_id, "name": name, "transition_mode": "manual", "is_default": pipeline_id == "default",
            "version": version,
            "stages": [{"stage_id": s, "name": n, "status": k, "position": i} for i, (s, n, k) in enumerate(stages)],
        },
        subject=None,
    )


def card(lead_id: str, version: int, history: list[tuple[str, str, float, float | None]], *, created: float, source=None,
         utm_source=None, responsible="alice", deleted=False, reason=None, type_name="crm.lead.updated") -> Envelope:
    """A whole lead card; ``history`` is (pipeline, stage, entered day, left day or None), oldest first."""
    pipeline_id, stage_id, entered, _ = history[-1]
    status = STATUS[stage_id]
    data = {
        "lead_id": lead_id, "pipeline_id": pipeline_id, "stage_id": stage_id, "status": status, "version": version,
        "title": f"Lead {lead_id}", "responsible_id": responsible, "source": source, "utm_source": utm_source,
        "created_at": d(created).isoformat(), "updated_at": d(entered).isoformat(), "data_changed_at": d(created).isoformat(),
        "status_since": d(entered).isoformat(),
        "status_history": [
            {"pipeline_id": p, "stage_id": s, "status": STATUS[s], "entered_at": d(a).isoformat(),
             **({"left_at": d(b).isoformat()} if b is not None else {})}
            for p, s, a, b in history
        ],
        "deleted": deleted,
        "changed_fields": [],
    }
    if reason and status == "unqualified":
        data["disqualification_reason_id"], data["disqualification_reason"] = reason
    return _event(type_name, "crm/leads", data, subject=lead_id)


BUDGET = ("r-budget", "No budget")
SPAM = ("r-spam", "Spam")
COMPETITOR = ("r-competitor", "Chose a competitor")


def leads_events() -> list[Envelope]:
    """Every card version in the order the leads service would publish them (per lead, oldest first)."""
    D, P = "default", "p2"
    return [
        pipeline("default", "Default", DEFAULT_STAGES),
        pipeline("p2", "Partners", P2_STAGES),
        card("L1", 1, [(D, "new", 0, None)], created=0, source="web", utm_source="google", type_name="crm.lead.created"),
        card("L1", 2, [(D, "new", 0, 1), (D, "processing", 1, None)], created=0, source="web", utm_source="google"),
        card("L1", 3, [(D, "new", 0, 1), (D, "processing", 1, 3), (D, "qualified", 3, None)], created=0, source="web", utm_source="google"),
        card("L2", 1, [(D, "new", 1, None)], created=1, source="web", responsible="bob", type_name="crm.lead.created"),
        card("L2", 3, [(D, "new", 1, 1.5), (D, "processing", 1.5, 2.5), (D, "unqualified", 2.5, None)], created=1, source="web",
             responsible="bob", reason=BUDGET),
        card("L3", 1, [(D, "new", 2, None)], created=2, source="phone", type_name="crm.lead.created"),
        card("L3", 2, [(D, "new", 2, 4), (D, "qualified", 4, None)], created=2, source="phone"),
        card("L4", 1, [(D, "new", 7, None)], created=7, source="phone", responsible="bob", type_name="crm.lead.created"),
        card("L4", 4, [(D, "new", 7, 8), (D, "processing", 8, 10), (D, "new", 10, 11), (D, "processing", 11, None)], created=7,
             source="phone", responsible="bob"),
        card("L5", 1, [(D, "new", 8, None)], created=8, source="partner", type_name="crm.lead.created"),
        card("L5", 3, [(D, "new", 8, 9), (P, "new", 9, 10), (P, "call", 10, None)], created=8, source="partner"),
        card("L6", 1, [(D, "new", 2, None)], created=2, source="web", type_name="crm.lead.created"),
        card("L6", 2, [(D, "new", 2, None)], created=2, source="web", deleted=True),
        card("L7", 1, [(D, "new", 3, None)], created=3, source="web", utm_source="google", responsible="bob", type_name="crm.lead.created"),
        card("L7", 3, [(D, "new", 3, 4), (D, "processing", 4, 5), (D, "unqualified", 5, None)], created=3, source="web",
             utm_source="google", responsible="bob", reason=SPAM),
        card("L7", 4, [(D, "new", 3, 4), (D, "processing", 4, 5), (D, "unqualified", 5, 6), (D, "processing", 6, None)], created=3,
             source="web", utm_source="google", responsible="bob"),
        card("L8", 1, [(P, "new", 9, None)], created=9, source="partner", responsible="carol", type_name="crm.lead.created"),
        card("L8", 4, [(P, "new", 9, 9.5), (P, "call", 9.5, 10), (P, "meeting", 10, 12), (P, "won", 12, None)], created=9,
             source="partner", responsible="carol"),
        card("L9", 1, [(P, "new", 10, None)], created=10, source="web", responsible="carol", type_name="crm.lead.created"),
        card("L9", 2, [(P, "new", 10, 11), (P, "lost", 11, None)], created=10, source="web", responsible="carol", reason=COMPETITOR),
        card("L10", 1, [(D, "new", 14, None)], created=14, type_name="crm.lead.created"),
        card("L11", 1, [(D, "new", 15, None)], created=15, source="phone", responsible="bob", type_name="crm.lead.created"),
        card("L11", 2, [(D, "new", 15, 16), (D, "unqualified", 16, None)], created=15, source="phone", responsible="bob", reason=BUDGET),
        card("L12", 1, [(D, "new", 15, None)], created=15, source="web", type_name="crm.lead.created"),
        card("L12", 2, [(D, "new", 15, 15.5), (D, "unqualified", 15.5, None)], created=15, source="web", reason=SPAM),
    ]


def _deal(deal_id: str, lead_id: str) -> Envelope:
    return _event(
        "crm.deal.created", "crm/qualification",
        {"deal_id": deal_id, "lead_id": lead_id, "company_id": f"C-{lead_id}", "products": [], "title": f"Deal {lead_id}",
         "responsible_id": "alice", "source": None, "utm_source": None, "utm_medium": None, "utm_campaign": None,
         "deal_pipeline_id": "default"},
        subject=lead_id,
    )


def qualification_events() -> list[Envelope]:
    out = []
    for deal_id, lead_id in (("D1", "L1"), ("D3", "L3"), ("D8", "L8")):
        out.append(_deal(deal_id, lead_id))
        out.append(_event("crm.lead.qualified", "crm/qualification",
                          {"lead_id": lead_id, "qualification_type": "deal_and_company", "company_id": f"C-{lead_id}", "deal_id": deal_id},
                          subject=lead_id))
    for lead_id, (reason_id, reason) in (("L2", BUDGET), ("L7", SPAM), ("L9", COMPETITOR), ("L11", BUDGET), ("L12", SPAM)):
        out.append(_event("crm.lead.disqualified", "crm/qualification", {"lead_id": lead_id, "reason_id": reason_id, "reason": reason},
                          subject=lead_id))
    return out


def _task(type_name: str, task_id: str, lead_id: str, assignee: str, status: str, due: datetime, version: int) -> Envelope:
    return _event(
        type_name, "crm/activity",
        {"task_id": task_id, "lead_id": lead_id, "type": "call", "title": f"Task {task_id}", "start_at": (due - timedelta(hours=1)).isoformat(),
         "due_at": due.isoformat(), "assignee_id": assignee, "priority": "normal", "status": status, "version": version},
        subject=lead_id,
    )


def activity_events() -> list[Envelope]:
    return [
        _task("crm.task.created", "K1", "L4", "bob", "open", PAST, 1),  # overdue
        _task("crm.task.created", "K2", "L4", "bob", "open", FUTURE, 1),
        _task("crm.task.created", "K3", "L1", "alice", "open", PAST, 1),
        _task("crm.task.completed", "K3", "L1", "alice", "done", PAST, 2),  # done: counts nowhere
        _task("crm.task.created", "K4", "L5", "alice", "open", FUTURE, 1),
        _task("crm.task.created", "K5", "L6", "alice", "open", PAST, 1),  # on the deleted lead: counts nowhere
        _task("crm.task.created", "K6", "L8", "carol", "open", FUTURE, 1),
        _task("crm.task.cancelled", "K6", "L8", "carol", "cancelled", FUTURE, 2),
        _task("crm.task.created", "K7", "L8", "dave", "open", PAST, 1),  # dave is responsible for no lead
    ]


def all_events() -> list[tuple[str, Envelope]]:
    return (
        [(LEADS_EVENTS, m) for m in leads_events()]
        + [(QUALIFICATION_EVENTS, m) for m in qualification_events()]
        + [(ACTIVITY_EVENTS, m) for m in activity_events()]
    )


# --- every figure, computed by hand from the table above -------------------------------------------

FUNNEL_DEFAULT = [
    # stage, reached, now in, from previous working stage, from first
    ("new", 9, 1, None, 1.0),  # every default lead but the deleted L6 and the p2-born L8, L9
    ("processing", 4, 2, 0.4444, 0.4444),  # L1 L2 L4 L7 (L3 skipped it); now L4 L7
    ("qualified", 2, 2, 0.5, 0.2222),  # L1 L3; 2 of processing's 4
    ("unqualified", 4, 3, 1.0, 0.4444),  # L2 L7 L11 L12; now L2 L11 L12 (L7 reopened)
]
FUNNEL_P2 = [
    ("new", 3, 0, None, 1.0),  # L5 (moved in) L8 L9
    ("call", 2, 1, 0.6667, 0.6667),  # L5 L8; now L5
    ("meeting", 1, 0, 0.5, 0.3333),  # L8
    ("won", 1, 1, 1.0, 0.3333),  # L8, from meeting's 1
    ("lost", 1, 1, 1.0, 0.3333),  # L9 (skipped call and meeting)
]
FUNNEL_DEFAULT_WEB = [  # L1 L2 L7 L12 (L9 is web but in p2)
    ("new", 4, 0, None, 1.0),
    ("processing", 3, 1, 0.75, 0.75),
    ("qualified", 1, 1, 0.3333, 0.25),
    ("unqualified", 3, 2, 1.0, 0.75),
]
FUNNEL_DEFAULT_BOB = [  # L2 L4 L7 L11
    ("new", 4, 0, None, 1.0),
    ("processing", 3, 2, 0.75, 0.75),
    ("qualified", 0, 0, 0.0, 0.0),
    ("unqualified", 3, 2, 1.0, 0.75),
]
FUNNEL_DEFAULT_MAR10_17 = [  # created 2025-03-10..17 inclusive: L4 L5 L10 (and L8 L9 in p2)
    ("new", 3, 1, None, 1.0),
    ("processing", 1, 1, 0.3333, 0.3333),
    ("qualified", 0, 0, 0.0, 0.0),
    ("unqualified", 0, 0, 0.0, 0.0),
]

# value, leads, open, qualified, unqualified, rate, median days to qualification, deals
SOURCES = [
    ("web", 5, 1, 1, 3, 0.2, 3.0, 1),  # L1 L2 L7 L9 L12; L1 qualified in 3 days
    ("phone", 3, 1, 1, 1, 0.3333, 2.0, 1),  # L3 L4 L11; L3 in 2 days
    ("partner", 2, 1, 1, 0, 0.5, 3.0, 1),  # L5 L8; L8 in 3 days
    ("(none)", 1, 1, 0, 0, 0.0, None, 0),  # L10
]
SOURCES_BY_UTM = [
    ("(none)", 9, 3, 2, 4, 0.2222, 2.5, 2),  # median of L3's 2 and L8's 3 days
    ("google", 2, 1, 1, 0, 0.5, 3.0, 1),  # L1 L7
]
SOURCES_P2 = [
    ("partner", 2, 1, 1, 0, 0.5, 3.0, 1),
    ("web", 1, 0, 0, 1, 0.0, None, 0),
]

# pipeline, reason id, reason, leads, share (L7's reason is gone: it was reopened)
REASONS = [("default", "r-budget", "No budget", 2, 0.6667), ("default", "r-spam", "Spam", 1, 0.3333), ("p2", "r-competitor", "Chose a competitor", 1, 1.0)]
REASONS_WEB = [("default", "r-budget", "No budget", 1, 0.5), ("default", "r-spam", "Spam", 1, 0.5), ("p2", "r-competitor", "Chose a competitor", 1, 1.0)]

# stage, finished stays, median days, p90 days (linear between the closest ranks)
STAGES_DEFAULT = [
    # new: L1 1, L2 .5, L3 2, L4 1 and 1 (it came back), L5 1, L7 1, L11 1, L12 .5 -> 9 stays; p90 at rank 7.2 = 1 + .2
    ("new", 9, 1.0, 1.2),
    ("processing", 4, 1.5, 2.0),  # L1 2, L2 1, L4 2, L7 1 (L4's and L7's current stays are not finished)
    ("qualified", 0, None, None),
    ("unqualified", 1, 1.0, 1.0),  # L7's, before it was reopened
]
STAGES_P2 = [("new", 3, 1.0, 1.0), ("call", 1, 0.5, 0.5), ("meeting", 1, 2.0, 2.0), ("won", 0, None, None), ("lost", 0, None, None)]

# user, leads, qualified, unqualified, rate, open tasks, overdue tasks
RESPONSIBLE = [
    ("alice", 5, 2, 1, 0.4, 1, 0),  # L1 L3 L5 L10 L12; K4 open (K3 done, K5 on a deleted lead)
    ("bob", 4, 0, 2, 0.0, 2, 1),  # L2 L4 L7 L11; K1 overdue, K2
    ("carol", 2, 1, 1, 0.5, 0, 0),  # L8 L9; K6 cancelled
    ("dave", 0, 0, 0, None, 1, 1),  # K7 overdue
]
RESPONSIBLE_P2 = [("carol", 2, 1, 1, 0.5, 0, 0), ("alice", 1, 0, 0, 0.0, 1, 0), ("dave", 0, 0, 0, None, 1, 1)]

# week (Monday), created, qualified
TREND_WEEK = [("2025-03-03", 4, 2), ("2025-03-10", 4, 1), ("2025-03-17", 3, 0)]  # L8 qualified Saturday 15th
# phone leads per day: L3 created 5th and qualified 7th, L4 on 10th, L11 on 18th; 14 days in all
TREND_DAY_PHONE = {"2025-03-05": (1, 0), "2025-03-07": (0, 1), "2025-03-10": (1, 0), "2025-03-18": (1, 0)}
TREND_DAY_PHONE_DAYS = 14
