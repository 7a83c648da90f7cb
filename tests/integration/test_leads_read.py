"""The leads read side on real Kafka and FerretDB: lists, board and search equal a scan of every card.

After creates, moves, assignments, pipeline changes, deletes, restores, merges and redelivered
commands, every list (each filter, with and without deleted leads, paged through its cursor), every
board column and count, and every text search is compared with the same question answered by
reading every lead and filtering and sorting in Python.
"""

from __future__ import annotations

import random
import re

import httpx

from contracts.topics import LEADS_COMMANDS
from services.leads.repository import stored_lead
from tests.integration.leads_helpers import payload
from tests.integration.test_leads import leads_stack, send_and_wait
from tests.support import command, wait_until

BOB = {"Authorization": "Bearer tok-bob"}
NAMES = ["Пётр Иванов", "Иван Петров", "Ivan Smirnov", "Ёлкина Анна", "John O'Brien", "Семён Ёжиков"]
COMPANIES = ["ООО Ромашка", "Acme Ltd", "ИП Ёлкин", None]
SOURCES = ["expo", "website", None]


def _words(text):
    return [w for w in re.split(r"[\W_]+", (text or "").lower().replace("ё", "е")) if w]


def _searchable(card):
    """The words a search may match, gathered independently of the service's code."""
    found = _words(card["title"])
    contact = card.get("contact") or {}
    found += _words(contact.get("name")) + _words(contact.get("email")) + _words(contact.get("phone"))
    digits = re.sub(r"\D", "", contact.get("phone") or "")
    if len(digits) == 11 and digits[0] in "78":
        found += ["7" + digits[1:], digits[1:], "8" + digits[1:]]
    found += _words((card.get("company") or {}).get("name"))
    return found


def _order(card):
    # Newest change first; a change within the same millisecond by lead id (the key's tail).
    return (card["updated_at"][:23], card["lead_id"].encode().hex())


async def _all_cards(service):
    return [stored_lead(d).lead.model_dump(mode="json") async for d in service.db["leads"].find({})]


def _expected(cards, *, q=None, include_deleted=False, **filters):
    out = []
    for card in cards:
        if card["deleted"] and not include_deleted:
            continue
        if any(card.get(k) != v for k, v in filters.items()):
            continue
        if q and not all(any(w.startswith(qw) for w in _searchable(card)) for qw in _words(q)):
            continue
        out.append(card)
    # The service sorts by the time truncated to ms, as MongoDB stores it: compare like that.
    return [c["lead_id"] for c in sorted(out, key=_order, reverse=True)]


