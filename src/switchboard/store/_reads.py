"""Reads of the SQLite revision log: keys in ranges, pages of a prefix, joined pages.

Both connections read through `Reads`: the worker's writing connection
(`sqlite._Log`) and the event loop's read-only one, one `Snapshot` per page.

A list at the current revision walks `current` (live keys only) and joins
each key to its row in `kv`; at an older revision it walks `kv` itself and
keeps, per key, the row with no successor at or below that revision. Both
are ranges the indexes seek to (`bounds`), in key order.

`list_joined` returns a page as one byte string built inside SQLite: each
value with its revision spliced in and the values joined (`protocol.Splice`), by one
aggregate query. Reading the rows out one by one and splicing them in Python
made a Python tuple, a KeyValue and two byte strings per row; at 500 rows a
page that was as much work again as the query, and the garbage collector,
counting those allocations, ran several times a page on top. The aggregate
runs in SQLite's C code with the GIL released and hands back one object.
"""

from __future__ import annotations

import builtins
import pathlib
import sqlite3

from switchboard.store import errors, protocol


def bounds(column: str, prefix: str, start_after: str = "") -> tuple[str, builtins.list[str]]:
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


# The splice as SQL. Whether a value can be spliced is a column of the page's
# rows (`spliceable`); parameters: the opening's length and bytes, the position
# and byte of the closer.
_SPLICEABLE = "(substr(k.value, 1, ?) = ? AND substr(k.value, ?, 1) != ?) AS spliceable"
# `||` joins as text, which SQLite does bytewise in a UTF-8 database, and the CAST
# hands the result back as bytes. Parameters: head, tail, the opening's length + 1,
# separator.
_JOINED = (
    "CAST(group_concat(CASE WHEN spliceable THEN ? || id || ? || substr(value, ?) END, ?) AS BLOB)"
)


class Reads:
    """Reads of the log on `_db`, at `revision` (the newest) above `compacted`."""

    _db: sqlite3.Connection
    revision: int
    compacted: int

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

    def _page(
        self, prefix: str, revision: int, start_after: str, also: str = ""
    ) -> tuple[str, builtins.list[str | int], int]:
        """The SELECT of a page's rows in key order (no LIMIT), its parameters, its revision.

        The rows are (name, value, create_revision, id), named so, and then the
        columns of `also`, an SQL fragment over `k.value`.
        """
        if revision:
            self._check_revision(revision)
        columns = "k.value AS value, k.create_revision AS create_revision, k.id AS id"
        columns += f", {also}" if also else ""
        if revision in (0, self.revision):
            where, params = bounds("c.name", prefix, start_after)
            sql = (
                f"SELECT c.name AS name, {columns} FROM current c JOIN kv k ON k.id = c.id"
                f" WHERE {where} ORDER BY c.name"
            )
            return sql, [*params], self.revision
        where, params = bounds("k.name", prefix, start_after)
        sql = (
            f"SELECT k.name AS name, {columns} FROM kv k WHERE {where} AND k.id <= ?"
            " AND NOT k.deleted AND NOT EXISTS (SELECT 1 FROM kv n WHERE n.name = k.name"
            " AND n.prev_revision = k.id AND n.id <= ?) ORDER BY k.name"
        )
        return sql, [*params, revision, revision], revision

    def list(self, prefix: str, revision: int, start_after: str, limit: int) -> protocol.ListResult:
        sql, params, revision = self._page(prefix, revision, start_after)
        fetch = limit + 1 if limit > 0 else -1  # one extra row tells whether there is more
        rows = self._db.execute(f"{sql} LIMIT ?", (*params, fetch)).fetchall()
        more = 0 < limit < len(rows)
        items = builtins.list(map(protocol.KeyValue._make, rows[:limit] if more else rows))
        return protocol.ListResult(items, revision, more)

    def list_joined(
        self, prefix: str, revision: int, start_after: str, limit: int, splice: protocol.Splice
    ) -> protocol.JoinedList | None:
        sql, params, revision = self._page(prefix, revision, start_after, _SPLICEABLE)
        opening = len(splice.opening)
        # The page is a subquery with its ORDER BY and LIMIT, which SQLite runs as a
        # coroutine feeding the aggregate row by row in that order: the values are
        # joined in key order, and the greatest name is the page's last key.
        body, last, count, spliceable = self._db.execute(
            f"SELECT {_JOINED}, max(name), count(*), total(spliceable) FROM ({sql} LIMIT ?)",
            (
                *(splice.head, splice.tail, opening + 1, splice.separator),
                *(opening, splice.opening, opening + 1, splice.closer),
                *params,
                limit if limit > 0 else -1,
            ),
        ).fetchone()
        if spliceable < count:
            return None
        more = False
        if 0 < limit <= count:
            sql, params, _ = self._page(prefix, revision, last)
            more = self._db.execute(f"{sql} LIMIT 1", params).fetchone() is not None
        return protocol.JoinedList(body or b"", count, last or "", revision, more)


class Snapshot(Reads):
    """One read transaction on the event loop's own read-only connection.

    Pages of a paged list run here rather than on the worker: a page is one
    short query, and handing it to the worker and back cost two thread
    wake-ups and the GIL passed to and fro, a quarter of what reading a page
    of 500 costs. Longer lists stay on the worker, so the loop is never held
    for long. WAL lets this read run beside the worker's writes; it sees what
    was committed when it began, and the revision and compaction point of
    that moment.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute("BEGIN")
        try:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
            self.revision = row[0] if row else 0
            (self.compacted,) = db.execute(
                "SELECT value FROM meta WHERE key = 'compact_revision'"
            ).fetchone()
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def end(self) -> None:
        self._db.execute("COMMIT")


def open_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for the event loop's own reads (see `Snapshot`)."""
    # No busy wait: it would stall the event loop. A read that finds the file busy
    # (rare under WAL) goes to the worker instead.
    uri = f"{pathlib.Path(path).resolve().as_uri()}?mode=ro"
    reader = sqlite3.connect(uri, uri=True, timeout=0)
    reader.isolation_level = None  # transactions begun and ended explicitly, as on the worker
    reader.execute("PRAGMA cache_size = -65536")
    return reader
