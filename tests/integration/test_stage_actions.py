"""Stage-entry actions on real Kafka and FerretDB: signed webhooks to a local server, retries, no head-of-line blocking, field updates."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from cryptography.fernet import Fernet

from contracts.topics import LEADS_COMMANDS
from crmctl.stack import ROOT
from services.leads.actions.outbox import Outbox
from services.leads.actions.sealing import Sealer, SecretUnreadable
from services.leads.actions.signing import verify
from services.leads.repository import LeadRepository, PipelineRepository
from tests.integration.leads_helpers import payload
from tests.integration.test_leads import expect_rejected, leads_stack, send_and_wait
from tests.integration.webhook_server import webhook_receiver
from tests.support import command, wait_until

SECRET = "s3cret-for-the-test-hook"
SEALING_KEY = Fernet.generate_key().decode()
FAST_RETRIES = dict(
    webhook_allowed_private_hosts=["127.0.0.1"], webhook_backoff_s=0.2, webhook_backoff_max_s=1.0, webhook_poll_s=0.1,
    secrets_keys=[SEALING_KEY],
)


def _stages(hot_actions, warm_actions=()):
    return [
        {"stage_id": "new", "name": "New", "status": "new"},
        {"stage_id": "hot", "name": "Hot", "status": "in_progress", "on_enter": list(hot_actions)},
        {"stage_id": "warm", "name": "Warm", "status": "in_progress", "on_enter": list(warm_actions)},
        {"stage_id": "won", "name": "Won", "status": "qualified"},
        {"stage_id": "lost", "name": "Lost", "status": "unqualified"},
    ]


def _hook(url, action_id="hook", secret=SECRET):
    return {"action_id": action_id, "kind": "webhook", "url": url, "secret": secret}


async def _lead_in(producer, events, lead_id, stage_id):
    await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id=lead_id, title=f"Lead {lead_id}", pipeline_id="sa"), actor="bob"))
    await send_and_wait(producer, events, command(payload("crm.lead.move", lead_id=lead_id, stage_id=stage_id), actor="bob"))


async def test_signed_webhook_retried_after_two_failures_and_a_field_update(settings_for, run_service, endpoints, isolation):
    async with webhook_receiver(fail_first=2) as hook, leads_stack(settings_for, run_service, endpoints, isolation, **FAST_RETRIES) as (service, producer, events):
        fields = {"action_id": "tag", "kind": "set_fields", "set_fields": {"source": "hot-stage", "need_maturity": "urgent"}}
        created = await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([fields, _hook(hook.url)])), actor="alice"))
        card = created[0].data.stages[1]
        # The secret is stored, never published: the card says only that one is set.
        assert [a.secret_set for a in card.on_enter] == [False, True]
        assert SECRET not in created[0].to_json_bytes().decode()

        await _lead_in(producer, events, "SA1", "hot")

        deliveries = await wait_until(lambda: [d for d in hook.deliveries().values() if len(d) >= 3], what="three attempts of the webhook")
        attempts = deliveries[0]
        for got in attempts:  # every attempt: the same CloudEvent, validly signed, structured JSON
            assert got.headers["content-type"].startswith("application/cloudevents+json")
            assert verify(SECRET, got.headers["crm-signature"], got.body, now=int(time.time()))
            assert not verify("another-secret-entirely", got.headers["crm-signature"], got.body, now=int(time.time()))
            event = got.event
            assert event["specversion"] == "1.0" and event["type"] == "crm.lead.stage-entered"
            assert event["subject"] == "SA1" and event["id"] == attempts[0].event["id"]
            assert event["data"]["stage_id"] == "hot" and event["data"]["lead"]["lead_id"] == "SA1"
            assert event["data"]["lead"]["stage_id"] == "hot"
        failed = await wait_until(
            lambda: len(events.got.of_type("crm.stage-action.failed")) >= 2 and events.got.of_type("crm.stage-action.failed"),
            what="two failure events")
        assert sorted(m.data.attempt for m in failed) == [1, 2]
        assert all(m.data.will_retry and m.data.status_code == 503 and m.data.kind == "webhook" for m in failed)
        outbox = Outbox(service.db)
        stored = await wait_until(lambda: _delivered(outbox, attempts[0].event["id"]), what="the delivery marked delivered")
        assert stored["attempts"] == 3
        # At rest the secret is sealed with the deployment's key: a copy of the database signs nothing.
        for collection in ("pipelines", "webhook_deliveries"):
            assert SECRET not in repr([doc async for doc in service.db[collection].find({})]), collection
        assert (await PipelineRepository(service.db, Sealer([SEALING_KEY])).get("sa")).stages[1].on_enter[1].secret == SECRET
        assert len(hook.got) == 3  # delivered: not posted again

        # The field action: applied by the write path as a change of its own, once.
        repo = LeadRepository(service.db)
        lead = await wait_until(lambda: _with_source(repo, "SA1", "hot-stage"), what="the field action applied")
        assert lead.need_maturity == "urgent"
        run = [m for m in events.got.of_type("crm.lead.updated") if m.subject == "SA1" and m.actorid == "crm-stage-actions"]
        assert len(run) == 1 and set(run[0].data.changed_fields) >= {"source", "need_maturity"}
        again = command(payload("crm.lead.run-stage-action", lead_id="SA1", pipeline_id="sa", stage_id="hot", action_id="tag",
                                entered_version=2), actor="crm-stage-actions", id=run[0].causationid)
        marker = command(payload("crm.lead.update", lead_id="SA1", description="after the redelivery"), actor="bob")
        await producer.send(LEADS_COMMANDS, again)  # the same command id: a redelivery
        await send_and_wait(producer, events, marker)
        assert (await repo.get("SA1")).version == lead.version + 1  # only the marker changed it


async def test_a_dead_endpoint_does_not_hold_up_other_leads_actions(settings_for, run_service, endpoints, isolation):
    async with webhook_receiver(hold=True) as dead, webhook_receiver() as alive, leads_stack(
        settings_for, run_service, endpoints, isolation, webhook_timeout_s=120, webhook_endpoint_concurrency=2, **FAST_RETRIES
    ) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions",
            stages=_stages([_hook(dead.url, "dead")], [_hook(alive.url, "alive")])), actor="alice"))
        for i in range(5):  # first into the dead endpoint's stage, so its deliveries are owed first
            await _lead_in(producer, events, f"D{i}", "hot")
        await wait_until(lambda: dead.held == 2, what="the dead endpoint holding its two requests")
        for i in range(6):
            await _lead_in(producer, events, f"A{i}", "warm")
        got = await wait_until(lambda: len(alive.deliveries()) == 6 and alive.deliveries(), what="every delivery to the live endpoint")
        assert {d[0].event["subject"] for d in got.values()} == {f"A{i}" for i in range(6)}
        # Meanwhile the dead endpoint still holds the same two requests: it took no more than its share.
        assert dead.held == 2 and len(dead.got) == 2


async def test_actions_added_to_a_pipeline_without_any_run_for_the_next_entries(settings_for, run_service, endpoints, isolation):
    """While no stage has actions the actions group passes the events over unparsed; once a pipeline gets
    one, the next entry into that stage is delivered."""
    async with webhook_receiver() as hook, leads_stack(settings_for, run_service, endpoints, isolation, **FAST_RETRIES) as (
        service, producer, events,
    ):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([])), actor="alice"))
        await _lead_in(producer, events, "N1", "hot")  # entered while no stage had an action
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.update", pipeline_id="sa", stages=_stages([_hook(hook.url)])), actor="alice"))
        await _lead_in(producer, events, "N2", "hot")
        got = await wait_until(lambda: "N2" in {d[0].event["subject"] for d in hook.deliveries().values()} and hook.deliveries(),
                               what="the entry after the update delivered")
        assert all(d[0].event["data"]["stage_id"] == "hot" for d in got.values())


async def test_webhook_addresses_are_checked(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        cases = {
            "ftp://example.com/x": "only http and https",
            "http://10.1.2.3/hook": "private",
            "http://127.0.0.1:9/hook": "private",  # not allowed in this service's settings
            "https://user:pw@example.com/h": "credentials",
        }
        for url, problem in cases.items():
            refused = await expect_rejected(producer, events, command(payload(
                "crm.pipeline.create", pipeline_id="bad", name="Bad", stages=_stages([_hook(url)])), actor="alice"), "validation")
            assert any(e.field == "stages.1.on_enter.0.url" and problem in e.message for e in refused.data.errors), refused.data
        refused = await expect_rejected(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="bad", name="Bad", stages=_stages([
                {"kind": "set_fields", "set_fields": {"title": "x"}}, _hook("https://example.com/h", secret="short")])),
            actor="alice"), "validation")
        fields = {e.field for e in refused.data.errors}
        assert {"stages.1.on_enter.0.set_fields.title", "stages.1.on_enter.1.secret"} <= fields, refused.data


async def test_an_endpoint_answering_an_endless_body_is_delivered_without_reading_it(settings_for, run_service, endpoints, isolation):
    async with webhook_receiver(endless=True) as hook, leads_stack(
        settings_for, run_service, endpoints, isolation, **FAST_RETRIES
    ) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([_hook(hook.url)])), actor="alice"))
        await _lead_in(producer, events, "EB1", "hot")
        got = await wait_until(lambda: hook.got, what="the webhook posted")
        stored = await wait_until(lambda: _delivered(Outbox(service.db), got[0].event["id"]), what="the delivery marked delivered")
        assert (stored["attempts"], len(hook.got)) == (1, 1)


REBINDING_NAME = "hooks.rebinding.test"


async def test_a_name_that_resolves_elsewhere_after_the_check_is_called_at_the_checked_address(
    settings_for, run_service, endpoints, isolation, monkeypatch,
):
    """DNS rebinding: the name answers an allowed address first, then a private one that is not allowed.

    The real server behind the allowed address (127.0.0.1, listed in the settings) must get the
    webhook; the one behind the other (127.0.0.2, same port, not listed) must not.
    """
    async with webhook_receiver() as trusted:
        port = int(trusted.url.split(":")[2].split("/")[0])
        async with webhook_receiver(host="127.0.0.2", port=port) as hidden, leads_stack(
            settings_for, run_service, endpoints, isolation, **FAST_RETRIES
        ) as (service, producer, events):
            answers: list[str] = []
            system = socket.getaddrinfo

            def hostile_dns(host, *args, **kwargs):
                if host != REBINDING_NAME:
                    return system(host, *args, **kwargs)
                answers.append("127.0.0.1" if not answers else "127.0.0.2")
                return system(answers[-1], *args, **kwargs)

            monkeypatch.setattr(socket, "getaddrinfo", hostile_dns)
            url = f"http://{REBINDING_NAME}:{port}/hook"
            await send_and_wait(producer, events, command(payload(
                "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([_hook(url)])), actor="alice"))
            await _lead_in(producer, events, "RB1", "hot")
            got = await wait_until(lambda: trusted.got, what="the webhook posted to the address that was checked")
            assert got[0].event["subject"] == "RB1" and got[0].headers["host"] == f"{REBINDING_NAME}:{port}"
            assert verify(SECRET, got[0].headers["crm-signature"], got[0].body, now=int(time.time()))
            assert hidden.got == [] and answers[0] == "127.0.0.1"


async def _delivered(outbox, delivery_id):
    doc = await outbox.get(delivery_id)
    return doc if doc and doc["status"] == "delivered" else None


async def _with_source(repo, lead_id, source):
    lead = await repo.get(lead_id)
    return lead if lead is not None and lead.source == source else None


async def test_webhook_secrets_stored_as_given_are_sealed_and_rotated_at_start(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation, secrets_keys=[]) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([_hook("https://example.com/h")])), actor="alice"))
        raw = await service.db["pipelines"].find_one({"_id": "sa"})
        assert raw["stages"][1]["on_enter"][0]["secret"] == SECRET  # no key configured: stored as given (and warned at start)

        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        assert await PipelineRepository(service.db, Sealer([old])).reseal() >= 1
        sealed = (await service.db["pipelines"].find_one({"_id": "sa"}))["stages"][1]["on_enter"][0]["secret"]
        assert SECRET not in sealed
        rotating = PipelineRepository(service.db, Sealer([new, old]))
        assert await rotating.reseal() >= 1 and await rotating.reseal() == 0  # once rotated, nothing left to do
        assert (await PipelineRepository(service.db, Sealer([new])).get("sa")).stages[1].on_enter[0].secret == SECRET
        with pytest.raises(SecretUnreadable, match="LEADS_SECRETS_KEYS"):
            await PipelineRepository(service.db, Sealer([old])).get("sa")  # the old key alone no longer opens it


async def test_a_start_no_key_can_finish_stops_the_process_with_what_to_do(settings_for, run_service, endpoints, isolation, tmp_path):
    async with leads_stack(settings_for, run_service, endpoints, isolation, secrets_keys=[SEALING_KEY]) as (service, producer, events):
        await send_and_wait(producer, events, command(payload(
            "crm.pipeline.create", pipeline_id="sa", name="Actions", stages=_stages([_hook("https://example.com/h")])), actor="alice"))
        assert SECRET not in str(await service.db["pipelines"].find_one({"_id": "sa"}))  # sealed with SEALING_KEY

    # The same database started with another key: the sealed secret cannot be opened, so the start cannot
    # finish. It used to leave a process answering 503 for ever with the reason in no log.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ, **endpoints.auth_env("LEADS_"), "PYTHONPATH": str(ROOT),
        "LEADS_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka, "LEADS_MONGODB_URL": endpoints.mongodb,
        "LEADS_TOPIC_PREFIX": isolation.prefix, "LEADS_DATABASE": isolation.db("leads"),
        "LEADS_GROUP_ID": isolation.group("leads"), "LEADS_HTTP_PORT": str(port),
        "LEADS_SECRETS_KEYS": json.dumps([Fernet.generate_key().decode()]),
    }
    log = tmp_path / "leads.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "services.leads"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        code = await asyncio.to_thread(process.wait, 120)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text(errors="replace")
    assert code == 1, text[-3000:]
    assert "leads: start failed, stopping" in text and "LEADS_SECRETS_KEYS" in text, text[-3000:]
