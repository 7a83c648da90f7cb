"""What a batch handler hands back when a step must wait until its messages are on the bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class PublishThen(list):
    """Messages to publish, and a step taken once Kafka acknowledged them all, before the offsets are committed
    (a record that must not be seen before the messages it tells of)."""

    def __init__(self, outbound: Sequence[Any], then: Callable[[], Awaitable[None]]) -> None:
        super().__init__(outbound)
        self.then = then
