"""A service stops even when a library call swallows the cancellation of its background loop."""

from __future__ import annotations

import asyncio

from crmkit.service import _cancel_all, stop_if_cancelled


async def _running(state: dict) -> None:
    """Until the loop has made a few passes (it is then inside its awaited calls)."""
    while state["passes"] < 3:
        await asyncio.sleep(0.005)


async def _swallowing_call(state: dict) -> None:
    """Like a driver call that returns normally although its task was cancelled (once)."""
    try:
        await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        if state["swallowed"]:
            raise
        state["swallowed"] = True


async def test_stop_asks_again_until_a_loop_that_swallowed_the_cancel_ends():
    state = {"swallowed": False, "passes": 0}

    async def loop() -> None:
        while True:
            state["passes"] += 1
            await _swallowing_call(state)

    task = asyncio.create_task(loop())
    await _running(state)
    await asyncio.wait_for(_cancel_all([task], "test", grace_s=5), 5)
    assert task.done() and task.cancelled() and state["swallowed"]


async def test_a_loop_checking_stop_if_cancelled_ends_on_the_first_cancel():
    state = {"swallowed": False, "passes": 0}

    async def loop() -> None:
        while True:
            state["passes"] += 1
            await _swallowing_call(state)
            stop_if_cancelled()

    task = asyncio.create_task(loop())
    await _running(state)
    passes = state["passes"]
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert task in done and task.cancelled() and state["swallowed"]
    assert state["passes"] == passes  # ended in the pass that swallowed it, no further pass


async def test_stop_gives_up_on_a_task_that_never_ends_instead_of_hanging():
    release = asyncio.Event()

    async def deaf() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if release.is_set():
                    raise

    task = asyncio.create_task(deaf())
    await asyncio.wait_for(_cancel_all([task], "test", grace_s=0.3), 3)
    assert not task.done()
    release.set()  # let it end, so that the test leaves nothing running
    task.cancel()
    await asyncio.wait([task], timeout=2)
    assert task.cancelled()
