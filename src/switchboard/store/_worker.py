"""The thread that owns a store's connection and runs its jobs in batches, one transaction each.

Jobs queue from the event loop; the thread takes all that are waiting and
runs their writes in one transaction (group commit: one fsync acknowledges
the whole batch), then hands the results and the batch's events back to the
loop in one callback. A job that fails with the store's own error fails
alone; one that fails otherwise (a bug, a full disk) has its batch undone
and run again without it, so it cannot fail its neighbours. A caller
cancelled while its write waits in the queue does not stop the write.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from switchboard.store import errors, protocol

T = TypeVar("T")

_MAX_BATCH = 256  # bounds the latency one batch adds to the jobs behind it


class Log(Protocol):
    """What the worker needs of the log its jobs run against."""

    revision: int
    compacted: int

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def take_events(self) -> list[protocol.Event]: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=Log)


@dataclass(slots=True)
class Job(Generic[L]):
    run: Callable[[L], Any]
    future: asyncio.Future[Any]
    writes: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    future: asyncio.Future[Any]
    result: Any
    error: BaseException | None


# (outcomes, events, revision, compacted) of one batch, called on the loop.
Deliver = Callable[[list[Outcome], list[protocol.Event], int, int], None]


class Worker(Generic[L]):
    """The thread; `open_log` runs on it, so the log's connection never leaves it."""

    def __init__(
        self, open_log: Callable[[], L], loop: asyncio.AbstractEventLoop, deliver: Deliver
    ) -> None:
        self._open_log = open_log
        self._loop = loop
        self._deliver = deliver
        self._jobs: queue.SimpleQueue[Job[L] | None] = queue.SimpleQueue()
        self.opened: asyncio.Future[tuple[int, int]] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="sqlite-store", daemon=True)
        self._thread.start()

    def submit(self, run: Callable[[L], T], writes: bool) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(Job(run, future, writes))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _post(self, callback: Callable[..., None], *args: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            return False
        return True

    def _run(self) -> None:
        try:
            log = self._open_log()
        except Exception as exc:
            self._post(settle, self.opened, None, exc)
            self._post(settle, self.stopped, None, None)
            return
        self._post(settle, self.opened, (log.revision, log.compacted), None)
        stopping = False
        while not stopping:
            batch: list[Job[L]] = []
            job = self._jobs.get()
            while job is not None:
                batch.append(job)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
            stopping = job is None
            if batch:
                outcomes = self._execute(log, batch)
                args = (outcomes, log.take_events(), log.revision, log.compacted)
                if not self._post(self._deliver, *args):
                    break
        log.close()
        self._post(settle, self.stopped, None, None)

    def _execute(self, log: L, batch: list[Job[L]]) -> list[Outcome]:
        writes = any(job.writes for job in batch)
        if writes:
            try:
                log.begin()
            except sqlite3.Error as exc:  # e.g. another process holds the file's write lock
                return [Outcome(job.future, None, store_error(exc)) for job in batch]
        outcomes = []
        for index, job in enumerate(batch):
            try:
                outcomes.append(Outcome(job.future, job.run(log), None))
            except errors.StoreError as exc:
                outcomes.append(Outcome(job.future, None, exc))
            except Exception as exc:
                # Undo the batch and run it again without this job, so one job
                # that fails (a bug, a full disk) cannot fail its neighbours.
                if writes:
                    log.rollback()
                rest = self._execute(log, batch[:index] + batch[index + 1 :])
                return [*rest, Outcome(job.future, None, store_error(exc))]
        if writes:
            try:
                log.commit()
            except sqlite3.Error as exc:
                # Nothing in the batch is durable, and its reads may have seen its writes.
                log.rollback()
                return [Outcome(outcome.future, None, store_error(exc)) for outcome in outcomes]
        return outcomes


def store_error(exc: Exception) -> Exception:
    """SQLite's errors as the store's own; anything else (a bug) as it is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    error = errors.StoreError(f"SQLite failed: {exc}")
    error.__cause__ = exc
    return error


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled and has stopped waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
