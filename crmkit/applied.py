"""The record of messages already applied to a stored aggregate, with what each produced (replayed on redelivery)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(slots=True)
class Applied(Generic[R]):
    """One message applied, with the records it produced: published again, unchanged, if it comes again.

    Kept beside the aggregate it changed and written with it, so the change and the record of it
    are one write: a redelivery after a crash finds it and publishes the same records.
    """

    message_id: str
    events: list[R] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.message_id, "events": self.events}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Applied[Any]:
        return cls(doc["id"], list(doc.get("events") or []))


def applied_for(entries: Iterable[Applied[R]], message_id: str) -> Applied[R] | None:
    """The entry of ``message_id``, if that message was applied already."""
    return next((entry for entry in entries if entry.message_id == message_id), None)


def kept(entries: Sequence[Applied[R]], keep: int) -> list[Applied[R]]:
    """The newest ``keep`` entries: a redelivery comes soon after, so older ones are not needed."""
    return list(entries)[-keep:]
