"""Informers: a local, indexed copy of one kind, kept current by list then watch.

    list (paged) ──► cache ──► watch from the list's resourceVersion ──► cache
         ▲                           │ stream ends (timeout): watch again from the last rv
         │ 410 Gone                  │ transport/API error: back off with jitter, watch again
         └───────────────────────────┘

This is client-go's reflector + indexer + event distribution in one class, in
the shape controllers use them:

- The cache maps "namespace/name" (or "name" for cluster-scoped kinds) to
  the object as last seen. Objects in it are shared: handlers and readers
  must copy before changing one.
- Handlers (`on_add`, `on_update`, `on_delete`) are plain callables invoked
  after the cache has changed, so a handler reading the cache sees the new
  state. They should be cheap — usually they enqueue a key on a WorkQueue.
  An exception in one is logged and does not stop the informer.
- After a 410 Gone the informer relists and emits *synthetic* events for the
  difference between the new list and its cache: adds for new objects,
  updates for changed ones (by resourceVersion), deletes for objects that
  vanished while it was disconnected. A delete delivered this way carries
  the last state the informer saw, as client-go's DeletedFinalStateUnknown.
- Other failures back off (800 ms doubling to 30 s, with up to 100 % jitter,
  as client-go's reflector) and resume from the last resourceVersion seen,
  which bookmarks keep fresh on quiet watches.
- Indexes map an index value to the keys of matching objects and are kept
  up to date on every change; `namespace_index`, `node_index` and
  `label_index(label)` are the common ones.

Nothing should act before `has_synced()`: until the first list has been
applied, an empty cache means "not known yet", not "there are none".
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Protocol

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.client import errors, rest

log = logging.getLogger(__name__)

IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE = "namespace"
NODE = "node"

BACKOFF_INITIAL = 0.8  # client-go reflector's backoff: 800 ms …
BACKOFF_MAX = 30.0  # … doubling to 30 s …
BACKOFF_RESET = 120.0  # … forgotten after two quiet minutes
MIN_WATCH_TIMEOUT = 300  # watches last 5–10 minutes, randomised so informers do not
MAX_WATCH_TIMEOUT = 600  # reconnect all at once after an apiserver restart


class OnAdd(Protocol):
    def __call__(self, obj: Obj, /) -> None: ...


class OnUpdate(Protocol):
    def __call__(self, old: Obj, new: Obj, /) -> None: ...


class OnDelete(Protocol):
    def __call__(self, obj: Obj, /) -> None: ...


def key_of(obj: Obj) -> str:
    """The cache key: "namespace/name", or "name" for cluster-scoped objects."""
    return rest.object_key(obj)


def namespace_index(obj: Obj) -> Iterable[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return (ns,) if ns else ()


def node_index(obj: Obj) -> Iterable[str]:
    """Pods by `spec.nodeName`; unscheduled pods are in no node's bucket."""
    node = (obj.get("spec") or {}).get("nodeName")
    return (node,) if node else ()


def label_index(label: str) -> IndexFunc:
    """Objects by the value of one label, qualified by namespace ("ns/value").

    Qualifying by namespace makes the value line up with the owner's cache key:
    EndpointSlices indexed by `kubernetes.io/service-name` are looked up with
    the Service's own key, "ns/name".
    """

    def index(obj: Obj) -> Iterable[str]:
        meta = obj.get("metadata") or {}
        value = (meta.get("labels") or {}).get(label)
        if value is None:
            return ()
        ns = meta.get("namespace")
        return (f"{ns}/{value}",) if ns else (value,)

    return index


class _Backoff:
    """Exponential delay with jitter that forgets old failures."""

    def __init__(self, initial: float, cap: float, reset_after: float) -> None:
        self.initial = initial
        self.cap = cap
        self.reset_after = reset_after
        self._delay = 0.0
        self._last = 0.0

    def next(self) -> float:
        now = asyncio.get_running_loop().time()
        if not self._delay or now - self._last > self.reset_after:
            self._delay = self.initial
        else:
            self._delay = min(self._delay * 2, self.cap)
        self._last = now
        return self._delay * (1 + random.random())

    def reset(self) -> None:
        self._delay = 0.0


