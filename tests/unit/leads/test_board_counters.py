"""The board counters' rules (services/leads/counters.py): a lead's board changes, what its document keeps,
what each counter adds, and a simulation of consumers that crash anywhere and get their batches again."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime

from services.leads import domain as d
from services.leads.domain.board import Change, Positions, board_key, change_of, deltas, kept, plan

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _lead(**changes):
    pipeline = d.default_pipeline(NOW)
    lead = d.create_lead(d.Actor(user_id="bob", licensed=True), "L1", {"title": "t"}, pipeline, NOW).lead
    return lead.model_copy(update=changes)


def test_a_lead_is_counted_under_its_pipeline_and_stage_while_it_is_live():
    assert board_key(_lead()) == ("default", "new")
    assert board_key(_lead(deleted=True)) is None
    assert board_key(None) is None


def test_a_change_is_made_only_when_the_board_key_moves_and_the_message_has_a_position():
    lead = _lead()
    moved = lead.model_copy(update={"stage_id": "processing"})
    assert change_of(None, lead, ("c:0", 7), 3) == Change("c:0", 7, 3, None, ("default", "new"))
    assert change_of(lead, moved, ("c:0", 8), 3) == Change("c:0", 8, 3, ("default", "new"), ("default", "processing"))
    assert change_of(moved, moved.model_copy(update={"deleted": True}), ("c:0", 9), None).after is None
    assert change_of(lead, lead.model_copy(update={"title": "other"}), ("c:0", 9), 3) is None  # same key: nothing to count
    assert change_of(None, lead, None, 3) is None  # no position known (a caller outside a consumed batch)


def test_a_change_round_trips_through_its_stored_form():
    change = Change("crm.leads.commands.v1:4", 12, 2, ("p|x", "s"), None)
    assert Change.from_doc(change.to_doc()) == change


def test_positions_give_each_message_its_first_place_and_each_partition_its_range():
    positions = Positions.of([("c", 0, 5, "m1"), ("c", 0, 6, "m2"), ("c", 1, 3, "m3"), ("c", 0, 9, "m1")])
    assert positions.origins == {"m1": ("c:0", 5), "m2": ("c:0", 6), "m3": ("c:1", 3)}
    assert positions.ranges == {"c:0": (5, 9), "c:1": (3, 3)}
    assert positions.covers(Change("c:0", 9, 1, None, None)) and not positions.covers(Change("c:0", 10, 1, None, None))
    assert not positions.covers(Change("c:2", 5, 1, None, None))


def test_a_document_keeps_what_may_not_be_counted_yet():
    positions = Positions({}, {"c:0": (100, 199)})
    old = Change("c:0", 50, 1, None, ("p", "a"))  # before this batch's start: counted before its offsets committed
    redelivered = Change("c:0", 150, 1, ("p", "a"), ("p", "b"))  # this batch's range: maybe not counted
    elsewhere = Change("c:1", 10, 1, ("p", "b"), None)  # a partition this batch does not cover (a merge)
    new = Change("c:0", 180, 1, ("p", "b"), ("p", "c"))
    assert kept([old, redelivered, elsewhere], [new], positions) == [redelivered, elsewhere, new]


def test_each_counter_adds_only_the_steps_after_what_it_counted():
    changes = [
        Change("c:0", 101, 1, None, ("p", "a")),
        Change("c:0", 150, 1, ("p", "a"), ("p", "b")),
        Change("c:0", 160, 2, None, ("p", "a")),  # another epoch: never added to this one
    ]
    found = deltas(changes, 1)
    assert found == {("c:0", ("p", "a")): [(101, 1), (150, -1)], ("c:0", ("p", "b")): [(150, 1)]}
    ranges = {"c:0": (100, 199)}
    assert sorted(plan(found, {}, ranges)) == [(("c:0", ("p", "a")), 0, 199), (("c:0", ("p", "b")), 1, 199)]
    # A counter that counted up to 120 (an earlier, shorter try of the same offsets) adds only the move at 150.
    assert plan(found, {("c:0", ("p", "a")): 120, ("c:0", ("p", "b")): 199}, ranges) == [(("c:0", ("p", "a")), -1, 199)]


# --- a simulation: consumers of two partitions that crash anywhere and get their batches again ------------

KEYS = [("p1", "new"), ("p1", "work"), ("p2", "new"), None]


def _messages(rnd: random.Random, leads: int, count: int) -> dict[str, list[tuple[str, str, str | None, tuple | None]]]:
    """Per partition: (message id, lead id, the merged lead or None, the lead's new key or None)."""
    out: dict[str, list] = {"c:0": [], "c:1": []}
    for i in range(count):
        lead = f"L{rnd.randrange(leads)}"
        tp = f"c:{int(lead[1:]) % 2}"  # a lead's messages are keyed by its id: one partition
        other = f"L{rnd.randrange(leads)}" if rnd.random() < 0.15 else None
        out[tp].append((f"m{i}", lead, other if other != lead else None, rnd.choice(KEYS[:3]) if rnd.random() < 0.8 else None))
    return out


def _simulate(seed: int, *, read_back: bool = True) -> tuple[dict, dict]:
    rnd = random.Random(seed)
    messages = _messages(rnd, 12, 120)
    stored: dict[str, dict] = {}  # lead id -> key, applied message ids, changes (the lead document)
    counters: dict[tuple, list[int]] = {}  # (tp, key) -> [n, counted up to]
    committed = dict.fromkeys(messages, 0)
    while any(committed[tp] < len(messages[tp]) for tp in messages):
        tps = [tp for tp in messages if committed[tp] < len(messages[tp])]
        batch = {}
        for tp in rnd.sample(tps, rnd.randint(1, len(tps))):  # a batch covers one or both partitions
            start = committed[tp]
            batch[tp] = range(start, min(len(messages[tp]), start + rnd.randint(1, 9)))
        positions = Positions({}, {tp: (r[0], r[-1]) for tp, r in batch.items()})
        states: dict[str, dict] = {}

        def state(lead_id):
            if lead_id not in states:
                states[lead_id] = copy.deepcopy(stored.get(lead_id, {"key": None, "applied": set(), "changes": []}))
                states[lead_id].update(new=[], dirty=False)
            return states[lead_id]

        for tp, offsets in batch.items():
            for offset in offsets:
                message_id, lead_id, other, key = messages[tp][offset]
                lead = state(lead_id)
                if other:
                    state(other)  # a merge's other lead is loaded with it, applied or not (LeadBatch's related)
                if message_id in lead["applied"]:
                    continue  # applied before the crash: nothing changes again
                targets = [(lead, key)] + ([(state(other), None)] if other else [])
                for target, new_key in targets:
                    if target["key"] != new_key:
                        target["new"].append(Change(tp, offset, 1, target["key"], new_key))
                        target["key"] = new_key
                    target["dirty"] = True
                lead["applied"].add(message_id)
        crash = rnd.choice(["none", "none", "mid-save", "after-save", "mid-count", "before-commit"])
        saved = [lid for lid, s in states.items() if s["dirty"]]
        if crash == "mid-save":
            saved = rnd.sample(saved, rnd.randint(0, len(saved)))
        counted = []
        for lead_id, s in states.items():
            if lead_id in saved:
                s["changes"] = kept(s["changes"], s["new"], positions)
                stored[lead_id] = {k: s[k] for k in ("key", "applied", "changes")}
                counted += [c for c in s["changes"] if positions.covers(c)] if read_back else s["new"]
            elif read_back:
                counted += [c for c in s["changes"] if positions.covers(c)]
        if crash in ("mid-save", "after-save"):
            continue  # the offsets stay where they were: the batch comes again, maybe cut elsewhere
        steps = plan(deltas(counted, 1), {k: v[1] for k, v in counters.items()}, positions.ranges)
        if crash == "mid-count":
            steps = rnd.sample(steps, rnd.randint(0, len(steps)))
        for counter, add, end in steps:
            n, _ = counters.get(counter, [0, -1])
            counters[counter] = [n + add, end]
        if crash in ("mid-count", "before-commit"):
            continue
        for tp, offsets in batch.items():
            committed[tp] = offsets[-1] + 1
    board: dict = {}
    for (_, key), (n, _) in counters.items():
        board[key] = board.get(key, 0) + n
    truth: dict = {}
    for lead in stored.values():
        if lead["key"] is not None:
            truth[lead["key"]] = truth.get(lead["key"], 0) + 1
    return {k: v for k, v in board.items() if v}, truth


def test_counts_come_out_exact_whatever_crashes_and_redeliveries_happen():
    for seed in range(300):
        board, truth = _simulate(seed)
        assert board == truth, seed


def test_without_reading_the_changes_back_from_the_leads_a_crash_loses_counts():
    # The control: counting only what a batch itself changed misses the changes stored before a crash.
    wrong = [seed for seed in range(300) if (lambda found: found[0] != found[1])(_simulate(seed, read_back=False))]
    assert len(wrong) > 100
