"""The EndpointSlice controller: keeps every selector Service's EndpointSlices current.

An ordinary API client, shaped like Kubernetes' pkg/controller/endpointslice:

    Service events ─────────────┐
    Pod events ─► ServicePods ──┼──► WorkQueue of "ns/name" ──► sync(key) ──► API writes
    EndpointSlice events ───────┘        (dedup, backoff)        │
         (only changes we did not make)                           └ slicing.reconcile (pure)

- Handlers only enqueue Service keys. A pod event enqueues the Services that
  select the pod (`servicepods`); a slice event enqueues its Service only
  when someone else changed or deleted one of our slices.
- `sync` reads everything from the informer caches: the Service, its pods,
  the Nodes (for zones), and its slices through an index on the
  `kubernetes.io/service-name` label. `slicing.reconcile` plans the writes;
  `sync` performs them — creates, then updates, then deletes — and nothing
  else, so an unchanged Service costs no request.
- Selectorless Services and ExternalName Services are left alone: users
  manage their slices. A deleted Service's slices are removed by the garbage
  collector through their owner reference.
- Caches lag behind our own writes. `_SliceTracker` remembers the
  resourceVersion of every slice this controller wrote (and the ones it
  deleted); a sync that would read an older copy runs again when the
  informer delivers our write, instead of acting on a stale cache — which
  would create duplicate slices. Kubernetes tracks generations for this; the resourceVersion works
  the same way and also where the server does not count generations.
- A failed write (a Conflict from a stale resourceVersion, an unreachable
  server) raises, and the work queue retries the Service with backoff; a
  Warning event FailedToUpdateEndpointSlices tells the Service's owner. A
  pod on a Node the cache does not know is left out and the Service
  retried, as Kubernetes does.

The caller owns the informers (shared with other controllers) and runs
them; `run` waits until they have synced before the first sync.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder
from switchboard.client.informer import Informer
from switchboard.controllers import endpointrules, servicepods, slicing, triggertime
from switchboard.controllers.workers import (
    CacheWait,
    ensure_index,
    resource_version,
    run_workers,
    split_key,
)

log = logging.getLogger(__name__)

SLICES_BY_SERVICE = slicing.LABEL_SERVICE_NAME
# Kubernetes waits at least 1 s after a change to one of its slices by someone else,
# so a burst of such changes is handled in one sync.
SLICE_CHANGE_DELAY = 1.0


class UnknownNodes(Exception):
    """Some pods were left out because the Node they run on is not known (yet)."""


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("labels") or {}


def _uid(obj: Obj) -> str:
    return str(_meta(obj).get("uid") or "")


_DELETED = -1


@dataclass
class _SliceTracker:
    """The resourceVersions this controller wrote, per Service, to spot a lagging cache.

    A slice's entry is the resourceVersion our write returned, or `_DELETED` after we
    deleted it. Only comparable (numeric) resourceVersions are tracked.
    """

    _by_service: dict[str, dict[str, int]] = field(default_factory=dict)
    _service_uids: dict[str, str] = field(default_factory=dict)

    def wrote(self, service_key: str, slice_: Obj) -> None:
        rv = resource_version(slice_)
        if rv is not None and _uid(slice_):
            self._by_service.setdefault(service_key, {})[_uid(slice_)] = rv

    def deleted(self, service_key: str, slice_: Obj) -> None:
        if _uid(slice_):
            self._by_service.setdefault(service_key, {})[_uid(slice_)] = _DELETED

    def is_ours(self, service_key: str, slice_: Obj) -> bool:
        """True when this event shows a version we wrote ourselves (or an older one)."""
        tracked = self._by_service.get(service_key, {}).get(_uid(slice_))
        rv = resource_version(slice_)
        return tracked is not None and tracked != _DELETED and rv is not None and rv <= tracked

    def deletion_expected(self, service_key: str, slice_: Obj) -> bool:
        """Forget a deleted slice; True if we deleted it ourselves."""
        tracked = self._by_service.get(service_key, {}).pop(_uid(slice_), None)
        return tracked == _DELETED

    def stale(self, service: Obj, slices: list[Obj]) -> bool:
        key = endpointrules.service_key(service)
        uid = _uid(service)
        if self._service_uids.get(key, uid) != uid:
            self._by_service.pop(key, None)  # a new Service of the same name
        self._service_uids[key] = uid
        tracked = self._by_service.get(key)
        if not tracked:
            return False
        seen: set[str] = set()
        for slice_ in slices:
            seen.add(_uid(slice_))
            want = tracked.get(_uid(slice_))
            rv = resource_version(slice_)
            if want is not None and (want == _DELETED or (rv is not None and rv < want)):
                return True
        return any(rv != _DELETED and uid not in seen for uid, rv in tracked.items())

    def forget(self, service_key: str) -> None:
        self._by_service.pop(service_key, None)
        self._service_uids.pop(service_key, None)


class EndpointSliceController:
    """Writes the EndpointSlices of every Service with a selector."""

    def __init__(
        self,
        client: rest.Client,
        pods: Informer,
        services: Informer,
        nodes: Informer,
        slices: Informer,
        *,
        max_endpoints_per_slice: int = slicing.DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        controller_name: str = slicing.CONTROLLER_NAME,
        events: EventRecorder | None = None,
        queue_clock: workqueue.Clock | None = None,
    ) -> None:
        if max_endpoints_per_slice < 1:
            raise ValueError("max_endpoints_per_slice must be at least 1")
        self.client = client
        self.pods = pods
        self.services = services
        self.nodes = nodes
        self.slices = slices
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.controller_name = controller_name
        self.events = events
        self.queue = workqueue.WorkQueue(name="endpointslice", clock=queue_clock)
        self._membership = servicepods.ServicePods(services, pods)
        self._tracker = _SliceTracker()
        self._trigger_times = triggertime.TriggerTimeTracker()
        self._cache_wait = CacheWait(self.queue)
        ensure_index(slices, SLICES_BY_SERVICE, informer.label_index(slicing.LABEL_SERVICE_NAME))
        self._membership.enqueue_changes(self.queue)
        slices.add_handlers(self._on_slice, self._on_slice_update, self._on_slice_delete)

    # ---- running -------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        """Once the caches have synced, sync Services with `workers` workers until cancelled."""
        informers = (self.pods, self.services, self.nodes, self.slices)
        await run_workers(self.queue, self.sync, informers, workers)

    # ---- event handlers: enqueue only ----------------------------------------------------

    # Handler parameters are named `obj` because the informer's handler protocols name them so.

    def _managed(self, slice_: Obj) -> bool:
        return _labels(slice_).get(slicing.LABEL_MANAGED_BY) == self.controller_name

    def _owner_key(self, slice_: Obj) -> str | None:
        name = _labels(slice_).get(slicing.LABEL_SERVICE_NAME)
        return f"{_meta(slice_).get('namespace', '')}/{name}" if name else None

    def _on_slice(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if not key or not self._managed(obj):
            return
        if not self._tracker.is_ours(key, obj):
            self.queue.add_after(key, SLICE_CHANGE_DELAY)
        else:
            self._cache_wait.arrived(key)

    def _on_slice_update(self, old: Obj, new: Obj) -> None:
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key != new_key or self._managed(old) != self._managed(new):
            # Relabelled by someone: both Services may have lost or gained a slice.
            for key in {old_key, new_key}:
                if key is not None:
                    self.queue.add_after(key, SLICE_CHANGE_DELAY)
            return
        self._on_slice(new)

    def _on_slice_delete(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if not key or not self._managed(obj):
            return
        if not self._tracker.deletion_expected(key, obj):
            self.queue.add_after(key, SLICE_CHANGE_DELAY)
        else:
            self._cache_wait.arrived(key)

    # ---- the sync ------------------------------------------------------------------------

    def _node(self, name: str) -> Obj | None:
        return self.nodes.get(name)

    async def sync(self, key: str) -> None:
        """Bring the slices of Service `key` ("namespace/name") to the desired state."""
        svc = self.services.get(key)
        if svc is None:
            self._tracker.forget(key)
            self._trigger_times.forget(key)
            return
        if not endpointrules.manages_endpoints(svc):
            return
        mine = [s for s in self.slices.by_index(SLICES_BY_SERVICE, key) if self._managed(s)]
        if self._tracker.stale(svc, mine):
            self._cache_wait.wait(key)
            return
        self._cache_wait.done(key)
        # Slices already being deleted are left to finish; acting on them would race the GC.
        existing = [s for s in mine if not endpointrules.is_terminating(s)]
        pods = self._membership.pods_for(svc)
        plan = slicing.reconcile(
            svc,
            pods,
            existing,
            node_for=self._node,
            max_endpoints_per_slice=self.max_endpoints_per_slice,
            trigger_time=self._trigger_times.compute(svc, pods),
            controller_name=self.controller_name,
        )
        try:
            await self._write(key, plan)
            if plan.unplaced_pods:
                raise UnknownNodes(
                    f"left out pods {', '.join(plan.unplaced_pods)}: "
                    "their Nodes are not known yet; will retry"
                )
        except (errors.ClientError, UnknownNodes) as exc:
            if self.events is not None:
                self.events.record(
                    {**svc, "apiVersion": "v1", "kind": "Service"},
                    "Warning",
                    "FailedToUpdateEndpointSlices",
                    f"Error updating Endpoint Slices for Service {key}: {exc}",
                )
            raise

    async def _write(self, key: str, plan: slicing.SlicePlan) -> None:
        namespace, _ = split_key(key)
        for slice_ in plan.create:
            try:
                created = await self.client.create(kinds.ENDPOINTSLICES, namespace, slice_)
            except errors.APIError as exc:
                if errors.namespace_terminating(exc):
                    return  # creates keep failing until the namespace is gone; nothing to do
                raise
            self._tracker.wrote(key, created)
        for slice_ in plan.update:
            self._tracker.wrote(key, await self.client.update(kinds.ENDPOINTSLICES, slice_))
        for slice_ in plan.delete:
            name = str(_meta(slice_).get("name", ""))
            with contextlib.suppress(errors.NotFound):
                await self.client.delete(kinds.ENDPOINTSLICES, namespace, name)
            self._tracker.deleted(key, slice_)
        if plan.writes:
            log.debug(
                "endpointslice %s: %d created, %d updated, %d deleted",
                key,
                len(plan.create),
                len(plan.update),
                len(plan.delete),
            )
