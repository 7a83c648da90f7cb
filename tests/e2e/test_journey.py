"""A lead's whole journey through the four services running as real processes on Kafka and FerretDB."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from contracts import build_message, payload_class
from contracts.topics import (
    ACTIVITY_COMMANDS,
    DIRECTORY_EVENTS,
    LEADS_COMMANDS,
    LEADS_EVENTS,
    QUALIFICATION_COMMANDS,
    QUALIFICATION_EVENTS,
)
from crmctl.services import SERVICES
from crmctl.stack import ROOT, ManagedProcess, port_open
from tests.support import Collector, Producer, command, wait_until

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
BASE_PORT = int(os.environ.get("CRM_E2E_BASE_PORT", "18000"))


def _payload(type_name: str, **data):
    return payload_class(type_name).model_validate(data)


class Processes:
    """The four services as separate processes, on the test's own topics, databases and ports."""

    def __init__(self, endpoints, isolation, home: Path) -> None:
        self.endpoints = endpoints
        self.isolation = isolation
        self.home = home
        self.procs: dict[str, ManagedProcess] = {}
        self.ports = {spec.name: BASE_PORT + spec.port % 100 for spec in SERVICES}

    def env(self, spec) -> dict[str, str]:
        p = spec.env_prefix
        env = dict(os.environ)
        env.update({
            f"{p}KAFKA_BOOTSTRAP_SERVERS": self.endpoints.kafka,
            f"{p}MONGODB_URL": self.endpoints.mongodb,
            f"{p}TOPIC_PREFIX": self.isolation.prefix,
            f"{p}DATABASE": self.isolation.db(spec.name),
            f"{p}GROUP_ID": self.isolation.group(spec.name),
            f"{p}HTTP_PORT": str(self.ports[spec.name]),
            f"{p}TOKENS": json.dumps(TOKENS),
            f"{p}BATCH_TIMEOUT_MS": "20",
            "PYTHONPATH": str(ROOT),
            **self.endpoints.auth_env(p),
        })
        return env

    def start(self, name: str) -> None:
        spec = next(s for s in SERVICES if s.name == name)
        proc = ManagedProcess(name, self.home / f"{name}.pid", self.home / f"{name}.log", f"-m {spec.module}")
        assert not port_open(self.ports[name]), f"port {self.ports[name]} is taken; set CRM_E2E_BASE_PORT"
        proc.start([sys.executable, "-m", spec.module], env=self.env(spec), cwd=ROOT)
        self.procs[name] = proc

    async def ready(self, name: str) -> None:
        async def check() -> bool:
            assert self.procs[name].running(), (self.home / f"{name}.log").read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(self.url(name, "/health/ready"), timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(check, timeout=90, interval=0.3, what=f"{name} ready")

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop(timeout=30)


@pytest.fixture
async def processes(endpoints, isolation, tmp_path):
    found = Processes(endpoints, isolation, tmp_path)
    try:
        yield found
    finally:
        found.stop_all()


async def test_lead_journey_across_four_service_processes(processes, endpoints, isolation):
    for spec in SERVICES:
        processes.start(spec.name)
    for spec in SERVICES:
        await processes.ready(spec.name)
    http = httpx.AsyncClient(headers={"Authorization": "Bearer tok-bob"}, timeout=10)
    lead_id = f"journey-{uuid.uuid4().hex[:8]}"
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, LEADS_EVENTS, QUALIFICATION_EVENTS
    ) as events:
        for user, admin in (("alice", True), ("bob", False)):
            await producer.send(DIRECTORY_EVENTS, build_message(_payload("crm.user.licence-granted", user_id=user, licence="crm"), source="test"), key=user)
            if admin:
                await producer.send(DIRECTORY_EVENTS, build_message(_payload("crm.user.role-granted", user_id=user, role="admin"), source="test"), key=user)
        await producer.send(DIRECTORY_EVENTS, build_message(_payload(
            "crm.contact.upserted", contact_id="K-1", name="Мария Соколова", phone="+79161234567", email="maria@example.ru", version=1), source="test"), key="K-1")
        await producer.send(DIRECTORY_EVENTS, build_message(_payload(
            "crm.product.upserted", product_id="P-1", name="CRM seat", kind="simple", version=1), source="test"), key="P-1")

        async def licensed() -> bool:
            return (await http.get(processes.url("leads", "/pipelines"))).status_code == 200

        await wait_until(licensed, what="bob licensed at the leads service")
        await producer.send(LEADS_COMMANDS, command(_payload(
            "crm.lead.create", lead_id=lead_id, title="Website: 20 seats", contact={"contact_id": "K-1"},
            products=[{"product_id": "P-1", "quantity": 20}], source="website",
            utm_source="yandex", utm_medium="cpc", utm_campaign="winter"), actor="bob"))

        async def card() -> dict | None:
            response = await http.get(processes.url("leads", f"/leads/{lead_id}"))
            return response.json() if response.status_code == 200 else None

        async def card_with_snapshots() -> dict | None:
            # The directory records and the create sit on different partitions: a snapshot missing at
            # creation is filled in when its record is applied (the leads service keeps them current).
            found = await card()
            return found if found and found["contact"]["name"] and found["products"][0]["name"] else None

        created = await wait_until(card_with_snapshots, what="the lead card with its contact and product snapshots")
        assert created["contact"]["name"] == "Мария Соколова"  # snapshot filled from the directory
        assert created["products"][0]["name"] == "CRM seat"

        # A task on the lead becomes the card's next activity (activity service → leads service).
        await wait_until(lambda: _activity_knows(http, processes, lead_id), what="activity service knows the lead")
        await producer.send(ACTIVITY_COMMANDS, command(_payload(
            "crm.task.create", task_id=f"{lead_id}-call", lead_id=lead_id, type="call", title="Call back",
            start_at="2030-01-01T09:00:00Z", due_at="2030-01-01T10:00:00Z", assignee_id="bob"), actor="bob", subject=lead_id))

        async def next_activity() -> bool:
            found = await card()
            return bool(found and found["last_activity"].get("task_id") == f"{lead_id}-call")

        await wait_until(next_activity, what="the card's next activity")

        # Qualification with a new company into the default deal pipeline.
        await wait_until(lambda: _qualification_knows(http, processes, lead_id), what="qualification knows the lead")
        await producer.send(QUALIFICATION_COMMANDS, command(_payload(
            "crm.lead.qualify", lead_id=lead_id, qualification_type="deal_and_company",
            new_company={"name": "ООО Соколов и партнёры", "inn": "7707083893"}, industry="retail",
            deal_pipeline_id="default"), actor="bob", subject=lead_id))

        async def qualified() -> dict | None:
            found = await card()
            return found if found and found["status"] == "qualified" else None

        final = await wait_until(qualified, timeout=60, what="the lead qualified")
        assert final["locked"] and final["qualified_deal_id"] and final["qualified_company_id"]
        deals = (await http.get(processes.url("qualification", "/deals"), params={"lead_id": lead_id})).json()
        deal = deals["items"][0] if "items" in deals else deals[0]
        assert deal["deal_id"] == final["qualified_deal_id"]
        assert deal["utm_source"] == "yandex" and deal["utm_campaign"] == "winter"
        assert deal["contact"]["name"] == "Мария Соколова"
        assert deal["products"][0]["product_id"] == "P-1"
        assert len([m for m in events.got.of_type("crm.deal.created") if m.subject == lead_id]) == 1

        # Locked: a change is refused with a reason, and the card does not change.
        refused = command(_payload("crm.lead.update", lead_id=lead_id, title="changed"), actor="bob")
        await producer.send(LEADS_COMMANDS, refused)
        rejection = await wait_until(lambda: [m for m in events.got.of_type("crm.command.rejected") if m.data.command_id == refused.id], what="refusal")
        assert rejection[0].data.reason_code == "invalid_state"
        assert (await card())["title"] == "Website: 20 seats"

        # A restarted leads service picks up where it was: the card is there, new commands work.
        processes.procs["leads"].stop(timeout=30)
        processes.start("leads")
        await processes.ready("leads")
        reopen = command(_payload("crm.lead.reopen", lead_id=lead_id), actor="alice")
        await producer.send(LEADS_COMMANDS, reopen)

        async def reopened() -> bool:
            found = await card()
            return bool(found and found["status"] == "in_progress")

        await wait_until(reopened, what="reopened after restart")
        # Disqualifying a second lead completes its open tasks (qualification → leads and activity).
        other = f"{lead_id}-b"
        await producer.send(LEADS_COMMANDS, command(_payload("crm.lead.create", lead_id=other, title="Cold call"), actor="bob"))
        await wait_until(lambda: _activity_knows(http, processes, other), what="activity knows the second lead")
        for n in (1, 2):
            await producer.send(ACTIVITY_COMMANDS, command(_payload(
                "crm.task.create", task_id=f"{other}-t{n}", lead_id=other, type="email", title=f"Follow-up {n}",
                start_at="2030-01-01T09:00:00Z", due_at=f"2030-01-0{n}T10:00:00Z", assignee_id="bob"), actor="bob", subject=other))
        await wait_until(lambda: _open_tasks(http, processes, other, 2), what="two open tasks")
        await wait_until(lambda: _qualification_knows(http, processes, other), what="qualification knows the second lead")
        await producer.send(QUALIFICATION_COMMANDS, command(_payload(
            "crm.lead.disqualify", lead_id=other, reason_id="no_budget", comment="maybe next year"), actor="bob", subject=other))

        async def unqualified() -> dict | None:
            response = await http.get(processes.url("leads", f"/leads/{other}"))
            found = response.json() if response.status_code == 200 else None
            return found if found and found["status"] == "unqualified" else None

        closed = await wait_until(unqualified, timeout=60, what="the second lead unqualified")
        assert closed["disqualification_reason_id"] == "no_budget" and closed["disqualification_comment"] == "maybe next year"
        await wait_until(lambda: _open_tasks(http, processes, other, 0), what="its open tasks completed")
        done = (await http.get(processes.url("activity", "/tasks"), params={"lead_id": other})).json()["items"]
        assert sorted(t["status"] for t in done) == ["done", "done"]

        for spec in SERVICES:
            document = (await http.get(processes.url(spec.name, "/asyncapi.json"))).json()
            assert document["asyncapi"].startswith("3.") and document["channels"]
    await http.aclose()


async def _activity_knows(http, processes, lead_id) -> bool:
    # The activity service learns leads from the leads events; a task on an unknown lead is refused.
    response = await http.get(processes.url("activity", "/tasks"), params={"lead_id": lead_id})
    return response.status_code == 200 and await _projected(processes, "activity", lead_id)


async def _open_tasks(http, processes, lead_id, count) -> bool:
    response = await http.get(processes.url("activity", "/tasks"), params={"lead_id": lead_id, "status": "open"})
    return response.status_code == 200 and len(response.json()["items"]) == count


async def _qualification_knows(http, processes, lead_id) -> bool:
    return await _projected(processes, "qualification", lead_id)


async def _projected(processes, service: str, lead_id: str) -> bool:
    from crmkit.mongo import make_client

    client = make_client(processes.endpoints.mongodb)
    try:
        return await client[processes.isolation.db(service)]["leads"].find_one({"_id": lead_id}) is not None
    finally:
        await client.close()
