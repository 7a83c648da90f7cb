"""The board's stage counts kept by the write path, exact across redelivery, crashes and concurrent instances.

A lead is counted on the board under its key (pipeline, stage) while it is live. Each change of a
lead's key is a ``Change`` caused by one consumed message (its topic partition ``tp`` and offset), stored
on the lead document with the lead itself (so no change is lost between two writes), and added to the
counter documents of that partition once the batch has stored its leads, before its offsets commit:

    {_id, epoch, pipeline_id, stage_id, tp, n, o}   n = the sum of the changes to that key caused by
                                                    messages of ``tp`` up to offset ``o``

A partition has one consumer at a time, so each counter document has one writer, and a batch covers a
contiguous range of its partitions' offsets: a counter adds only the changes after its ``o`` and up to
the batch's end, and moves ``o`` to that end (guarded by the ``o`` it read). A batch stored but not
counted (a crash, an outage, a failed publish) is redelivered from the committed offset; its messages
are then seen as applied and their changes read back from the lead documents. A merge changes a lead
of another partition: the change belongs to the merging message's partition, so a counter may go below
zero while the sum over partitions stays exact. The board's count is the sum over partitions and the
``base`` documents a recount wrote.

Counts are used only while the ``meta`` document says they are complete in its epoch. A recount
(``rebuild``) starts a new epoch, waits ``grace_s`` for batches that read the earlier one to store their
leads, counts each stage's index range into ``base`` documents and marks the epoch complete; batches
wait while it runs, and changes stamped with an earlier epoch are never added to a later one (the
recount counted them). A batch that took longer than the grace period across a recount, or a counter
write that failed for good, marks the counts stale: boards count index ranges until the next recount.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crmkit.errors import is_transient
from crmkit.mongo import ensure_indexes
from services.leads.domain import Pipeline
from services.leads.domain.board import NO_POSITIONS, Change, Key, Positions, board_key, change_of, deltas, kept, plan

# The pure rules live in the domain (services/leads/domain/board.py); their names stay importable from here.
__all__ = [
    "NO_POSITIONS", "Change", "CountsBusy", "Key", "LeadCounters", "Positions", "Stamp", "board_key", "change_of", "counter_id",
    "deltas", "kept", "plan",
]

log = logging.getLogger("services.leads.counters")

META = "meta"
BASE = "base"  # the ``tp`` of the counts a recount wrote


def counter_id(epoch: int, tp: str, key: Key) -> str:
    # JSON of the parts: unambiguous whatever the ids hold.
    return json.dumps([epoch, tp, key[0], key[1]], ensure_ascii=False)


@dataclass(frozen=True)
class Stamp:
    """What a batch read before storing its leads: the counts' epoch (None: not kept now) and when it read it."""

    epoch: int | None
    read_at: float


class CountsBusy(Exception):
    """A recount could not run or finish: another one holds the counts, or it was overtaken."""


class StageCounter(Protocol):
    async def count_by_stage(self, pipeline_id: str, stage_ids: Iterable[str]) -> dict[str, int]: ...


class PipelineSource(Protocol):
    async def all(self, include_deleted: bool = False) -> dict[str, Pipeline]: ...


def _state(meta: Mapping[str, Any] | None, now: datetime) -> str:
    """none, complete, rebuilding (a recount holds the counts), or stale (a recount is needed)."""
    if meta is None:
        return "none"
    state = str(meta.get("state"))
    until = meta.get("until")
    if state == "rebuilding" and until is not None and until.replace(tzinfo=UTC) < now:
        return "stale"  # the recount's holder died: its lease ran out
    return state


