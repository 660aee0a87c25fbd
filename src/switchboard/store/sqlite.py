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

Concurrency: one dedicated thread owns the writing connection and runs every
job but the pages of paged lists (`_worker`), so SQLite sees a single writer
and the log's revision counter lives in that thread's memory. Jobs queue
from the event loop; the thread takes all that are waiting and runs their
writes in one transaction (group commit: one fsync acknowledges the whole
batch). WAL with synchronous=FULL makes a commit durable before any of its
writers is answered, so an acknowledged write survives kill -9. The store
must be the only writer of its file. A read that shares a batch with writes
sees them and is answered once they commit. A page of a paged list is read
on the event loop itself, in a read transaction of a read-only connection of
its own (`_reads.Snapshot`), and sees what was committed when it began. SQLite's
own errors reach callers as errors.StoreError.

Revisions: a read at revision 0 reads now; a read at or below the compacted
revision raises errors.Compacted, above the current one errors.FutureRevision.
A watch needs the events after `after`, which compaction to `after` keeps, so
only `after` below the compacted revision raises errors.Compacted.

Watchers are woken in-process: when a batch commits, the thread hands its
results and events to the loop in one callback, which answers the callers
and then, in a callback of its own scheduled behind the callers' wake-ups,
pushes each event to every open watch whose prefix matches. A watch
registers at once, remembering the newest revision dispatched (every event
at or below it was already dispatched, every later one will be), replays the
log between its start and that revision, then yields its live queue, or hands
live events to a listener (`_watch`). The queue is unbounded so a slow
consumer never blocks writers; it holds what that consumer has not yet read.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from switchboard.store import _reads, _watch, _worker, errors, protocol

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

_REPLAY_CHUNK = 500  # rows a watch replays per job, so a long replay does not stall writers
_LOOP_READ_ROWS = 1000  # pages up to this size are read on the event loop (see `_reads.Snapshot`)


class _Log(_reads.Reads):
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

    # Reads (lists also run on the loop's own connection, see `_reads.Snapshot`).

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

    def count(self, prefix: str) -> int:
        where, params = _reads.bounds("name", prefix)
        row = self._db.execute(f"SELECT count(*) FROM current WHERE {where}", params).fetchone()
        return int(row[0])

    def replay(
        self, prefix: str, after: int, until: int, limit: int
    ) -> builtins.list[protocol.Event]:
        """Events under `prefix` with after < revision <= until, oldest first, at most `limit`."""
        if after < self.compacted:
            raise errors.Compacted(after, self.compacted)
        where, params = _reads.bounds("k.name", prefix)
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


class SQLiteStore:
    """A `protocol.Store` in one SQLite file. Use from the event loop that opened it."""

    def __init__(
        self,
        worker: _worker.Worker[_Log],
        reader: sqlite3.Connection,
        revision: int,
        compacted: int,
    ) -> None:
        self._worker = worker
        self._reader = reader  # the loop's own, read-only: see `_reads.Snapshot`
        # The loop's view of the log: it advances when a batch is delivered, before
        # its callers are answered and its events dispatched.
        self._revision = revision
        self._compacted = compacted
        # The newest revision whose event every open watch has been given (see `watch`).
        self._dispatched = revision
        self._watches: set[_watch.LogWatch] = set()
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SQLiteStore:
        """Open (creating if needed) the store in the file at `path`."""
        loop = asyncio.get_running_loop()
        store: SQLiteStore | None = None

        def deliver(
            outcomes: builtins.list[_worker.Outcome],
            events: builtins.list[protocol.Event],
            revision: int,
            compacted: int,
        ) -> None:
            assert store is not None
            store._deliver(outcomes, events, revision, compacted)

        worker = _worker.Worker(lambda: _Log(os.fspath(path)), loop, deliver)
        revision, compacted = await worker.opened
        try:
            reader = _reads.open_reader(os.fspath(path))
        except sqlite3.Error as exc:
            worker.stop()
            await worker.stopped
            raise _worker.store_error(exc) from exc
        store = cls(worker, reader, revision, compacted)
        return store

    def _deliver(
        self,
        outcomes: builtins.list[_worker.Outcome],
        events: builtins.list[protocol.Event],
        revision: int,
        compacted: int,
    ) -> None:
        self._revision = revision
        self._compacted = compacted
        for outcome in outcomes:
            _worker.settle(outcome.future, outcome.result, outcome.error)
        if events:
            # Called soon rather than now: the writers' tasks, just woken, run first, so a
            # write is acknowledged without waiting for its fan-out to every watcher.
            asyncio.get_running_loop().call_soon(self._dispatch, events)

    def _dispatch(self, events: builtins.list[protocol.Event]) -> None:
        # Event by event, every watch: all watches that listen get one event in a
        # row, as the same object, before the next (see `_watch`).
        watches = builtins.list(self._watches)
        for event in events:
            key = event.kv.key
            for watch in watches:
                if key.startswith(watch.prefix):
                    # A listening watch's `push` is its listener, so this loop is where
                    # a listener's failure is caught, at no cost while none fails.
                    try:
                        watch.push(event)
                    except Exception:
                        watch.fail()
        self._dispatched = events[-1].revision

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
        # Every event above the horizon reaches this watch live, every one at or
        # below it was dispatched before the watch existed and comes from the log.
        watch = _watch.LogWatch(
            prefix, after, self._dispatched, self._replay, _REPLAY_CHUNK, self._watches.discard
        )
        self._watches.add(watch)
        return watch

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
        self._reader.close()

    async def list_joined(
        self, prefix: str, revision: int, start_after: str, limit: int, splice: protocol.Splice
    ) -> protocol.JoinedList | None:
        """The page `list` would return, spliced and joined by `splice`; None if a value is not."""
        return await self._read_page(
            limit, lambda reads: reads.list_joined(prefix, revision, start_after, limit, splice)
        )

    async def _read_page(self, limit: int, read: Callable[[_reads.Reads], T]) -> T:
        if not 0 < limit <= _LOOP_READ_ROWS:
            # A long read would hold up the event loop: the worker does it beside the loop.
            return await self._run(read)
        if self._closed:
            raise errors.StoreError("the store is closed; open it again to use it")
        try:
            snapshot = _reads.Snapshot(self._reader)
            try:
                return read(snapshot)
            finally:
                snapshot.end()
        except sqlite3.OperationalError:
            # Busy: the worker, which may wait, reads it instead.
            return await self._run(read)
        except sqlite3.Error as exc:
            raise _worker.store_error(exc) from exc

    # Defined last: inside the class body `list` names this method from here on.
    async def list(
        self, prefix: str, revision: int = 0, start_after: str = "", limit: int = 0
    ) -> protocol.ListResult:
        """Live keys under `prefix` in key order, after `start_after`, at most `limit` (0 = all)."""
        return await self._read_page(
            limit, lambda reads: reads.list(prefix, revision, start_after, limit)
        )


if TYPE_CHECKING:

    def _is_a_store(store: SQLiteStore) -> protocol.Store:
        return store  # mypy proves SQLiteStore implements the protocol
