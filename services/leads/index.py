"""The leads one batch wrote, by duplicate key, so that later leads of the same batch match against them.

Stored leads are matched by indexed lookups of their normalised keys (``LeadRepository.duplicate_candidates``,
one query per key kind for a whole chunk of creates); this index holds only what the batch in hand
changed, which is newer than what is stored and, for a chunk worked concurrently, maybe not yet
stored. It used to hold every lead, warmed by reading them all at start (57 s and 319 MB at
100,000 leads) and fed by the lead events of the other instances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from services.leads.duplicates import match_keys


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

    def candidates(
        self, dup_keys: Mapping[str, str], stored: StoredKeys | Mapping[str, Mapping[str, str]] | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Leads sharing any key with ``dup_keys``, with their own keys for scoring.

        ``stored`` are candidates found in the database (a ``StoredKeys`` when asked for many leads);
        a lead this index holds is taken from here instead (its keys as this batch left them: changed,
        or none once deleted).
        """
        ids: set[str] = set()
        for key, value in dup_keys.items():
            ids |= self._ids_by_key.get(f"dup:{key}:{value}", set())
        found = {lead_id: self._dup_keys.get(lead_id, {}) for lead_id in ids}
        if stored is not None and not isinstance(stored, StoredKeys):
            stored = StoredKeys(stored)
        for lead_id, keys in (stored.sharing(dup_keys) if stored is not None else {}).items():
            if lead_id not in self._keys_of:
                found[lead_id] = dict(keys)
        return sorted(found.items())

    def clear(self) -> None:
        self._ids_by_key.clear()
        self._keys_of.clear()
        self._dup_keys.clear()

    def put_card(self, card) -> None:
        """Index a lead card (domain lead or contract card): keys only while it is live."""
        self.put(card.lead_id, *index_entry(card))


class StoredKeys:
    """Stored leads found sharing a key with a chunk's creates, by key: each create looks up its own keys.

    Each create used to test every candidate of its chunk, 250 x 250 comparisons a chunk: 93 µs a
    create where half the names repeat (bench_leads at 100,000), the most of the duplicate check's cost.
    """

    def __init__(self, stored: Mapping[str, Mapping[str, str]]) -> None:
        self._keys_of = stored
        self._ids: dict[tuple[str, str], list[str]] = defaultdict(list)
        for lead_id, keys in stored.items():
            for item in keys.items():
                self._ids[item].append(lead_id)

    def sharing(self, dup_keys: Mapping[str, str]) -> dict[str, Mapping[str, str]]:
        """The stored leads that share at least one of ``dup_keys``, with their keys."""
        return {lead_id: self._keys_of[lead_id] for item in dup_keys.items() for lead_id in self._ids.get(item, ())}


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