class LeadCounters:
    """The counter documents of the board (collection ``lead_counts``): kept by batches, read by the board, rebuilt by a recount."""

    def __init__(self, db: AsyncDatabase, *, keeping: bool = True, grace_s: float = 10.0, lease_s: float = 120.0,
                 poll_s: float = 0.05) -> None:
        self._col = db["lead_counts"]
        self.keeping = keeping
        self.grace_s = grace_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        # A test seam at the repository boundary: awaited after a batch stored its leads and before its
        # counters are written (a test makes it fail or hang, as a crash there would).
        self.fault: Callable[[], Awaitable[None]] | None = None
        self._marked_stale = False

    async def ensure_indexes(self) -> None:
        # The board reads one pipeline's counters: a string equality the patched FerretDB pushes down.
        await ensure_indexes(self._col, [IndexModel([("pipeline_id", ASCENDING)], name="pipeline_id_1")])

    async def meta(self) -> dict[str, Any] | None:
        return await self._col.find_one({"_id": META})

    async def state(self) -> str:
        return _state(await self.meta(), datetime.now(UTC))

    # --- the write path -------------------------------------------------------------------------

    async def begin(self) -> Stamp:
        """Before a batch stores its leads: the epoch its changes count in. Waits while a recount runs (or,
        before the first one, for it), up to the lease; after that the changes are only recorded."""
        if not self.keeping:
            await self._stop_counting()
            return Stamp(None, time.monotonic())
        waited_until = time.monotonic() + self.lease_s
        while True:
            read_at = time.monotonic()
            meta = await self.meta()
            state = _state(meta, datetime.now(UTC))
            if state == "complete":
                return Stamp(int(meta["epoch"]), read_at)  # type: ignore[index]
            if state == "stale" or read_at > waited_until:
                return Stamp(None, read_at)
            await asyncio.sleep(self.poll_s)  # "none" or "rebuilding": the recount counts what is stored now

    async def apply(self, changes: Iterable[Change], positions: Positions, stamp: Stamp) -> None:
        """After a batch stored its leads, before its offsets commit: add its changes the counters lack."""
        if stamp.epoch is None:
            return
        found = deltas((c for c in changes if positions.covers(c)), stamp.epoch)
        if not found:
            return
        if self.fault is not None:
            await self.fault()
        try:
            await self._add(found, positions, stamp)
        except Exception as exc:
            if is_transient(exc):
                raise  # the batch is retried, and its changes read back from its leads
            log.exception("board counters not written; boards count index ranges until `crm leads recount`")
            await self.mark_stale()

    async def _add(self, found: dict[tuple[str, Key], list[tuple[int, int]]], positions: Positions, stamp: Stamp) -> None:
        epoch = stamp.epoch
        assert epoch is not None
        ids = {counter_id(epoch, tp, key): (tp, key) for tp, key in found}
        for _attempt in range(8):
            docs = {d["_id"]: d async for d in self._col.find({"_id": {"$in": [META, *ids]}})}
            meta = docs.pop(META, None)
            if _state(meta, datetime.now(UTC)) != "complete" or meta["epoch"] != epoch:  # type: ignore[index]
                # A recount started after this batch read the epoch; it counted these leads, unless the
                # batch stored them later than the grace period allowed.
                if time.monotonic() - stamp.read_at > self.grace_s:
                    log.warning("a batch outlasted a recount's grace period; boards count index ranges until the next recount")
                    await self.mark_stale()
                return
            counted = {ids[i]: int(doc["o"]) for i, doc in docs.items()}
            ops: list[Any] = []
            for (tp, key), add, end in plan(found, counted, positions.ranges):
                doc_id = counter_id(epoch, tp, key)
                if doc_id not in docs:
                    ops.append(InsertOne({"_id": doc_id, "epoch": epoch, "pipeline_id": key[0], "stage_id": key[1],
                                          "tp": tp, "n": add, "o": end}))
                else:
                    ops.append(UpdateOne({"_id": doc_id, "o": docs[doc_id]["o"]}, {"$inc": {"n": add}, "$set": {"o": end}}))
            if not ops:
                return
            updates = sum(isinstance(op, UpdateOne) for op in ops)
            try:
                result = await self._col.bulk_write(ops, ordered=False)
                if result.matched_count == updates:
                    return
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
            # Another writer moved a counter meanwhile (a consumer finishing its batch after a rebalance):
            # read again; what was written is not added twice, its ``o`` says so.
        raise RuntimeError(f"board counters {sorted(ids)[:3]} kept changing under this batch")

    async def mark_stale(self) -> None:
        """Counts are not to be trusted until a recount: boards count index ranges meanwhile."""
        await self._col.update_one({"_id": META}, {"$set": {"state": "stale"}})

    async def _stop_counting(self) -> None:
        # An instance that does not keep the counts but writes leads makes them wrong: say so once.
        if not self._marked_stale:
            await self.mark_stale()
            self._marked_stale = True

    # --- the read side --------------------------------------------------------------------------

    async def board(self, pipeline_id: str) -> dict[str, int] | None:
        """Each stage's count of live leads, or None while the counts are not known complete (count ranges then).

        One query reads the pipeline's counters and the meta document (its ``pipeline_id`` is "", which no
        pipeline has): one SQLite statement on FerretDB, so the epoch and its counters are read together.
        A recount keeps the epoch before its own, so a read that saw that one still finds its counters.
        """
        if not self.keeping:
            return None
        found = [doc async for doc in self._col.find({"pipeline_id": {"$in": ["", pipeline_id]}},
                                                     {"epoch": 1, "stage_id": 1, "n": 1, "state": 1, "until": 1})]
        meta = next((doc for doc in found if doc["_id"] == META), None)
        if _state(meta, datetime.now(UTC)) != "complete":
            return None
        epoch = meta["epoch"]  # type: ignore[index]
        counts: dict[str, int] = defaultdict(int)
        for doc in found:
            if doc["_id"] != META and doc.get("epoch") == epoch:
                counts[doc["stage_id"]] += int(doc["n"])
        return dict(counts)

    # --- rebuilding -------------------------------------------------------------------------------

    async def ensure(self, leads: StageCounter, pipelines: PipelineSource) -> dict[str, Any] | None:
        """At start-up: count the stored leads when no counts exist yet (first start), or after they went stale."""
        if not self.keeping:
            return None
        meta = await self.meta()
        state = _state(meta, datetime.now(UTC))
        if state in ("complete", "rebuilding"):
            return None
        try:
            # Before the first counts every batch waits for them, so none can be storing: no grace needed.
            return await self.rebuild(leads, pipelines, grace_s=0.0 if meta is None else self.grace_s)
        except CountsBusy as exc:  # another instance counts
            log.info("board counts: %s", exc)
            return None

    async def rebuild(self, leads: StageCounter, pipelines: PipelineSource, *, grace_s: float | None = None) -> dict[str, Any]:
        """Count every stage of every pipeline from its index range into a new epoch; the old epoch's counters go."""
        grace = self.grace_s if grace_s is None else grace_s
        now = datetime.now(UTC)
        meta = await self.meta()
        if _state(meta, now) == "rebuilding":
            raise CountsBusy(f"a recount is running (its lease ends at {meta['until']:%H:%M:%S} UTC)")  # type: ignore[index]
        epoch = int(meta["epoch"]) + 1 if meta else 1
        until = now + timedelta(seconds=self.lease_s + grace)
        claim = {"epoch": epoch, "state": "rebuilding", "until": until}
        if meta is None:
            try:
                await self._col.insert_one({"_id": META, "pipeline_id": "", **claim})
            except DuplicateKeyError:
                raise CountsBusy("another instance started the first count") from None
        elif (await self._col.update_one({"_id": META, "epoch": meta["epoch"], "state": meta.get("state")}, {"$set": claim})).matched_count != 1:
            raise CountsBusy("another instance started a recount")
        started = time.monotonic()
        if grace > 0:
            await asyncio.sleep(grace)  # batches that read the earlier epoch finish storing their leads
        found = await pipelines.all(include_deleted=True)
        counts: dict[Key, int] = {}
        for pipeline in found.values():
            per_stage = await leads.count_by_stage(pipeline.pipeline_id, [s.stage_id for s in pipeline.stages])
            counts.update({(pipeline.pipeline_id, stage): n for stage, n in per_stage.items()})
        docs = [
            {"_id": counter_id(epoch, BASE, key), "epoch": epoch, "pipeline_id": key[0], "stage_id": key[1], "tp": BASE, "n": n, "o": -1}
            for key, n in counts.items() if n
        ]
        if docs:
            await self._col.insert_many(docs)
        done = await self._col.update_one(
            {"_id": META, "epoch": epoch, "state": "rebuilding", "until": {"$gt": datetime.now(UTC)}},
            {"$set": {"state": "complete", "counted_at": datetime.now(UTC)}, "$unset": {"until": ""}},
        )
        if done.matched_count != 1:
            raise CountsBusy("the recount was overtaken (its lease ran out, or a batch outlasted its grace period); run it again")
        # The epoch before stays until the next recount: a board that read it as complete still finds it whole.
        await self._col.delete_many({"_id": {"$ne": META}, "epoch": {"$lt": epoch - 1}})
        return {"epoch": epoch, "pipelines": len(found), "leads": sum(counts.values()),
                "stages": {f"{p}/{s}": n for (p, s), n in sorted(counts.items())}, "seconds": round(time.monotonic() - started, 3)}
