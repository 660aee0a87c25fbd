"""The agent's long-lived tasks run side by side, and the first to fail ends them all.

The informers, the heartbeat, the kubelet API and the companions are meant to
run until cancelled. One that fails has stopped the agent: its error is what
`until_first_failure` raises, and `cancel_all` makes sure none of the others
outlives it. `run_until_signalled` runs a process's main coroutine until
SIGTERM or SIGINT, for the agent and for the node parts that run as
processes of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Sequence


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


def run_until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main()` on a new event loop until it ends or SIGTERM or SIGINT cancels it.

    Plain `signal.signal` handlers, not the loop's `add_signal_handler`:
    pyroute2 forks short-lived helpers (to open netlink sockets inside a
    namespace) and ends them with SIGTERM, and a forked child shares the
    loop's signal wakeup socket, so the loop would take a helper's SIGTERM
    for its own. The handlers check whose signal it is.
    """

    async def supervised() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        owner = os.getpid()

        def on_signal(signum: int, _: object) -> None:
            if os.getpid() != owner:  # a forked helper that inherited this handler
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            loop.call_soon_threadsafe(task.cancel)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await main()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    asyncio.run(supervised())
