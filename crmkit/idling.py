"""A consumer group that stops fetching while it has nothing to do: partitions paused, offsets kept at the log end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from .errors import is_transient
from .passes import run_passes

log = logging.getLogger("crmkit.idling")


class IdleWhile:
    """Pauses a batch subscriber's partitions while ``may_idle()`` holds, and keeps their committed offsets at the end.

    One pass, every ``interval_s`` seconds or at once after ``wake()``, on the partitions assigned now:

    1. read the end offsets of the assigned partitions;
    2. ask ``may_idle()`` (it must read fresh state, nothing cached);
    3. if it says no: resume whatever is paused (fetching goes on from the offsets committed last);
       if yes: move each partition's position to the end read in 1, pause it and commit that end.

    Why that order loses nothing: a record at an offset below the end read in 1 was on the log before
    ``may_idle()`` was asked, so it was written while there was nothing to do for it (the caller's
    contract: ``may_idle()`` is true only when no record written before it was asked needs handling).
    A record written later lands at or after that end, is never committed past while paused, and is
    read once a pass resumes. Reading the end after the check would commit past a record written in
    between. The positions are moved too, so FastStream's own commit after a batch in flight (it
    commits every assigned partition's position) writes the same end and a resumed partition starts
    there.

    A rebalance gives a new owner its partitions from the ends committed; ``listener`` pauses them as
    they are assigned and wakes a pass, which resumes them if there is something to do (a few
    milliseconds later), so a rebalance of an idle group reads nothing. A commit refused by a rebalance
    in progress is left to the next pass.
    """

    def __init__(
        self, may_idle: Callable[[], Awaitable[bool]], interval_s: float, shown: Callable[[bool], None] = lambda idle: None,
    ) -> None:
        self.subscriber: Any = None  # FastStream's subscriber (set once subscribed); its ``consumer`` is aiokafka's, once started
        self._may_idle = may_idle
        self._interval_s = interval_s
        self._shown = shown  # told what each pass decided (the crm_consumer_idle gauge)
        self._woken = asyncio.Event()
        self.idle = False

    def wake(self) -> None:
        """Run a pass now (what the caller watches changed here): do not wait out the interval."""
        self._woken.set()

    def listener(self) -> ConsumerRebalanceListener:
        """For the subscription: partitions assigned are paused until the pass it wakes decides."""
        return _PauseOnAssignment(self)

    async def run_forever(self) -> None:
        await run_passes(self.run_once, self._woken, lambda: self._interval_s, _failed)

    async def run_once(self) -> bool:
        """One pass (above); whether the partitions are paused after it."""
        consumer = self.subscriber.consumer if self.subscriber is not None else None
        assigned = consumer.assignment() if consumer is not None else set()
        if not assigned:
            return False
        ends = await consumer.end_offsets(sorted(assigned))  # before the check: see the docstring
        if not await self._may_idle():
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
                log.info("resumed fetching %d partition(s)", len(paused))
            self._decided(False)
            return False
        still = consumer.assignment()
        ends = {tp: end for tp, end in ends.items() if tp in still}
        if not ends:
            return False
        for tp, end in ends.items():
            consumer.seek(tp, end)
        if not self.idle:
            log.info("nothing to do: fetching paused on %d partition(s), their offsets kept at the end", len(ends))
        consumer.pause(*ends)
        self._decided(True)
        await consumer.commit(ends)
        return True

    def _decided(self, idle: bool) -> None:
        self.idle = idle
        self._shown(idle)


def _failed(exc: Exception) -> None:
    """A pass that failed: the next one tries again; meanwhile the partitions stay as they are."""
    if is_transient(exc) or isinstance(exc, KafkaError):
        log.info("idle pass not done this time (%s: %s)", type(exc).__name__, exc)
    else:
        log.exception("idle pass failed", exc_info=exc)


class _PauseOnAssignment(ConsumerRebalanceListener):
    def __init__(self, idling: IdleWhile) -> None:
        self._idling = idling

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # Called once the assignment is in place and before anything is fetched for it.
        consumer = self._idling.subscriber.consumer if self._idling.subscriber is not None else None
        if consumer is not None and assigned:
            consumer.pause(*assigned)
        self._idling.wake()
