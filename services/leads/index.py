"""An in-memory index of leads by duplicate key and by linked upstream record, fed by the lead events.

The duplicate check on every create and the snapshot fan-out on every directory change would cost
a database query each, on the write path, plus secondary indexes that slow every write (upstream
FerretDB even scanned for them). So each instance keeps this index instead: warmed from the
database at start, then kept current by its own writes and by ``crm.leads.events.v1`` (so it sees
what the other instances write too). It costs about 200 bytes per lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import ContractError, parse_message
from contracts.topics import LEADS_EVENTS
from crmkit.messaging import PRODUCER_INSTANCE
from services.leads.duplicates import match_keys

log = logging.getLogger("services.leads.index")

_CARD_TYPES = (b"crm.lead.created", b"crm.lead.updated")


class LeadIndex:
    """Lead ids by normalized email/phone/name and by linked contact/company/product."""

    def __init__(self) -> None:
        self._ids_by_key: dict[str, set[str]] = defaultdict(set)
        self._keys_of: dict[str, frozenset[str]] = {}
        self._dup_keys: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._keys_of)

    def put(self, lead_id: str, dup_keys: Mapping[str, str], links: Mapping[str, Iterable[str]]) -> None:
        new = frozenset(
            [f"dup:{k}:{v}" for k, v in dup_keys.items()]
            + [f"link:{kind}:{record}" for kind, records in links.items() for record in records]
        )
        old = self._keys_of.get(lead_id, frozenset())
        for key in old - new:
            ids = self._ids_by_key.get(key)
            if ids is not None:
                ids.discard(lead_id)
                if not ids:
                    del self._ids_by_key[key]
        for key in new - old:
            self._ids_by_key[key].add(lead_id)
        self._keys_of[lead_id] = new
        if dup_keys:
            self._dup_keys[lead_id] = dict(dup_keys)
        else:
            self._dup_keys.pop(lead_id, None)

    def candidates(self, dup_keys: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
        """Leads sharing any key with ``dup_keys``, with their own keys for scoring."""
        ids: set[str] = set()
        for key, value in dup_keys.items():
            ids |= self._ids_by_key.get(f"dup:{key}:{value}", set())
        return [(lead_id, self._dup_keys.get(lead_id, {})) for lead_id in sorted(ids)]

    def linked(self, kind: str, record_id: str) -> list[str]:
        return sorted(self._ids_by_key.get(f"link:{kind}:{record_id}", ()))

    def put_card(self, card) -> None:
        """Index a lead card (domain lead or contract card): keys only while it is live."""
        self.put(card.lead_id, *index_entry(card))


def index_entry(card) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A card's duplicate keys (only while it is live) and its links to contacts, companies, products."""
    live = not getattr(card, "deleted", False) and not getattr(card, "merged_into", None)
    links: dict[str, list[str]] = {}
    if card.contact is not None and card.contact.contact_id:
        links["contact"] = [card.contact.contact_id]
    if card.company is not None and card.company.company_id:
        links["company"] = [card.company.company_id]
    products = [p.product_id for p in card.products or [] if p.product_id]
    if products:
        links["product"] = products
    return (match_keys(card) if live else {}), links


class LeadEventsFeed:
    """Follows every partition of the leads events topic (no group) and applies cards to the index."""

    def __init__(
        self, kafka: Mapping[str, Any], physical_topic: str, index: LeadIndex, own_instance: str | None = None
    ) -> None:
        self._kafka = dict(kafka)  # bootstrap servers and credentials (KafkaSettings.kafka_client_options)
        self._topic = physical_topic
        self._index = index
        # Records this process published were indexed when it wrote them: skipped unread.
        self._own = own_instance.encode() if own_instance else None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_offsets: dict[TopicPartition, int] = {}

    async def mark(self) -> None:
        """Remember where the topic ends now; call before warming the index from the database."""
        self._consumer = AIOKafkaConsumer(**self._kafka, enable_auto_commit=False)
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()  # noqa: SLF001  (topic just created)
            partitions = self._consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._start_offsets = await self._consumer.end_offsets(tps)

    async def start(self) -> None:
        assert self._consumer is not None, "call mark() first"
        for tp, offset in self._start_offsets.items():
            self._consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run(), name="lead-index-feed")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            except Exception as exc:  # an outage: the consumer reconnects by itself
                log.warning("lead index feed: %s", exc)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    if not self._wanted(record.headers):
                        continue
                    try:
                        message = parse_message(LEADS_EVENTS, record.value)
                    except ContractError:
                        continue
                    if message.type in ("crm.lead.created", "crm.lead.updated"):
                        self._index.put_card(message.data)

    def _wanted(self, headers) -> bool:
        """Cards of other processes; a record without headers is read (an outside producer)."""
        for name, value in headers or ():
            if name == PRODUCER_INSTANCE and value == self._own:
                return False
            if name == "ce-type" and value not in _CARD_TYPES:
                return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
