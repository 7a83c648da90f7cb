"""Posting owed webhooks: signed, retried with exponential backoff, a bounded number in flight per endpoint."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import Counter as PromCounter, Gauge, Histogram

from contracts import build_message
from contracts.actions import StageActionFailed
from contracts.topics import LEADS_EVENTS
from crmkit.ids import uuid5
from crmkit.messaging import Bus, Outbound
from crmkit.metrics import Metrics
from crmkit.service import stop_if_cancelled
from contracts import Envelope
from services.leads.actions.network import Permanent, webhook_client
from services.leads.actions.outbox import Delivery, Outbox
from services.leads.actions.signing import SIGNATURE_HEADER, signature
from services.leads.messages import ID_NAMESPACE
from services.leads.settings import LeadsSettings

log = logging.getLogger("services.leads.actions")

_CANDIDATES = 200  # due deliveries read at once
_SWEEP_S = 30.0


class WebhookMetrics:
    """The webhook figures on the service's /metrics (listed in the README)."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.attempts = PromCounter(
            "crm_webhook_attempts", "Webhook requests made, by outcome: delivered, retry (failed, retried later) or failed (given up)",
            ["outcome"], registry=r)
        self.seconds = Histogram("crm_webhook_request_seconds", "Time of one webhook request", registry=r)
        self.in_flight = Gauge("crm_webhook_in_flight", "Webhook requests in flight in this instance", registry=r)


