"""Web-to-lead capture on real Kafka and FerretDB: forms by command, submissions over HTTP becoming one lead each."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from services.leads.app import Overrides
from services.leads.capture import keys
from services.leads.capture.repository import CaptureFormRepository
from services.leads.repository import LeadRepository, stored_lead
from tests.integration.leads_helpers import payload
from tests.integration.test_leads import expect_rejected, leads_stack, send_and_wait
from tests.support import command, wait_until

SHOP = "https://shop.example"
KEY = "k3y-for-the-shop-server"
FORM = dict(
    form_id="web1", name="Contact us", pipeline_id="default", stage_id="processing",
    presets={"source": "website", "need_maturity": "interested", "utm_source": "site", "utm_campaign": "spring"},
    allowed_fields=["title", "contact.name", "contact.email", "contact.phone", "description"],
    allowed_origins=[SHOP], secret_key=KEY, rate_limit_per_minute=50,
)


def _created(events, lead_id):
    return [m for m in events.got.of_type("crm.lead.created") if m.subject == lead_id]


async def _leads_where(service, match):
    """How many stored leads ``match`` (cards are stored compressed: read them all, the test has few)."""
    return sum([1 async for doc in service.db["leads"].find({}) if match(stored_lead(doc).lead)])


async def test_capture_forms_and_submissions(settings_for, run_service, endpoints, isolation):
    # One fixed time: the per-minute rate window cannot roll over in the middle of the test.
    now = datetime.now(UTC)
    async with leads_stack(settings_for, run_service, endpoints, isolation, app_overrides=Overrides(clock=lambda: now),
                           capture_max_body_bytes=1024) as (service, producer, events):
        repo = LeadRepository(service.db)
        # Forms are administered by administrators only, and need a key or allowed origins.
        await expect_rejected(producer, events, command(payload("crm.capture-form.create", **FORM), actor="bob"), "forbidden")
        bad = await expect_rejected(producer, events, command(payload("crm.capture-form.create", form_id="open", name="Open")), "validation")
        assert "secret_key" in [e.field for e in bad.data.errors]
        created = await send_and_wait(producer, events, command(payload("crm.capture-form.create", **FORM)))
        assert created[0].type == "crm.capture-form.created" and created[0].data.has_secret_key
        assert KEY not in created[0].to_json_bytes().decode()  # the key is never published
        stored = await service.db["capture_forms"].find_one({"_id": "web1"})
        assert KEY not in repr(stored) and "secret_key" not in stored  # nor stored: only its salted hash
        assert keys.matches(KEY, stored["secret_key_hash"]) and not keys.matches(KEY + "!", stored["secret_key_hash"])
        await send_and_wait(producer, events, command(payload(
            "crm.capture-form.create", form_id="html", name="Call me back", allowed_origins=[SHOP],
            allowed_fields=["contact.name", "contact.phone"], redirect_url="https://shop.example/thanks", rate_limit_per_minute=2,
        )))

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # JSON from the shop's page, UTM medium from the query string, the rest of UTM from the form.
            body = {"contact": {"name": "Anna Smirnova", "email": "Anna@Example.COM"}, "description": "Need 3 routers",
                    "submission_id": "s-1"}
            reply = await http.post("/capture/web1?utm_medium=cpc", json=body, headers={"Origin": SHOP})
            assert reply.status_code == 202, reply.text
            assert reply.headers["access-control-allow-origin"] == SHOP
            lead_id = reply.json()["lead_id"]
            await wait_until(lambda: _created(events, lead_id), what="the captured lead")
            lead = await repo.get(lead_id)
            assert (lead.pipeline_id, lead.stage_id, lead.source, lead.need_maturity) == ("default", "processing", "website", "interested")
            assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == ("site", "cpc", "spring")
            assert (lead.contact.name, lead.contact.email, lead.description) == ("Anna Smirnova", "anna@example.com", "Need 3 routers")
            assert (lead.title, lead.responsible_id, lead.created_by) == ("Contact us: Anna Smirnova", "alice", "capture-form:web1")

            # The same submission retried: the same id, its create deduped (its event published again), one lead.
            again = await http.post("/capture/web1?utm_medium=cpc", json=body, headers={"Origin": SHOP})
            assert again.status_code == 202 and again.json()["lead_id"] == lead_id
            await wait_until(lambda: len(_created(events, lead_id)) >= 2, what="the retried create answered")
            assert await _leads_where(service, lambda lead: lead.contact and lead.contact.name == "Anna Smirnova") == 1
            assert (await repo.get(lead_id)).version == 1

            # A server posting urlencoded with the key (no Origin); no submission id: the same body within the window is one lead.
            form_body = "title=Callback%20please&contact.phone=%2B7%20916%20123-45-67&utm_source=newsletter"
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Capture-Key": KEY}
            first = await http.post("/capture/web1", content=form_body, headers=headers)
            second = await http.post("/capture/web1", content=form_body, headers=headers)
            assert first.status_code == second.status_code == 202, first.text
            assert first.json()["lead_id"] == second.json()["lead_id"]
            phone_lead = first.json()["lead_id"]
            await wait_until(lambda: len(_created(events, phone_lead)) >= 2, what="the urlencoded lead and its retry")
            lead = await repo.get(phone_lead)
            assert (lead.title, lead.utm_source, lead.utm_campaign, lead.source) == ("Callback please", "newsletter", "spring", "website")
            assert await _leads_where(service, lambda lead: lead.title == "Callback please") == 1
            # The same fields from another address are a submission of its own: its answer cannot tell a
            # guesser that the first client sent them (the duplicate check links the two leads instead).
            elsewhere = httpx.ASGITransport(app=service.asgi(), client=("198.51.100.7", 40000))
            async with httpx.AsyncClient(transport=elsewhere, base_url="http://leads") as guesser:
                guessed = await guesser.post("/capture/web1", content=form_body, headers=headers)
            assert guessed.status_code == 202 and guessed.json()["lead_id"] != phone_lead, guessed.text
            await wait_until(lambda: _created(events, guessed.json()["lead_id"]), what="the other address's lead")

            # An HTML form from the shop's page is sent on to the thank-you page.
            html = await http.post("/capture/html", content="contact.name=Oleg&contact.phone=89161112233",
                                   headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": f"{SHOP}/contacts"})
            assert html.status_code == 303 and html.headers["location"] == "https://shop.example/thanks"

            # The honeypot filled: answered as a person is, no lead. A later real submission shows the service moved on.
            trap = await http.post("/capture/web1", json={"contact": {"name": "Bot"}, "_hp": "http://spam"}, headers={"Origin": SHOP})
            assert trap.status_code == 202 and trap.json()["lead_id"]
            after = await http.post("/capture/web1", json={"contact": {"name": "Real"}, "submission_id": "s-2"}, headers={"Origin": SHOP})
            await wait_until(lambda: _created(events, after.json()["lead_id"]), what="the submission after the trap")
            assert await repo.get(trap.json()["lead_id"]) is None
            assert await _leads_where(service, lambda lead: lead.contact and lead.contact.name == "Bot") == 0

            # Refusals: a field the form does not take, a malformed one, a foreign origin, a wrong key, a large body, no form.
            refused = await http.post("/capture/web1", json={"salary": "100"}, headers={"Origin": SHOP})
            assert refused.status_code == 400 and refused.json()["message"].startswith("salary:"), refused.text
            refused = await http.post("/capture/web1", json={"contact": {"email": "not-an-email"}}, headers={"Origin": SHOP})
            assert refused.status_code == 400 and refused.json()["message"].startswith("contact.email:")
            refused = await http.post("/capture/web1", json={"need_maturity": "hot"}, headers={"Origin": SHOP})
            assert refused.status_code == 400 and "need_maturity" in refused.json()["message"]  # not an allowed field
            refused = await http.post("/capture/web1", json={"contact": {"name": "X"}}, headers={"Origin": "https://evil.example"})
            assert refused.status_code == 403 and refused.json()["message"].startswith("Origin")
            refused = await http.post("/capture/web1", json={"contact": {"name": "X"}}, headers={"X-Capture-Key": "wrong"})
            assert refused.status_code == 403
            refused = await http.post("/capture/web1", json={"description": "x" * 2000}, headers={"Origin": SHOP})
            assert refused.status_code == 413 and refused.json()["error"] == "too_large"
            refused = await http.post("/capture/web1", content=b"<xml/>", headers={"Origin": SHOP, "Content-Type": "text/xml"})
            assert refused.status_code == 415
            assert (await http.post("/capture/nope", json={}, headers={"Origin": SHOP})).status_code == 404

            # The rate limit per client address: the form `html` takes 2 a minute, and one was made above.
            ok = await http.post("/capture/html", content="contact.name=Ivan", headers={
                "Content-Type": "application/x-www-form-urlencoded", "Origin": SHOP})
            assert ok.status_code == 303
            limited = await http.post("/capture/html", content="contact.name=Ivan", headers={
                "Content-Type": "application/x-www-form-urlencoded", "Origin": SHOP})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1, limited.text

            # A form acts only to create leads.
            await expect_rejected(producer, events, command(payload("crm.lead.move", lead_id=lead_id, stage_id="new"),
                                                            actor="capture-form:web1"), "forbidden")

            # A deleted form answers 404, and a submission queued before its deletion is refused: the form is no actor any more.
            await send_and_wait(producer, events, command(payload("crm.capture-form.delete", form_id="html")))
            gone = await http.post("/capture/html", content="contact.name=Late", headers={
                "Content-Type": "application/x-www-form-urlencoded", "Origin": SHOP})
            assert gone.status_code == 404
            late = command(payload("crm.lead.create", lead_id="late-1", title="Late"), actor="capture-form:html")
            await expect_rejected(producer, events, late, "not_licensed")

            # The preflight of a browser's JSON post from the shop.
            pre = await http.options("/capture/web1", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
            assert pre.status_code == 204 and "X-Capture-Key" in pre.headers["access-control-allow-headers"]
        # Updating a form: a preset changes, the key is cleared (the origins remain).
        updated = await send_and_wait(producer, events, command(payload(
            "crm.capture-form.update", form_id="web1", presets={"source": "landing"}, clear=["secret_key"])))
        assert updated[0].type == "crm.capture-form.updated"
        assert (updated[0].data.presets.source, updated[0].data.has_secret_key, updated[0].data.version) == ("landing", False, 2)
        assert json.loads(updated[0].to_json_bytes())["data"]["allowed_origins"] == [SHOP]


def _form_as_stored_before_hashing(form_id: str, key: str) -> dict:
    """A form's document as the service stored it while keys were kept as given."""
    return {"_id": form_id, "form_id": form_id, "name": "Old form", "pipeline_id": "default", "stage_id": None, "presets": {},
            "allowed_fields": ["contact.name"], "allowed_origins": [], "secret_key": key, "rate_limit_per_minute": 10,
            "honeypot_field": "_hp", "redirect_url": None, "created_by": "alice", "version": 1, "deleted": False,
            "updated_at": datetime.now(UTC), "_recent": []}


