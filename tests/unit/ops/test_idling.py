"""crmkit's IdleWhile against a fake consumer: which end it commits, when it pauses and resumes."""

from __future__ import annotations

from aiokafka import TopicPartition

from crmkit.idling import IdleWhile

P0, P1 = TopicPartition("events", 0), TopicPartition("events", 1)


class FakeConsumer:
    """The part of aiokafka's consumer IdleWhile uses; ``ends`` is the log end, moved by the test."""

    def __init__(self, assigned):
        self.assigned = set(assigned)
        self.ends = {tp: 0 for tp in assigned}
        self.positions: dict = {}
        self.paused_tps: set = set()
        self.committed: dict = {}

    def assignment(self):
        return set(self.assigned)

    async def end_offsets(self, partitions):
        return {tp: self.ends[tp] for tp in partitions}

    def paused(self):
        return set(self.paused_tps)

    def pause(self, *tps):
        self.paused_tps.update(tps)

    def resume(self, *tps):
        self.paused_tps.difference_update(tps)

    def seek(self, tp, offset):
        self.positions[tp] = offset

    async def commit(self, offsets):
        self.committed.update(offsets)


class Subscriber:
    def __init__(self, consumer):
        self.consumer = consumer


def _idling(consumer, may_idle):
    shown = []
    idling = IdleWhile(may_idle, 60.0, shown=shown.append)
    idling.subscriber = Subscriber(consumer)
    return idling, shown


async def test_it_commits_the_ends_read_before_the_check_not_what_arrived_during_it():
    consumer = FakeConsumer([P0, P1])
    consumer.ends = {P0: 10, P1: 4}

    async def may_idle():
        consumer.ends = {P0: 12, P1: 4}  # an event written while the check ran: it may need handling
        return True

    idling, shown = _idling(consumer, may_idle)
    assert await idling.run_once()
    assert consumer.committed == {P0: 10, P1: 4}
    assert consumer.positions == {P0: 10, P1: 4}  # a resumed partition starts there, and FastStream's commit agrees
    assert consumer.paused_tps == {P0, P1}
    assert shown == [True]


async def test_something_to_do_resumes_the_paused_partitions_and_commits_nothing():
    consumer = FakeConsumer([P0, P1])
    consumer.paused_tps = {P0, P1}
    answers = iter([False])

    async def may_idle():
        return next(answers)

    idling, shown = _idling(consumer, may_idle)
    assert not await idling.run_once()
    assert consumer.paused_tps == set() and consumer.committed == {}
    assert shown == [False]


async def test_a_partition_revoked_during_the_check_is_left_alone():
    consumer = FakeConsumer([P0, P1])
    consumer.ends = {P0: 3, P1: 5}

    async def may_idle():
        consumer.assigned = {P1}  # a rebalance while the check ran
        return True

    idling, _ = _idling(consumer, may_idle)
    assert await idling.run_once()
    assert consumer.committed == {P1: 5} and consumer.paused_tps == {P1}


async def test_nothing_assigned_yet_is_no_pass():
    consumer = FakeConsumer([])

    async def may_idle():
        raise AssertionError("not asked without partitions")

    idling, shown = _idling(consumer, may_idle)
    assert not await idling.run_once()
    assert shown == []


async def test_partitions_assigned_are_paused_until_a_pass_decides():
    consumer = FakeConsumer([P0, P1])
    answers = iter([False])

    async def may_idle():
        return next(answers)

    idling, _ = _idling(consumer, may_idle)
    await idling.listener().on_partitions_assigned({P0, P1})
    assert consumer.paused_tps == {P0, P1} and idling._woken.is_set()
    await idling.run_once()  # something to do: fetching goes on
    assert consumer.paused_tps == set()
