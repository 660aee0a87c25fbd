"""Work queues: keys to reconcile, deduplicated, never processed twice at once,
retried with backoff. The asyncio shape of client-go's workqueue.

Informer handlers only `add(key)`; workers loop `get` → reconcile → `done`.
Three sets carry the guarantees, as in client-go:

- `_queue` (FIFO order) and `_dirty` (keys waiting to be processed): adding a
  key that is already dirty does nothing, so a burst of 100 updates to one
  Service becomes one reconcile that reads the latest state;
- `_processing`: a key handed out by `get` and not yet `done`. Adding it again
  only marks it dirty; `done` puts it back in the queue. So one key is never
  reconciled by two workers at the same time, and no change is lost.

Delays (`add_after`) are timers on a `Clock`; a key already waiting keeps the
earlier of its two ready times. `add_rate_limited` asks the `RateLimiter` how
long to wait: by default the larger of a per-key exponential backoff (5 ms
doubling to 1000 s, reset by `forget`) and an overall token bucket (10/s,
burst 100), exactly client-go's DefaultControllerRateLimiter, so a failing
key backs off on its own and many failing keys cannot flood the API server.

`Clock` is the one seam for time: `LoopClock` uses the event loop; tests pass
a fake whose `advance()` fires timers deterministically.

After `shutdown()`, adds are ignored, waiting keys are dropped and `get`
raises `ShutDown`, so workers end after the key they hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

BASE_DELAY = 0.005  # client-go's per-item exponential base
MAX_DELAY = 1000.0  # and cap
BUCKET_QPS = 10.0  # client-go's overall bucket: 10 retries a second…
BUCKET_BURST = 100  # …after a burst of 100


class ShutDown(Exception):
    """The queue was shut down: the worker should stop."""


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """Time from the running event loop."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_at(when, callback)


class RateLimiter(Protocol):
    def when(self, key: str) -> float:
        """Seconds to wait before `key` is retried; counts one more failure."""
        ...

    def forget(self, key: str) -> None: ...

    def retries(self, key: str) -> int: ...


class ExponentialBackoff:
    """Per-key delay base·2^failures, capped; `forget` resets a key."""

    def __init__(self, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        if exp > 62:  # 2**63 overflows what the cap could ever need
            return self.cap
        return min(self.base * (1 << exp), self.cap)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)


class TokenBucket:
    """An overall limit: `qps` tokens a second, at most `burst` saved up.

    Like golang.org/x/time/rate's Reserve: taking a token always succeeds, and
    the delay is how long until that token would have been refilled.
    """

    def __init__(self, clock: Clock, qps: float = BUCKET_QPS, burst: int = BUCKET_BURST) -> None:
        self.clock = clock
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, key: str) -> float:
        now = self.clock.now()
        if self._last is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return max(0.0, -self._tokens / self.qps)

    def forget(self, key: str) -> None:
        pass

    def retries(self, key: str) -> int:
        return 0


class MaxOf:
    """The longest delay any of several limiters asks for."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, key: str) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: str) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def retries(self, key: str) -> int:
        return max(limiter.retries(key) for limiter in self.limiters)


def default_rate_limiter(clock: Clock) -> RateLimiter:
    return MaxOf(ExponentialBackoff(), TokenBucket(clock))


class WorkQueue:
    """A deduplicating, rate-limited queue of keys (usually "namespace/name")."""

    def __init__(
        self,
        *,
        name: str = "",
        clock: Clock | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.name = name
        self.clock: Clock = clock or LoopClock()
        self.rate_limiter = rate_limiter or default_rate_limiter(self.clock)
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, tuple[float, Timer]] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not those processing or waiting on a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # `done` requeues it, so two workers never hold the same key
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self.clock.now() + delay
        waiting = self._waiting.get(key)
        if waiting is not None:
            if waiting[0] <= ready_at:
                return
            waiting[1].cancel()
        timer = self.clock.call_at(ready_at, lambda: self._ready(key))
        self._waiting[key] = (ready_at, timer)

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: str) -> None:
        """Stop backing `key` off: call after it was reconciled successfully."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.retries(key)

    async def get(self) -> str:
        """The next key to process; raises ShutDown once the queue is shut down."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # A wakeup meant for this getter must not be lost with it.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._dirty.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _ready(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


Reconcile = Callable[[str], Awaitable[None]]


async def process(queue: WorkQueue, reconcile: Reconcile, *, max_retries: int = 0) -> None:
    """One worker: reconcile keys until the queue shuts down.

    A key whose reconcile raises is retried with `add_rate_limited`; one that
    succeeds is forgotten (its backoff reset). With `max_retries`, a key
    failing that many times in a row is dropped until something adds it again.
    Run several of these concurrently for parallel workers.
    """
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await reconcile(key)
        except asyncio.CancelledError:
            queue.done(key)
            raise
        except Exception as exc:
            # Conflicts and races are routine in controllers: one line each, tracebacks at debug.
            trace = log.isEnabledFor(logging.DEBUG)
            if max_retries and queue.num_requeues(key) >= max_retries:
                log.warning(
                    "%s: dropping %s after %d retries: %s",
                    queue.name,
                    key,
                    max_retries,
                    exc,
                    exc_info=trace,
                )
                queue.forget(key)
            else:
                log.warning(
                    "%s: reconciling %s failed, will retry: %s",
                    queue.name,
                    key,
                    exc,
                    exc_info=trace,
                )
                queue.add_rate_limited(key)
        else:
            queue.forget(key)
        queue.done(key)
