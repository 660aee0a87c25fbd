"""The embedded storage backend: an append-only revision log in one SQLite file.

Schema (the shape of k3s's kine)::

    kv       id INTEGER PRIMARY KEY AUTOINCREMENT   -- the global revision
             name, created, deleted, create_revision, prev_revision, value
             UNIQUE (name, prev_revision)
    current  name PRIMARY KEY -> id                 -- live keys only
    meta     key PRIMARY KEY -> value               -- compact_revision

Every write appends one row to `kv`; its id is the revision of the write. An
update points `prev_revision` at the row it supersedes, a delete appends a
tombstone (`deleted = 1`), and a create after a delete points at the
tombstone. UNIQUE(name, prev_revision) therefore admits one successor per
row, so two writers racing from the same revision cannot both win.
AUTOINCREMENT keeps revisions from being reused after compaction deletes the
newest row.

There is no `old_value` column: the previous value an event carries is read
by joining `prev_revision` back to `kv`. Compaction never removes a row whose
successor is newer than the compacted revision (see `_Log.compact`), and only
such successors can be replayed, so the join always finds its row — and every
update writes its value once instead of twice.

Reads at the current revision go through `current`, so getting a key is two
primary-key lookups and listing a prefix walks only live keys, however long
the history. Reads at an older revision walk the UNIQUE index: it also holds
each row's id (an index carries the rowid), and along one name
`prev_revision` grows with `id`, so the index orders each key's history too.
The newest row of a key at or below revision R is the one with no successor
at or below R, a single probe of the same index.

Concurrency: one dedicated thread owns the connection and runs every job, so
SQLite sees a single writer and the log's revision counter lives in that
thread's memory. Jobs queue from the event loop; the thread takes all that
are waiting and runs their writes in one transaction (group commit: one fsync
acknowledges the whole batch). WAL with synchronous=FULL makes a commit
durable before any of its writers is answered, so an acknowledged write
survives kill -9. The store must be the only writer of its file. A read that
shares a batch with writes sees them and is answered once they commit. A
caller cancelled while its write waits in the queue does not stop the write.
SQLite's own errors reach callers as errors.StoreError; a job that fails that
way is taken out of its batch and the rest run again without it.

Revisions: a read at revision 0 reads now; a read at or below the compacted
revision raises errors.Compacted, above the current one errors.FutureRevision.
A watch needs the events after `after`, which compaction to `after` keeps, so
only `after` below the compacted revision raises errors.Compacted.

Watchers are woken in-process: when a batch commits, the thread hands its
results and events to the loop in one callback, which answers the callers
and pushes each event to every open watch whose prefix matches. A watch
registers at once, remembering the revision the loop had seen (every event
at or below it was already dispatched, every later one will be), replays the
log between its start and that revision, then yields its live queue. The
queue is unbounded so a slow consumer never blocks writers; it holds what
that consumer has not yet read.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from switchboard.store import errors, protocol

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (name, prev_revision)
);
CREATE TABLE IF NOT EXISTS current (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('compact_revision', 0);
"""

_MAX_BATCH = 256  # bounds the latency one batch adds to the jobs behind it
_REPLAY_CHUNK = 500  # rows a watch replays per job, so a long replay does not stall writers


