"""The importer with the leads service on real Kafka and FerretDB: files made here, imported end to end."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zipfile
from pathlib import Path

import httpx
import openpyxl

from contracts.imports import CancelImport, RevertImport, StartImport
from contracts.topics import IMPORTS_COMMANDS, IMPORTS_EVENTS, LEADS_EVENTS
from crmkit.principals import PrincipalRepository
from services.importer.app import create_app as create_importer
from services.importer.external_ids import ExternalIdProjection
from services.importer.domain import derive_lead_id
from services.importer.settings import ImporterSettings
from services.leads.app import create_app as create_leads
from services.leads.repository import LeadRepository
from services.leads.settings import LeadsSettings
from tests.integration.leads_helpers import grant
from tests.support import Collector, Producer, command, wait_until

TOKENS = {"tok-alice": "alice"}
HEADER = "Название,Имя,Телефон,Эл. почта,Компания,ИНН,Источник,Внешний ID"


def csv_rows(count: int, *, start: int = 1, prefix: str = "ext", title: str = "Лид") -> list[str]:
    return [
        f"{title} {i},Иван Петров {i},+7912{i:07d},ivan{i}@example.ru,ООО Ромашка {i},7701234567,website,{prefix}-{i}"
        for i in range(start, start + count)
    ]


def write_csv(path: Path, lines: list[str], *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    text = "\r\n".join(line.replace(",", delimiter) for line in lines) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


class ImportStack:
    def __init__(self, leads, importer, producer, events, tmp_path: Path) -> None:
        self.leads = leads
        self.importer = importer
        self.producer = producer
        self.events = events
        self.tmp_path = tmp_path
        self.repo = LeadRepository(leads.db)

    async def start(self, path: Path, *, import_id: str | None = None, **options) -> str:
        import_id = import_id or f"imp-{uuid.uuid4().hex[:8]}"
        await self.producer.send(
            IMPORTS_COMMANDS, command(StartImport(import_id=import_id, file_uri=str(path), **options), actor="alice"), key=import_id
        )
        return import_id

    def finished(self, import_id: str):
        found = [m for m in self.events.got.messages if m.subject == import_id and m.type in ("crm.import.completed", "crm.import.failed")]
        return found[0] if found else None

    async def run(self, path: Path, **options):
        import_id = await self.start(path, **options)
        return await wait_until(lambda: self.finished(import_id), timeout=90, what=f"import {import_id} to finish")

    def of(self, type_name: str, import_id: str):
        return [m for m in self.events.got.of_type(type_name) if m.subject == import_id]

    async def lead_count(self, import_id: str | None = None, title_prefix: str | None = None) -> int:
        """Leads stored (read through the leads repository, whatever its document shape)."""
        ids = [doc["_id"] async for doc in self.leads.db["leads"].find({}, {"_id": 1})]
        found = (await self.repo.get_many(ids)).values()
        leads = [s.lead for s in found if not s.lead.deleted]
        return sum(1 for lead in leads if (import_id is None or lead.import_id == import_id)
                   and (title_prefix is None or lead.title.startswith(title_prefix)))


@contextlib.asynccontextmanager
async def import_stack(settings_for, run_service, endpoints, isolation, tmp_path, **overrides):
    leads = await run_service(create_leads(settings_for(LeadsSettings, "leads", duplicate_check=False)))
    importer_settings = settings_for(
        ImporterSettings, "importer", uploads_dir=str(tmp_path / "uploads"), job_lease_s=2.0,
        poll_interval_s=0.2, **{"tokens": TOKENS, "file_roots": [str(tmp_path)], **overrides},
    )
    importer = await run_service(create_importer(importer_settings))
    async with Producer(endpoints.kafka, isolation.prefix) as producer, Collector(
        endpoints.kafka, isolation.prefix, IMPORTS_EVENTS, LEADS_EVENTS
    ) as events:
        await grant(producer, "alice")
        for service in (leads, importer):
            principals = PrincipalRepository(service.db, [])
            await wait_until(lambda p=principals: _licensed(p, "alice"), what="alice's licence")
        await wait_until(lambda: events.got.of_type("crm.pipeline.created"), what="default pipeline")
        yield ImportStack(leads, importer, producer, events, tmp_path)


async def _licensed(principals: PrincipalRepository, user: str) -> bool:
    return (await principals.get(user)).licensed


async def test_each_encoding_and_delimiter_imports_every_row(settings_for, run_service, endpoints, isolation, tmp_path):
    cases = [("utf-8", ","), ("utf-8-sig", ";"), ("cp1251", ";"), ("utf-16", "\t"), ("utf-8", "\t"), ("cp1251", ",")]
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        for n, (encoding, delimiter) in enumerate(cases):
            path = write_csv(tmp_path / f"f{n}.csv", [HEADER, *csv_rows(5, prefix=f"enc{n}")], encoding=encoding, delimiter=delimiter)
            done = await stack.run(path)
            assert done.type == "crm.import.completed", (encoding, delimiter, done.data)
            assert (done.data.rows_total, done.data.created, done.data.rejected) == (5, 5, 0), (encoding, delimiter, done.data)
            lead = await stack.repo.get(derive_lead_id(done.data.import_id, 2, f"enc{n}-1", "crm/importer"))
            assert lead is not None and lead.title == "Лид 1" and lead.contact.name == "Иван Петров 1", (encoding, delimiter)
            assert lead.company.inn == "7701234567" and lead.import_id == done.data.import_id
        assert await stack.lead_count() == 5 * len(cases)


async def test_bad_files_fail_with_specific_messages(settings_for, run_service, endpoints, isolation, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    unknown = write_csv(tmp_path / "unknown.csv", ["foo,bar,baz", "1,2,3"])
    corrupt = tmp_path / "corrupt.xlsx"
    with zipfile.ZipFile(corrupt, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    missing = tmp_path / "nope.csv"
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        expected = {empty: "empty_file", binary: "binary_file", unknown: "no_known_columns", corrupt: None, missing: "file_not_found"}
        for path, code in expected.items():
            done = await stack.run(path)
            assert done.type == "crm.import.failed", (path.name, done.data)
            assert done.data.reason, path.name
            if code:
                assert done.data.code == code, (path.name, done.data)
        assert await stack.lead_count() == 0


async def test_bad_rows_are_reported_and_the_rest_imported(settings_for, run_service, endpoints, isolation, tmp_path):
    lines = [HEADER, *csv_rows(3, prefix="ok")]
    lines.insert(2, "Плохой телефон,Пётр,12,petr@example.ru,ООО Лютик,7701234567,website,bad-1")   # row 3
    lines.append(",,,,,,website,bad-2")  # row 6: no title, no names
    lines.append("=HYPERLINK(\"x\"),Анна,+79120000000,not-an-email,ООО,123,website,bad-3")  # row 7
    lines.append('"Кавычка"лишняя,Анна,+79120000001,a@example.ru,ООО,7701234567,website,bad-4')  # row 8: unreadable CSV
    path = write_csv(tmp_path / "rows.csv", lines)
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        done = await stack.run(path)
        assert done.type == "crm.import.completed"
        assert (done.data.rows_total, done.data.created, done.data.rejected) == (7, 3, 4), done.data
        rejected = {(m.data.row, m.data.column) for m in stack.of("crm.import.row-rejected", done.data.import_id)}
        assert {(3, "Телефон"), (6, "Название"), (7, "Эл. почта"), (7, "ИНН"), (8, None)} <= rejected, rejected
        assert await stack.lead_count() == 3
        transport = httpx.ASGITransport(app=stack.importer.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://importer") as http:
            report = await http.get(f"/imports/{done.data.import_id}/errors.csv", headers={"Authorization": "Bearer tok-alice"})
            assert report.status_code == 200
            text = report.content.decode("utf-8-sig")
            assert "Телефон" in text and "'=HYPERLINK" in text and "\n=HYPERLINK" not in text
            xlsx = await http.get(f"/imports/{done.data.import_id}/errors.xlsx", headers={"Authorization": "Bearer tok-alice"})
            assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


async def test_dry_run_writes_nothing(settings_for, run_service, endpoints, isolation, tmp_path):
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        first = await stack.run(write_csv(tmp_path / "a.csv", [HEADER, *csv_rows(3, prefix="dry")]))
        assert first.data.created == 3
        await wait_until(lambda: _known(stack, "dry", 3), what="projection of 3")
        lines = [HEADER, *csv_rows(3, prefix="dry", title="Новое"), *csv_rows(2, start=10, prefix="dry"), "x,,12,,,,,"]
        done = await stack.run(write_csv(tmp_path / "b.csv", lines), dry_run=True)
        assert done.data.dry_run is True
        assert (done.data.rows_total, done.data.created, done.data.updated, done.data.rejected) == (6, 2, 3, 1), done.data
        assert await stack.lead_count() == 3
        assert await stack.lead_count(title_prefix="Новое") == 0
        assert not [m for m in stack.events.got.messages if m.type.startswith("crm.lead.") and (m.correlationid or "").find(done.data.import_id) >= 0]


async def test_reimport_updates_and_revert_restores(settings_for, run_service, endpoints, isolation, tmp_path):
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        first = await stack.run(write_csv(tmp_path / "a.csv", [HEADER, *csv_rows(3, prefix="re")]))
        assert first.data.created == 3
        lead_id = derive_lead_id(first.data.import_id, 2, "re-1", "crm/importer")
        await wait_until(lambda: _known(stack, "re", 3), what="projection of 3")
        # Same external ids, new titles, one row unchanged, one new row.
        lines = [HEADER, *csv_rows(2, prefix="re", title="Обновлён"), *csv_rows(1, start=3, prefix="re"), *csv_rows(1, start=4, prefix="re")]
        second = await stack.run(write_csv(tmp_path / "b.csv", lines))
        assert (second.data.created, second.data.updated, second.data.rejected) == (1, 2, 0), second.data
        assert await stack.lead_count() == 4
        assert (await stack.repo.get(lead_id)).title == "Обновлён 1"

        await stack.producer.send(IMPORTS_COMMANDS, command(RevertImport(import_id=second.data.import_id), actor="alice"), key=second.data.import_id)
        reverted = await wait_until(lambda: stack.of("crm.import.reverted", second.data.import_id), what="reverted")
        assert (reverted[0].data.removed, reverted[0].data.restored) == (1, 2)
        new_lead = derive_lead_id(second.data.import_id, 5, "re-4", "crm/importer")
        await wait_until(lambda: _deleted(stack.repo, new_lead), what="created lead removed")
        await wait_until(lambda: _title_is(stack.repo, lead_id, "Лид 1"), what="updated lead restored")


async def test_cancel_stops_after_the_current_chunk(settings_for, run_service, endpoints, isolation, tmp_path):
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path, chunk_rows=50) as stack:
        path = write_csv(tmp_path / "big.csv", [HEADER, *csv_rows(3000, prefix="cx")])
        import_id = await stack.start(path)
        await wait_until(lambda: stack.of("crm.import.progress", import_id), what="first chunk")
        await stack.producer.send(IMPORTS_COMMANDS, command(CancelImport(import_id=import_id), actor="alice"), key=import_id)
        done = await wait_until(lambda: stack.finished(import_id), timeout=90, what="cancelled import")
        assert done.data.cancelled is True
        assert 0 < done.data.rows_total < 3000
        assert done.data.created == done.data.rows_total
        await wait_until(lambda: _equal(stack.lead_count(import_id=import_id), done.data.rows_total), what="applied rows stay")


async def test_killed_importer_resumes_without_losing_or_doubling_rows(settings_for, run_service, endpoints, isolation, tmp_path):
    rows = 600
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path, chunk_rows=50) as stack:
        lines = [HEADER, *csv_rows(rows // 2, prefix="kr")]
        lines += [f"Без внешнего {i},Мария {i},,maria{i}@example.ru,,,form," for i in range(rows // 2)]
        path = write_csv(tmp_path / "resume.csv", lines)
        # The importer is killed after its first chunk is sent and checkpointed: held there, since
        # a free-running importer can finish all 600 rows before the test sees the first progress.
        runner = stack.importer.runner
        send, first_chunk_done = runner._send_chunk, asyncio.Event()

        async def send_then_hold(*args):
            await send(*args)
            first_chunk_done.set()
            await asyncio.Event().wait()  # until the kill

        runner._send_chunk = send_then_hold
        import_id = await stack.start(path)
        await asyncio.wait_for(first_chunk_done.wait(), timeout=60)
        await stack.importer.stop()
        job = await _job(stack, import_id)
        assert job["state"] == "running" and 0 < job["last_row_sent"] < rows + 1, job
        fresh = create_importer(stack.importer.settings)
        await fresh.start()
        try:
            done = await wait_until(lambda: stack.finished(import_id), timeout=120, what="resumed import")
            assert done.type == "crm.import.completed"
            assert (done.data.rows_total, done.data.created, done.data.rejected) == (rows, rows, 0), done.data
            assert await stack.lead_count(import_id=import_id) == rows
            assert await stack.lead_count() == rows
        finally:
            await fresh.stop()


async def test_http_upload_status_template_and_errors(settings_for, run_service, endpoints, isolation, tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Lead name", "Phone", "Email", "Mystery"])
    sheet.append(["From xlsx", 89123456789, "a@example.com", "?"])
    sheet.append(["Second", "bad", "b@example.com", "?"])
    path = tmp_path / "upload.xlsx"
    workbook.save(path)
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        transport = httpx.ASGITransport(app=stack.importer.asgi())
        auth = {"Authorization": "Bearer tok-alice"}
        async with httpx.AsyncClient(transport=transport, base_url="http://importer") as http:
            assert (await http.post("/imports", files={"file": ("x.csv", b"a")})).status_code == 401
            with open(path, "rb") as file:
                response = await http.post(
                    "/imports", headers=auth, files={"file": ("upload.xlsx", file)},
                    data={"pipeline_id": "default", "mapping": "Phone=contact_phone"},
                )
            assert response.status_code == 202, response.text
            import_id = response.json()["import_id"]
            assert response.json()["status_url"] == f"/imports/{import_id}"
            await wait_until(lambda: stack.finished(import_id), timeout=60, what="uploaded import")
            status = (await http.get(f"/imports/{import_id}", headers=auth)).json()
            assert (status["state"], status["rows_read"], status["created"], status["rejected"]) == ("completed", 2, 1, 1), status
            assert status["unknown_columns"] == ["Mystery"]
            report = (await http.get(f"/imports/{import_id}/errors.csv", headers=auth)).content.decode("utf-8-sig")
            assert "Phone" in report and "3" in report
            template = await http.get("/imports/template.xlsx?language=en", headers=auth)
            assert template.status_code == 200 and template.content[:2] == b"PK"
            csv_template = await http.get("/imports/template.csv?language=ru", headers=auth)
            assert "Название лида" in csv_template.content.decode("utf-8-sig")
            assert (await http.get("/imports/nope", headers=auth)).status_code == 404
            # A mistyped yes/no is refused, not read as "no": dry_run=ture must not import for real.
            typo = await http.post("/imports", headers=auth, files={"file": ("t.csv", b"title\nx\n")},
                                   data={"pipeline_id": "default", "dry_run": "ture"})
            assert typo.status_code == 400 and "dry_run" in typo.json()["message"]


async def _known(stack: ImportStack, prefix: str, count: int) -> bool:
    """Whether the importer knows the leads of ``{prefix}-1`` .. ``{prefix}-{count}`` by their external ids."""
    known = await ExternalIdProjection(stack.importer.db).by_external_ids(f"{prefix}-{i}" for i in range(1, count + 1))
    return len(known) == count


async def _equal(awaitable, expected) -> bool:
    return await awaitable == expected


async def _deleted(repo: LeadRepository, lead_id: str) -> bool:
    lead = await repo.get(lead_id)
    return lead is None or lead.deleted


async def _title_is(repo: LeadRepository, lead_id: str, title: str) -> bool:
    lead = await repo.get(lead_id)
    return lead is not None and lead.title == title


async def _job(stack: ImportStack, import_id: str) -> dict:
    from crmkit.mongo import make_client

    client = make_client(stack.importer.settings.mongodb_url)
    try:
        return await client[stack.importer.settings.database]["imports"].find_one({"_id": import_id})
    finally:
        await client.close()
