"""Shared by the benchmarks: the stack's endpoints, per-process CPU from /proc, offsets, percentiles."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402

from contracts import build_message  # noqa: E402
from contracts.directory import UserLicenceGranted  # noqa: E402
from contracts.topics import DIRECTORY_EVENTS  # noqa: E402
from crmctl.stack import Stack  # noqa: E402
from tests.support import kafka_options  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- connections: every Kafka and MongoDB client of the benchmarks is made here -----------------

@dataclass(frozen=True)
class Endpoints:
    kafka: str
    mongodb: str
    kafka_pid: tuple[int, ...]  # every Kafka node's process
    ferretdb_pid: int | None

    @property
    def kafka_bootstrap(self) -> str:  # the names of crmctl's StackConfig, which older benchmarks take
        return self.kafka

    @property
    def mongodb_url(self) -> str:
        return self.mongodb


def stack_endpoints(stack: Stack | None = None) -> Endpoints:
    """The local stack's addresses and the pids crmctl wrote to its pid files (started if needed)."""
    from processes import use_local_stack_credentials

    stack = stack or Stack()
    stack.up()
    use_local_stack_credentials(stack)  # every client and service process connects as the stack's super user
    kafka_pids = tuple(pid for pid in (node.process.pid() for node in stack.kafka.nodes) if pid)
    return Endpoints(stack.config.kafka_bootstrap, stack.config.mongodb_url, kafka_pids, stack.ferretdb.process.pid())


def producer(bootstrap: str, **options) -> AIOKafkaProducer:
    options = {"linger_ms": 20, "acks": "all", "max_batch_size": 256 * 1024, **options}
    return AIOKafkaProducer(**kafka_options(bootstrap), **options)


def consumer(bootstrap: str, *topics: str, **options) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **kafka_options(bootstrap), **options)


def admin(bootstrap: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**kafka_options(bootstrap))


def mongo(url: str):
    from crmkit.mongo import make_client

    return make_client(url)


