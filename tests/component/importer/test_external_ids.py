"""The importer's knowledge of external ids on the real database: a segment per batch and bucket, found per chunk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from contracts import build_message
from contracts.leads import LeadCreated, LeadUpdated
from contracts.topics import LEADS_EVENTS
from services.importer import domain as d
from services.importer.external_ids import COMPACT_AFTER, ExternalIdProjection
from services.importer.views import parse_record
from tests.component.importer.test_jobs import wired_importer

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def card_event(external_id: str, *, title: str, version: int = 1, lead_id: str | None = None, import_id: str | None = "imp-1",
               changed: list[str] | None = None, as_view: bool = False):
    lead_id = lead_id or f"L-{external_id}"
    card = {"lead_id": lead_id, "pipeline_id": "default", "stage_id": "new", "status": "new", "version": version, "title": title,
            "external_id": external_id, "contact": {"name": "Иван", "email": "ivan@example.ru"}, "import_id": import_id,
            "created_at": NOW, "updated_at": NOW, "data_changed_at": NOW, "status_since": NOW, "changed_fields": changed or []}
    payload = (LeadCreated if version == 1 else LeadUpdated).model_validate(card)
    message = build_message(payload, source="crm/leads", subject=lead_id)
    return parse_record(LEADS_EVENTS, message.to_json_bytes()) if as_view else message


async def test_a_batch_of_numbered_ids_is_one_segment_a_bucket_and_found_per_chunk(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        events = [card_event(f"crm-{i}", title=f"Лид {i}", as_view=i % 2 == 0) for i in range(500, 1500)]
        await importer.feed(LEADS_EVENTS, events)
        db = importer.service.db
        assert await db["lead_index_segments"].count_documents({}) == 2  # crm-500..999 and crm-1000..1499
        assert await db["lead_index"].count_documents({}) == 0
        known = await ExternalIdProjection(db).by_external_ids([f"crm-{i}" for i in range(400, 1600)])
        assert sorted(known) == sorted(f"crm-{i}" for i in range(500, 1500))
        assert known["crm-777"] == d.KnownLead("L-crm-777", known["crm-777"].fields, "imp-1")
        assert known["crm-777"].fields["title"] == "Лид 777" and known["crm-777"].fields["contact"]["email"] == "ivan@example.ru"
        assert known["crm-778"].fields == {**known["crm-777"].fields, "title": "Лид 778"}  # a view gives what a whole card does


async def test_later_cards_win_and_only_changes_of_row_fields_are_written(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        db = importer.service.db
        ticks = iter(range(1, 1000))
        importer.handlers.clock = lambda: NOW + timedelta(seconds=next(ticks))  # each batch written a second after the last
        await importer.feed(LEADS_EVENTS, [card_event("crm-1", title="Первый"), card_event("uuid-like-ab", title="Без номера")])
        await importer.feed(LEADS_EVENTS, [card_event("crm-1", title="Второй", version=2, import_id=None, changed=["title"])])
        segments = await db["lead_index_segments"].count_documents({})
        # An activity summary or a stage move changes no field a row sets: nothing is written.
        await importer.feed(LEADS_EVENTS, [card_event("crm-1", title="Второй", version=3, changed=["activity"], as_view=True),
                                           card_event("uuid-like-ab", title="Без номера", version=2, changed=["stage_id"])])
        assert await db["lead_index_segments"].count_documents({}) == segments
        # A replayed older card of the same lead does not undo the newer one.
        await importer.feed(LEADS_EVENTS, [card_event("crm-1", title="Первый")])
        known = await ExternalIdProjection(db).by_external_ids(["crm-1", "uuid-like-ab"])
        assert known["crm-1"].fields["title"] == "Второй" and known["crm-1"].created_by_import == "imp-1"
        assert known["uuid-like-ab"].fields["title"] == "Без номера"
        assert await db["lead_index"].count_documents({}) == 1  # the id without a number: a document of its own
        # Another lead taking the same external id later is the one a re-import updates.
        await importer.feed(LEADS_EVENTS, [card_event("crm-1", title="Другой лид", lead_id="L-other", import_id=None)])
        assert (await ExternalIdProjection(db).by_external_ids(["crm-1"]))["crm-1"].lead_id == "L-other"


async def test_a_bucket_of_many_segments_is_written_back_as_one_with_the_same_answers(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        db = importer.service.db
        for version in range(1, COMPACT_AFTER + 3):
            await importer.feed(LEADS_EVENTS, [card_event(f"crm-{i}", title=f"v{version}", version=version, changed=["title"])
                                               for i in range(version, version + 5)])
        projection = ExternalIdProjection(db)
        ids = [f"crm-{i}" for i in range(1, COMPACT_AFTER + 8)]
        before = await projection.by_external_ids(ids)
        assert await db["lead_index_segments"].count_documents({}) == 1  # the lookup compacted the bucket
        after = await projection.by_external_ids(ids)
        assert after == before and len(after) == COMPACT_AFTER + 6
        assert after["crm-5"].fields["title"] == "v5" and after["crm-5"].created_by_import == "imp-1"


async def test_documents_written_before_the_segments_are_still_found(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        db = importer.service.db
        await db["lead_index"].insert_one({"_id": "crm-42", "lead_id": "L-old", "fields": '{"title": "Старый"}',
                                           "deleted": False, "created_by_import": "imp-0"})
        known = await ExternalIdProjection(db).by_external_ids(["crm-42"])
        assert known["crm-42"] == d.KnownLead("L-old", {"title": "Старый"}, "imp-0")
        await importer.feed(LEADS_EVENTS, [card_event("crm-42", title="Новый", lead_id="L-old", version=2, changed=["title"])])
        known = await ExternalIdProjection(db).by_external_ids(["crm-42"])
        assert known["crm-42"].fields["title"] == "Новый" and known["crm-42"].created_by_import == "imp-0"


async def test_segments_are_stored_compressed_and_those_written_as_json_text_before_are_still_read(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        db = importer.service.db
        await importer.feed(LEADS_EVENTS, [card_event(f"crm-{i}", title=f"Лид {i}") for i in range(1, 4)])
        stored = await db["lead_index_segments"].find_one({})
        assert isinstance(stored["entries"], bytes)  # compressed JSON, not text FerretDB escapes
        # A segment as written before: its entries a JSON string; written earlier, so the newer segment wins on crm-3.
        older = {"crm-3": ["L-crm-3", {"title": "Старый"}, "imp-0", 1], "crm-9": ["L-crm-9", {"title": "Девятый"}, "imp-0", 1]}
        await db["lead_index_segments"].insert_one({"_id": "old-segment", "ix_bucket": stored["ix_bucket"],
                                                    "at": stored["at"] - timedelta(days=1),
                                                    "entries": json.dumps(older, ensure_ascii=False)})
        projection = ExternalIdProjection(db)
        ids = ["crm-1", "crm-3", "crm-9"]
        known = await projection.by_external_ids(ids)
        assert known["crm-1"].fields["title"] == "Лид 1" and known["crm-3"].fields["title"] == "Лид 3"
        assert known["crm-9"] == d.KnownLead("L-crm-9", {"title": "Девятый"}, "imp-0")
        # Compacting a bucket of both kinds keeps every answer, written back compressed.
        for version in range(2, COMPACT_AFTER + 3):
            await importer.feed(LEADS_EVENTS, [card_event("crm-1", title=f"v{version}", version=version, changed=["title"])])
        compacted = await projection.by_external_ids(ids)
        assert await db["lead_index_segments"].count_documents({}) == 1
        assert isinstance((await db["lead_index_segments"].find_one({}))["entries"], bytes)
        assert compacted["crm-1"].fields["title"] == f"v{COMPACT_AFTER + 2}"
        assert {e: compacted[e] for e in ("crm-3", "crm-9")} == {e: known[e] for e in ("crm-3", "crm-9")}
