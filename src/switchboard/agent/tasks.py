"""The agent's long-lived tasks run side by side, and the first to fail ends them all.

The informers, the heartbeat, the kubelet API and the companions are meant to
run until cancelled. One that fails has stopped the agent: its error is what
`until_first_failure` raises, and `cancel_all` makes sure none of the others
outlives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


async def until_first_failure(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait until one of `tasks` fails (or all have ended) and raise what ended it."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        task.result()


async def cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until each has ended, whatever it ended with."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
