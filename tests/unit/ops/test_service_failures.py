"""A service that cannot go on says why: the await chain of each task, a warning while a start step runs long, a failed background task logged."""

import asyncio
import logging
import os
import signal

import pytest

from crmkit import taskdump


async def _inner(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer(gate: asyncio.Event) -> None:
    await _inner(gate)


async def test_the_chain_names_each_coroutine_down_to_what_it_waits_on() -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate))
    await asyncio.sleep(0)
    chain = taskdump.await_chain(task.get_coro())
    assert [line.rsplit(" ", 1)[-1] for line in chain] == ["_outer", "_inner", "wait"]
    assert chain[0].startswith(__file__)
    gate.set()
    await task


async def _until(condition, timeout_s: float = 5.0) -> None:
    """Wait for ``condition()`` (a signal's handler or a timer has run), failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "not seen in time"
        await asyncio.sleep(0.005)


async def test_sigusr1_logs_every_task(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate), name="the-hung-step")
    taskdump.install(asyncio.get_running_loop())
    await asyncio.sleep(0)

    def dumped() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "crmkit.taskdump" and "the-hung-step" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="crmkit.taskdump"):
        os.kill(os.getpid(), signal.SIGUSR1)
        await _until(lambda: dumped())
    asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
    assert len(dumped()) == 1 and "_inner" in dumped()[0]
    gate.set()
    await task


async def test_a_step_running_long_is_warned_about_and_the_watch_ends_with_it(caplog: pytest.LogCaptureFixture) -> None:
    def warnings() -> int:
        return sum("leads: start: not done after" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="crmkit.taskdump"):
        async with taskdump.warn_if_slow("leads: start", every_s=0.02):
            await _until(lambda: warnings() >= 2)  # warned again while the step goes on
        warned = warnings()
        await asyncio.sleep(0.06)  # three more periods: none may warn once the step is done
    assert sum("leads: start: not done after" in r.getMessage() for r in caplog.records) == warned
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "watch leads: start"]


async def test_a_background_task_that_fails_for_good_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from crmkit.service import Service

    service = Service.__new__(Service)  # only the callback: no broker or database
    service.name = "leads"

    async def migrate() -> None:
        raise ValueError("index refused")

    task = asyncio.create_task(migrate())
    task.add_done_callback(service._background_ended)
    with caplog.at_level(logging.ERROR, logger="crmkit.service"):
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    logged = [r.getMessage() for r in caplog.records if r.name == "crmkit.service"]
    assert logged == ["leads: a background task failed: index refused"]
