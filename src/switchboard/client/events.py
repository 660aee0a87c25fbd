"""Recording v1 Events, the lines `kubectl describe` shows under "Events:".

A controller calls `recorder.record(obj, "Normal", "Reason", "message")` in
the middle of a reconcile. That call never blocks and never fails: events are
for people, so losing one is better than slowing or breaking a reconcile.
Records go into a bounded queue that one background task writes out in order
(client-go buffers 1000 the same way and drops beyond that).

Repeats are aggregated as client-go's EventCorrelator does for identical
events: the first occurrence creates an Event (count 1, firstTimestamp =
lastTimestamp = now); an identical one later (same object, type, reason,
message and component) patches that Event's `count` and `lastTimestamp`
instead of creating another. If the Event has gone meanwhile (expired, or
deleted), a new one is created. Writing in one task is what makes this safe:
two identical records can never race to create the same Event.

Events of cluster-scoped objects (Nodes) live in the "default" namespace, as
in Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
QUEUE_SIZE = 1000  # client-go's incoming buffer
CACHE_SIZE = 4096  # client-go's LRU of recent events


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, slots=True)
class _Key:
    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class _Seen:
    event_name: str
    namespace: str
    count: int


class EventRecorder:
    def __init__(self, client: rest.Client, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, obj: Obj, type: EventType, reason: str, message: str) -> None:
        """Record an event about `obj`; returns at once, the write happens in the background."""
        if type not in ("Normal", "Warning"):
            raise ValueError(f'event type must be "Normal" or "Warning", not {type!r}')
        try:
            self._queue.put_nowait((obj, type, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full; dropped %s %s: %s", type, reason, message)
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def flush(self) -> None:
        """Wait until every event recorded so far has been written (or given up on)."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop the background writer."""
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_all(self) -> None:
        while True:
            obj, type_, reason, message = await self._queue.get()
            try:
                await self._write(obj, type_, reason, message)
            except errors.ClientError as exc:
                log.warning("could not write event %s %s: %s", type_, reason, exc)
            except Exception:
                log.exception("could not write event %s %s", type_, reason)
            finally:
                self._queue.task_done()

    async def _write(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        involved: Obj = {
            "kind": obj.get("kind", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
        }
        if meta.get("namespace"):
            involved["namespace"] = meta["namespace"]
        if meta.get("resourceVersion"):
            involved["resourceVersion"] = meta["resourceVersion"]
        key = _Key(
            involved["kind"],
            meta.get("namespace", ""),
            involved["name"],
            involved["uid"],
            type_,
            reason,
            message,
        )
        now = _timestamp()
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            try:
                await self.client.patch(
                    kinds.EVENTS,
                    seen.namespace,
                    seen.event_name,
                    {"count": seen.count + 1, "lastTimestamp": now},
                )
                seen.count += 1
                return
            except errors.NotFound:
                del self._seen[key]  # it expired meanwhile: start a new one below

        namespace = meta.get("namespace") or "default"
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # client-go names events "<object>.<unix nanoseconds in hex>".
                "name": f"{involved['name']}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        created = await self.client.create(kinds.EVENTS, namespace, event)
        self._seen[key] = _Seen(created["metadata"]["name"], namespace, 1)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
