"""The runtime a service's ``create_app`` assembles: broker, database, consumers, HTTP, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from faststream.kafka import KafkaBroker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import parse_message, topics as contract_topics
from contracts.topics import dlq_topic

from . import phones
from .asyncapi import build_asyncapi
from .httpmetrics import ObservedHttp
from .idling import IdleWhile
from .lag import LagMonitor
from .logs import configure_logging
from .messaging import (
    BatchHandler,
    BatchProcessor,
    Bus,
    Health,
    RecordParser,
    TypeSelector,
)
from .subscriptions import faststream_security, subscribe_batches
from .topics import ensure_topics, topic_config
from .metrics import Metrics
from . import taskdump, tracing
from .mongo import make_client, ping, until_available
from .openapi import COMMON_OPERATIONS, Operation, build_openapi
from .settings import ServiceSettings

log = logging.getLogger("crmkit.service")

Hook = Callable[[], Awaitable[None]]

# Python's cycle collector runs a young collection every 700 allocations and, now and then, a full
# one that walks every object alive. A service allocates a few dozen objects per message and keeps
# a large, growing heap (the leads index holds every lead's keys), so at 60,000 leads the collector
# took 9.9 s of a 36.6 s intake (bench_leads). Rarer young collections, and the heap built at start
# moved out of the collector's sight (gc.freeze), took that to 2 s. A batch of 1,000 creates keeps
# ~50,000 objects alive until it is done, so at 20,000 each young collection walked 20,000 of them,
# 2-3 times a batch, in vain (13-16 µs of CPU a create); at 100,000 a batch ends, and frees them,
# before one is due (1 µs; service CPU a create 218/197 -> 197/182 µs, alternating runs). Nothing
# here relies on cycles being freed early.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc(*, freeze: bool) -> None:
    """Set the collector's thresholds; with ``freeze``, exempt every object alive now from it."""
    gc.set_threshold(*GC_THRESHOLDS)
    if freeze:
        gc.collect()
        gc.freeze()


def stop_if_cancelled() -> None:
    """End a background loop if it was cancelled and some awaited call swallowed the cancellation.

    The async MongoDB driver's cursors (pymongo 4.20) sometimes return normally though the task was
    cancelled while they ran (about 1 cancel in 10 in a test here): a ``while True`` loop would then
    go on forever. Call this once per pass.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _cancel_all(tasks: Sequence[asyncio.Task[Any]], name: str, grace_s: float = 10.0) -> None:
    """Cancel the tasks and wait for them, cancelling again while they run.

    A cancellation can be swallowed by a library call that was in flight (it returns normally, and a
    ``while True`` loop goes on); asking again ends such a task instead of waiting on it forever.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + grace_s
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.warning("%s: %d background task(s) did not stop within %.0fs; leaving them", name, len(pending), grace_s)
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))


