"""What the controllers share: running workers, cache indexes, keys, lagging caches.

Each controller is built the same way (client-go's shape): informer handlers
only enqueue keys; `run(workers)` waits until every informer it reads has
listed once — an empty cache before that means "not known yet" — and then
runs `workers` loops of get → sync → done over one WorkQueue, a failing key
being retried with backoff (`client.workqueue.process`). The informers are
shared and run by whoever built them (the controller-manager), not by the
controllers.

A cache lags behind the controller's own writes. A controller that
remembers the resourceVersions it wrote (`resource_version`) can tell when
a sync would read an older copy; `CacheWait` then holds the key back until
the informer delivers the write, rather than act on the stale copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from switchboard.api.kinds import Obj
from switchboard.client import informer, workqueue
from switchboard.client.informer import Informer
from switchboard.controllers import podtemplate

log = logging.getLogger(__name__)

CONTROLLER_UID_INDEX = "controller-uid"
# A key held back for a lagging cache is synced after this long even if its write never shows.
STALE_CACHE_DELAY = 0.5


def controller_uid_index(obj: Obj) -> Iterable[str]:
    """Objects by the uid of their controller (the ownerReference with controller: true)."""
    uid = podtemplate.controller_uid(obj)
    return (uid,) if uid else ()


def ensure_index(inf: Informer, name: str, fn: informer.IndexFunc) -> None:
    """Add an index unless the shared informer already has one by that name."""
    with contextlib.suppress(ValueError):
        inf.add_index(name, fn)


def split_key(key: str) -> tuple[str, str]:
    """("namespace", "name") from "namespace/name"; ("", "name") for cluster-scoped keys."""
    ns, _, name = key.rpartition("/")
    return ns, name


def same_resource_version(old: Obj, new: Obj) -> bool:
    """Whether an update event is a relist echo rather than a change."""
    rv = (new.get("metadata") or {}).get("resourceVersion")
    return bool(rv) and rv == (old.get("metadata") or {}).get("resourceVersion")


def resource_version(obj: Obj | None) -> int | None:
    """An object's resourceVersion as a number, None where it is not one.

    Clients may only compare resourceVersions for equality; Switchboard's (and etcd's)
    are counters, and only where they are does ordering them spot a lagging cache.
    """
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "") if obj else ""
    return int(text) if text.isdigit() else None


class CacheWait:
    """The keys whose last sync found the cache behind the controller's own writes."""

    def __init__(self, queue: workqueue.WorkQueue, delay: float = STALE_CACHE_DELAY) -> None:
        self._queue = queue
        self._delay = delay
        self._keys: set[str] = set()

    def wait(self, key: str) -> None:
        """Sync `key` again once its write arrives (`arrived`), or after the delay."""
        log.debug("%s: cache behind our writes for %s; waiting", self._queue.name, key)
        self._keys.add(key)
        self._queue.add_after(key, self._delay)

    def arrived(self, key: str) -> None:
        """An informer event showed a write of ours: a sync held back for it may go ahead."""
        if key in self._keys:
            self._keys.discard(key)
            self._queue.add(key)

    def done(self, key: str) -> None:
        """The cache was current for this sync of `key`."""
        self._keys.discard(key)


async def run_workers(
    queue: workqueue.WorkQueue,
    sync: Callable[[str], Awaitable[None]],
    informers: Iterable[Informer],
    workers: int,
    *,
    also: Iterable[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Wait for the caches, then process keys until cancelled; `also` runs alongside."""
    try:
        await informer.wait_for_sync(*informers)
        tasks = [workqueue.process(queue, sync) for _ in range(max(1, workers))]
        await asyncio.gather(*tasks, *(fn() for fn in also))
    finally:
        queue.shutdown()