class Informer:
    """A cache of one kind (optionally one namespace, filtered by selectors)."""

    def __init__(
        self,
        client: rest.Client,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
        watch_timeout: tuple[int, int] = (MIN_WATCH_TIMEOUT, MAX_WATCH_TIMEOUT),
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self._backoff = _Backoff(backoff[0], backoff[1], BACKOFF_RESET)
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name → index value → keys; and index name → key → its values, for removal
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._values: dict[str, dict[str, tuple[str, ...]]] = {}
        self._on_add: list[OnAdd] = []
        self._on_update: list[OnUpdate] = []
        self._on_delete: list[OnDelete] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._watch_events = 0

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<Informer {self.kind.plural}{where}: {len(self._items)} cached>"

    # ---- reading the cache ---------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> builtins.list[Obj]:
        return builtins.list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (from the list, an event or a bookmark)."""
        return self._resource_version

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # ---- indexes -------------------------------------------------------------------------

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by `fn(obj)`; objects already cached are indexed at once."""
        if name in self._indexers:
            raise ValueError(f"informer for {self.kind.plural} already has an index {name!r}")
        self._indexers[name] = fn
        self._indices[name] = {}
        self._values[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, fn, key, obj)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        return [self._items[k] for k in self.keys_by_index(name, value)]

    def keys_by_index(self, name: str, value: str) -> builtins.list[str]:
        try:
            index = self._indices[name]
        except KeyError:
            raise ValueError(f"informer for {self.kind.plural} has no index {name!r}") from None
        return sorted(index.get(value, ()))

    def index_values(self, name: str) -> builtins.list[str]:
        """Every value the index currently holds (e.g. every node with pods)."""
        return sorted(self._indices[name])

    # ---- handlers ------------------------------------------------------------------------

    def on_add(self, handler: OnAdd) -> OnAdd:
        """Register an add handler; it first receives every object already cached."""
        self._on_add.append(handler)
        for obj in builtins.list(self._items.values()):
            self._call(handler, obj)
        return handler

    def on_update(self, handler: OnUpdate) -> OnUpdate:
        self._on_update.append(handler)
        return handler

    def on_delete(self, handler: OnDelete) -> OnDelete:
        self._on_delete.append(handler)
        return handler

    def add_handlers(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> None:
        if on_add is not None:
            self.on_add(on_add)
        if on_update is not None:
            self.on_update(on_update)
        if on_delete is not None:
            self.on_delete(on_delete)

    # ---- list and watch ------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch, for ever (until cancelled)."""
        need_list = True
        while True:
            listed_now = need_list
            self._watch_events = 0
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                if await self._watch():
                    self._backoff.reset()
                    continue
                delay = self._backoff.next()  # a watch that ends at once is failing quietly
            except errors.Gone as exc:
                log.info("%r: %s; relisting", self, exc.message)
                need_list = True
                if not (listed_now and self._watch_events == 0):
                    continue
                delay = self._backoff.next()  # too old straight after a list: do not spin
            except errors.ClientError as exc:
                delay = self._backoff.next()
                log.warning("%r: %s; retrying in %.1fs", self, exc, delay)
            await asyncio.sleep(delay)

    async def _relist(self) -> None:
        items, resource_version = await self.client.list_all(
            self.kind,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
        )
        self.replace(items, resource_version)

    def replace(self, items: Iterable[Obj], resource_version: str) -> None:
        """Make the cache equal `items`, emitting the add/update/delete differences."""
        fresh = {key_of(obj): obj for obj in items}
        for key in [k for k in self._items if k not in fresh]:
            gone = self._remove(key)
            if gone is not None:
                self._emit_delete(gone)
        for key, obj in fresh.items():
            old = self._items.get(key)
            if old is not None and _rv(old) == _rv(obj) and _rv(obj):
                continue  # unchanged while we were away: nothing to tell
            self._store(key, obj)
            if old is None:
                self._emit_add(obj)
            else:
                self._emit_update(old, obj)
        self._resource_version = resource_version
        self._synced.set()

    async def _watch(self) -> bool:
        """One watch; True if it did useful work before ending, False if it ended at once."""
        low, high = self.watch_timeout
        timeout = random.randint(low, high) if high > low else low
        started = asyncio.get_running_loop().time()
        stream = self.client.watch(
            self.kind,
            self.namespace,
            resource_version=self._resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            allow_bookmarks=True,
            timeout_seconds=timeout,
        )
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                self._watch_events += 1
                self.apply(event)
        return self._watch_events > 0 or asyncio.get_running_loop().time() - started >= 1.0

    def apply(self, event: rest.WatchEvent) -> None:
        """Fold one watch event into the cache and tell the handlers."""
        obj = event.object
        rv = _rv(obj)
        if event.type == "BOOKMARK":
            # A bookmark with resourceVersion "0" (or none) carries no position; taking
            # it would restart the next watch from the beginning of history.
            if rv and rv != "0":
                self._resource_version = rv
            return
        key = key_of(obj)
        if event.type == "DELETED":
            self._remove(key)
            self._emit_delete(obj)
        else:
            old = self._items.get(key)
            self._store(key, obj)
            if old is None:
                self._emit_add(obj)
            else:
                self._emit_update(old, obj)
        if rv:
            self._resource_version = rv

    # ---- cache and index upkeep ----------------------------------------------------------

    def _store(self, key: str, obj: Obj) -> None:
        self._items[key] = obj
        for name, fn in self._indexers.items():
            self._unindex_one(name, key)
            self._index_one(name, fn, key, obj)

    def _remove(self, key: str) -> Obj | None:
        obj = self._items.pop(key, None)
        if obj is not None:
            for name in self._indexers:
                self._unindex_one(name, key)
        return obj

    def _index_one(self, name: str, fn: IndexFunc, key: str, obj: Obj) -> None:
        values = tuple(fn(obj))
        if not values:
            return
        self._values[name][key] = values
        index = self._indices[name]
        for value in values:
            index.setdefault(value, set()).add(key)

    def _unindex_one(self, name: str, key: str) -> None:
        values = self._values[name].pop(key, ())
        index = self._indices[name]
        for value in values:
            bucket = index.get(value)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del index[value]

    # ---- delivering events ---------------------------------------------------------------

    def _emit_add(self, obj: Obj) -> None:
        for handler in self._on_add:
            self._call(handler, obj)

    def _emit_update(self, old: Obj, new: Obj) -> None:
        for handler in self._on_update:
            try:
                handler(old, new)
            except Exception:
                log.exception("%r: update handler %r failed", self, handler)

    def _emit_delete(self, obj: Obj) -> None:
        for handler in self._on_delete:
            self._call(handler, obj)

    def _call(self, handler: OnAdd | OnDelete, obj: Obj) -> None:
        try:
            handler(obj)
        except Exception:
            log.exception("%r: handler %r failed on %s", self, handler, key_of(obj))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


async def wait_for_sync(*informers: Informer) -> None:
    """Wait until every informer has listed once (kube-proxy's 'nothing before all synced')."""
    await asyncio.gather(*(i.wait_synced() for i in informers))
