"""A small fake API server for client tests: one kind, a revision history, and knobs
for the failures an informer must survive (410 Gone, refused and broken watches).

It serves `GET /api/v1/services` (paged lists) and `?watch=true` streams on
loopback, keeps every change as (revision, type, object), and can compact that
history so watches from older revisions get 410 — as an HTTP answer or as an
ERROR event inside a 200 stream, the two ways real API servers say it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

Obj = dict[str, Any]


def gone_status(rv: int) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"too old resource version: {rv}",
        "reason": "Expired",
        "code": 410,
    }


@dataclass
class FakeAPI:
    url: str = ""
    revision: int = 1
    objects: dict[str, Obj] = field(default_factory=dict)
    history: list[tuple[int, str, Obj]] = field(default_factory=list)
    compacted: int = 0
    gone_as: Literal["http", "event"] = "http"
    refuse_watches: bool = False  # answer 500 to every watch while set
    list_calls: int = 0
    watch_rvs: list[str] = field(default_factory=list)
    raw_watch_lines: list[bytes] = field(default_factory=list)  # sent instead of history
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _streams: dict[int, web.Request] = field(default_factory=dict)  # requests are unhashable

    # ---- changes -----------------------------------------------------------------------

    async def put(self, name: str, namespace: str = "default", **extra: Any) -> Obj:
        self.revision += 1
        key = f"{namespace}/{name}"
        existed = key in self.objects
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": str(self.revision),
                **extra.pop("metadata", {}),
            },
            **extra,
        }
        self.objects[key] = obj
        await self._record("MODIFIED" if existed else "ADDED", obj)
        return obj

    async def delete(self, name: str, namespace: str = "default") -> None:
        self.revision += 1
        obj = copy.deepcopy(self.objects.pop(f"{namespace}/{name}"))
        obj["metadata"]["resourceVersion"] = str(self.revision)
        await self._record("DELETED", obj)

    async def bookmark(self) -> None:
        self.revision += 1  # progress made elsewhere (another kind) that this watch skips
        await self._record("BOOKMARK", {"kind": "Service", "apiVersion": "v1", "metadata": {}})

    def compact(self) -> None:
        """Forget all history, so any watch from an older revision is told 410."""
        self.compacted = self.revision
        self.history.clear()

    async def drop_watches(self) -> None:
        """Break every open watch connection, as a network failure would."""
        for request in list(self._streams.values()):
            if request.transport is not None:
                request.transport.abort()
        self._streams.clear()

    async def _record(self, type_: str, obj: Obj) -> None:
        self.history.append((self.revision, type_, copy.deepcopy(obj)))
        async with self._changed:
            self._changed.notify_all()

    # ---- HTTP --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            return await self._watch(request)
        self.list_calls += 1
        items = [copy.deepcopy(o) for _, o in sorted(self.objects.items())]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0) or len(items)
        page = items[start : start + limit]
        meta: Obj = {"resourceVersion": str(self.revision)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        body = {"kind": "ServiceList", "apiVersion": "v1", "metadata": meta, "items": page}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        rv_text = request.query.get("resourceVersion", "")
        self.watch_rvs.append(rv_text)
        if self.refuse_watches:
            return web.json_response({"kind": "Status", "code": 500, "message": "x"}, status=500)
        after = int(rv_text or 0)
        if after < self.compacted and self.gone_as == "http":
            return web.json_response(gone_status(after), status=410)
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        self._streams[id(request)] = request
        try:
            if self.raw_watch_lines:
                for line in self.raw_watch_lines:
                    await resp.write(line)
                return resp
            if after < self.compacted:
                await resp.write(_line("ERROR", gone_status(after)))
                return resp
            sent = after
            while True:
                for revision, type_, obj in list(self.history):
                    if revision > sent:
                        if type_ == "BOOKMARK":
                            obj = {**obj, "metadata": {"resourceVersion": str(revision)}}
                        await resp.write(_line(type_, obj))
                        sent = revision
                async with self._changed:
                    await self._changed.wait()
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        finally:
            self._streams.pop(id(request), None)


def _line(type_: str, obj: Obj) -> bytes:
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


@asynccontextmanager
async def running() -> AsyncIterator[FakeAPI]:
    api = FakeAPI()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield api
    finally:
        await api.drop_watches()
        await runner.cleanup()
