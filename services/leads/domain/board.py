"""The board counts' rules: which key a lead is counted under, the change a message made to it, and what a batch adds (counters.py keeps them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.leads.domain.model import Lead

Key = tuple[str, str]  # (pipeline_id, stage_id) of a live lead


def board_key(lead: Lead | None) -> Key | None:
    """Where the board counts this lead: its pipeline and stage while it is live, else nowhere."""
    if lead is None or lead.deleted:
        return None
    return (lead.pipeline_id, lead.stage_id)


@dataclass(frozen=True)
class Change:
    """A lead moved from ``before`` to ``after`` (None: not on any board) by the message at ``tp``/``offset``.

    ``epoch`` is the counts' epoch the batch read (None: counts were not kept then, so it is never added).
    """

    tp: str
    offset: int
    epoch: int | None
    before: Key | None
    after: Key | None

    def to_doc(self) -> list[Any]:
        return [self.tp, self.offset, self.epoch, list(self.before) if self.before else None, list(self.after) if self.after else None]

    @classmethod
    def from_doc(cls, raw: list[Any]) -> Change:
        tp, offset, epoch, before, after = raw
        return cls(tp, int(offset), epoch, (before[0], before[1]) if before else None, (after[0], after[1]) if after else None)


@dataclass(frozen=True)
class Positions:
    """Where a consumed batch's messages sit: each message id's (topic:partition, offset), each partition's offset range."""

    origins: Mapping[str, tuple[str, int]]
    ranges: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, records: Iterable[tuple[str, int, int, str]]) -> Positions:
        """From (topic, partition, offset, message id) of every record of the batch."""
        origins: dict[str, tuple[str, int]] = {}
        ranges: dict[str, tuple[int, int]] = {}
        for topic, partition, offset, message_id in records:
            tp = f"{topic}:{partition}"
            origins.setdefault(message_id, (tp, offset))  # a message sent twice counts where it was first applied
            low, high = ranges.get(tp, (offset, offset))
            ranges[tp] = (min(low, offset), max(high, offset))
        return cls(origins, ranges)

    def covers(self, change: Change) -> bool:
        span = self.ranges.get(change.tp)
        return span is not None and span[0] <= change.offset <= span[1]


NO_POSITIONS = Positions({}, {})


def change_of(before: Lead | None, after: Lead | None, origin: tuple[str, int] | None, epoch: int | None) -> Change | None:
    """The board change a message made to a lead, if it moved the lead's key."""
    old, new = board_key(before), board_key(after)
    if origin is None or old == new:
        return None
    return Change(origin[0], origin[1], epoch, old, new)


def kept(stored: Iterable[Change], new: Iterable[Change], positions: Positions) -> list[Change]:
    """The changes a lead's document keeps when it is written: the new ones, and the stored ones that may
    not be counted yet (of a partition this batch does not cover, or at or after where it starts: what
    came before a batch's start was counted before its offsets were committed)."""
    old = [c for c in stored if (span := positions.ranges.get(c.tp)) is None or c.offset >= span[0]]
    return old + list(new)


def deltas(changes: Iterable[Change], epoch: int) -> dict[tuple[str, Key], list[tuple[int, int]]]:
    """Per counter (partition, key): its (offset, +1/-1) of the changes counted in ``epoch``."""
    found: dict[tuple[str, Key], list[tuple[int, int]]] = defaultdict(list)
    for change in changes:
        if change.epoch != epoch:
            continue
        if change.before is not None:
            found[(change.tp, change.before)].append((change.offset, -1))
        if change.after is not None:
            found[(change.tp, change.after)].append((change.offset, 1))
    return found


def plan(
    found: Mapping[tuple[str, Key], list[tuple[int, int]]], counted: Mapping[tuple[str, Key], int], ranges: Mapping[str, tuple[int, int]],
) -> list[tuple[tuple[str, Key], int, int]]:
    """Per counter with steps after the offset it counted up to (``counted``; -1 when it is new): what to add,
    and the batch's end in its partition, up to which it has then counted (every change of that partition
    up to there is in this batch or was counted before it)."""
    out = []
    for counter, steps in found.items():
        later = [step for offset, step in steps if offset > counted.get(counter, -1)]
        if later:
            out.append((counter, sum(later), ranges[counter[0]][1]))
    return out
