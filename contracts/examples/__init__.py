"""One valid example envelope per message type, as it travels on Kafka (JSON-ready dicts)."""

from typing import Any

from contracts.examples import activity, directory, imports, leads, qualification

_ALL = [*leads.EXAMPLES, *qualification.EXAMPLES, *imports.EXAMPLES, *activity.EXAMPLES, *directory.EXAMPLES]
EXAMPLES: dict[str, dict[str, Any]] = {example["type"]: example for example in _ALL}
assert len(EXAMPLES) == len(_ALL), "one example per type"
