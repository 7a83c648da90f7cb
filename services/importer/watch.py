"""Status requests that wait for an import's next change (``GET /imports/{id}?wait=N``), woken by the worker."""

from __future__ import annotations

import asyncio


class JobWatch:
    """One event per watched import, shared by the requests waiting on it and set at the job's next change."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}  # import id -> (event, requests waiting)

    def start(self, import_id: str) -> asyncio.Event:
        """An event set at the job's next change; taken before the job is read, so no change falls between."""
        event, waiters = self._events.get(import_id, (asyncio.Event(), 0))
        self._events[import_id] = (event, waiters + 1)
        return event

    async def wait(self, import_id: str, event: asyncio.Event, timeout: float) -> None:
        """Until ``event`` (from ``start``) is set or ``timeout`` seconds pass; the request then stops watching."""
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            self.stop(import_id, event)

    def stop(self, import_id: str, event: asyncio.Event) -> None:
        """One request no longer waits on ``event``; the last one removes it."""
        found = self._events.get(import_id)
        if found is not None and found[0] is event:
            if found[1] <= 1:
                del self._events[import_id]
            else:
                self._events[import_id] = (event, found[1] - 1)

    def changed(self, import_id: str) -> None:
        """The job's state or progress changed: every request waiting on it is answered."""
        found = self._events.pop(import_id, None)
        if found is not None:
            found[0].set()
