"""Log lines: JSON with the message's context off a terminal, readable text on one, no colour codes, start-up noise at INFO."""

from __future__ import annotations

import io
import json
import logging

import pytest

from contracts import build_message, payload_class
from crmctl.ops import readable
from crmkit.logs import configure_logging, message_fields
from crmkit.tracing import traceparent_for


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _message():
    payload = payload_class("crm.lead.create").model_validate({"lead_id": "L-7", "title": "t", "import_id": "imp-1"})
    message = build_message(payload, source="test", actorid="alice", correlationid="corr-1")
    message.traceparent = traceparent_for(message.id)
    return message


def test_json_lines_carry_the_messages_context_when_not_on_a_terminal(restore_logging):
    out = io.StringIO()
    configure_logging("leads", "INFO", "auto", stream=out)
    message = _message()
    logging.getLogger("crmkit.messaging").warning("handler failed on %s", "x", extra=message_fields(message))
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["level"] == "WARNING" and line["service"] == "leads" and line["message"] == "handler failed on x"
    assert (line["message_id"], line["message_type"], line["correlation_id"]) == (message.id, "crm.lead.create", "corr-1")
    assert (line["lead_id"], line["import_id"]) == ("L-7", "imp-1")
    assert line["trace_id"] == message.traceparent[3:35]
    assert line["time"].endswith("+00:00")


def test_a_terminal_gets_readable_lines_and_nothing_gets_colour_codes(restore_logging):
    out = _Terminal()
    configure_logging("leads", "INFO", "auto", stream=out)
    # FastStream's own logger writes through a colouring handler of its own; configure_logging removes it.
    faststream = logging.getLogger("faststream")
    logging.getLogger("faststream").warning("\x1b[33mcoloured\x1b[0m text")
    text = out.getvalue()
    assert "\x1b[" not in text and "coloured text" in text and not text.lstrip().startswith("{")
    assert faststream.propagate and not faststream.handlers


def test_transient_start_up_noise_is_info_and_hidden_at_warning(restore_logging):
    out = io.StringIO()
    configure_logging("leads", "WARNING", "json", stream=out)
    logging.getLogger("aiokafka.consumer.group_coordinator").error("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")
    logging.getLogger("aiokafka.cluster").warning("Topic t.crm.leads.events.v1 not found in cluster metadata")
    logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: x")
    logging.getLogger("crm.faststream.leads").warning("Auto create topics is disabled. Make sure the topics exist.")
    logging.getLogger("aiokafka.consumer").error("a real failure")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [("ERROR", "a real failure")]

    out = io.StringIO()
    configure_logging("leads", "INFO", "json", stream=out)
    logging.getLogger("aiokafka.consumer.group_coordinator").error("GroupCoordinatorNotAvailableError")
    assert json.loads(out.getvalue().splitlines()[-1])["level"] == "INFO"


def test_a_commit_refused_by_a_rebalance_is_a_warning_that_says_nothing_is_lost(restore_logging):
    out = io.StringIO()
    configure_logging("leads", "WARNING", "json", stream=out)
    # What a scale-out logs (bench_leads x3, 2026-12-02): aiokafka's refused commit, then FastStream's ack step.
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "OffsetCommit failed for group g.leads-actions due to group error ([Error 22] IllegalGenerationError: g.leads-actions), will rejoin")
    try:
        raise RuntimeError("CommitFailedError('Commit cannot be completed since the group has already\n    rebalanced')")
    except RuntimeError as exc:
        logging.getLogger("crm.faststream.leads").log(logging.CRITICAL, repr(exc), exc_info=exc)
    logging.getLogger("crm.faststream.leads").critical("CommitFailed in a handler of ours is not a Kafka complaint")
    logging.getLogger("services.leads").critical("CommitFailedError raised by our own code stays critical")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["WARNING", "WARNING", "CRITICAL", "CRITICAL"]
    for line in lines[:2]:
        assert line["message"].startswith("a batch's offsets were not committed: its partitions moved to another instance")
        assert "\n" not in line["message"] and "exception" not in line
    assert "IllegalGenerationError" in lines[0]["message"] and "CommitFailedError" in lines[1]["message"]


def test_crm_logs_shows_a_json_line_readably():
    line = json.dumps({"time": "2026-01-01T00:00:00+00:00", "level": "WARNING", "service": "leads", "message": "parked",
                       "lead_id": "L-1", "trace_id": "ab" * 16})
    assert readable(line) == f"2026-01-01T00:00:00+00:00 WARNING leads: parked [lead_id=L-1 trace_id={'ab' * 16}]"
    assert readable("plain text") == "plain text"