async def test_forms_stored_with_a_plain_key_keep_working_with_only_its_hash(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        forms = service.db["capture_forms"]
        await forms.insert_many([_form_as_stored_before_hashing("old1", KEY), _form_as_stored_before_hashing("old2", KEY + "-2")])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            # Read before the start-up pass reached it: sealed as it is read, and the key still admits.
            reply = await http.post("/capture/old1", json={"contact": {"name": "Nina"}}, headers={"X-Capture-Key": KEY})
            assert reply.status_code == 202, reply.text
            stored = await forms.find_one({"_id": "old1"})
            assert "secret_key" not in stored and KEY not in repr(stored) and keys.matches(KEY, stored["secret_key_hash"])
            assert (await http.post("/capture/old1", json={"contact": {"name": "X"}}, headers={"X-Capture-Key": KEY + "-2"})).status_code == 403
            await wait_until(lambda: _created(events, reply.json()["lead_id"]), what="the lead of the old form")

            # The start-up pass seals the rest.
            assert await CaptureFormRepository(service.db).seal_plain_keys() == 1
            stored = await forms.find_one({"_id": "old2"})
            assert "secret_key" not in stored and keys.matches(KEY + "-2", stored["secret_key_hash"])
            assert await CaptureFormRepository(service.db).seal_plain_keys() == 0
            reply = await http.post("/capture/old2", json={"contact": {"name": "Pavel"}}, headers={"X-Capture-Key": KEY + "-2"})
            assert reply.status_code == 202, reply.text
