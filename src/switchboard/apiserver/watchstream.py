"""Watch streams: one chunked JSON line per event, as kubectl and client-go read them.

`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}\n` per event.
With a Table Accept header each object is a one-row Table (column
definitions only on the first, so kubectl prints its header once). Events
are pumped from the registry into a queue by a task, so the writer can also
emit bookmarks on a timer and stop at `timeoutSeconds` without cancelling the
registry's iterator halfway through an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, status, tables
from switchboard.apiserver.registry import INITIAL_EVENTS_END, Encoded, ListOptions, Registry

DEFAULT_TIMEOUT = 1800.0
_LIVENESS_CHECK = 1.0  # seconds between checks that an idle watch's client is still there
_DONE: Any = object()


def _event(kind_: str, obj: Any) -> bytes:
    return codec.dumps({"type": kind_, "object": obj}) + b"\n"


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
    bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
    initial_end = q.get("sendInitialEvents") in ("true", "1")
    as_table = "as=Table" in request.headers.get("Accept", "")
    include_object = q.get("includeObject", "Metadata")
    interval: float = request.app.get("bookmark_interval", 60.0)
    metrics = request.app.get("metrics")

    # Plain JSON watches without a name filter send the stored bytes as they are.
    events = registry.watch(kind, namespace, opts, encoded=not as_table and name is None)
    first = asyncio.ensure_future(anext(events, _DONE))
    # A watch that cannot start (a compacted revision) fails before the 200 goes out.
    await asyncio.wait({first}, timeout=0.05)
    if first.done() and isinstance(first.exception(), status.APIError):
        await events.aclose()
        raise first.exception()  # type: ignore[misc]
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
    except BaseException:
        first.cancel()
        raise
    if metrics is not None:
        metrics.watchers.labels(kind.plural).inc()
    loop = asyncio.get_running_loop()
    # Until an event goes out, a bookmark carries the revision the watch started from:
    # "0" would send a client that resumes from it back to a full relist.
    rv = opts.resource_version
    stream = _Stream(resp, rv if rv.isascii() and rv.isdigit() else "0")
    headers_sent = False

    async def tick(limit: asyncio.Timeout) -> None:
        """Bookmarks on time, and an early end when the client has gone away.

        aiohttp does not cancel a handler whose client went away, and a quiet
        watch would otherwise hold on until its timeout.
        """
        # Spread bookmarks so many watchers opened together do not all fire at once.
        next_bookmark = loop.time() + interval * random.uniform(0.5, 1.0)
        while True:
            await asyncio.sleep(min(_LIVENESS_CHECK, max(0.0, next_bookmark - loop.time())))
            if request.transport is None or request.transport.is_closing():
                limit.reschedule(loop.time())
                return
            if bookmarks and loop.time() >= next_bookmark:
                await stream.write(_bookmark(kind, stream.last_rv))
                next_bookmark = loop.time() + interval
            elif not bookmarks:
                next_bookmark = loop.time() + _LIVENESS_CHECK

    timer: asyncio.Task[None] | None = None
    try:
        # The events are read here, in the handler itself: one task wake-up per event
        # per watcher; the timer ends the stream by moving this deadline.
        async with asyncio.timeout_at(loop.time() + timeout) as limit:
            timer = asyncio.create_task(tick(limit))
            item = await first
            while item is not _DONE:
                type_, obj = item
                if isinstance(obj, Encoded):
                    stream.last_rv = obj.resource_version
                    await stream.write(b'{"type":"%s","object":%s}\n' % (type_.encode(), obj.data))
                elif type_ == INITIAL_EVENTS_END:
                    stream.last_rv = obj["metadata"]["resourceVersion"]
                    if initial_end and bookmarks:
                        await stream.write(_bookmark(kind, stream.last_rv, initial_events_end=True))
                elif name is None or obj["metadata"].get("name") == name:
                    stream.last_rv = obj["metadata"].get("resourceVersion", stream.last_rv)
                    if as_table:
                        table = tables.table(
                            kind, [obj], now=datetime.now(UTC), include_object=include_object
                        )
                        if headers_sent:
                            table["columnDefinitions"] = []
                        headers_sent = True
                        await stream.write(_event(type_, table))
                    else:
                        await stream.write(_event(type_, obj))
                item = await anext(events, _DONE)
    except status.APIError as exc:
        with contextlib.suppress(ConnectionResetError):
            await stream.write(_event("ERROR", exc.status()))
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer
        with contextlib.suppress(Exception):
            await events.aclose()
        if metrics is not None:
            metrics.watchers.labels(kind.plural).dec()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


class _Stream:
    """The response and the newest revision sent, shared by the event loop and the timer."""

    def __init__(self, resp: web.StreamResponse, last_rv: str) -> None:
        self.resp = resp
        self.last_rv = last_rv
        self._lock = asyncio.Lock()

    async def write(self, data: bytes) -> None:
        # Bookmarks come from the timer task: one write at a time keeps lines whole.
        async with self._lock:
            await self.resp.write(data)


def _bookmark(kind: ResourceKind, rv: str, *, initial_events_end: bool = False) -> bytes:
    meta: Obj = {"resourceVersion": rv}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event("BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta})
