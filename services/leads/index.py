"""The leads one batch wrote, by duplicate key, so that later leads of the same batch match against them.

Stored leads are matched by indexed lookups of their normalised keys (``LeadRepository.duplicate_candidates``,
one query per key kind for a whole chunk of creates); this index holds only what the batch in hand
changed, which is newer than what is stored and, for a chunk worked concurrently, maybe not yet
stored. It used to hold every lead, warmed by reading them all at start (57 s and 319 MB at
100,000 leads) and fed by the lead events of the other instances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from services.leads.duplicates import match_keys


class LeadIndex:
    """Lead ids by normalised duplicate key (email, phone, name), for the leads this batch changed."""

    def __init__(self) -> None:
        self._ids_by_key: dict[tuple[str, str], set[str]] = {}
        self._keys_of: dict[str, Mapping[str, str]] = {}  # every lead put here, with no keys once not live

    def __len__(self) -> int:
        return len(self._keys_of)

    def put(self, lead_id: str, dup_keys: Mapping[str, str]) -> None:
        # Keyed by (kind, value) pairs, without the links to upstream records it once also kept (nothing
        # read them): 1.4 against 3.4 µs a new lead (put_card, 1,000 leads, in isolation).
        old = self._keys_of.get(lead_id)
        if old:
            for item in old.items():
                ids = self._ids_by_key.get(item)
                if ids is not None:
                    ids.discard(lead_id)
                    if not ids:
                        del self._ids_by_key[item]
        for item in dup_keys.items():
            ids = self._ids_by_key.get(item)
            if ids is None:
                self._ids_by_key[item] = {lead_id}
            else:
                ids.add(lead_id)
        self._keys_of[lead_id] = dict(dup_keys)

    def candidates(
        self, dup_keys: Mapping[str, str], stored: StoredKeys | Mapping[str, Mapping[str, str]] | None = None
    ) -> list[tuple[str, Mapping[str, str]]]:
        """Leads sharing any key with ``dup_keys``, with their own keys for scoring.

        ``stored`` are candidates found in the database (a ``StoredKeys`` when asked for many leads);
        a lead this index holds is taken from here instead (its keys as this batch left them: changed,
        or none once deleted).
        """
        found: dict[str, Mapping[str, str]] = {}
        for item in dup_keys.items():
            for lead_id in self._ids_by_key.get(item, ()):
                found[lead_id] = self._keys_of[lead_id]
        if stored is not None:
            if not isinstance(stored, StoredKeys):
                stored = StoredKeys(stored)
            for lead_id, keys in stored.sharing(dup_keys).items():
                if lead_id not in self._keys_of:
                    found[lead_id] = keys
        return sorted(found.items())

    def clear(self) -> None:
        self._ids_by_key.clear()
        self._keys_of.clear()

    def put_card(self, card) -> None:
        """Index a lead card (domain lead or contract card): its keys only while it is live."""
        live = not getattr(card, "deleted", False) and not getattr(card, "merged_into", None)
        self.put(card.lead_id, match_keys(card) if live else {})


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
