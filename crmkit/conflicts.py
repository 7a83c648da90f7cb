"""Optimistic writes: read, decide, write if nothing changed meanwhile, else try again a few times."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

log = logging.getLogger("crmkit.conflicts")

# Eight reads of a record that changes under each of them means something keeps writing it in a
# loop: the message is failed (and retried by the consumer) rather than spun on forever.
MAX_ATTEMPTS = 8


class KeptChanging(RuntimeError):
    """A record changed under every attempt to apply a message to it."""


def retry_on_conflict(what: str | Callable[[], str], *, attempts: int = MAX_ATTEMPTS) -> Iterator[int]:
    """Attempt numbers for a read-decide-write loop; ``return`` from the loop on success.

    ``for attempt in retry_on_conflict(f"lead {lead_id} under {message.id}"): ...`` runs the body up
    to ``attempts`` times, then raises ``KeptChanging`` naming ``what`` (a callable is asked only
    then, for a description that changes between attempts).
    """
    for attempt in range(attempts):
        if attempt:
            log.info("%s changed concurrently; applying again (attempt %d)", _named(what), attempt + 1)
        yield attempt
    raise KeptChanging(f"{_named(what)} kept changing")


def _named(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what
