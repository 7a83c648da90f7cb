"""Reliability harness: a private stack, service processes to kill and restart, load, and what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import Envelope
from contracts.topics import DLQ_REASON, dlq_topic
from crmctl.services import SERVICES, ServiceSpec, http_ready
from crmctl.stack import ROOT, ManagedProcess, Stack, StackConfig, port_open
from crmkit.topics import ensure_topics
from crmkit.mongo import make_client
from crmkit.settings import KafkaSettings
from tests.support import kafka_options, register_kafka, remove_test_data

# 1.0 runs the numbers (20,000 creates, 10,000 valid + 1,000 poison ...); CI may scale down.
SCALE = float(os.environ.get("CRM_RELIABILITY_SCALE", "1.0"))

# Service principals trusted as system actors, so load needs no licence grant racing the commands.
LOADGEN = "loadgen"
PRINCIPALS = [LOADGEN, "svc-importer", "svc-qualification", "svc-activity", "svc-leads"]

# Kafka nodes of the private cluster: 3 as in production (CRM_RELIABILITY_BROKERS=1 for one node).
BROKERS = int(os.environ.get("CRM_RELIABILITY_BROKERS", "3"))

SPECS: dict[str, ServiceSpec] = {spec.name: spec for spec in SERVICES}


def scaled(count: int, minimum: int = 50) -> int:
    return max(minimum, int(count * SCALE))


def _ephemeral_start() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(exclude: Iterable[int] = ()) -> int:
    """A loopback port nobody listens on now, below the kernel's range for outgoing connections.

    A port from that range (the kernel's own pick of a free one) can be taken while a broker is down:
    a client reconnecting to 127.0.0.1:P may be given P as its own source port and connect to itself,
    and the restarted broker then finds P in use (test_broker_restart failed so in a CI rehearsal)."""
    taken = set(exclude)
    rnd = random.Random()
    top = _ephemeral_start()
    while True:
        port = rnd.randrange(20000, top)
        if port in taken or port_open(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


async def until(
    predicate: Callable[[], Awaitable[Any] | Any], *, timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll ``predicate`` until truthy; fail with ``what`` and the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def ask_for_dump(process: ManagedProcess) -> None:
    """SIGUSR1: a service logs its tasks (crmkit/taskdump.py), FerretDB its goroutines (infra/ferretdb/main.go).

    Returns once the log has grown (what it wrote), or after 5 s; a process not running is left alone."""
    pid = process.pid()
    if pid is None:
        return
    size = process.log_file.stat().st_size if process.log_file.exists() else 0
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)
    with contextlib.suppress(AssertionError):
        await until(lambda: process.log_file.exists() and process.log_file.stat().st_size > size, timeout=5.0,
                    what=f"{process.name} to write its dump", interval=0.1)


# --- the private stack ----------------------------------------------------------------------


class PrivateStack:
    """Kafka and FerretDB of this suite alone, on free ports in a temporary folder: safe to restart."""

    def __init__(self, run_dir: Path, brokers: int = BROKERS) -> None:
        taken: list[int] = []
        for _ in range(2 * brokers + 1):
            taken.append(free_port(taken))
        ports = tuple((taken[2 * i], taken[2 * i + 1]) for i in range(brokers))
        self.stack = Stack(StackConfig(
            run_dir=run_dir, kafka_port=ports[0][0], controller_port=ports[0][1], mongo_port=taken[-1],
            brokers=brokers, ports=ports,
        ))
        self.config = self.stack.config

    @property
    def auth(self) -> KafkaSettings:
        """The private cluster's super user: the suite's clients and services connect as it."""
        return self.stack.kafka.client_settings()

    def service_env(self, env_prefix: str) -> dict[str, str]:
        auth = self.auth
        return {
            f"{env_prefix}KAFKA_SASL_USERNAME": auth.kafka_sasl_username,
            f"{env_prefix}KAFKA_SASL_PASSWORD": auth.kafka_sasl_password.get_secret_value(),
            f"{env_prefix}KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        }

    def cli_env(self) -> dict[str, str]:
        """Environment for a crm command run against this cluster (shared KAFKA_* settings)."""
        return {**self.service_env(""), "KAFKA_BOOTSTRAP_SERVERS": self.kafka}

    @property
    def kafka(self) -> str:
        return self.config.kafka_bootstrap

    @property
    def mongodb(self) -> str:
        return self.config.mongodb_url

    def up(self) -> None:
        self.stack.up()
        register_kafka(self.auth)

    def down(self) -> None:
        self.stack.down()

    async def kill_node(self, node_id: int) -> None:
        """SIGKILL one Kafka node: no controlled shutdown, as when its machine dies."""
        await asyncio.to_thread(self.stack.kafka.node(node_id).process.kill)

    async def stop_node(self, node_id: int) -> None:
        """SIGTERM one node and wait for it: the controlled shutdown of a rolling restart."""
        await asyncio.to_thread(self.stack.kafka.node(node_id).process.stop, 60)

    async def start_node(self, node_id: int) -> None:
        await asyncio.to_thread(self.stack.kafka.start_node, node_id)

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition → leader node of ``topic`` now (-1: none)."""
        meta = self.stack.kafka.metadata(timeout=5.0)
        found = meta.topics.get(topic)
        return {p.id: p.leader for p in found.partitions.values()} if found else {}

    def under_replicated(self) -> list[str] | None:
        """Partitions whose ISR lacks a replica (None while no broker answers)."""
        return self.stack.kafka.status()["under_replicated"]

    def quorum_leader(self) -> int | None:
        return self.stack.kafka.status()["quorum_leader"]

    async def stop_kafka(self) -> None:
        await asyncio.to_thread(self.stack.kafka.stop)

    async def start_kafka(self) -> None:
        await asyncio.to_thread(self.stack.kafka.start)

    async def stop_ferretdb(self) -> None:
        await asyncio.to_thread(self.stack.ferretdb.stop)

    async def start_ferretdb(self) -> None:
        await asyncio.to_thread(self.stack.ferretdb.start)

    def _ferretdb_writes(self) -> bool:
        """A ping is not enough: a wedged FerretDB still answers it but no longer stores anything."""
        from pymongo import MongoClient

        client = MongoClient(self.mongodb, serverSelectionTimeoutMS=3000, socketTimeoutMS=5000)
        try:
            client.rel_probe.probe.replace_one({"_id": "probe"}, {"at": time.time()}, upsert=True)
            return True
        except Exception:
            return False
        finally:
            client.close()

    async def ensure_healthy(self) -> None:
        """A scenario that failed half way may leave a server stopped or wedged: the next one starts from a whole stack."""
        if not (self.stack.ferretdb.process.running() and await asyncio.to_thread(self._ferretdb_writes)):
            await ask_for_dump(self.stack.ferretdb.process)  # wedged: its goroutines to its log before the restart
            await self.stop_ferretdb()
            await self.start_ferretdb()
        if not (self.stack.kafka.running() and await asyncio.to_thread(self.stack.kafka.ready)):
            await self.start_kafka()


# --- service processes ----------------------------------------------------------------------


class ServiceInstance:
    """One process of a service (``python -m services.<name>``) with its own HTTP port."""

    def __init__(self, scenario: Scenario, spec: ServiceSpec, index: int, extra_env: dict[str, str]) -> None:
        self.scenario = scenario
        self.spec = spec
        self.index = index
        self.port = free_port()
        name = f"{scenario.name}-{spec.name}-{index}"
        home = scenario.stack.config.run_dir / "services"
        self.process = ManagedProcess(name, home / f"{name}.pid", home / f"{name}.log", f"-m {spec.module}")
        self.extra_env = extra_env

    @property
    def label(self) -> str:
        return f"{self.spec.name}#{self.index}"

    def env(self) -> dict[str, str]:
        p, s = self.spec.env_prefix, self.scenario
        env = {k: v for k, v in os.environ.items() if not k.startswith(p)}
        # The suite's own stack, never the shared endpoints another engineer's tests may be using.
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env.pop("MONGODB_URL", None)
        env.pop("CRM_TOPIC_PREFIX", None)
        env.update(
            {
                f"{p}KAFKA_BOOTSTRAP_SERVERS": s.stack.kafka,
                f"{p}MONGODB_URL": s.stack.mongodb,
                f"{p}DATABASE": s.db(self.spec.name),
                f"{p}GROUP_ID": s.group(self.spec.name),
                f"{p}TOPIC_PREFIX": s.prefix,
                f"{p}HTTP_PORT": str(self.port),
                f"{p}SERVICE_PRINCIPALS": json.dumps(PRINCIPALS),
                f"{p}TOKENS": json.dumps({}),
                f"{p}RETRY_BACKOFF_MAX_S": "1.0",
                f"{p}LOG_LEVEL": "WARNING",
                **s.stack.service_env(p),
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        self.process.start([sys.executable, "-m", self.spec.module], env=self.env(), cwd=ROOT)

    def running(self) -> bool:
        return self.process.running()

    def ready(self) -> bool:
        return http_ready(self.port, timeout=2.0)

    def ready_status(self) -> int | None:
        """The HTTP status of /health/ready, or None when nothing answers."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except Exception:
            return None

    async def wait_ready(self, timeout: float = 90.0) -> None:
        def check() -> bool:
            if not self.running():
                raise AssertionError(f"{self.label} exited while starting:\n{self.log_tail()}")
            return self.ready()

        try:
            await until(lambda: asyncio.to_thread(check), timeout=timeout, what=f"{self.label} ready", interval=0.3)
        except AssertionError as exc:
            # What the start-up waits on (crmkit/taskdump.py) and FerretDB's goroutines (infra/ferretdb/main.go).
            ferretdb = self.scenario.stack.stack.ferretdb.process
            await asyncio.gather(ask_for_dump(self.process), ask_for_dump(ferretdb))
            raise AssertionError(
                f"{exc}; /health/ready answers {self.ready_status()}; FerretDB's goroutines are in {ferretdb.log_file}; "
                f"its log:\n{self.log_tail(80)}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a pod is killed or a machine dies."""
        self.process.kill()

    async def terminate(self, limit: float) -> tuple[float, bool]:
        """SIGTERM and wait up to ``limit`` seconds; return how long it took and whether it exited by itself."""
        pid = self.process.pid()
        if pid is None:
            return 0.0, True
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        try:
            await until(lambda: not self.running(), timeout=limit, what=f"{self.label} to exit after SIGTERM", interval=0.1)
            exited = True
        except AssertionError:
            exited = False
        took = time.monotonic() - started
        self.process.stop(timeout=0, sig=signal.SIGKILL)  # reap the pid file; SIGKILL only if still there
        return took, exited

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.process.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.process.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --- reading what arrived -------------------------------------------------------------------


class TopicTail:
    """Reads every partition of topics from the beginning, without a group, in the background.

    It survives a broker restart: the consumer keeps its positions and reconnects by itself.
    """

    def __init__(self, bootstrap: str, topics: Sequence[str], on_record: Callable[[Any], None]) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._on_record = on_record
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.records = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **kafka_options(self._bootstrap), enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
        )
        await self._consumer.start()
        tps = []
        for topic in self._topics:
            parts = self._consumer.partitions_for_topic(topic)
            deadline = time.monotonic() + 15  # a topic just made reaches every broker's metadata a moment later
            while not parts and time.monotonic() < deadline:
                await self._consumer._client.force_metadata_update()  # noqa: SLF001  (topic just created)
                parts = self._consumer.partitions_for_topic(topic) or set()
                if not parts:
                    await asyncio.sleep(0.2)
            assert parts, f"topic {topic} has no partitions (create it before tailing)"
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker outage: keep the positions and try again
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                for record in records:
                    self.records += 1
                    self._on_record(record)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 10)


@dataclass
class EventLedger:
    """What a consumer that dedupes by event id sees of a lead-keyed events topic."""

    records: int = 0
    unique: int = 0
    ids: set[str] = field(default_factory=set)
    types: Counter = field(default_factory=Counter)
    created: dict[str, str] = field(default_factory=dict)  # lead id → created event id
    created_twice: list[str] = field(default_factory=list)  # leads with two *different* created events
    last_version: dict[str, int] = field(default_factory=dict)  # per lead, last card version seen
    order_violations: list[tuple[str, int, int]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # per lead, the newest card seen
    progress_at: float = field(default_factory=time.monotonic)  # when a new event last arrived
    partition_progress: dict[int, float] = field(default_factory=dict)  # per partition, newest event's produce time

    @property
    def duplicates(self) -> int:
        return self.records - self.unique

    def add(self, record: Any) -> None:
        self.records += 1
        try:
            event = json.loads(record.value)
        except Exception:
            return
        event_id = event.get("id")
        if event_id in self.ids:
            return  # a redelivery: same id, same content; a deduping consumer drops it
        self.ids.add(event_id)
        self.unique += 1
        self.progress_at = time.monotonic()
        with contextlib.suppress(Exception):  # when the service made it, not when we read it (we may lag)
            made = datetime.fromisoformat(event["time"]).timestamp()
            if made > self.partition_progress.get(record.partition, 0.0):
                self.partition_progress[record.partition] = made
        kind = event.get("type", "")
        self.types[kind] += 1
        data = event.get("data") or {}
        lead_id = data.get("lead_id") or event.get("subject")
        if kind == "crm.command.rejected":
            self.rejections.append(data)
            return
        if kind in ("crm.lead.created", "crm.lead.updated") and lead_id:
            version = int(data.get("version", -1))
            last = self.last_version.get(lead_id)
            if last is not None and version <= last:
                self.order_violations.append((lead_id, last, version))
            self.last_version[lead_id] = version
            self.cards[lead_id] = data
        if kind == "crm.lead.created" and lead_id:
            if lead_id in self.created and self.created[lead_id] != event_id:
                self.created_twice.append(lead_id)
            self.created.setdefault(lead_id, event_id)


@dataclass
class DlqRecord:
    topic: str
    reason: str
    origin: tuple[str, str, str]  # topic, partition, offset of the original record
    value: bytes


@dataclass
class DlqLedger:
    records: list[DlqRecord] = field(default_factory=list)

    def add(self, record: Any) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        self.records.append(
            DlqRecord(
                record.topic, headers.get(DLQ_REASON, ""),
                (headers.get("dlq-topic", ""), headers.get("dlq-partition", ""), headers.get("dlq-offset", "")),
                record.value or b"",
            )
        )

    @property
    def unique_origins(self) -> int:
        return len({r.origin for r in self.records})


# --- load -----------------------------------------------------------------------------------


@dataclass
class Outgoing:
    topic: str  # contract topic; the scenario prefix is added when sent
    key: bytes | None
    value: bytes


def envelope_record(topic: str, message: Envelope) -> Outgoing:
    return Outgoing(topic, (message.subject or message.id).encode(), message.to_json_bytes())


class LoadProducer:
    """Sends records in chunks at a pace, as an outside system would, resending a chunk until acknowledged.

    Resending is safe because every command carries its id and the services dedupe by it; one chunk
    is acknowledged before the next goes, so one lead's commands never overtake each other.
    """

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0
        self.resends = 0
        self.errors: list[str] = []

    async def _open(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **kafka_options(self._bootstrap), acks="all", enable_idempotence=True, linger_ms=5,
                request_timeout_ms=4000, retry_backoff_ms=200, max_request_size=4 * 1024 * 1024,
                max_batch_size=256 * 1024,
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def send(self, records: Sequence[Outgoing], *, rate: float | None = None, chunk: int = 250, give_up_after: float = 120.0) -> None:
        started = time.monotonic()
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            deadline = time.monotonic() + give_up_after
            while True:
                try:
                    producer = await self._open()
                    futures = [
                        await producer.send(self._prefix + r.topic, r.value, key=r.key) for r in part
                    ]
                    await asyncio.wait_for(asyncio.gather(*futures), 30)
                    break
                except Exception as exc:  # the broker is away: start a new producer and send the chunk again
                    self.resends += 1
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    await self._close()
                    if time.monotonic() > deadline:
                        raise AssertionError(f"could not send for {give_up_after:.0f}s: {self.errors[-1]}") from exc
                    await asyncio.sleep(0.5)
            self.sent += len(part)
            if rate:
                ahead = started + self.sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing the load, not waiting for a result

    async def close(self) -> None:
        await self._close()


# --- one scenario ---------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    down_s: float  # how long the fault lasted (0 for a kill followed by an immediate restart)
    recovery_s: float | None  # from the end of the fault until new events flowed again


class Scenario:
    """Private names (topic prefix, databases, group) and the processes of one scenario; cleans up after."""

    def __init__(self, stack: PrivateStack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.prefix = f"rel{uuid.uuid4().hex[:8]}."
        self.instances: list[ServiceInstance] = []
        self.tails: list[TopicTail] = []
        self.faults: list[Fault] = []
        self.producer = LoadProducer(stack.kafka, self.prefix)
        self._mongo = make_client(stack.mongodb)

    def db(self, service: str) -> str:
        return f"{self.prefix.strip('.')}_{service}"

    def group(self, service: str) -> str:
        return f"{self.prefix}{service}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    async def create_topics(self, topics: Sequence[str], partitions: int = 6) -> None:
        """Topics (and their DLQs) exist before anyone reads them, with a known partition count."""
        names = [self.topic(t) for t in topics] + [dlq_topic(self.topic(t)) for t in topics]
        await ensure_topics(self.stack.auth, names, partitions)

    async def start_service(self, name: str, *, wait: bool = True, **extra_env: str) -> ServiceInstance:
        instance = ServiceInstance(self, SPECS[name], len([i for i in self.instances if i.spec.name == name]), extra_env)
        self.instances.append(instance)
        instance.start()
        if wait:
            await instance.wait_ready()
        return instance

    async def restart(self, instance: ServiceInstance) -> None:
        instance.start()
        await instance.wait_ready()

    async def tail(self, topics: Sequence[str], on_record: Callable[[Any], None]) -> None:
        """Feed every record of these (physical) topics, from the beginning, to ``on_record`` until the scenario ends."""
        tail = TopicTail(self.stack.kafka, list(topics), on_record)
        await tail.start()
        self.tails.append(tail)

    async def events(self, topic: str) -> EventLedger:
        ledger = EventLedger()
        await self.tail([self.topic(topic)], ledger.add)
        return ledger

    async def dlq(self, topics: Sequence[str]) -> DlqLedger:
        ledger = DlqLedger()
        await self.tail([dlq_topic(self.topic(t)) for t in topics], ledger.add)
        return ledger

    def collection(self, service: str, name: str):
        return self._mongo[self.db(service)][name]

    async def ids_in(self, service: str, collection: str) -> list[str]:
        return [doc["_id"] async for doc in self.collection(service, collection).find({}, {"_id": 1})]

    async def docs_in(self, service: str, collection: str, projection: dict[str, int] | None = None) -> list[dict[str, Any]]:
        return [doc async for doc in self.collection(service, collection).find({}, projection)]

    async def count_in(self, service: str, collection: str) -> int:
        return await self.collection(service, collection).count_documents({})

    async def recovery(
        self, ledger: EventLedger, since: float, done: Callable[[], bool], partitions: int = 6, timeout: float = 120.0
    ) -> float | None:
        """Seconds from ``since`` (wall clock) until every partition published a new event (None: the work ran out first)."""
        def flowing() -> bool:
            return all(ledger.partition_progress.get(p, 0.0) > since for p in range(partitions))

        await until(lambda: flowing() or done(), timeout=timeout, what="events flowing again on every partition")
        return time.time() - since if flowing() else None

    def report(self, *, sent: int, applied: int, duplicates: int, lost: int, dlq: int, extra: str = "") -> None:
        faults = "; ".join(
            f"{f.what}: down {f.down_s:.1f}s, recovered {f.recovery_s:.1f}s" if f.recovery_s is not None else f"{f.what}: down {f.down_s:.1f}s"
            for f in self.faults
        ) or "none"
        print(
            f"\n[reliability] {self.name:<22} sent={sent:<6} applied={applied:<6} duplicates={duplicates:<5} "
            f"lost={lost:<4} dlq={dlq:<5} faults: {faults}" + (f" | {extra}" if extra else ""),
            flush=True,
        )

    async def close(self, *, keep_logs_on_failure: bool = True) -> None:
        for tail in self.tails:
            await tail.stop()
        await self.producer.close()
        for instance in self.instances:
            if instance.running():
                await instance.terminate(limit=15)
        await self._mongo.close()
        await remove_test_data(self.stack, self.prefix)  # the stack has the endpoints' .kafka and .mongodb


def random_moment(low: float, high: float, rng: random.Random) -> float:
    return rng.uniform(low, high)
