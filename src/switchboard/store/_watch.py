"""One open watch: history replayed from the log, then live events, queued or handed on.

A backend registers a watch as it opens it, with the revision up to which it
has dispatched events (the horizon): every event at or below the horizon must
come from the log, every later one the backend pushes live. The watch
replays the log between its start and the horizon in chunks, then yields
what was pushed, skipping anything at or below what it already handed out,
so the two phases meet with no gap and no duplicate.

Live events wait in an unbounded queue, so a slow consumer never blocks
writers; the queue holds what that consumer has not read yet.

A consumer that has caught up may `listen` instead of iterating: each live
event is then handed to its callback from inside the backend's dispatch.
The backend walks its watches once per event, so one event reaches every
listening watch in one pass, without a task wake-up per watch, and every
listener sees the same Event object, which lets the layer above encode it
once for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from switchboard.store import protocol

log = logging.getLogger(__name__)

Replay = Callable[[str, int, int], Awaitable[list[protocol.Event]]]


class LogWatch:
    """A `protocol.Watch` for a backend that keeps a log it can replay and dispatches live events.

    `replay(prefix, after, until)` returns up to `chunk` events with after <
    revision <= until, oldest first; `forget(watch)` unregisters the watch
    from the backend's dispatch. The dispatch calls `push(event)` with each
    live event under `prefix`, and `fail()` if that raised.
    """

    __slots__ = (
        "_chunk",
        "_closed",
        "_events",
        "_forget",
        "_horizon",
        "_listener",
        "_live",
        "_on_close",
        "_replay",
        "_replaying",
        "_seen",
        "prefix",
        "push",
    )

    def __init__(
        self,
        prefix: str,
        after: int,
        horizon: int,
        replay: Replay,
        chunk: int,
        forget: Callable[[LogWatch], None],
    ) -> None:
        self.prefix = prefix
        self._horizon = horizon
        self._replay = replay
        self._chunk = chunk
        self._forget = forget
        # The newest revision the iterator handed out. A listener is handed only events
        # past it: none at first for a watch from a future revision.
        self._seen = after
        self._replaying = after < horizon
        self._live: asyncio.Queue[protocol.Event | None] = asyncio.Queue()
        self._listener: Callable[[protocol.Event], None] | None = None
        self._on_close: Callable[[], None] | None = None
        self._closed = False
        self._events: AsyncIterator[protocol.Event] | None = None
        # What the backend's dispatch calls with each live event under the prefix, in
        # revision order. It runs for every watch and event, so rather than test each
        # time what the watch is doing, the watch swaps what `push` is: the iterator's
        # queue, the listener itself, or (closed) nothing. What the listener raises
        # comes out of `push`; the backend then calls `fail`.
        self.push: Callable[[protocol.Event], None] = self._live.put_nowait

    def listen(
        self, listener: Callable[[protocol.Event], None], closed: Callable[[], None]
    ) -> bool:
        """See `protocol.Watch.listen`."""
        if self._closed or self._replaying:
            return False
        self._listener = listener
        self._on_close = closed

        def skip_seen(event: protocol.Event) -> None:
            if event.revision <= self._seen:  # a watch from a future revision skips up to it
                return
            # Events come in revision order, so every later one is past `_seen` too.
            self.push = listener
            listener(event)

        self.push = skip_seen
        while not self._closed and not self._live.empty():
            queued = self._live.get_nowait()
            if queued is not None:
                try:
                    self.push(queued)
                except Exception:
                    self.fail()
        return True

    def fail(self) -> None:
        """Close the watch after its listener raised, from inside the `except` that caught it.

        One broken listener must not stop the dispatch to every other watch.
        """
        log.exception("a watch listener failed; closing its watch")
        self._stop()

    def __aiter__(self) -> AsyncIterator[protocol.Event]:
        # One iterator per watch: a consumer that breaks out of `async for`
        # and iterates again carries on where it stopped.
        if self._events is None:
            self._events = self._iterate()
        return self._events

    async def _iterate(self) -> AsyncIterator[protocol.Event]:
        try:
            while self._replaying and not self._closed:
                chunk = await self._replay(self.prefix, self._seen, self._horizon)
                final = len(chunk) < self._chunk or chunk[-1].revision >= self._horizon
                if not chunk:
                    self._replaying = False
                for index, event in enumerate(chunk):
                    if self._closed:
                        return
                    if final and index == len(chunk) - 1:
                        # Set before the last yield: the consumer may listen once it has this one.
                        self._replaying = False
                    self._seen = event.revision
                    yield event
            while not self._closed and self._listener is None:
                live = await self._live.get()
                if live is None:
                    return
                if live.revision > self._seen:
                    self._seen = live.revision
                    yield live
        finally:
            self._forget(self)

    def _stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener = None
            # The dispatch under way may still hold this watch among those it walks.
            self.push = _drop
            self._forget(self)
            self._live.put_nowait(None)
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    async def close(self) -> None:
        self._stop()


def _drop(event: protocol.Event) -> None:
    """What a closed watch does with a live event."""