async def _paged(http, params, limit):
    ids, cursor = [], None
    while True:
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        reply = await http.get("/leads", params=query, headers=BOB)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert len(body["items"]) <= limit
        ids += [item["lead_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            return ids


async def test_lists_board_and_search_equal_a_scan(settings_for, run_service, endpoints, isolation):
    rnd = random.Random(22)
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await send_and_wait(producer, events, command(payload("crm.pipeline.create", pipeline_id="p2", name="Partners"), actor="alice"))
        sent = []
        for i in range(40):
            name = NAMES[i % len(NAMES)]
            company = COMPANIES[i % len(COMPANIES)]
            cmd = command(payload(
                "crm.lead.create", lead_id=f"R{i:02d}", title=f"Заявка {i} {'выставка' if i % 3 else 'сайт'}",
                pipeline_id="p2" if i % 4 == 0 else None, source=SOURCES[i % len(SOURCES)],
                responsible_id=["bob", "carol"][i % 2] if i % 5 else None,
                contact={"name": name, "phone": f"8 (912) 000-{i:02d}-{i % 7:02d}", "email": f"user{i}@Example.ru"},
                company={"name": company} if company else None,
            ), actor="bob")
            sent.append(cmd)
            await producer.send(LEADS_COMMANDS, cmd)
        await wait_until(lambda: len(events.got.of_type("crm.lead.created")) >= 40, what="40 leads created")

        # Changes of every kind, some of them sent twice (a redelivery: the same message id).
        changes = [command(payload("crm.lead.move", lead_id=f"R{i:02d}", stage_id="processing"), actor="bob") for i in (1, 2, 3, 5, 6)]
        changes += [command(payload("crm.lead.assign", lead_id=f"R{i:02d}", responsible_id="dave"), actor="bob") for i in (7, 9)]
        changes += [command(payload("crm.lead.change-pipeline", lead_id=f"R{i:02d}", pipeline_id="p2"), actor="bob") for i in (10, 11)]
        changes += [command(payload("crm.lead.delete", lead_id=f"R{i:02d}"), actor="bob") for i in (13, 14, 15)]
        changes += [command(payload("crm.lead.update", lead_id="R17", title="Ёлочные игрушки оптом"), actor="bob")]
        changes += [command(payload("crm.lead.merge", lead_id="R18", other_lead_id="R19", fields={}), actor="bob")]
        for cmd in changes:
            await send_and_wait(producer, events, cmd)
        restore = command(payload("crm.lead.restore", lead_id="R14"), actor="bob")
        await send_and_wait(producer, events, restore)
        for cmd in [*rnd.sample(changes, 4), restore, *rnd.sample(sent, 4)]:
            await producer.send(LEADS_COMMANDS, cmd)  # redelivered: must change nothing
        marker = command(payload("crm.lead.update", lead_id="R20", title="последняя"), actor="bob")
        await send_and_wait(producer, events, marker)  # one partition's later message: the redeliveries are done

        cards = await _all_cards(service)
        assert {c["lead_id"] for c in cards if c["deleted"]} == {"R13", "R15", "R19"}
        transport = httpx.ASGITransport(app=service.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            lists = [
                {}, {"include_deleted": "true"}, {"pipeline_id": "default"}, {"pipeline_id": "p2"},
                {"pipeline_id": "default", "stage_id": "processing"}, {"status": "in_progress"},
                {"responsible_id": "carol"}, {"responsible_id": "dave"}, {"source": "expo"},
                {"source": "website", "responsible_id": "bob"}, {"pipeline_id": "p2", "include_deleted": "true"},
                {"stage_id": "new"}, {"q": "иван"}, {"q": "ПЕТР"}, {"q": "елк"}, {"q": "ёлк"}, {"q": "smir"},
                {"q": "example"}, {"q": "8 912 000 05"}, {"q": "9120000"}, {"q": "8912000"}, {"q": "+7 912 000-07-00"}, {"q": "заявка выст"},
                {"q": "ромашка", "pipeline_id": "p2"}, {"q": "o'brien"}, {"q": "нет-такого"},
                {"q": "иван", "include_deleted": "true"},
            ]
            for params in lists:
                filters = {k: v for k, v in params.items() if k not in ("q", "include_deleted")}
                expected = _expected(cards, q=params.get("q"), include_deleted="include_deleted" in params, **filters)
                for limit in (3, 200):
                    assert await _paged(http, params, limit) == expected, (params, limit)
            assert _expected(cards, q="ёлк") and _expected(cards, q="+7 912 000-07-00")  # the searches find something

            for pipeline_id in ("default", "p2"):
                board = (await http.get(f"/pipelines/{pipeline_id}/board", params={"limit": "4"}, headers=BOB)).json()
                for column in board["stages"]:
                    expected = _expected(cards, pipeline_id=pipeline_id, stage_id=column["stage_id"])
                    assert column["count"] == len(expected), column["stage_id"]
                    assert [lead["lead_id"] for lead in column["leads"]] == expected[:4]
                    assert (column["next_cursor"] is not None) == (len(expected) > 4)


async def test_search_input_is_bounded_and_a_slow_read_is_a_503(settings_for, run_service, endpoints, isolation):
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        await send_and_wait(producer, events, command(payload("crm.lead.create", lead_id="Q1", title="Поиск"), actor="bob"))
        transport = httpx.ASGITransport(app=service.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            reply = await http.get("/leads", params={"q": "(" * 6000}, headers=BOB)
            assert reply.status_code == 400 and reply.json()["error"] == "validation"
            assert "q is at most 200 characters" in reply.json()["message"]
            reply = await http.get("/leads", params={"q": "((( )))"}, headers=BOB)
            assert reply.status_code == 400 and "no letters or digits" in reply.json()["message"]
            reply = await http.get("/leads", params={"q": "a b c d e f g h i"}, headers=BOB)
            assert reply.status_code == 400 and "at most 8 words" in reply.json()["message"]
            reply = await http.get("/leads", params={"cursor": "garbage"}, headers=BOB)
            assert reply.status_code == 400 and "cursor" in reply.json()["message"]
            assert [i["lead_id"] for i in (await http.get("/leads", params={"q": "пои"}, headers=BOB)).json()["items"]] == ["Q1"]

        # A time limit no query can meet: every read is stopped and answered 503 with a message.
        service.settings.read_time_limit_s = 1e-6
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.asgi()), base_url="http://leads") as http:
            for path in ("/leads", "/leads/Q1", "/pipelines/default/board"):
                reply = await http.get(path, headers=BOB)
                assert reply.status_code == 503, (path, reply.text)
                assert reply.json()["error"] == "timeout" and "longer than" in reply.json()["message"]


async def test_a_fresh_instance_matches_duplicates_and_fans_out_changes_from_the_database(settings_for, run_service, endpoints, isolation):
    """No lead is held in memory: an instance started after the leads were stored still finds them."""
    from contracts.topics import DIRECTORY_EVENTS
    from services.leads.app import create_app
    from services.leads.repository import LeadRepository
    from services.leads.settings import LeadsSettings
    from tests.integration.leads_helpers import directory_event
    from tests.integration.test_leads import TOKENS

    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        products = [{"product_id": "P1", "name": "Насос"}, {"product_id": "prod.2 x", "name": "Кран"}]
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="A1", title="Первая", products=products,
            contact={"contact_id": "K1", "name": "Анна Ёлкина", "email": "Anna@Example.ru", "phone": "+7 912 111-22-33"},
            company={"company_id": "C1", "name": "ООО Ёлка"},
        ), actor="bob"))
        await service.stop()
        # A second instance of the same service (same database and group), started afterwards.
        fresh = await run_service(create_app(settings_for(LeadsSettings, "leads", tokens=TOKENS)))
        await send_and_wait(producer, events, command(payload(
            "crm.lead.create", lead_id="A2", title="Вторая", contact={"name": "Елкина Анна", "email": "anna@example.ru "},
        ), actor="bob"))
        repo = LeadRepository(fresh.db)
        second = await repo.get("A2")
        assert [(m.lead_id, sorted(m.matched_on)) for m in second.duplicates] == [("A1", ["email", "name"])]

        for event in (
            directory_event("crm.contact.upserted", contact_id="K1", name="Анна Сосновая", version=2),
            directory_event("crm.company.upserted", company_id="C1", name="ООО Сосна", version=2),
            directory_event("crm.product.upserted", product_id="P1", name="Насос 2", kind="simple", version=2),
            directory_event("crm.product.upserted", product_id="prod.2 x", name="Кран 2", kind="simple", version=2),
        ):
            await producer.send(DIRECTORY_EVENTS, event, key=event.data.model_dump().get("contact_id") or "x")

        async def refreshed():
            lead = await repo.get("A1")
            names = (lead.contact.name, lead.company.name, sorted(p.name for p in lead.products))
            return names == ("Анна Сосновая", "ООО Сосна", ["Кран 2", "Насос 2"])

        await wait_until(refreshed, what="contact, company and both products refreshed on the linked lead")
        transport = httpx.ASGITransport(app=fresh.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            found = (await http.get("/leads", params={"q": "сосн"}, headers=BOB)).json()["items"]
            assert [item["lead_id"] for item in found] == ["A1"]  # the search follows the refreshed names


async def test_leads_stored_before_the_read_fields_get_them_at_start(settings_for, run_service, endpoints, isolation):
    """A database written by the earlier version: its leads are listed, counted and found after a start."""
    from datetime import UTC, datetime

    from services.leads import domain as d
    from services.leads.repository import LeadWrite, lead_document
    from crmkit.mongo import make_client

    now = datetime.now(UTC)
    pipeline = d.default_pipeline(now)
    actor = d.Actor(user_id="bob", licensed=True)
    old_docs = []
    for i in range(30):
        lead = d.create_lead(actor, f"OLD{i:02d}", {"title": f"Старая заявка {i}", "contact": {"name": f"Фёдор {i}"}}, pipeline, now).lead
        doc = lead_document(LeadWrite(lead, [], None))
        old_docs.append({k: v for k, v in doc.items() if not k.startswith("ix") and k != "product_ids"})
    client = make_client(endpoints.mongodb)
    try:
        await client[isolation.db("leads")]["leads"].insert_many(old_docs)
    finally:
        await client.close()
    async with leads_stack(settings_for, run_service, endpoints, isolation) as (service, producer, events):
        transport = httpx.ASGITransport(app=service.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://leads") as http:
            async def listed():
                # 403 until bob's licence has arrived, then the list as far as the migration got.
                reply = await http.get("/leads", params={"limit": "200"}, headers=BOB)
                return reply.status_code == 200 and len(reply.json()["items"]) == 30
            await wait_until(listed, what="the 30 stored leads listed after the migration")
            found = (await http.get("/leads", params={"q": "федор"}, headers=BOB)).json()["items"]
            assert len(found) == 30
            board = (await http.get("/pipelines/default/board", headers=BOB)).json()
            assert next(s for s in board["stages"] if s["stage_id"] == "new")["count"] == 30
        meta = await service.db["leads_meta"].find_one({"_id": "read_fields"})
        assert meta["version"] >= 1
