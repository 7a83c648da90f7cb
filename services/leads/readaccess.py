"""What the HTTP read side checks on every request (the caller's principal, the pipelines) kept for a moment."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from crmkit.principals import Principal
from services.leads.domain import Pipeline
from services.leads.domain.capture import FORM_ACTOR_PREFIX

T = TypeVar("T")


class _Written(Protocol):
    writes: int  # bumped by the repository after each write it makes


class _Principals(_Written, Protocol):
    async def get(self, user_id: str | None) -> Principal: ...


class _Pipelines(_Written, Protocol):
    async def all(self, include_deleted: bool = False) -> dict[str, Pipeline]: ...
    async def get(self, pipeline_id: str) -> Pipeline | None: ...


class _Kept:
    """One value read from the database, good until ``ttl_s`` after the read started and while its
    repository has written nothing since: a read that began before a write of this instance is never
    kept past it, so this instance answers from what it stored itself at once."""

    def __init__(self, repository: _Written, ttl_s: float, clock: Callable[[], float]) -> None:
        self._repository, self._ttl_s, self._clock = repository, ttl_s, clock
        self._kept: dict[str, tuple[object, int, float]] = {}

    def kept(self, key: str) -> bool:
        kept = self._kept.get(key)
        return kept is not None and kept[1] == self._repository.writes and self._clock() < kept[2]

    async def get(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        writes, now = self._repository.writes, self._clock()
        kept = self._kept.get(key)
        if kept is not None and kept[1] == writes and now < kept[2]:
            return kept[0]  # type: ignore[return-value]
        value = await read()
        if self._ttl_s > 0 and self._repository.writes == writes:
            self._kept[key] = (value, writes, now + self._ttl_s)
        return value


class ReadAccess:
    """The caller's licence, roles and groups and the pipelines (with their visibility) for the read routes,
    each read at most once per ``ttl_s`` (0: on every request, as before).

    A card read three documents (principal, lead, pipeline), each costing FerretDB about what the lead
    does; kept here, it reads the lead alone. What this instance applies itself (a directory event, a
    pipeline change) counts at once; one applied by another instance counts within ``ttl_s``, on top of
    the time the event takes to reach the service (README, Security). The command path never reads here.
    """

    def __init__(self, principals: _Principals, pipelines: _Pipelines, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._principals, self._pipelines = principals, pipelines
        # Bounded: a bearer token names one of the deployment's configured users.
        self._users = _Kept(principals, ttl_s, clock)
        self._all = _Kept(pipelines, ttl_s, clock)

    def kept(self, user_id: str) -> bool:
        """Whether ``get(user_id)`` would answer without reading the database."""
        return self._users.kept(user_id)

    async def get(self, user_id: str | None) -> Principal:
        """The principal, as ``PrincipalRepository.get`` gives it (a form's licence is read each time: it ends with the form)."""
        if not user_id or user_id.startswith(FORM_ACTOR_PREFIX):
            return await self._principals.get(user_id)
        return await self._users.get(user_id, lambda: self._principals.get(user_id))

    async def all_pipelines(self, include_deleted: bool = False) -> dict[str, Pipeline]:
        found = await self._all.get("all", lambda: self._pipelines.all(include_deleted=True))
        return dict(found) if include_deleted else {pid: p for pid, p in found.items() if not p.deleted}

    async def pipeline(self, pipeline_id: str) -> Pipeline | None:
        """One pipeline; one made since the pipelines were last read is read on its own (a lead in it is no 404)."""
        found = await self.all_pipelines(include_deleted=True)
        if pipeline_id in found:
            return found[pipeline_id]
        return await self._pipelines.get(pipeline_id)
