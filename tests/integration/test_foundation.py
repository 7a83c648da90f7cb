"""The ground floor on real Kafka and FerretDB: every contract type is consumed, garbage goes to the DLQ."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka.partitioner import DefaultPartitioner
from pymongo import ReplaceOne
from pymongo.errors import DuplicateKeyError

from contracts import build_message, parse_message, payload_class
from contracts.examples import EXAMPLES
from contracts.registry import TOPIC_TYPES
from contracts.topics import DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC, LEADS_COMMANDS, LEADS_EVENTS, dlq_topic
from crmkit.messaging import Bus, Inbound, Outbound
from crmkit.topics import ensure_topics
from crmkit.metrics import Metrics
from crmkit.mongo import is_ferretdb, make_client
from crmkit.partitioning import partition_for
from crmkit.service import Service
from crmkit.settings import ServiceSettings
from services.activity.app import CONSUMES as ACTIVITY_CONSUMES
from services.importer.app import CONSUMES as IMPORTER_CONSUMES
from services.leads.app import CONSUMES as LEADS_CONSUMES
from services.qualification.app import CONSUMES as QUALIFICATION_CONSUMES
from tests.support import Collector, Producer, headers_of, wait_until

OWNERS = {
    "leads": LEADS_CONSUMES,
    "qualification": QUALIFICATION_CONSUMES,
    "importer": IMPORTER_CONSUMES,
    "activity": ACTIVITY_CONSUMES,
}


def _recording_service(settings: ServiceSettings, name: str, topics) -> tuple[Service, list[Inbound]]:
    seen: list[Inbound] = []
    service = Service(settings, name=name, description="recorder", publishes=())

    async def record(batch: list[Inbound]):
        seen.extend(batch)
        return []

    service.consume(topics, record, title=name)
    return service, seen


@pytest.mark.parametrize("owner", sorted(OWNERS))
async def test_every_contract_type_reaches_its_consumer(owner, settings_for, run_service, endpoints, isolation):
    topics = OWNERS[owner]
    settings = settings_for(ServiceSettings, owner)
    service, seen = _recording_service(settings, owner, topics)
    await run_service(service)
    expected = []
    async with Producer(endpoints.kafka, isolation.prefix) as producer:
        for topic in topics:
            for type_name in TOPIC_TYPES[topic]:
                message = build_message(payload_class(type_name).model_validate(EXAMPLES[type_name]["data"]), source="test/foundation")
                await producer.send(topic, message)
                expected.append((topic, type_name, message.id))
    await wait_until(lambda: len(seen) >= len(expected), timeout=60, what=f"{len(expected)} records at {owner}")
    got = {(i.topic, i.message.type, i.message.id) for i in seen}
    assert got == set(expected)
    for inbound in seen:  # parsed into the typed model of its type, not a dict
        assert type(inbound.message.data).TYPE == inbound.message.type


async def test_garbage_goes_to_the_dlq_and_the_next_record_is_handled(settings_for, run_service, endpoints, isolation):
    settings = settings_for(ServiceSettings, "dlq")
    service, seen = _recording_service(settings, "dlq", [LEADS_COMMANDS])
    await run_service(service)
    good = build_message(payload_class("crm.lead.create").model_validate({"title": "Valid after garbage"}), source="test")
    wrong_type = json.loads(good.to_json_bytes())
    wrong_type.update(type="crm.task.create", id="wrong-type")
    missing = json.loads(good.to_json_bytes())
    missing.update(id="missing-title")
    missing["data"].pop("title")
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, dlq_topic(LEADS_COMMANDS)
    ) as dlq:
        await producer.send_raw(LEADS_COMMANDS, b"\x00not json at all", key=b"k1")
        await producer.send_raw(LEADS_COMMANDS, json.dumps(wrong_type).encode(), key=b"k1")
        await producer.send_raw(LEADS_COMMANDS, json.dumps(missing).encode(), key=b"k1")
        await producer.send(LEADS_COMMANDS, good, key="k1")
        await wait_until(lambda: any(i.message.id == good.id for i in seen), timeout=60, what="the valid record")
        await wait_until(lambda: len(dlq.got.records) >= 3, timeout=30, what="three DLQ records")
        reasons = [headers_of(r)[DLQ_REASON] for r in dlq.got.records]
        assert "not valid JSON" in reasons[0]
        assert "not allowed on topic" in reasons[1] and "crm.task.create" in reasons[1]
        assert "data.title" in reasons[2] and "required" in reasons[2].lower()
        for record in dlq.got.records:
            headers = headers_of(record)
            assert headers[DLQ_TOPIC] == isolation.prefix + LEADS_COMMANDS
            assert int(headers[DLQ_OFFSET]) >= 0
        assert dlq.got.records[0].value == b"\x00not json at all"
    assert [i.message.id for i in seen] == [good.id]


async def test_pymongo_async_client_on_the_server(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    try:
        collection = client[isolation.db("foundation")]["people"]
        await collection.create_index("email", unique=True)
        await collection.insert_one({"_id": "p1", "email": "ann@example.com", "name": "Анна"})
        assert (await collection.find_one({"_id": "p1"}))["name"] == "Анна"
        with pytest.raises(DuplicateKeyError) as caught:
            await collection.insert_one({"_id": "p2", "email": "ann@example.com"})
        assert caught.value.code == 11000
        assert "duplicate key" in str(caught.value).lower()
    finally:
        await client.drop_database(isolation.db("foundation"))
        await client.close()


async def test_server_takes_large_bulk_updates_and_many_concurrent_updates(endpoints, isolation):
    """Unpatched FerretDB 1.24 stops answering for good on either (see crmctl/ferretdb_patches.py)."""
    writers = [make_client(endpoints.mongodb) for _ in range(3)]
    collection = writers[0][isolation.db("foundation")]["bulk"]
    try:
        await collection.insert_many([{"_id": f"d{i}", "v": 0} for i in range(300)])
        result = await collection.bulk_write([ReplaceOne({"_id": f"d{i}"}, {"v": 1}) for i in range(300)], ordered=False)
        assert result.modified_count == 300
        updates = await asyncio.gather(*(
            writers[i % 3][isolation.db("foundation")]["bulk"].update_one({"_id": f"d{i}"}, {"$inc": {"v": 1}})
            for i in range(300)
        ))
        assert sum(u.modified_count for u in updates) == 300
        assert await collection.count_documents({"v": 2}) == 300
    finally:
        await writers[0].drop_database(isolation.db("foundation"))
        for client in writers:
            await client.close()


async def test_the_local_stack_is_recognised_as_ferretdb(endpoints, isolation):
    """The leads service picks its FerretDB write path from this; a miss made every replace scan."""
    client = make_client(endpoints.mongodb)
    try:
        info = await client.admin.command("buildInfo")
        expected = endpoints.origin == "local stack" or any(k.lower().startswith("ferretdb") for k in info)
        assert await is_ferretdb(client[isolation.db("foundation")]) is expected
    finally:
        await client.close()


EQUALITY_FILTERS = [
    {"lead_id": "L1"},  # the array that holds L1 matches too
    {"lead_id": "L1", "status": "open"},
    {"lead_id": {"$in": ["L1", "L2"]}, "status": "open"},
    {"_id": "t5", "version": 1},
    {"_id": {"$in": ["t1", "t2", "arr", "missing"]}},
    {"lead_id": "L1", "_recent.id": "m1"},  # a dotted key is left to the handler
    {"lead_id": 5},  # a number is not pushed down; still answered
    {"status": "open", "$or": [{"lead_id": "L3"}, {"lead_id": "L4"}]},
]


@pytest.mark.parametrize("query", EQUALITY_FILTERS, ids=[json.dumps(f) for f in EQUALITY_FILTERS])
async def test_equality_filters_find_what_mongodb_semantics_say(endpoints, isolation, query):
    """The patched FerretDB pushes equality filters down to its indexes; they must keep MongoDB's answers.

    The expected ids come from evaluating the filter in Python over the same documents.
    """
    docs = [
        {"_id": f"t{i}", "lead_id": f"L{i % 7}", "status": "open" if i % 3 else "done", "version": i % 2,
         "_recent": [{"id": f"m{i % 5}"}]}
        for i in range(60)
    ]
    docs += [{"_id": "arr", "lead_id": ["L1", "L2"], "status": "open", "_recent": [{"id": "m1"}]},
             {"_id": "num", "lead_id": 5, "status": "open"}, {"_id": "bare", "status": "open"}]

    def equal(value, wanted):
        if isinstance(wanted, dict) and "$in" in wanted:
            return any(equal(value, w) for w in wanted["$in"])
        return value == wanted or (isinstance(value, list) and wanted in value)

    def matches(doc, flt):
        for key, wanted in flt.items():
            if key == "$or":
                if not any(matches(doc, alt) for alt in wanted):
                    return False
            elif key == "_recent.id":
                if wanted not in [r["id"] for r in doc.get("_recent", [])]:
                    return False
            elif key not in doc or not equal(doc[key], wanted):
                return False
        return True

    client = make_client(endpoints.mongodb)
    collection = client[isolation.db("foundation")]["pushdown"]
    try:
        await collection.create_index([("lead_id", 1), ("status", 1)])
        await collection.insert_many(docs)
        found = sorted([d["_id"] async for d in collection.find(query)])
        assert found == sorted(d["_id"] for d in docs if matches(d, query))
        assert found  # every filter above matches something
    finally:
        await client.drop_database(isolation.db("foundation"))
        await client.close()


async def test_the_local_ferretdb_serves_equality_filters_from_indexes(endpoints, isolation):
    """Without the pushdown patch every filter but a lone `_id` scanned the whole collection."""
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("foundation")]
    try:
        if not await is_ferretdb(db):
            pytest.skip("the query plan checked here is FerretDB's")
        await db["plan"].create_index([("lead_id", 1), ("status", 1)])
        await db["plan"].insert_many([{"_id": f"t{i}", "lead_id": f"L{i % 7}", "status": "open"} for i in range(20)])
        plans = {}
        for name, query in (("lead", {"lead_id": "L1", "status": "open"}), ("id", {"_id": "t1", "version": 3}),
                            ("ids", {"_id": {"$in": ["t1", "t2"]}}), ("number", {"lead_id": 5})):
            explained = await db.command("explain", {"find": "plan", "filter": query})
            plans[name] = (explained["filterPushdown"], " ".join(explained["queryPlanner"]["Plan"]))
        assert plans["lead"][0] and "USING INDEX" in plans["lead"][1] and "SCAN" not in plans["lead"][1]
        assert plans["id"][0] and "USING INDEX" in plans["id"][1]
        assert plans["ids"][0] and "USING INDEX" in plans["ids"][1]
        assert plans["number"] == (False, plans["number"][1]) and "SCAN" in plans["number"][1]
    finally:
        await client.drop_database(isolation.db("foundation"))
        await client.close()


async def test_the_bus_publishes_batches_in_order_to_the_partition_kafka_picks_for_each_key(settings_for, endpoints, isolation):
    """Bus.publish packs its own record batches: every message arrives once, a key's messages in order
    in the partition Kafka's default partitioner gives that key, including past a full batch."""
    settings = settings_for(ServiceSettings, "bus")
    await ensure_topics(settings, [settings.topic(LEADS_COMMANDS)], settings.topic_partitions)
    bus = Bus(settings, Metrics("bus-test"), "bus-test")
    await bus.start()
    make = payload_class("crm.lead.create")
    padding = "x" * 1000  # 1,500 of these on one key fill the producer's 512 KB batch three times
    same = [build_message(make.model_validate({"title": f"same {i} {padding}"}), source="test", subject="one-lead")
            for i in range(1500)]
    spread = [build_message(make.model_validate({"title": f"spread {i}"}), source="test", subject=f"lead-{i}")
              for i in range(500)]
    interleaved = [m for pair in zip(same[:500], spread) for m in pair] + same[500:]
    try:
        await bus.publish([Outbound(LEADS_COMMANDS, m) for m in interleaved])
    finally:
        await bus.stop()
    async with Collector(endpoints.kafka, isolation.prefix, LEADS_COMMANDS) as got:
        await wait_until(lambda: len(got.got.records) >= 2000, timeout=60, what="2,000 records")
        await asyncio.sleep(0.5)  # nothing more may come
        records = list(got.got.records)
    assert len(records) == 2000
    partitions = sorted(range(settings.topic_partitions))
    for record in records:
        assert record.partition == partition_for(record.key, partitions)
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    ids = [parse_message(LEADS_COMMANDS, r.value).id for r in records if r.key == b"one-lead"]
    assert ids == [m.id for m in same]
    assert sorted(r.key for r in records if r.key != b"one-lead") == sorted(m.subject.encode() for m in spread)