class Service:
    """One service instance: what ``create_app(settings)`` returns, started by uvicorn or by tests."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        description: str,
        publishes: Sequence[str],
        version: str = "1.0.0",
    ) -> None:
        self.settings = settings
        self.name = name
        self.description = description
        self.version = version
        phones.configure(settings.phone_region)
        self.source = f"crm/{name}"
        self.metrics = Metrics(name)
        self.health = Health()
        self.broker = KafkaBroker(
            settings.bootstrap_list(),
            client_id=f"crm-{name}",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
            graceful_timeout=20.0,
            security=faststream_security(settings),
            # Topics are made by start-up (ensure_topics) with the contract's settings, never by a subscription.
            allow_auto_create_topics=False,
            log_level=logging.DEBUG,  # per-batch logs only when asked for
            # A logger of ours: FastStream's default one has its own handler, writing ANSI colours.
            logger=logging.getLogger(f"crm.faststream.{name}"),
        )
        self.bus = Bus(settings, self.metrics, client_id=f"crm-{name}")
        self.lag = LagMonitor(settings, self.metrics)
        self.mongo = make_client(settings.mongodb_url)
        self.db = self.mongo[settings.database]
        self.consumes: list[str] = []
        # Each subscription's handler by its title: component tests feed batches to them without Kafka.
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.publishes: list[str] = list(publishes)
        self.routes: list[BaseRoute] = []
        self.http_operations: dict[tuple[str, str], Operation] = dict(COMMON_OPERATIONS)
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._readiness: list[Callable[[], dict[str, Any]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._start_task: asyncio.Task[None] | None = None
        self.start_error: BaseException | None = None  # why the start failed (serve exits 1)
        self._on_start_failure: Callable[[], None] = lambda: None

    # --- wiring -------------------------------------------------------------------------------

    def consume(
        self, topics: Sequence[str], handler: BatchHandler, *, group_suffix: str = "", title: str = "",
        select: TypeSelector | None = None, parse: RecordParser = parse_message,
        may_idle: Callable[[], Awaitable[bool]] | None = None, idle_check_s: float = 0.0,
    ) -> IdleWhile | None:
        """Subscribe ``handler`` to ``topics`` in the service's consumer group, in batches, at least once.

        ``select``, asked before each batch is parsed, names the message types the handler acts on
        then: records of other types are passed over without parsing them. ``parse`` reads a record
        (default: the whole contract model; a handler may read less). With ``may_idle`` and an
        ``idle_check_s`` above 0 the group stops fetching while ``may_idle()`` holds, asked every
        ``idle_check_s`` seconds (crmkit/idling.py: its contract); the ``IdleWhile`` is returned, to wake it."""
        self.consumes.extend(t for t in topics if t not in self.consumes)
        group = self.settings.group_id + group_suffix
        self.batch_handlers[title or handler.__name__] = handler
        processor = BatchProcessor(
            self.settings, self.bus, handler, self.metrics, self.health, title or handler.__name__, group=group, service=self.name,
            select=select, parse=parse,
        )
        self.lag.watch(group, [self.settings.topic(t) for t in topics])
        idling = None
        if may_idle is not None and idle_check_s > 0:
            gauge = self.metrics.idle.labels(group=group)
            idling = IdleWhile(may_idle, idle_check_s, shown=lambda idle: gauge.set(1 if idle else 0))
            self.background(idling.run_forever)
        subscriber = subscribe_batches(
            self.broker,
            self.settings,
            processor,
            topics=topics,
            group_id=group,
            title=title or f"{self.name}:{','.join(topics)}",
            description=handler.__doc__ or "",
            listener=idling.listener() if idling is not None else None,
        )
        if idling is not None:
            idling.subscriber = subscriber
        return idling

    def on_startup(self, hook: Hook) -> None:
        """Run ``hook`` at start, before consuming; retried through an outage (indexes, seed data)."""
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Run ``hook`` at stop, after the consumers stopped."""
        self._shutdown.append(hook)

    def background(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` as a task while the service runs (periodic passes)."""
        self._background.append(loop)

    def readiness_detail(self, detail: Callable[[], dict[str, Any]]) -> None:
        """Add a service's own figures to /health/ready (shown; they do not decide readiness)."""
        self._readiness.append(detail)

    def add_routes(self, routes: Sequence[BaseRoute]) -> None:
        self.routes.extend(routes)

    def describe_http(self, operations: dict[tuple[str, str], Operation]) -> None:
        """Add what the routes' code cannot say (query parameters, answers) to the OpenAPI document."""
        self.http_operations.update(operations)

    # --- lifecycle ----------------------------------------------------------------------------

    def all_topics(self) -> list[str]:
        names = [self.settings.topic(t) for t in dict.fromkeys([*self.consumes, *self.publishes])]
        return names + [dlq_topic(self.settings.topic(t)) for t in self.consumes]

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {self.settings.topic(t): topic_config(t) for t in dict.fromkeys([*self.consumes, *self.publishes])}

    async def start(self) -> None:
        """Create topics, run start-up hooks, then start consuming. Waits through outages."""
        async with taskdump.warn_if_slow(f"{self.name}: start"):
            await until_available(
                lambda: ensure_topics(
                    self.settings, self.all_topics(), self.settings.topic_partitions,
                    replication=self.settings.topic_replication, configs=self.topic_configs(),
                ),
                f"{self.name}: topics",
            )
            await until_available(self.bus.start, f"{self.name}: producer")  # hooks may publish
            tune_gc(freeze=False)
            for hook in self._startup:
                await until_available(hook, f"{self.name}: start-up")
            tune_gc(freeze=self.settings.gc_freeze)  # the start-up hooks warmed the caches: long-lived from here
            await until_available(self.broker.start, f"{self.name}: consumers")
        for loop in self._background:
            task = asyncio.create_task(loop(), name=f"{self.name}-background")
            task.add_done_callback(self._background_ended)
            self._tasks.append(task)
        if self.lag.groups and self.settings.lag_interval_s > 0:
            self._tasks.append(asyncio.create_task(self.lag.run_forever(), name=f"{self.name}-lag"))
        self.health.started = True
        log.info("%s started", self.name)

    async def stop(self) -> None:
        """Stop consuming (the batch in hand finishes and commits), then close the database."""
        if self._start_task and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(BaseException):
                await self._start_task
        await _cancel_all(self._tasks, self.name)
        self._tasks.clear()
        await self.broker.stop()
        await self.bus.stop()
        for hook in self._shutdown:
            with contextlib.suppress(Exception):
                await hook()
        await self.mongo.close()
        self.health.started = False

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready only when started and both Kafka and MongoDB answer now."""
        mongo_ok = await ping(self.db)
        kafka_ok = False
        try:
            kafka_ok = bool(await asyncio.wait_for(self.broker.ping(timeout=2.0), 3.0))
        except Exception:
            kafka_ok = False
        checks = {
            "started": self.health.started,
            "kafka": kafka_ok,
            "mongodb": mongo_ok,
            "retrying": self.health.retrying,
            "last_error": self.health.last_error,
        }
        for detail in self._readiness:
            checks.update(detail())
        return self.health.started and mongo_ok and kafka_ok, checks

    # --- HTTP ---------------------------------------------------------------------------------

    def asyncapi(self) -> dict[str, Any]:
        return build_asyncapi(
            title=f"crm {self.name} service",
            version=self.version,
            description=self.description,
            bootstrap=self.settings.kafka_bootstrap_servers,
            consumes=self.consumes,
            publishes=self.publishes,
            topic_descriptions=TOPIC_DESCRIPTIONS,
        )

    def openapi(self) -> dict[str, Any]:
        return build_openapi(
            title=f"crm {self.name} service", version=self.version, description=self.description,
            routes=self.http_routes(), operations=self.http_operations,
        )

    def http_routes(self) -> list[BaseRoute]:
        """The service's own routes behind the ones every service answers."""

        async def live(_: Request) -> Response:
            """Liveness: the process runs (nothing else is checked)."""
            return JSONResponse({"status": "live", "service": self.name})

        async def ready(_: Request) -> Response:
            """Readiness: started, and Kafka and MongoDB answer now (503 otherwise, with each check)."""
            ok, checks = await self.ready()
            return JSONResponse({"status": "ready" if ok else "not ready", **checks}, status_code=200 if ok else 503)

        async def metrics(_: Request) -> Response:
            """Prometheus metrics of this instance (see the README's list)."""
            return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

        async def asyncapi(_: Request) -> Response:
            """The AsyncAPI document of the topics this service reads and writes."""
            return JSONResponse(self.asyncapi())

        async def openapi(_: Request) -> Response:
            """The OpenAPI document of this HTTP API."""
            return JSONResponse(self.openapi())

        return [
            Route("/health/live", live),
            Route("/health/ready", ready),
            Route("/metrics", metrics),
            Route("/asyncapi.json", asyncapi),
            Route("/openapi.json", openapi),
            *self.routes,
        ]

    def _started(self, task: asyncio.Task[None]) -> None:
        """A start that failed for good (outages are waited through) stops the process with its reason.

        Left in its task, the failure was silent: the process ran on, answering 503 on /health/ready
        for ever, and the reason (a sealed secret no key opens, a refused index) was in no log."""
        if task.cancelled() or task.exception() is None:
            return
        self.start_error = task.exception()
        log.critical("%s: start failed, stopping: %s", self.name, self.start_error, exc_info=self.start_error)
        self._on_start_failure()

    def _background_ended(self, task: asyncio.Task[Any]) -> None:
        """A background pass that failed for good (a migration refused by the database) is logged, not lost."""
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s: a background task failed: %s", self.name, exc, exc_info=exc)

    def asgi(self) -> ObservedHttp:
        """The HTTP app; its lifespan starts the service in the background so health answers at once."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            taskdump.install(asyncio.get_running_loop())  # the process's: kill -USR1 logs what each task waits on
            self._start_task = asyncio.create_task(self.start())
            self._start_task.add_done_callback(self._started)
            try:
                yield
            finally:
                await self.stop()

        app = Starlette(routes=self.http_routes(), lifespan=lifespan)
        return ObservedHttp(app, self.name, self.metrics)


TOPIC_DESCRIPTIONS = {
    contract_topics.LEADS_COMMANDS: "Commands to the leads service: pipelines and the lead lifecycle.",
    contract_topics.LEADS_EVENTS: "Everything that happened to pipelines and leads, keyed by lead id.",
    contract_topics.QUALIFICATION_COMMANDS: "Qualify or disqualify a lead; manage disqualification reasons.",
    contract_topics.QUALIFICATION_EVENTS: "Public: companies and deals created, leads qualified or disqualified.",
    contract_topics.IMPORTS_COMMANDS: "Start, cancel or revert a CSV/XLSX import.",
    contract_topics.IMPORTS_EVENTS: "Import progress, rejected rows and results.",
    contract_topics.ACTIVITY_COMMANDS: "CRM tasks: create, update, complete, cancel; custom task types.",
    contract_topics.ACTIVITY_EVENTS: "Task changes and each lead's activity summary.",
    contract_topics.DIRECTORY_EVENTS: "Master data from outside: contacts, companies, products, licences, roles.",
}


def serve(service: Service) -> None:
    """Run a service under uvicorn until SIGTERM/SIGINT; shutdown lets the batch in hand finish."""
    configure_logging(service.name, service.settings.log_level, service.settings.log_format)
    tracing.configure(service.name, service.settings.otlp_endpoint)
    config = uvicorn.Config(
        service.asgi(),
        host=service.settings.http_host,
        port=service.settings.http_port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=25,
    )
    server = uvicorn.Server(config)
    service._on_start_failure = lambda: setattr(server, "should_exit", True)
    server.run()
    if service.start_error is not None:
        raise SystemExit(1)  # a supervisor restarts it, or an operator reads the reason logged above
