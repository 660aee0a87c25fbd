"""Watch streams: one chunked JSON line per event, as kubectl and client-go read them.

`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}\n` per event.
With a Table Accept header each object is a one-row Table (column
definitions only on the first, so kubectl prints its header once).

Events come from a `watchfeed.Feed`. The handler reads it while the watch
catches up on history, writing through the response so a slow client holds
it back. A JSON watch that has caught up then lets the feed write each later
event itself, from the store's dispatch: every watcher of a kind is sent the
same encoded, framed bytes, straight to its transport, with no task waking
per watcher per event. A watcher whose unsent bytes pass `_BEHIND` is
stopped there; once its client has read most of them it catches up from the
log again, so nothing is lost or reordered, and a client that stops reading
costs no more than its socket's buffer. Table watches, rendered per watcher,
stay on the read loop.

A timer task writes bookmarks and ends the stream at `timeoutSeconds`, or
early when the client has gone away. Writes from the loop and the timer take
a lock, so lines stay whole; writes from the dispatch are single synchronous
transport writes of whole chunks, which cannot split anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import paths, status, tables
from switchboard.apiserver.reads import ListOptions
from switchboard.apiserver.registry import Registry
from switchboard.apiserver.watchfeed import Feed, encode_event

DEFAULT_TIMEOUT = 1800.0
_LIVENESS_CHECK = 1.0  # seconds between checks that an idle watch's client is still there
# Unsent bytes (beyond what the kernel took) at which a watcher counts as fallen behind,
# and below which it catches up again. A healthy client reads far faster than this fills.
_BEHIND = 1 << 20
_CAUGHT_UP = 1 << 16
_DRAIN_POLL = 0.02


async def serve(
    request: web.Request,
    registry: Registry,
    kind: ResourceKind,
    namespace: str | None,
    opts: ListOptions,
    *,
    name: str | None = None,
) -> web.StreamResponse:
    q = request.query
    timeout = DEFAULT_TIMEOUT
    if q.get("timeoutSeconds"):
        try:
            # An integer, as in Kubernetes: "nan" or "inf" would make a watch that never ends.
            timeout = int(q["timeoutSeconds"])
        except ValueError as exc:
            raise status.bad_request(f"invalid timeoutSeconds: {q['timeoutSeconds']}") from exc
    bookmarks = paths.query_flag(q, "allowWatchBookmarks")
    initial_end = bool(opts.send_initial_events)
    as_table = "as=Table" in request.headers.get("Accept", "")
    include_object = q.get("includeObject", "Metadata")
    interval: float = request.app.get("bookmark_interval", 60.0)
    metrics = request.app.get("metrics")

    # A watch that cannot start (a compacted or malformed revision) fails before the 200.
    feed, initial = await Feed.open(registry, kind, namespace, opts, name=name)
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
    except BaseException:
        await feed.close()
        raise
    if metrics is not None:
        metrics.watchers.labels(kind.plural).inc()
    loop = asyncio.get_running_loop()
    # Until an event goes out, a bookmark carries the revision the watch started from:
    # "0" would send a client that resumes from it back to a full relist.
    rv = opts.resource_version
    stream = _Stream(resp, request, kind, int(rv) if rv.isascii() and rv.isdigit() else 0)
    render = _TableRows(kind, include_object) if as_table else None

    async def tick(limit: asyncio.Timeout) -> None:
        """Bookmarks on time, and an early end when the client has gone away.

        aiohttp does not cancel a handler whose client went away, and a quiet
        watch would otherwise hold on until its timeout.
        """
        # Spread bookmarks so many watchers opened together do not all fire at once.
        next_bookmark = loop.time() + interval * random.uniform(0.5, 1.0)
        while True:
            await asyncio.sleep(min(_LIVENESS_CHECK, max(0.0, next_bookmark - loop.time())))
            if stream.closing():
                limit.reschedule(loop.time())
                return
            if bookmarks and loop.time() >= next_bookmark:
                await stream.bookmark()
                next_bookmark = loop.time() + interval
            elif not bookmarks:
                next_bookmark = loop.time() + _LIVENESS_CHECK

    timer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout_at(loop.time() + timeout) as limit:
            timer = asyncio.create_task(tick(limit))
            if initial is not None:
                for obj in initial:
                    line = render.line("ADDED", obj) if render else encode_event("ADDED", obj)
                    await stream.write(line, int(obj["metadata"]["resourceVersion"]))
                stream.last_rv = feed.revision
                if initial_end and bookmarks:
                    await stream.bookmark(initial_events_end=True)
            if render is not None:
                await _follow_rows(feed, stream, render)
            else:
                await _follow(feed, stream)
    except status.APIError as exc:
        with contextlib.suppress(ConnectionResetError):
            await stream.write(encode_event("ERROR", exc.status()))
    except (TimeoutError, ConnectionResetError, StopAsyncIteration):
        pass
    finally:
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer
        with contextlib.suppress(Exception):
            await feed.close()
        if metrics is not None:
            metrics.watchers.labels(kind.plural).dec()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def _follow(feed: Feed, stream: _Stream) -> None:
    """JSON lines: catch up through the response, then let the store's dispatch write."""
    while True:
        while not feed.listen(stream.send, stream.wake):
            told = await feed.next()
            if told is not None:
                type_, event = told
                await stream.write(feed.line(type_, event), event.revision)
        await stream.woken()
        if stream.closing() or feed.ended:
            return
        await stream.drained()
        await feed.resume()