async def test_an_event_too_large_to_publish_parks_its_cause_in_the_dlq_and_the_rest_goes_on(settings_for, run_service, endpoints, isolation):
    """A record too large for Kafka is bad data, not an outage: retrying it would hold the partition forever."""
    settings = settings_for(ServiceSettings, "huge")
    service = Service(settings, name="huge", description="answers each command with an event", publishes=(LEADS_EVENTS,))
    handled: list[str] = []

    async def answer(batch: list[Inbound]):
        out = []
        for inbound in batch:
            handled.append(inbound.message.id)
            size = 3_000_000 if inbound.message.data.title == "huge" else 10
            event = build_message(payload_class("crm.command.rejected").model_validate(
                {"command_id": inbound.message.id, "command_type": inbound.message.type, "reason_code": "validation",
                 "message": "x" * size}), source="test", subject=inbound.message.id)
            out.append(Outbound(LEADS_EVENTS, event))
        return out

    service.consume([LEADS_COMMANDS], answer, title="huge")
    await run_service(service)
    make = payload_class("crm.lead.create")
    messages = [build_message(make.model_validate({"title": title}), source="test", subject="k") for title in ("before", "huge", "after")]
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, dlq_topic(LEADS_COMMANDS), LEADS_EVENTS
    ) as got:
        for message in messages:
            await producer.send(LEADS_COMMANDS, message, key="k")
        await wait_until(lambda: len(got.got.of_type("crm.command.rejected")) >= 2 and got.got.records, timeout=60,
                         what="the two small events and a DLQ record")
        await asyncio.sleep(1)
        dlq = [r for r in got.got.records if r.topic.endswith(".dlq")]
        assert len(dlq) == 1 and parse_message(LEADS_COMMANDS, dlq[0].value).id == messages[1].id
        assert "MessageSizeTooLarge" in headers_of(dlq[0])[DLQ_REASON]
        assert {m.subject for m in got.got.of_type("crm.command.rejected")} == {messages[0].id, messages[2].id}
        assert messages[1].id in handled  # it was handled: its event, not the record itself, was too large


