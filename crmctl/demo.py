"""Demo data for the local stack: users with licences, directory records, leads and tasks."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from contracts import build_message, payload_class
from contracts.topics import ACTIVITY_COMMANDS, DIRECTORY_EVENTS, LEADS_COMMANDS, QUALIFICATION_COMMANDS

from .kafka import KafkaCluster
from .stack import StackConfig

DEMO_USERS = {
    "alice": ("admin", "demo-admin"),
    "bob": ("manager", "demo-manager"),
    "mallory": ("no licence", "demo-unlicensed"),
}
_NS = uuid.UUID("0b9f3b1e-7d7c-4f0e-8d9e-5a1c2b3d4e5f")


def _msg(type_name: str, data: dict, *, actor: str | None = None, key: str, seed: str | None = None) -> tuple[str, bytes, bytes]:
    """A record keyed by ``key``; its message id derives from ``seed`` (else the key) so a re-seed is deduped."""
    payload = payload_class(type_name).model_validate(data)
    message = build_message(payload, source="crm/demo", actorid=actor, id=str(uuid.uuid5(_NS, f"{type_name}:{seed or key}")))
    return message.type, message.to_json_bytes(), key.encode()


def demo_messages() -> list[tuple[str, list[tuple[str, bytes, bytes]]]]:
    """Stable ids: seeding twice changes nothing (every service dedupes by message id)."""
    directory = [
        _msg("crm.user.licence-granted", {"user_id": "alice", "licence": "crm"}, key="alice"),
        _msg("crm.user.role-granted", {"user_id": "alice", "role": "admin"}, key="alice"),
        _msg("crm.user.licence-granted", {"user_id": "bob", "licence": "crm"}, key="bob"),
        _msg("crm.contact.upserted", {"contact_id": "c-ivanov", "name": "Иван Иванов", "phone": "+79123456789", "email": "ivanov@example.ru", "version": 1}, key="c-ivanov"),
        _msg("crm.contact.upserted", {"contact_id": "c-smith", "name": "Jane Smith", "phone": "+14155550100", "email": "jane@example.com", "version": 1}, key="c-smith"),
        _msg("crm.company.upserted", {"company_id": "co-romashka", "name": "ООО Ромашка", "inn": "7707083893", "version": 1}, key="co-romashka"),
        _msg("crm.product.upserted", {"product_id": "p-crm", "name": "CRM licence", "kind": "simple", "version": 1}, key="p-crm"),
        _msg("crm.product.upserted", {"product_id": "p-server", "name": "Server", "kind": "configurable", "options": {"ram": ["16GB", "32GB"]}, "version": 1}, key="p-server"),
    ]
    leads = [
        _msg("crm.lead.create", {"lead_id": "demo-lead-1", "title": "Заявка с сайта: 50 лицензий", "contact": {"contact_id": "c-ivanov"}, "company": {"company_id": "co-romashka"}, "products": [{"product_id": "p-crm", "quantity": 50}], "source": "website", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "autumn", "need_maturity": "urgent"}, actor="bob", key="demo-lead-1"),
        _msg("crm.lead.create", {"lead_id": "demo-lead-2", "title": "Server for the Boston office", "contact": {"contact_id": "c-smith"}, "products": [{"product_id": "p-server", "options": {"ram": "32GB"}}], "source": "webinar", "need_maturity": "interested"}, actor="bob", key="demo-lead-2"),
        _msg("crm.lead.create", {"lead_id": "demo-lead-3", "title": "Звонок: интерес к внедрению", "contact": {"name": "Пётр Петров", "phone": "8 (912) 345-67-89"}, "source": "phone"}, actor="alice", key="demo-lead-3"),
        _msg("crm.lead.assign", {"lead_id": "demo-lead-1", "responsible_id": "alice"}, actor="alice", key="demo-lead-1:assign"),
    ]
    leads += analytics_leads()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    tasks = [
        _msg("crm.task.create", {"task_id": "demo-task-1", "lead_id": "demo-lead-1", "type": "call", "title": "Call back about the licences", "start_at": (now + timedelta(hours=2)).isoformat(), "due_at": (now + timedelta(hours=3)).isoformat(), "assignee_id": "alice"}, actor="alice", key="demo-lead-1:t1"),
        _msg("crm.task.create", {"task_id": "demo-task-2", "lead_id": "demo-lead-2", "type": "meeting", "title": "Demo meeting", "start_at": (now + timedelta(days=2)).isoformat(), "due_at": (now + timedelta(days=2, hours=1)).isoformat(), "assignee_id": "bob"}, actor="bob", key="demo-lead-2:t1"),
    ]
    return [(DIRECTORY_EVENTS, directory), (LEADS_COMMANDS, leads), (ACTIVITY_COMMANDS, tasks), (QUALIFICATION_COMMANDS, outcomes())]


# Leads from several sources and campaigns, some worked, so the analytics dashboard has something to show.
_ANALYTICS_LEADS = (
    # lead, title, source, utm_source, utm_campaign, responsible, moved to processing
    ("demo-lead-4", "Website form: 10 seats", "website", "google", "autumn", "bob", True),
    ("demo-lead-5", "Website form: pricing question", "website", "yandex", "autumn", "alice", True),
    ("demo-lead-6", "Webinar attendee", "webinar", None, None, "bob", True),
    ("demo-lead-7", "Partner referral", "partner", None, None, "alice", True),
    ("demo-lead-8", "Cold call follow-up", "phone", None, None, "bob", False),
    ("demo-lead-9", "Website chat", "website", "google", "brand", "bob", True),
    ("demo-lead-10", "Expo contact", "expo", None, None, "alice", False),
)


def analytics_leads() -> list[tuple[str, bytes, bytes]]:
    out = []
    for lead_id, title, source, utm_source, campaign, responsible, moved in _ANALYTICS_LEADS:
        data = {"lead_id": lead_id, "title": title, "source": source, "utm_source": utm_source, "utm_campaign": campaign}
        out.append(_msg("crm.lead.create", {k: v for k, v in data.items() if v is not None}, actor=responsible, key=lead_id))
        if moved:
            out.append(_msg("crm.lead.move", {"lead_id": lead_id, "stage_id": "processing"}, actor=responsible, key=lead_id, seed=f"{lead_id}:move"))
    return out


def outcomes() -> list[tuple[str, bytes, bytes]]:
    """One lead qualified into a deal, two disqualified with reasons."""
    return [
        _msg("crm.lead.qualify", {"lead_id": "demo-lead-4", "qualification_type": "deal_and_company", "company_id": "co-romashka", "deal_pipeline_id": "default"}, actor="bob", key="demo-lead-4"),
        _msg("crm.lead.disqualify", {"lead_id": "demo-lead-6", "reason_id": "no_budget", "comment": "Next year."}, actor="bob", key="demo-lead-6"),
        _msg("crm.lead.disqualify", {"lead_id": "demo-lead-8", "reason_id": "competitor"}, actor="bob", key="demo-lead-8"),
    ]


def _get_json(url: str, token: str) -> dict | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return json.loads(response.read())
    except Exception:
        return None


async def _publish(config: StackConfig, waits: list[tuple[float, callable]]) -> None:
    # Master data comes from the directory principal, commands from the integrator, as in production.
    cluster = KafkaCluster(config)
    producers = {
        name: AIOKafkaProducer(**cluster.client_settings(name).kafka_client_options(), acks="all")
        for name in ("directory", "integrator")
    }
    for producer in producers.values():
        await producer.start()
    try:
        for (topic, messages), (timeout, ready) in zip(demo_messages(), waits, strict=True):
            producer = producers["directory" if topic == DIRECTORY_EVENTS else "integrator"]
            for _type, value, key in messages:
                await producer.send_and_wait(topic, value, key=key)
            deadline = time.monotonic() + timeout
            while not ready() and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
    finally:
        for producer in producers.values():
            await producer.stop()


def seed_demo(config: StackConfig) -> str:
    """Publish the demo data and wait until the leads service shows it; return a summary."""

    def licensed() -> bool:
        return _get_json("http://127.0.0.1:8001/pipelines", "demo-manager") is not None

    def leads_visible() -> bool:
        found = _get_json("http://127.0.0.1:8001/leads?limit=10", "demo-manager")
        return bool(found and len(found.get("items", [])) >= 3 + len(_ANALYTICS_LEADS))

    def analytics_shows() -> bool:
        found = _get_json("http://127.0.0.1:8005/reports/reasons", "demo-manager")
        return bool(found and found.get("rows"))

    asyncio.run(_publish(config, [(30, licensed), (30, leads_visible), (10, lambda: True), (30, analytics_shows)]))
    lines = ["Demo data seeded. Users and their bearer tokens:"]
    for user, (role, token) in DEMO_USERS.items():
        lines.append(f"  {user:8} {role:11} Authorization: Bearer {token}")
    return "\n".join(lines)
