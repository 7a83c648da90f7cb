"""The importer as an attacker with a licensed token and write access to the bus would try it (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import httpx
import uvicorn

from contracts.imports import CancelImport, RevertImport, StartImport
from contracts.topics import IMPORTS_COMMANDS
from crmkit.principals import PrincipalRepository
from tests.integration.leads_helpers import grant
from tests.integration.test_importer import HEADER, csv_rows, import_stack, write_csv
from tests.support import command, wait_until

TOKENS = {"tok-alice": "alice", "tok-admin": "root", "tok-bob": "bob"}
ADMIN = {"Authorization": "Bearer tok-admin"}
BOB = {"Authorization": "Bearer tok-bob"}
ALICE = {"Authorization": "Bearer tok-alice"}


@contextlib.asynccontextmanager
async def secured(settings_for, run_service, endpoints, isolation, tmp_path, **overrides):
    """The import stack reading named files only from ``tmp_path/inbox``, with an admin and a manager."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    options = {"file_roots": [str(inbox)], "tokens": TOKENS, **overrides}
    async with import_stack(settings_for, run_service, endpoints, isolation, tmp_path, **options) as stack:
        await grant(stack.producer, "root", admin=True)
        await grant(stack.producer, "bob")
        principals = PrincipalRepository(stack.importer.db, [])
        await wait_until(lambda: _admin(principals, "root"), what="root's admin role")
        await wait_until(lambda: _licensed(principals, "bob"), what="bob's licence")
        stack.inbox = inbox
        yield stack


async def _admin(principals, user):
    principal = await principals.get(user)
    return principal.licensed and principal.is_admin


async def _licensed(principals, user):
    return (await principals.get(user)).licensed


def _client(stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.importer.asgi()), base_url="http://importer")


async def _failure(stack, path: str, actor: str = "alice"):
    import_id = f"imp-{os.urandom(4).hex()}"
    await stack.producer.send(IMPORTS_COMMANDS, command(StartImport(import_id=import_id, file_uri=path), actor=actor), key=import_id)
    done = await wait_until(lambda: stack.finished(import_id), timeout=60, what=f"import of {path}")
    return import_id, done


