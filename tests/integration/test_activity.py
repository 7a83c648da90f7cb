"""The activity service on real Kafka and FerretDB: tasks, the lead card's next activity, the due pass, refusals."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from contracts import build_message, payload_class
from contracts.examples import EXAMPLES
from contracts.topics import (
    ACTIVITY_COMMANDS,
    ACTIVITY_EVENTS,
    DIRECTORY_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
)
from crmkit.messaging import Inbound
from crmkit.principals import PrincipalRepository
from services.activity.app import Overrides, create_app
from services.activity.messages import next_call_id
from services.activity.projection import LeadProjection as ActivityLeads
from services.activity.repository import TaskRepository
from services.activity.settings import ActivitySettings
from services.leads import domain as leads_domain
from services.leads.app import create_app as create_leads_app
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from tests.support import Collector, Producer, command, wait_until

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def payload(type_name: str, **data):
    return payload_class(type_name).model_validate(data)


def event(type_name: str, origin: str = "test/upstream", /, **data):
    return build_message(payload(type_name, **data), source=origin)


async def grant(producer: Producer, user_id: str, *, admin: bool = False) -> None:
    await producer.send(DIRECTORY_EVENTS, event("crm.user.licence-granted", user_id=user_id, licence="crm"), key=user_id)
    if admin:
        await producer.send(DIRECTORY_EVENTS, event("crm.user.role-granted", user_id=user_id, role="admin"), key=user_id)


def lead_card(lead_id: str, version: int = 1, **overrides):
    """A crm.lead.created as the leads service would publish it (for tests that need no leads service)."""
    data = {**EXAMPLES["crm.lead.created"]["data"], "lead_id": lead_id, "version": version, "status": "in_progress"}
    data.pop("activity", None)
    data.update(overrides)
    return event("crm.lead.created", "crm/leads", **data)


def task_cmd(lead_id: str, task_id: str, due_at: datetime, *, actor: str = "alice", type: str = "call", start_at=None, **extra):
    return command(
        payload(
            "crm.task.create", task_id=task_id, lead_id=lead_id, type=type, title=f"Task {task_id}",
            start_at=(start_at or due_at - HOUR).isoformat(), due_at=due_at.isoformat(), assignee_id=actor, **extra,
        ),
        actor=actor,
    )


async def start_activity(settings_for, run_service, **overrides):
    clock = overrides.pop("clock", None)
    settings = settings_for(ActivitySettings, "activity", due_pass_interval_s=0, **overrides)
    service = create_app(settings, overrides=Overrides(clock=clock))
    return await run_service(service)


async def activity_ready(service, producer: Producer, users=("alice",), admins=()) -> None:
    """Grant licences and wait until the activity service knows them."""
    for user in users:
        await grant(producer, user, admin=user in admins)
    principals = PrincipalRepository(service.db, [])

    async def known() -> bool:
        for user in users:
            p = await principals.get(user)
            if not p.licensed or (user in admins and not p.is_admin):
                return False
        return True

    await wait_until(known, what="licences at the activity service")


async def lead_known(service, lead_id: str, **expect) -> None:
    leads = ActivityLeads(service.db)

    async def check():
        lead = await leads.get(lead_id)
        return lead is not None and lead.known and all(getattr(lead, k) == v for k, v in expect.items())

    await wait_until(check, what=f"lead {lead_id} in the activity projection with {expect}")


async def rejection_for(events: Collector, cmd) -> object:
    found = await wait_until(
        lambda: [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == cmd.id],
        what=f"rejection of {cmd.type}",
    )
    return found[0].data


def summaries(events: Collector, lead_id: str):
    return [m.data for m in events.got.of_type("crm.lead.activity-summary") if m.data.lead_id == lead_id]


# --- the lead card ----------------------------------------------------------------------------


async def test_the_lead_card_shows_the_nearest_open_task_then_the_last_data_change(settings_for, run_service, endpoints, isolation):
    leads_service = await run_service(create_leads_app(settings_for(LeadsSettings, "leads")))
    activity = await start_activity(settings_for, run_service)
    cards = LeadRepository(leads_service.db)
    now = datetime.now(UTC)
    due = {"T1": now + 3 * DAY, "T2": now + 2 * DAY, "T3": now + 5 * DAY}
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, LEADS_EVENTS, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer)
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline announced")
        await producer.send(LEADS_COMMANDS, command(payload("crm.lead.create", lead_id="L1", title="Website request")))
        await lead_known(activity, "L1")

        for task_id, at in due.items():
            await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", task_id, at))

        async def card_activity(**expect):
            async def check():
                lead = await cards.get("L1")
                activity_view = lead.activity if lead else None
                return activity_view is not None and all(getattr(activity_view, k) == v for k, v in expect.items())

            await wait_until(check, what=f"lead card activity {expect}")
            return await cards.get("L1")

        lead = await card_activity(next_task_id="T2", open_count=3)
        assert abs(lead.activity.next_due_at - due["T2"]) < timedelta(milliseconds=1)
        assert lead.activity.state == "on_time" and lead.activity.overdue_count == 0
        shown = leads_domain.last_activity(lead, now)
        assert shown["task_id"] == "T2" and shown["state"] == "on_time"

        await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.complete", task_id="T2")))
        lead = await card_activity(next_task_id="T1", open_count=2)
        assert abs(lead.activity.next_due_at - due["T1"]) < timedelta(milliseconds=1)

        for task_id in ("T1", "T3"):
            await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.complete", task_id=task_id, comment="ok")))
        lead = await card_activity(open_count=0)
        assert lead.activity.next_due_at is None and lead.activity.next_task_id is None and lead.activity.state is None
        shown = leads_domain.last_activity(lead, datetime.now(UTC))
        assert shown["at"] == lead.data_changed_at and shown["task_id"] is None
        completed = {m.data.task_id for m in events.got.of_type("crm.task.completed")}
        assert completed == {"T1", "T2", "T3"}


# --- the due pass -----------------------------------------------------------------------------


async def test_the_due_pass_announces_due_soon_then_overdue_once_each(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    due = datetime.now(UTC).replace(microsecond=0) + 10 * DAY
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer)
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await lead_known(activity, "L1")
        await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", "T1", due))
        await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", "T2", due + 5 * DAY))
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 2, what="two tasks created")

        run = activity.handlers.run_due_pass
        assert await run(due - 2 * DAY) == [] and await run(due - 2 * DAY) == []

        soon = [o.message.type for o in await run(due - 12 * HOUR)]
        assert soon == ["crm.task.due-soon", "crm.lead.activity-summary"]
        assert await run(due - 12 * HOUR) == [] and await run(due - 11 * HOUR) == []

        # Two instances at the same moment: the conditional claim lets only one announce.
        first, second = await asyncio.gather(run(due + HOUR), run(due + HOUR))
        late = [o.message.type for o in first + second]
        assert late == ["crm.task.overdue", "crm.lead.activity-summary"]
        assert await run(due + HOUR) == [] and await run(due + 2 * HOUR) == []

        await wait_until(lambda: events.got.of_type("crm.task.overdue"), what="overdue published")
        await wait_until(lambda: len(summaries(events, "L1")) >= 4, what="summaries of create, create, due soon, overdue")
        assert [m.data.task_id for m in events.got.of_type("crm.task.due-soon")] == ["T1"]
        assert [m.data.task_id for m in events.got.of_type("crm.task.overdue")] == ["T1"]
        states = [(s.state, s.overdue_count, s.next_task_id) for s in summaries(events, "L1")[-2:]]
        assert states == [("due_soon", 0, "T1"), ("overdue", 1, "T1")]

        # A new due time is a new deadline: it is announced afresh.
        await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.update", task_id="T1", due_at=(due + 3 * DAY).isoformat())))
        await wait_until(lambda: events.got.of_type("crm.task.updated"), what="rescheduled")
        assert [o.message.type for o in await run(due + 2 * DAY + 13 * HOUR)] == ["crm.task.due-soon", "crm.lead.activity-summary"]


# --- call outcomes ----------------------------------------------------------------------------


async def test_no_answer_with_a_next_call_delivered_twice_creates_exactly_one_call(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    tasks = TaskRepository(activity.db)
    task_id = str(uuid.uuid4())
    due = datetime.now(UTC) + 2 * DAY
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer)
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await lead_known(activity, "L1")
        create = task_cmd("L1", task_id, due)
        await producer.send(ACTIVITY_COMMANDS, create)
        await producer.send(ACTIVITY_COMMANDS, create)  # the same create again: one task
        # Keyed by the lead (subject), as the contract asks of lead-scoped messages: it follows the create.
        complete = command(
            payload("crm.task.complete", task_id=task_id, outcome="no_answer", next_call_at=(due + DAY).isoformat()), subject="L1"
        )
        await producer.send(ACTIVITY_COMMANDS, complete)
        await producer.send(ACTIVITY_COMMANDS, complete)

        def completions():
            return [m for m in events.got.of_type("crm.task.completed") if m.causationid == complete.id]

        await wait_until(lambda: len(completions()) == 2, what="the completion published for both deliveries")
        assert len({m.id for m in completions()}) == 1  # re-published identically
        call_id = next_call_id(task_id)
        assert call_id == str(uuid.uuid5(uuid.UUID(task_id), "next-call"))
        created = [m for m in events.got.of_type("crm.task.created") if m.data.task_id == call_id]
        assert len(created) == 2 and len({m.id for m in created}) == 1
        assert len([m for m in events.got.of_type("crm.task.created") if m.data.task_id == task_id]) == 2
        assert len({m.id for m in events.got.of_type("crm.task.created") if m.data.task_id == task_id}) == 1
        stored = (await tasks.search(lead_id="L1"))[0]
        assert sorted(t.task_id for t in stored) == sorted([task_id, call_id])
        call = await tasks.view(call_id)
        original = await tasks.view(task_id)
        assert call.status == "open" and call.type == "call" and call.start_at == original.next_call_at
        assert original.status == "done" and original.outcome == "no_answer" and original.version == 2
        assert not events.got.of_type("crm.command.rejected")
        last = summaries(events, "L1")[-1]
        assert (last.open_count, last.next_task_id) == (1, call_id)


async def test_close_lead_sends_disqualify_and_the_disqualification_completes_the_other_tasks(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    tasks = TaskRepository(activity.db)
    due = datetime.now(UTC) + 2 * DAY
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS, QUALIFICATION_COMMANDS
    ) as events:
        await activity_ready(activity, producer)
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await lead_known(activity, "L1")
        for i, task_type in enumerate(("call", "meeting", "email")):
            await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", f"T{i}", due + i * HOUR, type=task_type))
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 3, what="three tasks")

        close = command(payload("crm.task.complete", task_id="T0", outcome="close_lead", reason_id="no-budget", comment="Frozen until Q3"))
        await producer.send(ACTIVITY_COMMANDS, close)
        asked = (await wait_until(lambda: events.got.of_type("crm.lead.disqualify"), what="disqualify command"))[0]
        assert asked.data.lead_id == "L1" and asked.data.reason_id == "no-budget" and asked.data.comment == "Frozen until Q3"
        assert asked.actorid == "alice" and asked.subject == "L1" and asked.causationid == close.id
        assert (await tasks.view("T0")).outcome == "close_lead"
        assert [t.task_id for t in (await tasks.search(lead_id="L1", status="open"))[0]] == ["T1", "T2"]

        # What the qualification service answers (it is built in parallel): the lead is disqualified.
        disqualified = build_message(
            payload("crm.lead.disqualified", lead_id="L1", reason_id="no-budget", reason="No budget", comment="Frozen until Q3"),
            source="crm/qualification", causationid=asked.id,
        )
        await producer.send(QUALIFICATION_EVENTS, disqualified)
        await wait_until(lambda: len(events.got.of_type("crm.task.completed")) == 3, what="every task completed")
        for task_id in ("T1", "T2"):
            task = await tasks.view(task_id)
            assert task.status == "done" and "No budget" in task.comment
        await wait_until(lambda: summaries(events, "L1")[-1].open_count == 0, what="summary with nothing open")

        await producer.send(QUALIFICATION_EVENTS, disqualified)  # redelivered: same events, no new change
        await wait_until(lambda: len(events.got.of_type("crm.task.completed")) == 5, what="completions re-published")
        assert len({m.id for m in events.got.of_type("crm.task.completed")}) == 3


# --- the lead's deletion ----------------------------------------------------------------------


async def test_deleting_a_lead_cancels_its_open_tasks_and_restoring_it_reopens_them(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    tasks = TaskRepository(activity.db)
    due = datetime.now(UTC) + 2 * DAY
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer)
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await lead_known(activity, "L1")
        for task_id in ("A", "B", "C"):
            await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", task_id, due))
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 3, what="three tasks")
        await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.cancel", task_id="C", comment="not needed")))
        await wait_until(lambda: events.got.of_type("crm.task.cancelled"), what="C cancelled by hand")

        await producer.send(LEADS_EVENTS, event("crm.lead.deleted", "crm/leads", lead_id="L1", version=2))
        await wait_until(lambda: len(events.got.of_type("crm.task.cancelled")) == 3, what="A and B cancelled with the lead")
        assert (await tasks.search(lead_id="L1", status="open"))[0] == []
        await wait_until(lambda: summaries(events, "L1")[-1].open_count == 0, what="empty summary")

        await producer.send(LEADS_EVENTS, event("crm.lead.restored", "crm/leads", lead_id="L1", version=3))
        await wait_until(lambda: len(events.got.of_type("crm.task.updated")) == 2, what="A and B reopened")
        assert [t.task_id for t in (await tasks.search(lead_id="L1", status="open"))[0]] == ["A", "B"]
        assert (await tasks.view("C")).status == "cancelled"
        await wait_until(lambda: summaries(events, "L1")[-1].open_count == 2, what="summary with two open")

        # An old deletion arriving late changes nothing.
        stale = event("crm.lead.deleted", "crm/leads", lead_id="L1", version=2)
        await producer.send(LEADS_EVENTS, stale)
        marker = task_cmd("L1", "D", due)
        await producer.send(ACTIVITY_COMMANDS, marker)
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 4, what="a task after the stale event")
        assert len((await tasks.search(lead_id="L1", status="open"))[0]) == 3


# --- refusals ---------------------------------------------------------------------------------


async def test_refusals_carry_their_reason_codes(settings_for, run_service, endpoints, isolation):
    activity = await start_activity(settings_for, run_service)
    tasks = TaskRepository(activity.db)
    due = datetime.now(UTC) + 2 * DAY
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer, users=("alice", "root"), admins=("root",))
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await producer.send(LEADS_EVENTS, lead_card("GONE"))
        await producer.send(LEADS_EVENTS, event("crm.lead.deleted", "crm/leads", lead_id="GONE", version=2))
        await producer.send(LEADS_EVENTS, lead_card("LOST", status="unqualified", stage_id="unqualified"))
        await lead_known(activity, "L1")
        await lead_known(activity, "GONE", deleted=True)
        await lead_known(activity, "LOST", status="unqualified")

        cases = [
            (task_cmd("NOPE", "x1", due), "not_found", "unknown"),
            (task_cmd("GONE", "x2", due), "invalid_state", "deleted"),
            (task_cmd("LOST", "x3", due), "invalid_state", "unqualified"),
            (task_cmd("L1", "x4", due, start_at=due + HOUR), "validation", "before it starts"),
            (task_cmd("L1", "x5", due, type="séance"), "validation", "unknown"),
            (task_cmd("L1", "x6", due, actor="mallory"), "not_licensed", "licence"),
            (command(payload("crm.task.type.add", type_id="site-visit", name="Site visit")), "forbidden", "administrators"),
            (command(payload("crm.task.complete", task_id="ghost")), "not_found", "ghost"),
        ]
        for cmd, _, _ in cases:
            await producer.send(ACTIVITY_COMMANDS, cmd)
        for cmd, code, words in cases:
            refused = await rejection_for(events, cmd)
            assert refused.reason_code == code, (cmd.type, refused)
            assert words in refused.message, refused.message
        assert (await rejection_for(events, cases[0][0])).lead_id == "NOPE"

        # Completing a cancelled task.
        await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", "T1", due))
        await wait_until(lambda: events.got.of_type("crm.task.created"), what="T1 created")
        # Commands without a lead in their payload are keyed by message id: each waits for the one before.
        await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.cancel", task_id="T1")))
        await wait_until(lambda: events.got.of_type("crm.task.cancelled"), what="T1 cancelled")
        complete = command(payload("crm.task.complete", task_id="T1"))
        await producer.send(ACTIVITY_COMMANDS, complete)
        refused = await rejection_for(events, complete)
        assert refused.reason_code == "invalid_state" and "cancelled" in refused.message

        # An administrator adds the type; then it is accepted.
        await producer.send(ACTIVITY_COMMANDS, command(payload("crm.task.type.add", type_id="site-visit", name="Site visit"), actor="root"))
        visit = task_cmd("L1", "V1", due, type="site-visit")
        await wait_until(lambda: activity.handlers.types.all(), what="custom type stored")
        await producer.send(ACTIVITY_COMMANDS, visit)
        await wait_until(lambda: [m for m in events.got.of_type("crm.task.created") if m.data.task_id == "V1"], what="site visit")
        assert {t.task_id for t in (await tasks.search())[0]} == {"T1", "V1"}  # nothing refused was stored


async def test_one_batch_sees_its_own_new_type_and_lead(settings_for, run_service, endpoints, isolation):
    """The handler reads actors, task types and leads once per batch; what the batch itself adds counts."""
    activity = await start_activity(settings_for, run_service)
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        await activity_ready(activity, producer, users=("alice", "root"), admins=("root",))
    due = datetime.now(UTC) + 2 * DAY
    batch = [
        (ACTIVITY_COMMANDS, command(payload("crm.task.type.add", type_id="demo-visit", name="Demo visit"), actor="root")),
        (ACTIVITY_COMMANDS, task_cmd("L7", "V7", due, type="demo-visit")),
        (LEADS_EVENTS, lead_card("L7")),  # after the commands in the batch, applied before them
    ]
    out = await activity.handlers.on_batch([Inbound(topic, 0, i, m) for i, (topic, m) in enumerate(batch)])
    kinds = [o.message.type for o in out]
    assert "crm.command.rejected" not in kinds, [o.message.data for o in out if o.message.type == "crm.command.rejected"]
    assert [o.message.data.task_id for o in out if o.message.type == "crm.task.created"] == ["V7"]
    stored = await TaskRepository(activity.db).view("V7")
    assert stored is not None and stored.type == "demo-visit" and stored.lead_id == "L7"


# --- HTTP -------------------------------------------------------------------------------------


async def test_http_lists_tasks_and_my_day(settings_for, run_service, endpoints, isolation):
    fixed = datetime(2030, 6, 10, 12, 0, tzinfo=UTC)
    activity = await start_activity(
        settings_for, run_service, clock=lambda: fixed, tokens={"tok-alice": "alice", "tok-bob": "bob", "tok-eve": "eve"}
    )
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer, users=("alice", "bob"), admins=("alice",))  # she reads bob's too
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await producer.send(LEADS_EVENTS, lead_card("L2"))
        await lead_known(activity, "L1")
        await lead_known(activity, "L2")
        plan = [
            ("late", "L1", "alice", fixed - DAY),
            ("today", "L1", "alice", fixed + 3 * HOUR),
            ("tomorrow", "L2", "alice", fixed + DAY),
            ("bobs", "L2", "bob", fixed + HOUR),
        ]
        for task_id, lead_id, who, at in plan:
            await producer.send(ACTIVITY_COMMANDS, task_cmd(lead_id, task_id, at, actor=who))
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 4, what="four tasks")

    transport = httpx.ASGITransport(app=activity.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://activity") as http:
        alice = {"Authorization": "Bearer tok-alice"}
        assert (await http.get("/tasks")).status_code == 401
        assert (await http.get("/tasks", headers={"Authorization": "Bearer tok-eve"})).status_code == 403

        got = (await http.get("/tasks", params={"lead_id": "L1"}, headers=alice)).json()["items"]
        assert [t["task_id"] for t in got] == ["late", "today"]
        assert got[0]["state"] == "overdue" and got[1]["state"] == "due_soon"
        got = (await http.get("/tasks", params={"assignee_id": "alice", "due_before": (fixed + 12 * HOUR).isoformat()}, headers=alice)).json()
        assert [t["task_id"] for t in got["items"]] == ["late", "today"]
        assert (await http.get("/tasks", params={"status": "open", "lead_id": "L2"}, headers=alice)).json()["items"][0]["task_id"] == "bobs"
        assert (await http.get("/tasks", params={"status": "weird"}, headers=alice)).status_code == 400
        assert (await http.get("/tasks", params={"due_before": "yesterday"}, headers=alice)).status_code == 400

        one = await http.get("/tasks/today", headers=alice)
        assert one.status_code == 200 and one.json()["lead_id"] == "L1" and "due_soon_notified" not in one.json()
        assert (await http.get("/tasks/nope", headers=alice)).status_code == 404

        day = (await http.get("/my-day", headers=alice)).json()
        assert day["assignee_id"] == "alice" and day["date"] == "2030-06-10"
        assert [t["task_id"] for t in day["today"]] == ["today"]
        assert [t["task_id"] for t in day["overdue"]] == ["late"]
        bobs = (await http.get("/my-day", params={"assignee_id": "bob"}, headers=alice)).json()
        assert [t["task_id"] for t in bobs["today"]] == ["bobs"] and bobs["overdue"] == []


async def test_another_users_tasks_and_day_are_for_administrators(settings_for, run_service, endpoints, isolation):
    """A manager sees their own tasks and day; another user's (a list, a day plan, one task) are 403."""
    fixed = datetime(2030, 6, 10, 12, 0, tzinfo=UTC)
    activity = await start_activity(
        settings_for, run_service, clock=lambda: fixed, tokens={"tok-alice": "alice", "tok-bob": "bob"}
    )
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, ACTIVITY_EVENTS
    ) as events:
        await activity_ready(activity, producer, users=("alice", "bob"), admins=("alice",))
        await producer.send(LEADS_EVENTS, lead_card("L1"))
        await lead_known(activity, "L1")
        for task_id, who in (("hers", "alice"), ("his", "bob")):
            await producer.send(ACTIVITY_COMMANDS, task_cmd("L1", task_id, fixed + HOUR, actor=who))
        await wait_until(lambda: len(events.got.of_type("crm.task.created")) == 2, what="two tasks")
        # Nor does he work her task by command.
        takeover = command(payload("crm.task.complete", task_id="hers"), actor="bob", subject="L1")
        await producer.send(ACTIVITY_COMMANDS, takeover)
        refused = await rejection_for(events, takeover)
        assert refused.reason_code == "forbidden" and "assigned to another user" in refused.message

    transport = httpx.ASGITransport(app=activity.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://activity") as http:
        assert (await TaskRepository(activity.db).view("hers")).status == "open"
        bob, alice = {"Authorization": "Bearer tok-bob"}, {"Authorization": "Bearer tok-alice"}
        for path, params in (("/tasks", {"assignee_id": "alice"}), ("/my-day", {"assignee_id": "alice"})):
            refused = await http.get(path, params=params, headers=bob)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"] == "forbidden" and "administrators" in refused.json()["message"]
        # Her task answers him as a task that does not exist would: he cannot learn which ids are taken.
        for task_id in ("hers", "nobodys"):
            hidden = await http.get(f"/tasks/{task_id}", headers=bob)
            assert hidden.status_code == 404 and hidden.json()["error"] == "not_found", hidden.text
        # His own, by default and by name; a lead's tasks show him only his.
        assert [t["task_id"] for t in (await http.get("/tasks", headers=bob)).json()["items"]] == ["his"]
        assert [t["task_id"] for t in (await http.get("/tasks", params={"lead_id": "L1"}, headers=bob)).json()["items"]] == ["his"]
        assert [t["task_id"] for t in (await http.get("/tasks", params={"assignee_id": "bob"}, headers=bob)).json()["items"]] == ["his"]
        assert (await http.get("/my-day", headers=bob)).json()["today"][0]["task_id"] == "his"
        assert (await http.get("/tasks/his", headers=bob)).status_code == 200
        # The administrator reads anyone's.
        assert sorted(t["task_id"] for t in (await http.get("/tasks", headers=alice)).json()["items"]) == ["hers", "his"]
        assert [t["task_id"] for t in (await http.get("/tasks", params={"assignee_id": "bob"}, headers=alice)).json()["items"]] == ["his"]
        assert (await http.get("/my-day", params={"assignee_id": "bob"}, headers=alice)).json()["today"][0]["task_id"] == "his"
        assert (await http.get("/tasks/his", headers=alice)).status_code == 200
