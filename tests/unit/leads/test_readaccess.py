"""The read side's kept principals and pipelines: read once per TTL, forgotten at once on this instance's own writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from crmkit.principals import Principal
from services.leads import domain as d
from services.leads.readaccess import ReadAccess

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


class Principals:
    """A principals repository in memory that counts its reads and writes as the real one does."""

    def __init__(self) -> None:
        self.stored = {"bob": Principal("bob", frozenset({"crm"}))}
        self.reads = 0
        self.writes = 0
        self.gate: asyncio.Event | None = None  # a read waits on it when set (a write lands meanwhile)

    async def get(self, user_id: str | None) -> Principal:
        self.reads += 1
        found = self.stored.get(user_id or "") or Principal(user_id or "")
        if self.gate is not None:
            await self.gate.wait()
        return found

    def revoke(self, user_id: str) -> None:
        self.stored[user_id] = Principal(user_id)
        self.writes += 1


class Pipelines:
    def __init__(self) -> None:
        default = d.default_pipeline(NOW)
        gone = default.model_copy(update={"pipeline_id": "old", "is_default": False, "deleted": True})
        self.stored = {"default": default, "old": gone}
        self.reads = 0
        self.writes = 0

    async def all(self, include_deleted: bool = False) -> dict[str, d.Pipeline]:
        self.reads += 1
        return {pid: p for pid, p in self.stored.items() if include_deleted or not p.deleted}

    async def get(self, pipeline_id: str) -> d.Pipeline | None:
        self.reads += 1
        return self.stored.get(pipeline_id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _access(ttl_s: float = 1.0) -> tuple[ReadAccess, Principals, Pipelines, Clock]:
    principals, pipelines, clock = Principals(), Pipelines(), Clock()
    return ReadAccess(principals, pipelines, ttl_s, clock), principals, pipelines, clock


async def test_a_principal_is_read_once_within_the_ttl_and_again_after_it():
    access, principals, _, clock = _access()
    assert (await access.get("bob")).licensed and (await access.get("bob")).licensed
    assert principals.reads == 1
    principals.stored["bob"] = Principal("bob")  # revoked by another instance: this one learns it after the TTL
    clock.now += 0.99
    assert (await access.get("bob")).licensed
    clock.now += 0.02
    assert not (await access.get("bob")).licensed
    assert principals.reads == 2


async def test_a_write_of_this_instance_counts_at_once():
    access, principals, pipelines, _ = _access(ttl_s=3600)
    assert (await access.get("bob")).licensed
    principals.revoke("bob")
    assert not (await access.get("bob")).licensed
    assert (await access.pipeline("default")).visible_to is None
    pipelines.stored["default"] = pipelines.stored["default"].model_copy(update={"visible_to": d.Visibility(groups=["vip"])})
    pipelines.writes += 1
    assert (await access.pipeline("default")).visible_to.groups == ["vip"]


async def test_a_read_that_began_before_a_write_is_not_kept():
    access, principals, _, _ = _access(ttl_s=3600)
    principals.gate = asyncio.Event()
    reading = asyncio.create_task(access.get("bob"))
    await asyncio.sleep(0)  # the read has the old principal and waits
    principals.revoke("bob")  # the revoke is stored while it waits
    principals.gate.set()
    assert (await reading).licensed  # what it read, as any read in flight during a write
    principals.gate = None
    assert not (await access.get("bob")).licensed


async def test_ttl_zero_reads_every_time():
    access, principals, pipelines, _ = _access(ttl_s=0)
    for _ in range(3):
        await access.get("bob")
        await access.pipeline("default")
    assert principals.reads == 3 and pipelines.reads == 3


async def test_capture_form_actors_and_blank_ids_are_read_each_time():
    access, principals, _, _ = _access()
    for user in ("capture-form:f1", "capture-form:f1", "", None):
        await access.get(user)
    assert principals.reads == 4


async def test_pipelines_live_or_all_and_one_made_since_they_were_read():
    access, _, pipelines, _ = _access(ttl_s=3600)
    assert set(await access.all_pipelines()) == {"default"}
    assert set(await access.all_pipelines(include_deleted=True)) == {"default", "old"}
    assert (await access.pipeline("old")).deleted
    assert pipelines.reads == 1
    # Made by another instance since: read on its own, not answered as missing.
    pipelines.stored["new"] = pipelines.stored["default"].model_copy(update={"pipeline_id": "new", "is_default": False})
    assert (await access.pipeline("new")).pipeline_id == "new"
    assert await access.pipeline("nope") is None
    assert pipelines.reads == 3
    # The kept dict is not the caller's to change.
    (await access.all_pipelines(include_deleted=True)).clear()
    assert set(await access.all_pipelines(include_deleted=True)) == {"default", "old"}


def test_reads_keep_access_a_minute_at_most():
    import pytest
    from pydantic import ValidationError

    from services.leads.settings import LeadsSettings

    with pytest.raises(ValidationError, match="read_access_cache_s"):
        LeadsSettings(read_access_cache_s=61)
    assert LeadsSettings(read_access_cache_s=0).read_access_cache_s == 0
