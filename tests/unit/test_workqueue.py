"""The work queue: deduplication, one holder per key, delays, rate limits, shutdown.

Delays run on a fake clock whose `advance()` fires due timers, so no test
sleeps; `get` is awaited with a short real timeout only to prove it blocks.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

import pytest

from switchboard.client import workqueue


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.time = 1000.0
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (when, next(self._seq), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        self.time += seconds
        while self._timers and self._timers[0][0] <= self.time:
            _, _, timer, callback = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> workqueue.WorkQueue:
    return workqueue.WorkQueue(name="test", clock=clock)


async def blocks(queue: workqueue.WorkQueue) -> bool:
    """True when `get` has nothing to hand out right now."""
    try:
        await asyncio.wait_for(queue.get(), timeout=0.02)
    except TimeoutError:
        return True
    return False


# ---- deduplication and ordering ------------------------------------------------------------


async def test_keys_are_handed_out_in_the_order_they_were_added(
    queue: workqueue.WorkQueue,
) -> None:
    for key in ("a", "b", "c"):
        queue.add(key)
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_many_times_before_processing_is_handed_out_once(
    queue: workqueue.WorkQueue,
) -> None:
    for _ in range(100):
        queue.add("default/web")
    queue.add("default/db")
    assert await queue.get() == "default/web"
    assert await queue.get() == "default/db"
    assert await blocks(queue)


async def test_a_key_readded_while_processing_is_not_handed_out_until_done(
    queue: workqueue.WorkQueue,
) -> None:
    queue.add("k")
    key = await queue.get()
    queue.add("k")
    queue.add("k")
    assert await blocks(queue)
    queue.done(key)
    assert await queue.get() == "k"
    queue.done("k")
    assert await blocks(queue)


async def test_a_key_done_without_being_readded_is_not_handed_out_again(
    queue: workqueue.WorkQueue,
) -> None:
    queue.add("k")
    queue.done(await queue.get())
    assert await blocks(queue)
    assert len(queue) == 0


async def test_a_waiting_getter_receives_a_key_added_later(queue: workqueue.WorkQueue) -> None:
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("late")
    assert await asyncio.wait_for(getter, timeout=1) == "late"


async def test_concurrent_workers_never_hold_the_same_key_at_once(
    queue: workqueue.WorkQueue,
) -> None:
    holding: set[str] = set()
    overlaps: list[str] = []
    handled: list[str] = []
    idle = asyncio.Event()

    async def reconcile(key: str) -> None:
        if key in holding:
            overlaps.append(key)
        holding.add(key)
        await asyncio.sleep(0.001)
        handled.append(key)
        holding.discard(key)
        if not holding and len(queue) == 0:
            idle.set()

    workers = [asyncio.create_task(workqueue.process(queue, reconcile)) for _ in range(4)]
    for round_ in range(20):
        for key in ("a", "b", "c"):
            queue.add(key)
        await asyncio.sleep(0.0005 * (round_ % 3))
    idle.clear()
    queue.add("z")  # added last, so once the queue is idle again every key was handled
    await asyncio.wait_for(idle.wait(), timeout=5)
    queue.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), timeout=2)
    assert overlaps == []
    assert set(handled) == {"a", "b", "c", "z"}


async def test_a_cancelled_getter_passes_its_wakeup_on(queue: workqueue.WorkQueue) -> None:
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("only")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, timeout=1) == "only"


# ---- delays ----------------------------------------------------------------------------------


async def test_a_delayed_key_appears_only_after_its_delay(
    queue: workqueue.WorkQueue, clock: FakeClock
) -> None:
    queue.add_after("k", 5)
    clock.advance(4.9)
    assert await blocks(queue)
    clock.advance(0.1)
    assert await queue.get() == "k"


async def test_a_key_delayed_twice_keeps_the_earlier_ready_time(
    queue: workqueue.WorkQueue, clock: FakeClock
) -> None:
    queue.add_after("k", 10)
    queue.add_after("k", 2)
    queue.add_after("k", 30)
    clock.advance(2)
    assert await queue.get() == "k"
    queue.done("k")
    clock.advance(100)
    assert await blocks(queue)


async def test_a_zero_delay_adds_the_key_at_once(queue: workqueue.WorkQueue) -> None:
    queue.add_after("now", 0)
    assert await queue.get() == "now"


async def test_real_clock_delays_fire_on_the_event_loop() -> None:
    queue = workqueue.WorkQueue()
    queue.add_after("soon", 0.02)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), timeout=1) == "soon"


# ---- rate limiting ---------------------------------------------------------------------------


def test_per_key_backoff_doubles_from_5ms_and_caps_at_1000s() -> None:
    backoff = workqueue.ExponentialBackoff()
    delays = [backoff.when("k") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    assert backoff.retries("k") == 20
    assert backoff.when("other") == 0.005
    assert [backoff.when("k") for _ in range(100)][-1] == 1000.0


def test_forgetting_a_key_resets_its_backoff() -> None:
    backoff = workqueue.ExponentialBackoff()
    for _ in range(5):
        backoff.when("k")
    backoff.forget("k")
    assert backoff.retries("k") == 0
    assert backoff.when("k") == 0.005


def test_the_token_bucket_allows_a_burst_then_spaces_retries_by_its_rate(
    clock: FakeClock,
) -> None:
    bucket = workqueue.TokenBucket(clock, qps=10, burst=3)
    assert [bucket.when("x") for _ in range(3)] == [0, 0, 0]
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("x") == pytest.approx(0.2)
    clock.advance(10)
    assert bucket.when("x") == 0


async def test_a_rate_limited_key_waits_out_its_backoff_and_forget_resets_it(
    queue: workqueue.WorkQueue, clock: FakeClock
) -> None:
    queue.add_rate_limited("k")
    queue.add_rate_limited("k")  # already waiting with the earlier (5 ms) time
    assert queue.num_requeues("k") == 2
    clock.advance(0.005)
    assert await queue.get() == "k"
    queue.done("k")
    queue.add_rate_limited("k")  # third failure: 20 ms
    clock.advance(0.019)
    assert await blocks(queue)
    clock.advance(0.001)
    assert await queue.get() == "k"
    queue.forget("k")
    assert queue.num_requeues("k") == 0


async def test_many_failing_keys_are_spread_out_by_the_overall_bucket(
    clock: FakeClock,
) -> None:
    limiter = workqueue.MaxOf(
        workqueue.ExponentialBackoff(), workqueue.TokenBucket(clock, qps=10, burst=2)
    )
    queue = workqueue.WorkQueue(clock=clock, rate_limiter=limiter)
    for key in ("a", "b", "c", "d"):
        queue.add_rate_limited(key)
    clock.advance(0.005)
    assert {await queue.get(), await queue.get()} == {"a", "b"}
    assert await blocks(queue)
    clock.advance(0.1)
    assert await queue.get() == "c"
    clock.advance(0.1)
    assert await queue.get() == "d"


# ---- the worker loop and shutdown ------------------------------------------------------------


async def test_a_failing_reconcile_is_retried_until_it_succeeds() -> None:
    queue = workqueue.WorkQueue()
    attempts: list[str] = []
    succeeded = asyncio.Event()

    async def flaky(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("conflict")
        succeeded.set()

    worker = asyncio.create_task(workqueue.process(queue, flaky))
    queue.add("k")
    await asyncio.wait_for(succeeded.wait(), timeout=2)
    await asyncio.sleep(0.01)  # let the worker record the success
    assert attempts == ["k", "k", "k"]
    assert queue.num_requeues("k") == 0  # forgotten after the success
    queue.shutdown()
    await asyncio.wait_for(worker, timeout=1)


async def test_a_key_failing_max_retries_times_is_dropped() -> None:
    queue = workqueue.WorkQueue()
    attempts: list[str] = []

    async def always_fails(key: str) -> None:
        attempts.append(key)
        raise RuntimeError("broken")

    worker = asyncio.create_task(workqueue.process(queue, always_fails, max_retries=2))
    queue.add("k")
    await asyncio.sleep(0.2)
    assert attempts == ["k", "k", "k"]
    queue.shutdown()
    await asyncio.wait_for(worker, timeout=1)


async def test_shutdown_ends_waiting_getters_and_ignores_later_adds(
    queue: workqueue.WorkQueue, clock: FakeClock
) -> None:
    getter = asyncio.create_task(queue.get())
    queue.add_after("delayed", 1)
    await asyncio.sleep(0)
    queue.shutdown()
    with pytest.raises(workqueue.ShutDown):
        await asyncio.wait_for(getter, timeout=1)
    queue.add("late")
    clock.advance(5)
    assert len(queue) == 0
    with pytest.raises(workqueue.ShutDown):
        await queue.get()