def _bounds(column: str, prefix: str, start_after: str = "") -> tuple[str, builtins.list[str]]:
    """A WHERE fragment limiting `column` to keys under `prefix` and after `start_after`.

    A range the index can seek to, not a LIKE it would scan. SQLite compares
    TEXT as UTF-8 bytes, which orders like Python compares code points.
    """
    if start_after >= prefix:
        sql, params = f"{column} > ?", [start_after]
    else:
        sql, params = f"{column} >= ?", [prefix]
    end = _prefix_end(prefix)
    if end is not None:
        sql += f" AND {column} < ?"
        params.append(end)
    return sql, params


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix`; None if unbounded."""
    chars = prefix.rstrip("\U0010ffff")
    if not chars:
        return None
    following = ord(chars[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be encoded; skip past them
        following = 0xE000
    return chars[:-1] + chr(following)


class _Log:
    """The revision log on one connection. Thread-confined: only the worker thread calls it."""

    def __init__(self, path: str) -> None:
        # isolation_level=None: transactions are begun and committed here, explicitly.
        self._db = sqlite3.connect(path, isolation_level=None)
        (mode,) = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            self._db.close()
            raise errors.StoreError(
                f"{path!r} cannot use SQLite's write-ahead log (got {mode!r});"
                " put the store on a local filesystem"
            )
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: 100k keys stay hot
        self._db.execute("PRAGMA temp_store = MEMORY")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
        self.revision: int = row[0] if row else 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'compact_revision'").fetchone()
        self.compacted: int = row[0]
        self.events: builtins.list[protocol.Event] = []
        self._saved = (self.revision, self.compacted, 0)

    def close(self) -> None:
        self._db.close()

    # Transactions. The counters and the events of the batch so far are saved at
    # BEGIN, so that a rollback undoes them along with the rows.

    def begin(self) -> None:
        self._saved = (self.revision, self.compacted, len(self.events))
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self.revision, self.compacted, events = self._saved
        del self.events[events:]

    def take_events(self) -> builtins.list[protocol.Event]:
        events, self.events = self.events, []
        return events

    # Reads.

    def _check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise errors.FutureRevision(revision, self.revision)
        if revision <= self.compacted:
            raise errors.Compacted(revision, self.compacted)

    def _live(self, key: str) -> protocol.KeyValue | None:
        row = self._db.execute(
            "SELECT k.id, k.create_revision, k.value FROM current c JOIN kv k ON k.id = c.id"
            " WHERE c.name = ?",
            (key,),
        ).fetchone()
        return protocol.KeyValue(key, row[2], row[1], row[0]) if row else None

    def get(self, key: str, revision: int) -> protocol.KeyValue | None:
        if revision:
            self._check_revision(revision)
        if revision in (0, self.revision):
            return self._live(key)
        # The UNIQUE index orders a key's rows by prev_revision, which grows with id.
        row = self._db.execute(
            "SELECT id, deleted, create_revision, value FROM kv"
            " WHERE name = ? AND id <= ? ORDER BY prev_revision DESC LIMIT 1",
            (key, revision),
        ).fetchone()
        if row is None or row[1]:
            return None
        return protocol.KeyValue(key, row[3], row[2], row[0])

    def list(self, prefix: str, revision: int, start_after: str, limit: int) -> protocol.ListResult:
        fetch = limit + 1 if limit > 0 else -1  # one extra row tells whether there is more
        if revision:
            self._check_revision(revision)
        if revision in (0, self.revision):
            where, params = _bounds("c.name", prefix, start_after)
            rows = self._db.execute(
                "SELECT c.name, k.value, k.create_revision, k.id FROM current c"
                f" JOIN kv k ON k.id = c.id WHERE {where} ORDER BY c.name LIMIT ?",
                (*params, fetch),
            ).fetchall()
            revision = self.revision
        else:
            where, params = _bounds("k.name", prefix, start_after)
            rows = self._db.execute(
                "SELECT k.name, k.value, k.create_revision, k.id FROM kv k"
                f" WHERE {where} AND k.id <= ? AND NOT k.deleted AND NOT EXISTS"
                " (SELECT 1 FROM kv n WHERE n.name = k.name AND n.prev_revision = k.id"
                " AND n.id <= ?) ORDER BY k.name LIMIT ?",
                (*params, revision, revision, fetch),
            ).fetchall()
        more = 0 < limit < len(rows)
        items = [protocol.KeyValue(*row) for row in (rows[:limit] if more else rows)]
        return protocol.ListResult(items, revision, more)

    def count(self, prefix: str) -> int:
        where, params = _bounds("name", prefix)
        row = self._db.execute(f"SELECT count(*) FROM current WHERE {where}", params).fetchone()
        return int(row[0])

    def replay(
        self, prefix: str, after: int, until: int, limit: int
    ) -> builtins.list[protocol.Event]:
        """Events under `prefix` with after < revision <= until, oldest first, at most `limit`."""
        if after < self.compacted:
            raise errors.Compacted(after, self.compacted)
        where, params = _bounds("k.name", prefix)
        rows = self._db.execute(
            "SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision,"
            " k.value, p.value FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision AND NOT k.created"
            f" WHERE k.id > ? AND k.id <= ? AND {where} ORDER BY k.id LIMIT ?",
            (after, until, *params, limit),
        ).fetchall()
        events = []
        for rev, name, created, deleted, create_rev, prev_rev, value, prev_value in rows:
            prev = None if created else protocol.KeyValue(name, prev_value, create_rev, prev_rev)
            if deleted:
                assert prev is not None  # a tombstone always follows a live row
                kv = protocol.KeyValue(name, prev.value, create_rev, rev)
                events.append(protocol.Event("DELETE", kv, prev, rev))
            else:
                kv = protocol.KeyValue(name, value, create_rev, rev)
                events.append(protocol.Event("PUT", kv, prev, rev))
        return events

    # Writes: each validates before it changes anything, so a StoreError leaves
    # the batch's transaction untouched and its neighbours can still commit.

    def _append(
        self, key: str, created: bool, deleted: bool, create_rev: int, prev_rev: int, value: bytes
    ) -> int:
        revision = self.revision + 1
        self._db.execute(
            "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (revision, key, created, deleted, create_rev or revision, prev_rev, value),
        )
        self.revision = revision
        return revision

    def create(self, key: str, value: bytes) -> protocol.KeyValue:
        if self._live(key) is not None:
            raise errors.KeyExists(key)
        # A key deleted before chains its new life to the tombstone, keeping UNIQUE meaningful.
        row = self._db.execute(
            "SELECT id FROM kv WHERE name = ? ORDER BY prev_revision DESC LIMIT 1", (key,)
        ).fetchone()
        revision = self._append(key, True, False, 0, row[0] if row else 0, value)
        self._db.execute("INSERT INTO current (name, id) VALUES (?, ?)", (key, revision))
        kv = protocol.KeyValue(key, value, revision, revision)
        self.events.append(protocol.Event("PUT", kv, None, revision))
        return kv

    def _expect(self, key: str, expected_revision: int) -> protocol.KeyValue:
        live = self._live(key)
        if live is None:
            raise errors.KeyNotFound(key)
        if expected_revision and expected_revision != live.mod_revision:
            raise errors.Conflict(key, expected_revision, live.mod_revision)
        return live

    def update(self, key: str, value: bytes, expected_revision: int) -> protocol.KeyValue:
        prev = self._expect(key, expected_revision)
        revision = self._append(key, False, False, prev.create_revision, prev.mod_revision, value)
        self._db.execute("UPDATE current SET id = ? WHERE name = ?", (revision, key))
        kv = protocol.KeyValue(key, value, prev.create_revision, revision)
        self.events.append(protocol.Event("PUT", kv, prev, revision))
        return kv

    def delete(self, key: str, expected_revision: int) -> protocol.KeyValue:
        prev = self._expect(key, expected_revision)
        # The tombstone's value stays empty: replay reads the last value through prev_revision.
        revision = self._append(key, False, True, prev.create_revision, prev.mod_revision, b"")
        self._db.execute("DELETE FROM current WHERE name = ?", (key,))
        kv = protocol.KeyValue(key, prev.value, prev.create_revision, revision)
        self.events.append(protocol.Event("DELETE", kv, prev, revision))
        return kv

    def compact(self, revision: int) -> int:
        """Delete history at and below `revision` that no read above it can reach.

        A row goes when its successor is at or below `revision` (every read
        above sees the successor instead) or when it is a tombstone at or below
        it (the key reads as absent either way). The newest row of a live key
        has no successor and is no tombstone, so it stays. Rows compacted away
        earlier are gone already, so only successors in (compacted, revision]
        need looking at: the cost follows the new history, not the table.
        """
        if revision > self.revision:
            raise errors.FutureRevision(revision, self.revision)
        if revision <= self.compacted:
            return self.compacted
        span = (self.compacted, revision)
        self._db.execute(
            "DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv"
            " WHERE id > ? AND id <= ? AND prev_revision != 0)",
            span,
        )
        self._db.execute("DELETE FROM kv WHERE id > ? AND id <= ? AND deleted", span)
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'compact_revision'", (revision,))
        self.compacted = revision
        return revision

    def compact_keep(self, window: int) -> int:
        return self.compact(max(self.revision - window, 0))


@dataclass(slots=True)
class _Job:
    run: Callable[[_Log], Any]
    future: asyncio.Future[Any]
    writes: bool


@dataclass(frozen=True, slots=True)
class _Outcome:
    future: asyncio.Future[Any]
    result: Any
    error: BaseException | None


_Deliver = Callable[[builtins.list[_Outcome], builtins.list[protocol.Event], int, int], None]


class _Worker:
    """The thread that owns the connection and runs jobs in batches, one transaction each."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, deliver: _Deliver) -> None:
        self._path = path
        self._loop = loop
        self._deliver = deliver
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.opened: asyncio.Future[tuple[int, int]] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="sqlite-store", daemon=True)
        self._thread.start()

    def submit(self, run: Callable[[_Log], T], writes: bool) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(run, future, writes))
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
            log = _Log(self._path)
        except Exception as exc:
            self._post(_settle, self.opened, None, exc)
            self._post(_settle, self.stopped, None, None)
            return
        self._post(_settle, self.opened, (log.revision, log.compacted), None)
        stopping = False
        while not stopping:
            batch: builtins.list[_Job] = []
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
        self._post(_settle, self.stopped, None, None)

    def _execute(self, log: _Log, batch: builtins.list[_Job]) -> builtins.list[_Outcome]:
        writes = any(job.writes for job in batch)
        if writes:
            try:
                log.begin()
            except sqlite3.Error as exc:  # e.g. another process holds the file's write lock
                return [_Outcome(job.future, None, _store_error(exc)) for job in batch]
        outcomes = []
        for index, job in enumerate(batch):
            try:
                outcomes.append(_Outcome(job.future, job.run(log), None))
            except errors.StoreError as exc:
                outcomes.append(_Outcome(job.future, None, exc))
            except Exception as exc:
                # Undo the batch and run it again without this job, so one job
                # that fails (a bug, a full disk) cannot fail its neighbours.
                if writes:
                    log.rollback()
                rest = self._execute(log, batch[:index] + batch[index + 1 :])
                return [*rest, _Outcome(job.future, None, _store_error(exc))]
        if writes:
            try:
                log.commit()
            except sqlite3.Error as exc:
                # Nothing in the batch is durable, and its reads may have seen its writes.
                log.rollback()
                return [_Outcome(outcome.future, None, _store_error(exc)) for outcome in outcomes]
        return outcomes


def _store_error(exc: Exception) -> Exception:
    """SQLite's errors as the store's own; anything else (a bug) as it is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    error = errors.StoreError(f"SQLite failed: {exc}")
    error.__cause__ = exc
    return error


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled and has stopped waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteStore:
    """A `protocol.Store` in one SQLite file. Use from the event loop that opened it."""

    def __init__(self, worker: _Worker, revision: int, compacted: int) -> None:
        self._worker = worker
        # The loop's view of the log: it advances when a batch is delivered, before
        # its callers are answered and its events dispatched (see `watch`).
        self._revision = revision
        self._compacted = compacted
        self._watches: set[_Watch] = set()
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SQLiteStore:
        """Open (creating if needed) the store in the file at `path`."""
        loop = asyncio.get_running_loop()
        store: SQLiteStore | None = None

        def deliver(
            outcomes: builtins.list[_Outcome],
            events: builtins.list[protocol.Event],
            revision: int,
            compacted: int,
        ) -> None:
            assert store is not None
            store._deliver(outcomes, events, revision, compacted)

        worker = _Worker(os.fspath(path), loop, deliver)
        revision, compacted = await worker.opened
        store = cls(worker, revision, compacted)
        return store

    def _deliver(
        self,
        outcomes: builtins.list[_Outcome],
        events: builtins.list[protocol.Event],
        revision: int,
        compacted: int,
    ) -> None:
        self._revision = revision
        self._compacted = compacted
        for outcome in outcomes:
            _settle(outcome.future, outcome.result, outcome.error)
        if events and self._watches:
            for watch in self._watches:
                prefix = watch.prefix
                for event in events:
                    if event.kv.key.startswith(prefix):
                        watch.push(event)

    def _run(self, run: Callable[[_Log], T], writes: bool = False) -> asyncio.Future[T]:
        if self._closed:
            raise errors.StoreError("the store is closed; open it again to use it")
        return self._worker.submit(run, writes)

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str, revision: int = 0) -> protocol.KeyValue | None:
        """The live value of `key` at `revision` (0 = now), or None."""
        return await self._run(lambda log: log.get(key, revision))

    async def count(self, prefix: str) -> int:
        return await self._run(lambda log: log.count(prefix))

    async def create(self, key: str, value: bytes) -> protocol.KeyValue:
        """Write a new key; raises errors.KeyExists if it is live."""
        return await self._run(lambda log: log.create(key, value), writes=True)

    async def update(self, key: str, value: bytes, expected_revision: int) -> protocol.KeyValue:
        """Replace `key` if its mod_revision is `expected_revision` (0 = any)."""
        return await self._run(lambda log: log.update(key, value, expected_revision), writes=True)

    async def delete(self, key: str, expected_revision: int = 0) -> protocol.KeyValue:
        """Delete `key`; returns the deleted value with mod_revision = the delete's revision."""
        return await self._run(lambda log: log.delete(key, expected_revision), writes=True)

    async def compact(self, revision: int) -> None:
        """Forget history at and below `revision`, keeping every live value.

        Compacting to a revision at or below the compacted one does nothing;
        beyond the current one raises errors.FutureRevision.
        """
        await self._run(lambda log: log.compact(revision), writes=True)

    async def compact_keep(self, window: int) -> int:
        """Compact all but the newest `window` revisions; returns the compacted revision.

        Meant to be called periodically: a watch or paged list that falls more
        than `window` writes behind gets errors.Compacted.
        """
        return await self._run(lambda log: log.compact_keep(window), writes=True)

    def watch(self, prefix: str, after: int) -> protocol.Watch:
        """Events for keys under `prefix` with revision > `after`; see the module docstring."""
        if self._closed:
            raise errors.StoreError("the store is closed; open it again to use it")
        if after < self._compacted:
            raise errors.Compacted(after, self._compacted)
        watch = _Watch(self, prefix, after, self._revision)
        self._watches.add(watch)
        return watch

    def _unwatch(self, watch: _Watch) -> None:
        self._watches.discard(watch)

    async def _replay(self, prefix: str, after: int, until: int) -> builtins.list[protocol.Event]:
        return await self._run(lambda log: log.replay(prefix, after, until, _REPLAY_CHUNK))

    async def close(self) -> None:
        """Close every watch, finish queued jobs and close the file."""
        if self._closed:
            return
        self._closed = True
        for watch in builtins.list(self._watches):
            await watch.close()
        self._worker.stop()
        await self._worker.stopped

    # Defined last: inside the class body `list` names this method from here on.
    async def list(
        self, prefix: str, revision: int = 0, start_after: str = "", limit: int = 0
    ) -> protocol.ListResult:
        """Live keys under `prefix` in key order, after `start_after`, at most `limit` (0 = all)."""
        return await self._run(lambda log: log.list(prefix, revision, start_after, limit))


class _Watch:
    """One open watch: replays the log up to its horizon, then yields live events."""

    def __init__(self, store: SQLiteStore, prefix: str, after: int, horizon: int) -> None:
        self.prefix = prefix
        self._store = store
        self._after = after
        # Every event at or below `horizon` was dispatched before this watch
        # registered, so it must come from the log; every later one arrives live.
        self._horizon = horizon
        self._live: asyncio.Queue[protocol.Event | None] = asyncio.Queue()
        self._closed = False
        self._events: AsyncIterator[protocol.Event] | None = None

    def push(self, event: protocol.Event) -> None:
        self._live.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[protocol.Event]:
        # One iterator per watch: a consumer that breaks out of `async for`
        # and iterates again carries on where it stopped.
        if self._events is None:
            self._events = self._iterate()
        return self._events

    async def _iterate(self) -> AsyncIterator[protocol.Event]:
        seen = self._after
        try:
            while seen < self._horizon and not self._closed:
                chunk = await self._store._replay(self.prefix, seen, self._horizon)
                for event in chunk:
                    if self._closed:
                        return
                    yield event
                seen = chunk[-1].revision if len(chunk) == _REPLAY_CHUNK else self._horizon
            while not self._closed:
                live = await self._live.get()
                if live is None:
                    return
                if live.revision > seen:  # a watch from a future revision skips up to it
                    seen = live.revision
                    yield live
        finally:
            self._store._unwatch(self)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store._unwatch(self)
            self._live.put_nowait(None)


if TYPE_CHECKING:

    def _is_a_store(store: SQLiteStore) -> protocol.Store:
        return store  # mypy proves SQLiteStore implements the protocol
