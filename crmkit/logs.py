"""Log lines of a service: JSON objects off a terminal, plain readable text on one, never colour codes."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from .tracing import trace_id_of

# Attributes a log record may carry (``extra=``) that identify what it is about; shown when set.
CONTEXT_FIELDS = ("message_id", "message_type", "correlation_id", "lead_id", "import_id", "trace_id", "group", "topic")

# Start-up noise: aiokafka and FastStream report at WARNING/ERROR what every start meets for a moment
# (the group coordinator is still being elected, a topic's metadata is not there yet) and then cures.
TRANSIENT_NOISE = re.compile(
    r"GroupCoordinatorNotAvailable|CoordinatorNotAvailable|NotCoordinatorForGroup|Topic .* not found|"
    r"UnknownTopicOrPartition|LeaderNotAvailable|NotLeaderForPartition|NodeNotReady|Coordinator dead|"
    r"Group Coordinator Request failed|Unable connect to node with id|Unable to update metadata|"
    # FastStream's note on every subscriber's start: the service makes its topics itself before it
    # subscribes (crmkit/service.py, ensure_topics), so there is nothing for an operator to do.
    r"Auto create topics is disabled",
    re.IGNORECASE,
)
_NOISY_LOGGERS = ("aiokafka", "faststream", "crm.faststream")

# A batch's commit refused because the group rebalanced while the batch was handled: aiokafka reports
# it at ERROR, FastStream's ack step at CRITICAL with a traceback, on every scale-out or stopped
# instance. Nothing is lost (the new owner of those partitions handles the batch again, and the write
# paths apply a message at most once), so it is a WARNING that says so.
REBALANCED_COMMIT = re.compile(
    r"CommitFailedError|OffsetCommit failed for group .*(IllegalGeneration|RebalanceInProgress|UnknownMemberId)",
)
REBALANCED_NOTE = ("a batch's offsets were not committed: its partitions moved to another instance while it was "
                   "handled, which handles it again (nothing lost, each message still applied once): ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def message_fields(message: Any) -> dict[str, Any]:
    """A message's identifying attributes as log record fields."""
    data = message.data
    return {
        "message_id": message.id,
        "message_type": message.type,
        "correlation_id": message.correlationid,
        "lead_id": message.subject or getattr(data, "lead_id", None),
        "import_id": getattr(data, "import_id", None),
        "trace_id": trace_id_of(message.traceparent),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, service, logger, message and the context fields that are set."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": _ANSI.sub("", record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A readable line for a terminal: time, level, logger, message, then ``key=value`` context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        text = _ANSI.sub("", super().formatMessage(record))
        context = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None) is not None)
        return f"{text} [{context}]" if context else text


class TransientNoise(logging.Filter):
    """Lowers the known transient start-up complaints of the Kafka clients to INFO and a commit refused by a
    rebalance to a WARNING that says what it means, then applies the level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and record.name.startswith(_NOISY_LOGGERS):
            text = record.getMessage()
            if TRANSIENT_NOISE.search(text):
                record.levelno, record.levelname = logging.INFO, "INFO"
            elif record.levelno > logging.WARNING and REBALANCED_COMMIT.search(text):
                first = text.split("\n", 1)[0].strip()
                record.msg, record.args = REBALANCED_NOTE + first, ()
                record.exc_info = record.exc_text = None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return record.levelno >= self._level


def configure_logging(service: str, level: str, fmt: str = "auto", stream: Any = None) -> logging.Handler:
    """Send every log record (FastStream's too, uncoloured) through one handler with the chosen format."""
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    numeric = logging.getLevelName(level.upper())
    numeric = numeric if isinstance(numeric, int) else logging.WARNING
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    handler.addFilter(TransientNoise(numeric))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in list(logging.root.manager.loggerDict):
        if name == "faststream" or name.startswith("faststream."):
            logger = logging.getLogger(name)
            for old in list(logger.handlers):  # FastStream's own handlers write ANSI colour codes
                logger.removeHandler(old)
            logger.propagate = True
    return handler