def service_connection(endpoints: Endpoints) -> dict[str, str]:
    """The connection settings of a service process (``<NAME>_`` is put before each by processes.py)."""
    return {"KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka, "MONGODB_URL": endpoints.mongodb}


def quiet_logs() -> None:
    """aiokafka warns while fresh topics elect leaders; the tables are the output."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    for name in ("aiokafka", "faststream", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# --- CPU per process ------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU used by named processes between ``start()`` and ``stop()``: a figure load elsewhere does not change."""

    def __init__(self, pids: dict[str, int | tuple[int, ...] | None]) -> None:
        # A name may stand for several processes (the Kafka nodes): their CPU is added up.
        self.pids = {name: pid if isinstance(pid, tuple) else (pid,) for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        """A process started after ``start()`` (a service process): counted from zero."""
        self.pids[name] = (pid,)
        self._before[name] = 0.0

    def start(self) -> CpuMeter:
        self._before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}
        return self

    def sample(self) -> dict[str, float]:
        """Read now (call while the processes still run)."""
        for name, pids in self.pids.items():
            try:
                self.used[name] = sum(cpu_seconds(p) for p in pids) - self._before.get(name, 0.0)
            except FileNotFoundError:
                pass  # exited: keep its last sample
        return self.used

    def per_item_us(self, items: int) -> dict[str, float]:
        return {name: seconds / items * 1e6 for name, seconds in self.used.items()}

    def fork(self) -> CpuMeter:
        """A meter over the same processes counted from now (the steady part of a run that began earlier)."""
        return CpuMeter(dict(self.pids)).start()


def stack_meter(endpoints: Endpoints, **more: int | None) -> CpuMeter:
    """A meter over this process (the bench or an in-process service), Kafka and FerretDB."""
    return CpuMeter({"bench": os.getpid(), "kafka": endpoints.kafka_pid, "ferretdb": endpoints.ferretdb_pid, **more})


# --- Kafka helpers --------------------------------------------------------------------------------

class EndOffsets:
    """Counts what a topic holds (sum of end offsets), with one long-lived consumer."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 6) -> None:
        self._consumer = consumer(bootstrap)
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> EndOffsets:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def total(self) -> int:
        return sum((await self._consumer.end_offsets(self._partitions)).values())


async def until_committed(client: AIOKafkaAdminClient, group_id: str, topic: str, target: int,
                          check: Callable[[], None] = lambda: None, timeout: float = 900.0,
                          progress: Callable[[int], None] = lambda done: None) -> int:
    """Poll the group's committed offsets on ``topic`` until they add up to ``target``; returns how many polls it took.

    A service commits a batch only after its writes are stored and its events acknowledged, so
    committed == end offsets means every command is done. ``check`` raises to stop early; ``progress``
    is told each count read. Polled seldom while the end is far (each poll cost the broker ~1.4 ms of
    CPU, at ten a second 14 ms/s: as much as the idle broker's own 20 ms/s), often near it.
    """
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    polls, last, step = 0, 0, 0
    while True:
        check()
        polls += 1
        try:
            committed = await client.list_consumer_group_offsets(group_id)
        except KafkaError as exc:  # a fresh cluster's offsets topic still electing its leaders, say
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
            continue
        done = sum(m.offset for tp, m in committed.items() if tp.topic == topic and m.offset > 0)
        progress(done)
        if done >= target:
            return polls
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"group {group_id}: {done} of {target} committed after {timeout:.0f} s")
        first = first or ((now, done) if done else None)  # the rate from the first commit: the start left out
        rate = (done - first[1]) / (now - first[0]) if first and now > first[0] and done > first[1] else 0.0
        step, last = max(step, done - last), done
        if step and target - done < 2 * step:  # (batches differ by a record or two)
            # The next commit may be the last: a service commits whole batches (the leads stage of
            # bench_flow a third of 1,000 qualifications each), so the estimate below slept up to a
            # third of a batch past the end, 0.3-0.5 s of a 1.4 s run. Now within 50 ms of it.
            await asyncio.sleep(0.05)
            continue
        # A third of the time the rest should take, between 50 ms and 1 s (0.25 s until a rate is known).
        await asyncio.sleep(min(1.0, max(0.05, (target - done) / rate / 3)) if rate else 0.25)


async def until_committed_elsewhere(bootstrap: str, group_id: str, topic: str, target: int, timeout: float = 900.0) -> None:
    """``until_committed`` run in a child process (bench/wait_committed.py), for a service in this process.

    Polling ten times a second here was counted as the service's own CPU, and more of it the longer a
    run took (so a slower contender was charged for its slowness twice).
    """
    script = Path(__file__).with_name("wait_committed.py")
    child = await asyncio.create_subprocess_exec(sys.executable, str(script), bootstrap, group_id, topic, str(target), str(timeout))
    try:
        code = await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if code != 0:
        raise RuntimeError(f"waiting for group {group_id} to commit {target} on {topic} failed (exit {code}; see its stderr above)")


async def send_all(bootstrap: str, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Produce (topic, key, value) records, acknowledged in groups of 5,000; returns how many."""
    sender = producer(bootstrap)
    await sender.start()
    sent = 0
    try:
        futures = []
        for topic, key, value in records:
            futures.append(await sender.send(topic, value, key=key))
            sent += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await sender.stop()
    return sent


def grant_record(prefix: str, user: str = "bench") -> tuple[str, bytes, bytes]:
    grant = build_message(UserLicenceGranted(user_id=user, licence="crm"), source="bench")
    return prefix + DIRECTORY_EVENTS, user.encode(), grant.to_json_bytes()


def new_prefix(name: str) -> str:
    return f"bench{name}{uuid.uuid4().hex[:6]}."


async def drop_prefix(endpoints: Endpoints, prefix: str) -> None:
    """Delete a run's topics and databases so that repeated runs keep the servers small."""
    import contextlib

    with contextlib.suppress(Exception):
        client = admin(endpoints.kafka)
        await client.start()
        try:
            topics = [t for t in await client.list_topics() if t.startswith(prefix)]
            if topics:
                await client.delete_topics(topics)
        finally:
            await client.close()
    with contextlib.suppress(Exception):
        db = mongo(endpoints.mongodb)
        try:
            for name in await db.list_database_names():
                if name.startswith(prefix.strip(".")):
                    await db.drop_database(name)
        finally:
            await db.close()


# --- statistics -----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repetitions."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