class WebhookSender:
    """The delivery loop: due deliveries claimed with a lease, posted, and their outcome stored before it is published."""

    def __init__(
        self, settings: LeadsSettings, outbox: Outbox, bus: Bus, metrics: Metrics, source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.bus = bus
        self.metrics = WebhookMetrics(metrics)
        self.source = source
        self.clock = clock
        self.wakeup = asyncio.Event()
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._candidates: list[tuple[str, str, int]] = []  # (id, endpoint, attempts) read due, not yet started
        self._stale = True  # new deliveries were owed since the last read
        self._read_at = datetime.min.replace(tzinfo=UTC)
        self._swept_at = datetime.min.replace(tzinfo=UTC)
        self._private = settings.private_webhook_hosts()

    def wake(self) -> None:
        """New deliveries are owed: look now rather than at the next poll."""
        self._stale = True
        self.wakeup.set()

    async def run_forever(self) -> None:
        async with webhook_client(self._private, self.settings.webhook_timeout_s, self.settings.webhook_concurrency) as client:
            try:
                while True:
                    stop_if_cancelled()
                    try:
                        await self._sweep()
                        await self._start_due(client)
                    except Exception as exc:  # the database or Kafka away: try again at the next pass
                        log.warning("webhook delivery pass failed: %s", exc)
                    self.wakeup.clear()
                    waits = [asyncio.ensure_future(self.wakeup.wait())]
                    await asyncio.wait([*waits, *self._tasks], timeout=self.settings.webhook_poll_s, return_when=asyncio.FIRST_COMPLETED)
                    for task in waits:
                        task.cancel()
            finally:
                for task in self._tasks:
                    task.cancel()

    async def _start_due(self, client: httpx.AsyncClient) -> None:
        """Start what the free slots allow: from the candidates read last, else from a fresh read of due ones.

        The candidates are kept between passes: reading the outbox for every request started cost a
        sort over every pending delivery (2,000 owed: one delivery a second). A fresh read skips the
        endpoints whose slots are full, so deliveries to other endpoints are found behind any number
        owed to one slow endpoint.
        """
        now = self.clock()
        per_endpoint = self.settings.webhook_endpoint_concurrency
        startable = [c for c in self._candidates if self._in_flight[c[1]] < per_endpoint]
        fresh = self._stale or (now - self._read_at).total_seconds() >= self.settings.webhook_poll_s
        if not startable and fresh:
            # Those read for busy endpoints are kept; the read adds due ones of the other endpoints.
            busy = [endpoint for endpoint, n in self._in_flight.items() if n >= per_endpoint]
            kept = [c for c in self._candidates if c[1] in busy]
            self._candidates = kept + await self.outbox.due(now, busy, limit=_CANDIDATES)
            self._stale, self._read_at = False, now
            startable = [c for c in self._candidates if self._in_flight[c[1]] < per_endpoint]
        lease = now + timedelta(seconds=self.settings.webhook_lease_s)
        for candidate in startable:
            delivery_id, endpoint, attempts = candidate
            if len(self._tasks) >= self.settings.webhook_concurrency:
                return
            if self._in_flight[endpoint] >= per_endpoint:
                continue
            self._candidates.remove(candidate)
            delivery = await self.outbox.claim(delivery_id, attempts, now, lease)
            if delivery is None:
                continue  # another instance has it
            self._in_flight[endpoint] += 1
            task = asyncio.create_task(self._attempt(client, delivery), name=f"webhook-{delivery_id}")
            self._tasks.add(task)
            task.add_done_callback(lambda t, e=endpoint: self._done(t, e))

    def _done(self, task: asyncio.Task[None], endpoint: str) -> None:
        self._tasks.discard(task)
        self._in_flight[endpoint] -= 1
        if self._in_flight[endpoint] <= 0:
            del self._in_flight[endpoint]
        self.wakeup.set()  # a slot is free

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        status: int | None = None
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            body = delivery.body.encode()
            headers = {
                "Content-Type": "application/cloudevents+json; charset=utf-8",
                SIGNATURE_HEADER: signature(delivery.secret, int(time.time()), body),
                "CRM-Delivery": delivery.delivery_id,
                "User-Agent": "crm-leads-webhooks/1",
            }
            # Only the status is read: the answer's body stays unread, so an endpoint that sends an
            # endless or huge one holds no memory and no slot (the connection is closed instead).
            async with client.stream("POST", delivery.url, content=body, headers=headers) as response:
                status = response.status_code
            if 200 <= status < 300:
                await self.outbox.delivered(delivery, self.clock(), status)
                self.metrics.attempts.labels(outcome="delivered").inc()
                return
            reason, permanent = f"the endpoint answered {status}", False
        except Permanent as exc:
            reason, permanent = str(exc), True
        except httpx.HTTPError as exc:
            reason, permanent = f"the request failed: {type(exc).__name__} {exc}".strip(), False
        except Exception as exc:  # the outbox away after a success: the lease runs out and it is tried again
            log.warning("webhook %s: %s", delivery.delivery_id, exc)
            return
        finally:
            self.metrics.seconds.observe(time.perf_counter() - started)
            self.metrics.in_flight.dec()
        await self._failed(delivery, reason, status, permanent)

    async def _failed(self, delivery: Delivery, reason: str, status: int | None, permanent: bool) -> None:
        attempt = delivery.attempts + 1
        retry = not permanent and attempt < self.settings.webhook_max_attempts
        next_at = self.clock() + timedelta(seconds=self.backoff(attempt)) if retry else None
        event = build_message(
            StageActionFailed(
                lead_id=delivery.lead_id, pipeline_id=delivery.pipeline_id, stage_id=delivery.stage_id,
                action_id=delivery.action_id, kind="webhook", attempt=attempt, will_retry=retry, next_attempt_at=next_at,
                reason=reason, status_code=status, delivery_id=delivery.delivery_id,
            ),
            source=self.source, id=uuid5(ID_NAMESPACE, f"{delivery.delivery_id}\x1fattempt\x1f{attempt}"),
            time=self.clock(), correlationid=delivery.delivery_id,
        )
        raw = event.to_json_bytes().decode()
        # Stored first, published after: a crash between the two publishes it at the next pass, with the same id.
        if not await self.outbox.failed(delivery, next_at=next_at, reason=reason, status_code=status, event=raw):
            return  # another instance recorded this attempt (the lease ran out meanwhile)
        self.metrics.attempts.labels(outcome="retry" if retry else "failed").inc()
        await self._publish(delivery.delivery_id, event, raw)

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: doubling from the first pause, capped, with ±20% jitter so retries spread."""
        base = min(self.settings.webhook_backoff_s * 2 ** (attempt - 1), self.settings.webhook_backoff_max_s)
        return base * random.uniform(0.8, 1.2)

    async def _sweep(self) -> None:
        """Now and then: publish failure events a crash left owed, and drop deliveries delivered long ago.

        Not every pass: with 2,000 deliveries stored each of these reads took 0.5 s on FerretDB.
        """
        now = self.clock()
        if (now - self._swept_at).total_seconds() < _SWEEP_S:
            return
        self._swept_at = now
        await self.outbox.forget_delivered(now - timedelta(seconds=self.settings.webhook_delivered_kept_s))
        for delivery_id, raw in await self.outbox.owed_events():
            await self._publish(delivery_id, Envelope.model_validate_json(raw), raw)

    async def _publish(self, delivery_id: str, event: Envelope, raw: str) -> None:
        try:
            await self.bus.publish([Outbound(LEADS_EVENTS, event, key=event.subject or delivery_id, value=raw.encode())])
        except Exception as exc:
            log.warning("failure event of webhook %s not published yet: %s", delivery_id, exc)
            return
        await self.outbox.published(delivery_id, raw)
