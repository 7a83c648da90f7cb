"""Waits, in a process of its own, until a consumer group has committed a topic up to a target offset sum.

Run by ``common.until_committed_elsewhere`` so that the polling's CPU is not counted as the CPU of a
service the benchmark runs in its own process (/proc counts a process as a whole).
Usage: wait_committed.py <bootstrap> <group> <topic> <target> <timeout seconds>
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from crmkit.settings import KafkaSettings  # noqa: E402
from tests.support import register_kafka  # noqa: E402


async def main(bootstrap: str, group: str, topic: str, target: int, timeout: float) -> None:
    register_kafka(KafkaSettings(kafka_bootstrap_servers=bootstrap))  # the credentials the parent exported
    client = common.admin(bootstrap)
    await client.start()
    try:
        await common.until_committed(client, group, topic, target, timeout=timeout)
    finally:
        await client.close()


if __name__ == "__main__":
    bootstrap, group, topic, target, timeout = sys.argv[1:6]
    asyncio.run(main(bootstrap, group, topic, int(target), float(timeout)))
