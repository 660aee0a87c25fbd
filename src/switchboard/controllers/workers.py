"""What the workload controllers share: running workers, cache indexes, keys.

Each controller is built the same way (client-go's shape): informer handlers
only enqueue keys; `run(workers)` waits until every informer it reads has
listed once — an empty cache before that means "not known yet" — and then
runs `workers` loops of get → sync → done over one WorkQueue, a failing key
being retried with backoff (`client.workqueue.process`). The informers are
shared and run by whoever built them (the controller-manager), not by the
controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

from switchboard.api.kinds import Obj
from switchboard.client import informer, workqueue
from switchboard.client.informer import Informer
from switchboard.controllers import podtemplate

CONTROLLER_UID_INDEX = "controller-uid"


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
