"""The importer's handlers and worker as ``create_app`` wires them, on the real database, without Kafka.

What the service would publish is handed to the test instead of the broker, and the leads service's
answers are made here from the commands (as it would send them: the card, the row's correlation id,
the command as cause). So a test sees exactly what a job stores and sends, chunk by chunk, and what
a redelivered or replayed batch of outcomes changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts import build_message
from contracts.imports import RevertImport, StartImport
from contracts.leads import LeadCreated, LeadUpdated
from contracts.topics import DIRECTORY_EVENTS, IMPORTS_COMMANDS, IMPORTS_EVENTS, LEADS_COMMANDS, LEADS_EVENTS
from crmkit.messaging import Inbound, Outbound
from services.importer import domain as d
from services.importer.app import create_app
from services.importer.settings import ImporterSettings
from tests.integration.leads_helpers import directory_event
from tests.support import command, wait_until

HEADER = "Название,Имя,Эл. почта,Внешний ID"
BOOKKEEPING = ("imports", "import_outcomes", "import_counts", "import_revert", "import_errors", "import_requests")


def write_csv(path: Path, count: int, *, title: str = "Лид", prefix: str = "ext") -> Path:
    lines = [HEADER] + [f"{title} {i},Иван {i},ivan{i}@example.ru,{prefix}-{i}" for i in range(1, count + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Importer:
    """The wired service, what it published, and the steps its background tasks would take."""

    def __init__(self, service) -> None:
        self.service = service
        self.handlers = service.handlers
        self.runner = service.runner
        self.imports = self.handlers.imports
        self.sent: list[Outbound] = []
        self._offset = 0

    async def publish(self, outbound) -> None:
        self.sent.extend(outbound)

    async def feed(self, topic: str, messages) -> list[Outbound]:
        batch = []
        for message in messages:
            batch.append(Inbound(topic, 0, self._offset, message))
            self._offset += 1
        return await self.handlers.on_batch(batch)

    async def run_jobs(self) -> None:
        """One pass of the scheduler's work, done in the test's task: housekeeping, then each job it can claim."""
        await self.runner.housekeeping()
        while (job := await self.imports.claim(self.runner.owner, datetime.now(UTC), 30.0)) is not None:
            await self.runner.handle(job)
            await self.imports.release(job.import_id, self.runner.owner)

    def commands(self, type_name: str) -> list:
        return [o.message for o in self.sent if o.topic == LEADS_COMMANDS and o.message.type == type_name]

    def events(self, type_name: str, import_id: str) -> list:
        return [o.message for o in self.sent if o.topic == IMPORTS_EVENTS and o.message.type == type_name
                and o.message.subject == import_id]

    async def documents(self) -> int:
        return sum([await self.service.db[name].count_documents({}) for name in BOOKKEEPING])


@contextlib.asynccontextmanager
async def wired_importer(settings_for, tmp_path: Path, **overrides):
    settings = settings_for(ImporterSettings, "importer", file_roots=[str(tmp_path)],
                            uploads_dir=str(tmp_path / "uploads"), tokens={"tok-alice": "alice"}, **overrides)
    service = create_app(settings)
    found = Importer(service)
    service.bus.publish = found.publish  # the records go to the test instead of Kafka
    try:
        await found.imports.ensure_indexes()
        await found.handlers.index.ensure_indexes()
        await found.feed(DIRECTORY_EVENTS, [directory_event("crm.user.licence-granted", user_id="alice", licence="crm")])
        yield found
    finally:
        await service.mongo.drop_database(settings.database)
        await service.mongo.close()


def answer(create_or_update, version: int = 1, created=None):
    """The leads service's event for one import command (an update's on the lead ``created`` made): the card, caused by the command."""
    data = create_or_update.data
    now = datetime.now(UTC)
    earlier = created.data.model_dump(exclude_none=True) if created is not None else {}
    fields = {**earlier, **data.model_dump(exclude_none=True, exclude={"clear"})}
    card = {**fields, "pipeline_id": "default", "stage_id": "new", "status": "new", "version": version,
            "created_at": now, "updated_at": now, "data_changed_at": now, "status_since": now}
    payload = (LeadCreated if create_or_update.type == "crm.lead.create" else LeadUpdated).model_validate(card)
    return build_message(payload, source="crm/leads", subject=data.lead_id, correlationid=create_or_update.correlationid,
                         causationid=create_or_update.id)


async def start(importer: Importer, path: Path, **options) -> str:
    import_id = f"imp-{uuid.uuid4().hex[:8]}"
    await importer.feed(IMPORTS_COMMANDS, [command(StartImport(import_id=import_id, file_uri=str(path), **options), actor="alice")])
    return import_id


async def test_chunks_complete_on_their_outcomes_each_row_counted_once_in_few_documents(settings_for, tmp_path):
    rows = 1200
    async with wired_importer(settings_for, tmp_path, chunk_rows=500) as importer:
        import_id = await start(importer, write_csv(tmp_path / "a.csv", rows))
        await importer.run_jobs()
        creates = importer.commands("crm.lead.create")
        assert [c.data.import_row for c in creates] == list(range(2, rows + 2))
        assert [c.id for c in creates] == [d.command_id(import_id, row) for row in range(2, rows + 2)]
        assert len(importer.events("crm.import.progress", import_id)) == 3  # one per chunk of 500
        assert (await importer.imports.get(import_id)).state == "waiting"

        answers = [answer(c) for c in creates]
        await importer.feed(LEADS_EVENTS, answers[:700])
        await importer.feed(LEADS_EVENTS, answers[:700])  # redelivered as it was: its page is there already
        await importer.feed(LEADS_EVENTS, answers[650:900])  # replayed across another batch's boundary
        await importer.run_jobs()
        assert (await importer.imports.get(import_id)).state == "waiting"  # 300 rows still without an outcome
        await importer.feed(LEADS_EVENTS, answers[900:])
        await importer.run_jobs()

        done = importer.events("crm.import.completed", import_id)
        assert len(done) == 1
        assert (done[0].data.rows_total, done[0].data.created, done[0].data.rejected) == (rows, rows, 0), done[0].data
        # The bookkeeping grows by chunks and batches, not rows: the job, its counters, one page per batch.
        assert await importer.documents() <= 0.05 * rows, await importer.documents()


async def test_the_completion_goes_out_as_the_job_completes_and_a_lost_one_is_sent_by_the_next_claim(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        first = await start(importer, write_csv(tmp_path / "a.csv", 3))
        await importer.run_jobs()
        await importer.feed(LEADS_EVENTS, [answer(c) for c in importer.commands("crm.lead.create")])
        assert await importer.runner.try_complete(first)
        assert len(importer.events("crm.import.completed", first)) == 1  # no claim needed for it

        second = await start(importer, write_csv(tmp_path / "b.csv", 2, prefix="other"))
        await importer.run_jobs()
        creates = [c for c in importer.commands("crm.lead.create") if c.data.import_id == second]

        async def broker_down(outbound) -> None:
            raise ConnectionError("the broker went away as the job completed")

        importer.service.bus.publish = broker_down
        await importer.feed(LEADS_EVENTS, [answer(c) for c in creates])
        with pytest.raises(ConnectionError):  # the scheduler's loop logs it and goes on
            await importer.runner.try_complete(second)
        job = await importer.imports.get(second)
        assert (job.state, job.announced) == ("completed", False)
        assert importer.events("crm.import.completed", second) == []

        importer.service.bus.publish = importer.publish
        await importer.run_jobs()
        await importer.run_jobs()  # announced once: a later pass sends nothing more
        assert len(importer.events("crm.import.completed", second)) == 1
        assert (await importer.imports.get(second)).announced


async def test_a_reimport_keeps_previous_values_per_chunk_and_its_revert_puts_them_back(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path, chunk_rows=2) as importer:
        first = await start(importer, write_csv(tmp_path / "a.csv", 3))
        await importer.run_jobs()
        originals = {c.data.lead_id: c for c in importer.commands("crm.lead.create")}
        await importer.feed(LEADS_EVENTS, [answer(c) for c in originals.values()])
        await importer.run_jobs()
        assert importer.events("crm.import.completed", first)[0].data.created == 3

        second = await start(importer, write_csv(tmp_path / "b.csv", 3, title="Новый"))
        await importer.run_jobs()
        updates = [c for c in importer.commands("crm.lead.update") if c.data.import_id == second]
        assert sorted(c.data.title for c in updates) == ["Новый 1", "Новый 2", "Новый 3"]
        assert await importer.service.db["import_revert"].count_documents({"import_id": second}) == 2  # chunks, not rows
        await importer.feed(LEADS_EVENTS, [answer(c, 2, originals[c.data.lead_id]) for c in updates])
        await importer.run_jobs()
        assert importer.events("crm.import.completed", second)[0].data.updated == 3

        await importer.feed(IMPORTS_COMMANDS, [command(RevertImport(import_id=second), actor="alice")])
        await importer.run_jobs()
        reverted = importer.events("crm.import.reverted", second)
        assert (reverted[0].data.removed, reverted[0].data.restored) == (0, 3)
        restores = [c for c in importer.commands("crm.lead.update") if c.data.import_id is None]
        assert {c.data.lead_id: c.data.title for c in restores} == {k: v.data.title for k, v in originals.items()}


async def test_a_chunk_resent_after_a_crash_repeats_its_first_commands(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path, chunk_rows=10) as importer:
        first = await start(importer, write_csv(tmp_path / "a.csv", 2))
        await importer.run_jobs()
        originals = {c.data.lead_id: c for c in importer.commands("crm.lead.create")}
        await importer.feed(LEADS_EVENTS, [answer(c) for c in originals.values()])
        await importer.run_jobs()
        assert importer.events("crm.import.completed", first)

        second = await start(importer, write_csv(tmp_path / "b.csv", 2, title="Новый"))
        await importer.run_jobs()
        sent = [c for c in importer.commands("crm.lead.update") if c.data.import_id == second]
        # The updates applied, but the importer stopped before its checkpoint: the job is as it was.
        await importer.feed(LEADS_EVENTS, [answer(c, 2, originals[c.data.lead_id]) for c in sent])
        await importer.imports.update(second, {"state": "running", "last_row_sent": 0, "rows_read": 0, "sent": 0})
        before = len(importer.sent)
        await importer.run_jobs()
        again = [o.message for o in importer.sent[before:] if o.topic == LEADS_COMMANDS]
        # Judged afresh the rows would be "unchanged" (the lead has the new title): they repeat the first attempt.
        assert [(c.id, c.type, c.data.title) for c in again] == [(c.id, c.type, c.data.title) for c in sent]
        done = importer.events("crm.import.completed", second)
        assert (done[-1].data.updated, done[-1].data.rows_total) == (2, 2), done[-1].data


async def test_a_dry_run_sends_no_lead_command(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        import_id = await start(importer, write_csv(tmp_path / "a.csv", 5), dry_run=True)
        await importer.run_jobs()
        await importer.run_jobs()
        assert not [o for o in importer.sent if o.topic == LEADS_COMMANDS]
        done = importer.events("crm.import.completed", import_id)
        assert (done[0].data.dry_run, done[0].data.created, done[0].data.rows_total) == (True, 5, 5)


async def test_a_status_request_with_wait_is_answered_when_the_job_ends(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path) as importer:
        import_id = await start(importer, write_csv(tmp_path / "a.csv", 3))
        transport = httpx.ASGITransport(app=importer.service.asgi())
        auth = {"Authorization": "Bearer tok-alice"}
        async with httpx.AsyncClient(transport=transport, base_url="http://importer") as http:
            bad = await http.get(f"/imports/{import_id}", params={"wait": "soon"}, headers=auth)
            assert bad.status_code == 400 and "wait" in bad.json()["message"]
            await importer.run_jobs()  # every row sent: the job waits for its outcomes
            request = asyncio.ensure_future(http.get(f"/imports/{import_id}", params={"wait": "30"}, headers=auth))
            await wait_until(lambda: importer.runner.watch._events.get(import_id), what="the request to wait")
            assert not request.done()
            await importer.feed(LEADS_EVENTS, [answer(c) for c in importer.commands("crm.lead.create")])
            await importer.run_jobs()
            status = (await request).json()
            assert (status["state"], status["created"]) == ("completed", 3), status


async def test_a_job_sends_only_so_many_chunks_ahead_of_the_answers(settings_for, tmp_path):
    async with wired_importer(settings_for, tmp_path, chunk_rows=100, chunks_in_flight=2) as importer:
        import_id = await start(importer, write_csv(tmp_path / "a.csv", 600))
        job = await importer.imports.claim(importer.runner.owner, datetime.now(UTC), 30.0)
        running = asyncio.ensure_future(importer.runner.handle(job))
        try:
            # ``held`` is also set for the moment each chunk's own check takes: wait for the third chunk's publish too.
            await wait_until(lambda: import_id in importer.runner.pacing.held and len(importer.commands("crm.lead.create")) >= 300,
                             what="the job to wait for answers")
            await asyncio.sleep(0.2)  # a job that did not hold would send on meanwhile
            assert import_id in importer.runner.pacing.held
            assert len(importer.commands("crm.lead.create")) == 300  # two chunks ahead of none answered, plus the one in hand
            await importer.feed(LEADS_EVENTS, [answer(c) for c in importer.commands("crm.lead.create")[:100]])
            await wait_until(lambda: len(importer.commands("crm.lead.create")) == 400, what="one more chunk")
            answered = 100
            while not running.done() or answered < 600:
                creates = importer.commands("crm.lead.create")
                if answered < len(creates):
                    await importer.feed(LEADS_EVENTS, [answer(c) for c in creates[answered:]])
                    answered = len(creates)
                await wait_until(lambda: running.done() or len(importer.commands("crm.lead.create")) > answered,
                                 what="the next chunk or the end of reading")
            await running
        finally:
            running.cancel()
        await importer.run_jobs()
        done = importer.events("crm.import.completed", import_id)
        assert (done[0].data.rows_total, done[0].data.created) == (600, 600), done[0].data
