"""Background work the apiserver does for itself.

- Bootstrap: the namespaces every cluster has (default, kube-system,
  kube-public, kube-node-lease) exist before the server answers.
- Namespace finalizer: a namespace being deleted is emptied of every
  namespaced object, then removed — Kubernetes runs this in its
  controller-manager; here it lives beside the registry so a lone apiserver
  already behaves as kubectl expects.
- Compaction: history older than a window of revisions is dropped
  periodically, so watches far behind get 410 Gone and relist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from switchboard.api import kinds
from switchboard.apiserver import status
from switchboard.apiserver.reads import ListOptions
from switchboard.apiserver.registry import DeleteOptions, Registry

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NS = kinds.by_gvk("", "v1", "Namespace")
assert _NS is not None
NAMESPACE_KIND = _NS


async def bootstrap(registry: Registry) -> None:
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(status.APIError):
            await registry.create(NAMESPACE_KIND, "", {"metadata": {"name": name}})


async def finalize_namespaces(registry: Registry) -> int:
    """Empty and remove every terminating namespace; return how many are still pending."""
    listed = await registry.list(NAMESPACE_KIND, None, ListOptions())
    pending = 0
    for ns in listed["items"]:
        meta = ns["metadata"]
        if not meta.get("deletionTimestamp"):
            continue
        name = meta["name"]
        remaining = 0
        for kind in kinds.KINDS:
            if not kind.namespaced or kind.storage_group is not None:
                continue
            items = await registry.list(kind, name, ListOptions())
            for item in items["items"]:
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue
                with contextlib.suppress(status.APIError):
                    await registry.delete(
                        kind,
                        name,
                        item["metadata"]["name"],
                        DeleteOptions(propagation_policy="Background"),
                    )
        if remaining:
            pending += 1
            continue

        def drop_finalizer(current: kinds.Obj) -> kinds.Obj:
            current.setdefault("spec", {})["finalizers"] = []
            current["metadata"].pop("finalizers", None)
            return current

        # With its finalizers gone, the update removes the terminating namespace.
        with contextlib.suppress(status.APIError):
            await registry.update(NAMESPACE_KIND, "", name, drop_finalizer)
    return pending


async def run_loops(registry: Registry, *, compact_window: int = 10000) -> None:
    """Run the namespace finalizer (event-driven with a slow resync) and compaction."""

    async def namespaces() -> None:
        while True:
            try:
                pending = await finalize_namespaces(registry)
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("namespace finalizer pass failed")
                pending = 1
            await asyncio.sleep(0.2 if pending else 1.0)

    async def compaction() -> None:
        while True:
            await asyncio.sleep(60)
            try:
                current = await registry.store.current_revision()
                if current > compact_window:
                    await registry.store.compact(current - compact_window)
            except Exception:
                log.exception("compaction failed")

    await asyncio.gather(namespaces(), compaction())
