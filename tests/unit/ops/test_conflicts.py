"""The one optimistic-write loop and the one record of applied messages, shared by every service."""

from __future__ import annotations

import pytest

from crmkit.applied import Applied, applied_for, kept
from crmkit.conflicts import KeptChanging, retry_on_conflict


def test_a_loop_that_succeeds_stops_at_that_attempt() -> None:
    tried = []
    for attempt in retry_on_conflict("lead L1"):
        tried.append(attempt)
        if attempt == 2:
            break
    assert tried == [0, 1, 2]


def test_a_record_changing_under_every_attempt_is_named_in_the_error() -> None:
    pending = {"L1", "L2"}
    tried = []
    with pytest.raises(KeptChanging, match=r"leads \['L2'\] kept changing"):
        for attempt in retry_on_conflict(lambda: f"leads {sorted(pending)}", attempts=3):
            tried.append(attempt)
            pending.discard("L1")  # the description is asked for when the attempts run out
    assert tried == [0, 1, 2]
    assert issubclass(KeptChanging, RuntimeError)  # the consumer retries it like any handler failure


def test_applied_messages_are_found_kept_newest_and_stored_as_documents() -> None:
    entries = [Applied(f"m-{n}", [f"event-{n}"]) for n in range(5)]
    assert applied_for(entries, "m-3") == Applied("m-3", ["event-3"])
    assert applied_for(entries, "m-9") is None
    assert [e.message_id for e in kept(entries, 2)] == ["m-3", "m-4"]
    assert Applied.from_doc(entries[1].to_doc()) == entries[1]
    assert Applied.from_doc({"id": "m-x"}) == Applied("m-x", [])