async def test_a_bus_set_to_compress_publishes_records_every_consumer_reads(settings_for, endpoints, isolation):
    """KAFKA_COMPRESSION_TYPE=zstd: the producer compresses its batches; a plain consumer reads the same messages."""
    settings = settings_for(ServiceSettings, "bus").model_copy(update={"kafka_compression_type": "zstd"})
    await ensure_topics(settings, [settings.topic(LEADS_COMMANDS)], settings.topic_partitions)
    bus = Bus(settings, Metrics("bus-test"), "bus-test")
    await bus.start()
    assert bus._producer is not None and bus._producer._compression_type == "zstd"
    make = payload_class("crm.lead.create")
    sent = [build_message(make.model_validate({"title": f"compressed {i}"}), source="test", subject=f"lead-{i % 7}")
            for i in range(300)]
    try:
        await bus.publish([Outbound(LEADS_COMMANDS, m) for m in sent])
    finally:
        await bus.stop()
    async with Collector(endpoints.kafka, isolation.prefix, LEADS_COMMANDS) as got:
        await wait_until(lambda: len(got.got.records) >= len(sent), timeout=60, what="300 records")
        records = list(got.got.records)
    read = {m.id: m for m in (parse_message(LEADS_COMMANDS, r.value) for r in records)}
    assert sorted(read) == sorted(m.id for m in sent)
    assert {read[m.id].data.title for m in sent} == {m.data.title for m in sent}