async def _follow_rows(feed: Feed, stream: _Stream, render: _TableRows) -> None:
    while True:
        told = await feed.next()
        if told is not None:
            type_, event = told
            await stream.write(render.line(type_, feed.object(event)), event.revision)


class _TableRows:
    """One-row Tables for one watcher: column definitions on the first row only."""

    def __init__(self, kind: ResourceKind, include_object: str) -> None:
        self._kind = kind
        self._include_object = include_object
        self._headers_sent = False

    def line(self, type_: str, obj: Obj) -> bytes:
        table = tables.table(
            self._kind, [obj], now=datetime.now(UTC), include_object=self._include_object
        )
        if self._headers_sent:
            table["columnDefinitions"] = []
        self._headers_sent = True
        return encode_event(type_, table)


class _Stream:
    """One watch response: its writers, the newest revision sent, and whether it fell behind."""

    __slots__ = ("_behind", "_kind", "_lock", "_transport", "last_rv", "resp")

    def __init__(
        self, resp: web.StreamResponse, request: web.Request, kind: ResourceKind, last_rv: int
    ) -> None:
        self.resp = resp
        self.last_rv = last_rv
        # The connection's own transport, kept: `send` runs for every event and watcher.
        self._transport = request.transport
        self._kind = kind
        self._lock = asyncio.Lock()
        self._behind = asyncio.Event()

    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    async def write(self, data: bytes, rv: int | None = None) -> None:
        async with self._lock:
            if rv is not None:
                self.last_rv = rv
            await self.resp.write(data)

    async def bookmark(self, *, initial_events_end: bool = False) -> None:
        # Made under the lock, so it never claims a revision whose event is still to be written.
        async with self._lock:
            await self.resp.write(_bookmark(self._kind, self.last_rv, initial_events_end))

    def send(self, line: bytes, revision: int) -> bool:
        """The feed's sink: write one line now, from the store's dispatch. False: stop."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._behind.set()
            return False
        self.last_rv = revision
        chunks = _CHUNKS
        # Every watcher of the event is sent the same line: framed for the first only.
        transport.write(chunks.chunk if line is chunks.line else chunks.frame(line))
        if transport.get_write_buffer_size() > _BEHIND:
            self._behind.set()
            return False
        return True

    def wake(self) -> None:
        self._behind.set()

    async def woken(self) -> None:
        """Until `send` said stop (fallen behind, or the client went) or `wake` was called."""
        await self._behind.wait()
        self._behind.clear()

    async def drained(self) -> None:
        """Wait until the client has read most of what it was sent (or has gone)."""
        while self._transport is not None and not self._transport.is_closing():
            if self._transport.get_write_buffer_size() <= _CAUGHT_UP:
                return
            await asyncio.sleep(_DRAIN_POLL)


class _Chunks:
    """The last event line sent and its framing as an HTTP chunk, kept for the next watcher."""

    __slots__ = ("chunk", "line")

    def __init__(self) -> None:
        self.line = b""
        self.chunk = b""

    def frame(self, line: bytes) -> bytes:
        self.line = line
        self.chunk = b"%x\r\n%b\r\n" % (len(line), line)
        return self.chunk


_CHUNKS = _Chunks()


def _bookmark(kind: ResourceKind, rv: int, initial_events_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return encode_event(
        "BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}
    )
