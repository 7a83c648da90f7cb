"""The duplicate check's stored lookups on the real database: what they find scores as the leads' whole keys do.

One ``$or`` lookup asks for every key kind (an indexed ``$in`` each), and a stored lead found comes
with the keys it shares with the chunk's creates, not all of its own; these tests hold the scores made
from those equal to the scores made from every stored lead's full keys (a scan in Python), with more
creates than one lookup takes (500 values), deleted leads among the stored ones, and several kinds shared at once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from crmkit.mongo import IDS_PER_QUERY, is_ferretdb, make_client
from services.leads import domain as d
from services.leads.duplicates import match_keys, score_matches
from services.leads.index import StoredKeys
from services.leads.repository import LeadRepository, LeadWrite

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTOR = d.Actor(user_id="u-1", licensed=True)
NAMES = ["Иван Петров", "Петров Иван", "Анна Ёлкина", "John Smith", "Мария", None]


def _contact(rng: random.Random, i: int) -> dict:
    # Small pools, so that leads share one, two or all three keys; most emails of the creates their own.
    email = f"u{rng.randrange(40)}@example.ru" if rng.random() < 0.3 else f"own{i}@example.ru"
    return {
        "name": rng.choice(NAMES),
        "email": rng.choice([email, email, None]),
        "phone": rng.choice([f"+7 912 000-{rng.randrange(60):02d}-00", None]),
    }


async def test_stored_candidates_score_as_the_full_keys_do(endpoints, isolation):
    client = make_client(endpoints.mongodb)
    db = client[isolation.db("dupkeys")]
    try:
        ferretdb = await is_ferretdb(db)
        repo = LeadRepository(db, ferretdb=ferretdb)
        await repo.ensure_indexes(ferretdb=ferretdb)
        rng, pipe = random.Random(21), d.default_pipeline(NOW)
        stored = [d.create_lead(ACTOR, f"S{i:03d}", {"title": f"s{i}", "contact": _contact(rng, i)}, pipe, NOW).lead for i in range(300)]
        stored = [lead.model_copy(update={"deleted": True}) if i % 7 == 0 else lead for i, lead in enumerate(stored)]
        assert not await repo.save([LeadWrite(lead, [], None) for lead in stored])
        live = {lead.lead_id: match_keys(lead) for lead in stored if not lead.deleted}

        creates = [d.create_lead(ACTOR, f"N{i:03d}", {"title": f"n{i}", "contact": _contact(rng, i)}, pipe, NOW).lead for i in range(IDS_PER_QUERY * 2)]
        keys = [match_keys(lead) for lead in creates]
        found = await repo.duplicate_candidates(keys)
        assert set(found) <= set(live), "a deleted lead is no candidate"
        by_key = StoredKeys(found)
        several = 0
        for lead, own in zip(creates, keys, strict=True):
            expected = score_matches(own, [(i, k) for i, k in live.items() if set(k.items()) & set(own.items())], lead_id=lead.lead_id)
            assert score_matches(own, by_key.sharing(own).items(), lead_id=lead.lead_id) == expected
            several += any(len(m.matched_on) > 1 for m in expected)
        assert several > 10, "leads sharing two or three keys are among the cases"
        assert len({k["email"] for k in keys if "email" in k}) > IDS_PER_QUERY, "more values than one lookup takes"
        if ferretdb:
            # As the repository asks: an `$or` of each kind's `$in` of at most IDS_PER_QUERY values (FerretDB
            # pushes down no longer `$in`), every branch read from its kind's index.
            branches = [{f"ix_{kind}": {"$in": sorted({k[kind] for k in keys if kind in k})[:IDS_PER_QUERY]}} for kind in ("email", "name", "phone")]
            plan = await db.command("explain", {"find": "leads", "filter": {"$or": branches}, "projection": {"ix_email": 1, "ix_name": 1, "ix_phone": 1}})
            steps = " ".join(plan["queryPlanner"]["Plan"])
            assert plan["filterPushdown"] and "MULTI-INDEX OR" in steps and steps.count("USING INDEX") == 3, plan
    finally:
        await client.drop_database(isolation.db("dupkeys"))
        await client.close()