async def test_files_outside_the_roots_are_never_read(settings_for, run_service, endpoints, isolation, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = write_csv(outside / "canary.csv", ["Название,Телефон", "CANARY-SECRET,+79120000000"])
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        (stack.inbox / "link.csv").symlink_to(canary)
        for path in ("/etc/passwd", str(canary), str(stack.inbox / "link.csv"), str(stack.inbox / ".." / "outside" / "canary.csv"),
                     "file:///etc/passwd", "../outside/canary.csv", str(tmp_path / "uploads" / "x.csv")):
            import_id, done = await _failure(stack, path)
            assert done.type == "crm.import.failed", (path, done.data)
            assert done.data.code == "file_not_allowed", (path, done.data)
            assert "root:" not in done.data.reason and "CANARY" not in done.data.reason, done.data.reason
            assert str(tmp_path) not in done.data.reason, done.data.reason  # no server folder either
            assert not stack.of("crm.import.row-rejected", import_id) and not stack.of("crm.import.started", import_id)
            async with _client(stack) as http:
                report = await http.get(f"/imports/{import_id}/errors.csv", headers=ALICE)
            assert report.status_code == 200 and "CANARY" not in report.text and "root:" not in report.text
        # An unknown scheme is its own reason.
        _, done = await _failure(stack, "http://127.0.0.1:1/leads.csv")
        assert done.data.code == "unsupported_uri", done.data
        assert await stack.lead_count() == 0


async def test_a_directory_fails_its_own_import_and_the_next_one_runs(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        (stack.inbox / "folder").mkdir()
        _, done = await _failure(stack, str(stack.inbox / "folder"))
        assert (done.type, done.data.code) == ("crm.import.failed", "not_a_file"), done.data
        # A file inside the inbox, named relative to it, imports; so does an upload after the refused one.
        write_csv(stack.inbox / "good.csv", [HEADER, *csv_rows(3, prefix="in")])
        _, named = await _failure(stack, "good.csv")
        assert (named.type, named.data.created) == ("crm.import.completed", 3), named.data
        started = [m for m in stack.events.got.of_type("crm.import.started") if m.subject == named.data.import_id]
        assert started and started[0].data.file_uri == "good.csv"  # the name, never the server path
        async with _client(stack) as http:
            response = await http.post("/imports", headers=ALICE, files={"file": ("next.csv", f"{HEADER}\r\n{csv_rows(2, prefix='up')[0]}\r\n")})
            assert response.status_code == 202, response.text
            upload_id = response.json()["import_id"]
            done = await wait_until(lambda: stack.finished(upload_id), timeout=60, what="the upload after the directory")
            assert (done.type, done.data.created) == ("crm.import.completed", 1), done.data


async def test_an_import_retrying_an_outage_delays_no_other_and_can_be_cancelled(
    settings_for, run_service, endpoints, isolation, tmp_path
):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path, retry_alert_s=0.0) as stack:
        write_csv(stack.inbox / "stuck.csv", [HEADER, *csv_rows(3, prefix="st")])
        write_csv(stack.inbox / "free.csv", [HEADER, *csv_rows(3, prefix="fr")])
        runner = stack.importer.runner
        real_handle = runner.handle

        async def database_down_for_stuck(job):
            if job.import_id == "imp-stuck" and job.state == "running":
                raise ConnectionResetError("the database closed the connection")  # an outage, as far as the worker knows
            return await real_handle(job)

        runner.handle = database_down_for_stuck
        await stack.producer.send(IMPORTS_COMMANDS, command(StartImport(import_id="imp-stuck", file_uri="stuck.csv")), key="imp-stuck")
        async with _client(stack) as http:
            retrying = await wait_until(lambda: _status_if(http, "imp-stuck", lambda s: s["retrying"]), what="stuck import retrying")
            assert retrying["state"] == "running" and "ConnectionResetError" in retrying["retrying"]["error"]
            _, free = await _failure(stack, "free.csv")
            assert (free.type, free.data.created) == ("crm.import.completed", 3), free.data
            ready = (await http.get("/health/ready")).json()
            assert [j["import_id"] for j in ready["imports_retrying_too_long"]] == ["imp-stuck"], ready
            metrics = (await http.get("/metrics")).text
            assert "crm_import_jobs_retrying 1.0" in metrics, metrics
            await stack.producer.send(IMPORTS_COMMANDS, command(CancelImport(import_id="imp-stuck")), key="imp-stuck")
            done = await wait_until(lambda: stack.finished("imp-stuck"), timeout=60, what="the stuck import cancelled")
            assert (done.type, done.data.cancelled, done.data.rows_total) == ("crm.import.completed", True, 0), done.data
            await wait_until(lambda: _ready_without_retries(http), what="no import retrying any more")


async def _status_if(http, import_id, condition):
    response = await http.get(f"/imports/{import_id}", headers=ALICE)
    if response.status_code != 200:
        return None
    body = response.json()
    return body if condition(body) else None


async def _ready_without_retries(http) -> bool:
    return (await http.get("/health/ready")).json()["imports_retrying_too_long"] == []


async def test_upload_ids_and_names_never_become_paths(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        uploads = tmp_path / "uploads"
        body = f"{HEADER}\r\n{csv_rows(1, prefix='id')[0]}\r\n"
        async with _client(stack) as http:
            for bad in ("..", "../x", "a/b", "/etc", ".", "a\x00b", "x" * 101, "имя"):
                response = await http.post("/imports", headers=ALICE, files={"file": ("a.csv", body)}, data={"import_id": bad})
                assert response.status_code == 400 and "import_id" in response.json()["message"], (bad, response.text)
            assert not list(tmp_path.glob("*.csv")) and not (tmp_path / "x").exists()
            assert not uploads.exists() or not any(uploads.iterdir()), "a refused upload left a file"
            # The client's file name is only a label: '..' and a path are stored under a server name.
            for name in ("..", "../../evil.csv", "/etc/cron.d/x.csv"):
                response = await http.post("/imports", headers=ALICE, files={"file": (name, body)})
                assert response.status_code == 202, (name, response.text)
                status = (await http.get(response.json()["status_url"], headers=ALICE)).json()
                assert "/" not in status["file_name"] and status["file_name"] != "..", status
            assert not (tmp_path / "evil.csv").exists() and not Path("/etc/cron.d/x.csv").exists()
            assert all(p.parent == uploads.resolve() for p in uploads.resolve().iterdir())


async def test_a_second_user_cannot_replace_an_uploaded_file(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        async with _client(stack) as http:
            first = await http.post("/imports", headers=ALICE, data={"import_id": "shared-id"},
                                    files={"file": ("a.csv", f"{HEADER}\r\n" + "\r\n".join(csv_rows(2, prefix="own")) + "\r\n")})
            assert first.status_code == 202, first.text
            stored = sorted((tmp_path / "uploads").iterdir())
            before = [p.read_bytes() for p in stored]
            second = await http.post("/imports", headers=BOB, data={"import_id": "shared-id"},
                                     files={"file": ("a.csv", f"{HEADER}\r\nHIJACK,,,,,,,evil-1\r\n")})
            assert second.status_code == 409, second.text
            assert sorted((tmp_path / "uploads").iterdir()) == stored and [p.read_bytes() for p in stored] == before
            done = await wait_until(lambda: stack.finished("shared-id"), timeout=60, what="alice's import")
            assert (done.data.created, done.data.rows_total) == (2, 2), done.data
            assert await stack.lead_count(title_prefix="HIJACK") == 0


async def test_form_fields_and_the_file_are_limited_while_streaming(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path, max_file_mb=1) as stack, _served(stack) as url:
        boundary = "----crmtestboundary"

        async def body(field: str, megabytes: int):
            filename = '; filename="big.csv"' if field == "file" else ""
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"{filename}\r\n\r\n'.encode()
            chunk = b"x" * (1024 * 1024)
            for _ in range(megabytes):
                yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        headers = {**ALICE, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        rss_before = _rss_mb()
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/imports", headers=headers, content=body("mapping", 100))
            assert response.status_code == 413 and "mapping" in response.json()["message"], response.text
            rss_after = _rss_mb()
            print(f"importer RSS around a 100 MB form field: {rss_before:.0f} MB -> {rss_after:.0f} MB")
            assert rss_after - rss_before < 50, (rss_before, rss_after)  # before the fix: +1,600 MB
            response = await http.post("/imports", headers=headers, content=body("file", 3))
            assert response.status_code == 413 and response.json()["error"] == "file_too_large", response.text
            response = await http.post("/imports", headers=headers, content=body("surprise", 1))
            assert response.status_code == 400 and "surprise" in response.json()["message"], response.text
            many = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="mapping"\r\n\r\na=title\r\n' for _ in range(1000))
            response = await http.post("/imports", headers=headers, content=(many + f"--{boundary}--\r\n").encode())
            assert response.status_code == 413 and response.json()["error"] == "too_many_fields", response.text
        uploads = tmp_path / "uploads"
        assert not uploads.exists() or not any(uploads.iterdir()), "a refused upload left a file on disk"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@contextlib.asynccontextmanager
async def _served(stack):
    """The importer's HTTP app under a real uvicorn on a free loopback port (a streamed body needs a socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(stack.importer.asgi(), host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="uvicorn to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_an_import_is_its_owners_and_the_administrators(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        lines = [HEADER, *csv_rows(2, prefix="adm"), "Плохой,Пётр,12,petr@example.ru,ООО,7701234567,website,adm-bad"]
        write_csv(stack.inbox / "admin.csv", lines)
        import_id, done = await _failure(stack, "admin.csv", actor="root")
        assert (done.data.created, done.data.rejected) == (2, 1), done.data
        async with _client(stack) as http:
            for url in (f"/imports/{import_id}", f"/imports/{import_id}/errors.csv", f"/imports/{import_id}/errors.xlsx"):
                refused = await http.get(url, headers=BOB)
                # As if it did not exist: a stranger cannot even learn that the id is real.
                assert refused.status_code == 404 and refused.json()["error"] == "not_found", (url, refused.text)
                assert (await http.get(url.replace(import_id, "no-such-import"), headers=BOB)).json()["error"] == "not_found"
                assert "Пётр" not in refused.text
                assert (await http.get(url, headers=ADMIN)).status_code == 200
        # A manager's revert over Kafka is refused and the admin's leads stay.
        revert = command(RevertImport(import_id=import_id), actor="bob")
        await stack.producer.send(IMPORTS_COMMANDS, revert, key=import_id)
        rejected = await wait_until(lambda: [m for m in stack.events.got.of_type("crm.command.rejected") if m.data.command_id == revert.id],
                                    what="the manager's revert refused")
        assert rejected[0].data.reason_code == "forbidden", rejected[0].data
        assert await stack.lead_count(import_id=import_id) == 2 and not stack.of("crm.import.reverted", import_id)
        # The admin may act on anyone's import: bob's, here.
        write_csv(stack.inbox / "bob.csv", [HEADER, *csv_rows(1, prefix="bob")])
        bob_import, _ = await _failure(stack, "bob.csv", actor="bob")
        await stack.producer.send(IMPORTS_COMMANDS, command(RevertImport(import_id=bob_import), actor="root"), key=bob_import)
        await wait_until(lambda: stack.of("crm.import.reverted", bob_import), what="the admin's revert of bob's import")


async def test_commands_without_an_actor_or_licence_learn_nothing(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        write_csv(stack.inbox / "a.csv", [HEADER, *csv_rows(1, prefix="or")])
        existing, _ = await _failure(stack, "a.csv")
        sent = []
        for import_id, actor in ((existing, "mallory"), ("imp-missing", "mallory"), (existing, None)):
            message = command(RevertImport(import_id=import_id), actor=actor)
            if actor is None:
                message = message.model_copy(update={"actorid": None})
            await stack.producer.send(IMPORTS_COMMANDS, message, key=import_id)
            sent.append(message.id)
        start = command(StartImport(import_id="imp-anon", file_uri="a.csv")).model_copy(update={"actorid": None})
        await stack.producer.send(IMPORTS_COMMANDS, start, key="imp-anon")
        sent.append(start.id)
        found = await wait_until(lambda: _rejections(stack, sent), what="every command refused")
        assert [found[i].data.reason_code for i in sent] == ["not_licensed"] * 4
        # Same refusal for an import that exists and one that does not: no existence oracle.
        assert found[sent[0]].data.message == found[sent[1]].data.message
        assert not stack.of("crm.import.started", "imp-anon")


def _rejections(stack, ids):
    found = {m.data.command_id: m for m in stack.events.got.of_type("crm.command.rejected") if m.data.command_id in ids}
    return found if len(found) == len(ids) else None


async def test_import_commands_are_bounded_like_every_command(settings_for, run_service, endpoints, isolation, tmp_path):
    async with secured(settings_for, run_service, endpoints, isolation, tmp_path) as stack:
        bad = [command(StartImport(import_id="imp\x00x", file_uri="a.csv")), command(StartImport(import_id="imp-long", file_uri="x" * 40_000)),
               command(CancelImport(import_id="i" * 101))]
        for message in bad:
            await stack.producer.send(IMPORTS_COMMANDS, message, key="k")
        found = await wait_until(lambda: _rejections(stack, [m.id for m in bad]), what="the malformed commands refused")
        fields = [[e.field for e in found[m.id].data.errors] for m in bad]
        assert fields == [["import_id"], ["file_uri"], ["import_id"]], fields
        assert all(found[m.id].data.reason_code == "validation" for m in bad)
        assert not stack.of("crm.import.started", "imp-long") and not stack.of("crm.import.failed", "imp-long")
