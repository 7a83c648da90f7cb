"""`crm leads bulk` against a scripted leads service: exit codes, a refused job, a restart waited out, refusals read whole."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from crmctl import leads as cli


def _status(state, *, done=0, total=3, refused=0, cancelled=0, error=None):
    counts = {"applied": done - refused - cancelled, "unchanged": 0, "refused": refused, "cancelled": cancelled}
    return {"bulk_id": "b1", "action": "delete", "params": {}, "state": state, "requested_by": "bob", "total": total,
            "sent": total, "counts": counts, "done": done, "cancel_requested": False, "refusals": [],
            "refusals_next_cursor": None, "error": error, "created_at": "2026-01-01T00:00:00+00:00", "finished_at": None}


class Service:
    """Answers the CLI's calls from a script: each GET /bulk/b1 takes the next status (an exception stands for a restart)."""

    def __init__(self, statuses, refusals=()):
        self.statuses = list(statuses)
        self.refusals = list(refusals)
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        if request.method == "POST":
            return httpx.Response(202, json={"bulk_id": "b1", "status_url": "/bulk/b1"})
        if request.url.path == "/bulk/b1/refusals":  # pages of two, the cursor being the position
            start = int(request.url.params.get("cursor") or 0)
            end = start + 2
            return httpx.Response(200, json={"items": self.refusals[start:end], "next_cursor": str(end) if end < len(self.refusals) else None})
        found = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(found, Exception):
            raise found
        return httpx.Response(200, json=found)


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)  # the CLI's polling pause; nothing to wait for here

    def use(service: Service) -> Service:
        monkeypatch.setattr(cli, "_client", lambda url, token: httpx.Client(base_url="http://leads", transport=httpx.MockTransport(service)))
        return service

    return use


def _run(*args):
    return CliRunner().invoke(cli.leads_app, ["bulk", *args, "--token", "t"])


def test_a_job_followed_to_the_end_lists_every_refusal_across_pages_and_exits_3(serve):
    refusals = [{"lead_id": f"L{i}", "reason_code": "invalid_state", "message": "deleted"} for i in range(5)]
    service = serve(Service([_status("running", done=1), _status("completed", done=3, total=5, refused=5)], refusals))
    result = _run("delete", "--id", "L1", "--json")
    assert result.exit_code == 3, result.output
    assert [r["lead_id"] for r in json.loads(result.stdout)["refusals"]] == [f"L{i}" for i in range(5)]
    assert sum(call.startswith("GET /bulk/b1/refusals") for call in service.calls) == 3  # pages of 2, 2 and 1
    assert all("limit=1" in call for call in service.calls if call.startswith("GET /bulk/b1?"))  # polling reads one refusal

    listed = _run("refusals", "b1")
    assert listed.exit_code == 0 and listed.stdout.splitlines() == ["lead_id,reason_code,message"] + [f"L{i},invalid_state,deleted" for i in range(5)]


def test_a_refused_job_stops_the_cli_with_its_reason(serve):
    serve(Service([_status("refused", total=0, error={"reason_code": "validation", "message": "the filter matches more than 10,000 leads"})]))
    result = _run("move", "--stage", "processing", "--where", "source=expo")
    assert result.exit_code == 1
    assert "refused: validation: the filter matches more than 10,000 leads" in result.output


def test_a_restart_of_the_service_is_waited_out_and_a_cancelled_job_exits_4(serve):
    down = httpx.ConnectError("connection refused")
    serve(Service([_status("running", done=1), down, down, _status("cancelled", done=3, cancelled=2)]))
    result = _run("assign", "--responsible", "carol", "--id", "L1", "--id", "L2", "--id", "L3")
    assert result.exit_code == 4, result.output
    assert "cancelled" in result.output


def test_more_ids_than_a_job_takes_are_refused_before_anything_is_sent(serve, tmp_path):
    service = serve(Service([_status("running")]))
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"L{i}" for i in range(1_001)))
    result = _run("delete", "--ids-file", str(ids))
    assert result.exit_code == 2 and "1,001 lead ids, at most 1,000" in result.output
    assert service.calls == []
