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
_DONE = object()


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

    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
    # Plain JSON watches without a name filter send the stored bytes as they are.
    events = registry.watch(kind, namespace, opts, encoded=not as_table and name is None)

    async def pump() -> None:
        try:
            async for item in events:
                await queue.put(item)
        except status.APIError as exc:
            await queue.put(exc)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(pump())
    # A watch that cannot start (a compacted revision) fails before the 200 goes out.
    try:
        first = await asyncio.wait_for(queue.get(), timeout=0.05)
    except TimeoutError:
        first = None
    if isinstance(first, status.APIError):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise first
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if metrics is not None:
        metrics.watchers.labels(kind.plural).inc()
    pending: list[Any] = [] if first is None else [first]
    # Until an event goes out, a bookmark carries the revision the watch started from:
    # "0" would send a client that resumes from it back to a full relist.
    rv = opts.resource_version
    last_rv = rv if rv.isascii() and rv.isdigit() else "0"
    headers_sent = False
    deadline = asyncio.get_running_loop().time() + timeout
    # Spread bookmarks so many watchers opened together do not all fire at once.
    next_bookmark = asyncio.get_running_loop().time() + interval * random.uniform(0.5, 1.0)
    try:
        while True:
            now = asyncio.get_running_loop().time()
            due = min(deadline, next_bookmark if bookmarks else deadline)
            # Wake up now and then even when idle: aiohttp does not cancel a handler whose
            # client went away, and a quiet watch would otherwise hold on until its timeout.
            wait = min(due - now, _LIVENESS_CHECK)
            try:
                item = pending.pop() if pending else await _get(queue, wait)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                now = asyncio.get_running_loop().time()
                if now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    await resp.write(_bookmark(kind, last_rv))
                    next_bookmark = now + interval
                continue
            if item is _DONE:
                break
            if isinstance(item, status.APIError):
                await resp.write(_event("ERROR", item.status()))
                break
            type_, obj = item
            if isinstance(obj, Encoded):
                last_rv = obj.resource_version
                await resp.write(b'{"type":"%s","object":%s}\n' % (type_.encode(), obj.data))
                continue
            if type_ == INITIAL_EVENTS_END:
                last_rv = obj["metadata"]["resourceVersion"]
                if initial_end and bookmarks:
                    await resp.write(_bookmark(kind, last_rv, initial_events_end=True))
                continue
            if name is not None and obj["metadata"].get("name") != name:
                continue
            last_rv = obj["metadata"].get("resourceVersion", last_rv)
            if as_table:
                table = tables.table(
                    kind, [obj], now=datetime.now(UTC), include_object=include_object
                )
                if headers_sent:
                    table["columnDefinitions"] = []
                headers_sent = True
                await resp.write(_event(type_, table))
            else:
                await resp.write(_event(type_, obj))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if metrics is not None:
            metrics.watchers.labels(kind.plural).dec()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def _get(queue: asyncio.Queue[Any], wait: float) -> Any:
    """The next item within `wait` seconds; TimeoutError if none came (at once if wait <= 0).

    asyncio.timeout rather than wait_for: wait_for runs the get in a task of its own,
    a task and an extra loop iteration for every event on every watch.
    """
    if wait <= 0:
        raise TimeoutError
    async with asyncio.timeout(wait):
        return await queue.get()


def _bookmark(kind: ResourceKind, rv: str, *, initial_events_end: bool = False) -> bytes:
    meta: Obj = {"resourceVersion": rv}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event("BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta})
