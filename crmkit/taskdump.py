"""What a running service is waiting on: ``kill -USR1 <pid>`` logs every asyncio task's await chain.

A start-up that hangs (a database or broker call that neither answers nor fails) logs nothing by
itself; the chain shows which call it is in. Python 3.11 has no ``python -m asyncio ps`` (3.14 does)
and ``Task.print_stack`` shows only a suspended coroutine's outermost frame, hence the walk below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)


def await_chain(awaitable: Any) -> list[str]:
    """``file:line function`` of each coroutine in the chain, outermost first."""
    lines: list[str] = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:  # a future (its iterator names nothing more): the last frame is the call waiting
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return lines


def dump_tasks() -> None:
    """Log each task of the running loop with its await chain (one warning per task)."""
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        chain = "\n  ".join(await_chain(task.get_coro()))
        log.warning("task %s:\n  %s", task.get_name(), chain)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Dump the tasks on SIGUSR1 (where the platform has it)."""
    with contextlib.suppress(NotImplementedError, AttributeError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)


@contextlib.asynccontextmanager
async def warn_if_slow(what: str, every_s: float = 30.0) -> AsyncIterator[None]:
    """Log a warning every ``every_s`` seconds while the block runs, with the tasks the first time: a hung start says where."""

    async def warn() -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(every_s)
            waited += every_s
            log.warning("%s: not done after %.0f s (kill -USR1 %d logs what it waits on)", what, waited, os.getpid())
            if waited == every_s:  # once: a start waiting out a long outage says so without a dump a minute
                dump_tasks()

    watcher = asyncio.create_task(warn(), name=f"watch {what}")
    try:
        yield
    finally:
        watcher.cancel()
