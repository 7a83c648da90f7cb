"""Background loops that make a pass, then wait for the interval or a wake-up, whichever comes first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def run_passes(
    run_once: Callable[[], Awaitable[object]], woken: asyncio.Event, seconds: Callable[[], float],
    failed: Callable[[Exception], None],
) -> None:
    """Call ``run_once`` forever, ``seconds()`` apart or sooner once ``woken`` is set; a pass that raises is
    handed to ``failed`` and the next one tries again."""
    while True:
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed(exc)
        try:
            await asyncio.wait_for(woken.wait(), seconds())
        except TimeoutError:
            pass
        woken.clear()
