"""Pipelines with their stages, as stored: few, so read whole; their webhooks' secrets sealed at rest."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crmkit.applied import Applied, applied_for, kept
from services.leads.actions.sealing import Sealer
from services.leads.domain import Pipeline

T = TypeVar("T")


def _writing(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A write of the repository: ``writes`` counts it once it is over (stored or not), and ``written`` are told."""

    @functools.wraps(method)
    async def wrapper(self: PipelineRepository, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        finally:
            self.writes += 1
            for listener in self.written:
                listener()

    return wrapper


class PipelineRepository:
    """Pipelines with their stages; few, so read whole."""

    def __init__(self, db: AsyncDatabase, sealer: Sealer | None = None) -> None:
        self._col = db["pipelines"]
        self._sealer = sealer or Sealer()  # the webhooks' signing secrets are stored sealed (actions/sealing.py)
        self.writes = 0  # bumped after each write (``_writing``): the read side's kept pipelines (readaccess.py) are read again
        self.written: list[Callable[[], None]] = []  # called after each write (the idle actions consumer looks again)

    async def all(self, include_deleted: bool = False) -> dict[str, Pipeline]:
        query = {} if include_deleted else {"deleted": False}
        return {d["_id"]: self._pipeline_from(d) async for d in self._col.find(query)}

    async def get(self, pipeline_id: str) -> Pipeline | None:
        doc = await self._col.find_one({"_id": pipeline_id})
        return self._pipeline_from(doc) if doc else None

    async def recent_events(self, pipeline_id: str, message_id: str) -> list[str] | None:
        doc = await self._col.find_one({"_id": pipeline_id, "_recent.id": message_id}, {"_recent": 1})
        if not doc:
            return None
        found = applied_for((Applied.from_doc(r) for r in doc["_recent"]), message_id)
        return found.events if found else []

    @_writing
    async def save(self, pipeline: Pipeline, expected_version: int | None, message_id: str, events: list[str], keep: int) -> bool:
        """Store a pipeline change; False when another writer got there first."""
        doc = self._stored(pipeline)
        doc["_id"] = pipeline.pipeline_id
        previous = await self._col.find_one({"_id": pipeline.pipeline_id}, {"_recent": 1})
        recent = [Applied.from_doc(r) for r in (previous or {}).get("_recent", [])]
        doc["_recent"] = [r.to_doc() for r in kept([*recent, Applied(message_id, events)], keep)]
        try:
            if expected_version is None:
                await self._col.insert_one(doc)
                return True
            result = await self._col.replace_one({"_id": pipeline.pipeline_id, "version": expected_version}, doc)
            return result.matched_count == 1
        except DuplicateKeyError:
            return False

    @_writing
    async def ensure_default(self, pipeline: Pipeline, announcement: str) -> str | None:
        """Insert the default pipeline once; return its creation event until that is marked announced."""
        try:
            doc = self._stored(pipeline)
            doc.update({"_id": pipeline.pipeline_id, "_recent": [], "_announced": False, "_announcement": announcement})
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            pass
        doc = await self._col.find_one({"_id": pipeline.pipeline_id})
        return None if doc.get("_announced", True) else doc.get("_announcement")

    @_writing
    async def mark_announced(self, pipeline_id: str) -> None:
        await self._col.update_one({"_id": pipeline_id}, {"$set": {"_announced": True}})

    @_writing
    async def reseal(self) -> int:
        """Seal every stored webhook secret with the first key (stored plain, or with an older key); pipelines changed.
        A secret no key opens stops this with SecretUnreadable, before anything is rewritten."""
        changed = 0
        async for doc in self._col.find({}):
            stages = [dict(stage, on_enter=[dict(a) for a in stage.get("on_enter") or []]) for stage in doc.get("stages") or []]
            found = [(a, self._sealer.reseal(a.get("secret"))) for stage in stages for a in stage["on_enter"]]
            if any(sealed is not None for _, sealed in found):
                for action, sealed in found:
                    action["secret"] = sealed or action.get("secret")
                await self._col.update_one({"_id": doc["_id"], "version": doc.get("version")}, {"$set": {"stages": stages}})
                changed += 1
        return changed

    def _stored(self, pipeline: Pipeline) -> dict[str, Any]:
        doc = pipeline.model_dump()
        for stage in doc["stages"]:
            for action in stage.get("on_enter") or []:
                action["secret"] = self._sealer.seal(action.get("secret"))
        return doc

    def _pipeline_from(self, doc: dict[str, Any]) -> Pipeline:
        pipeline = Pipeline.model_validate({k: v for k, v in doc.items() if not k.startswith("_")})
        if any(a.secret for s in pipeline.stages for a in s.on_enter):
            stages = [s.model_copy(update={"on_enter": [a.model_copy(update={"secret": self._sealer.open(a.secret)}) for a in s.on_enter]})
                      for s in pipeline.stages]
            pipeline = pipeline.model_copy(update={"stages": stages})
        return pipeline
