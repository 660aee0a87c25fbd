"""The legacy Endpoints controller: one v1 Endpoints object per selector Service.

EndpointSlices replaced Endpoints, but older clients, DNS servers and tests
still read `v1/Endpoints`, so this controller keeps writing them as
Kubernetes' pkg/controller/endpoint does. What goes into the object is
computed purely by `endpointsubsets.endpoints_for`; this module is the API
client around it, the same shape as the EndpointSlice controller:

    Service events ──┐
    Pod events ──────┼──► WorkQueue of "ns/name" ──► sync(key) ──► create / update / delete
    Endpoints deleted┘

- Services without a selector and ExternalName Services are left alone:
  users write their Endpoints. When a Service is gone its Endpoints object
  is deleted (Endpoints carry no owner reference), and once at start every
  Endpoints object is checked, so ones left over while the controller was
  down are removed too — except leader-election records, which have no
  Service by design.
- An unchanged Service costs no request: `endpoints_for` returns None when
  the cached object is already right.
- The cache lags behind our own writes: the resourceVersion each write
  returned is remembered, and a sync that would read an older copy (or none
  right after a create) runs again once the informer delivers that write.
- Failed writes raise; the work queue retries the Service with backoff, and
  a Warning event (FailedToCreateEndpoint, FailedToUpdateEndpoint) says why.
"""

from __future__ import annotations

import contextlib
from typing import Any

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder
from switchboard.client.informer import Informer
from switchboard.controllers import endpointrules, endpointsubsets, servicepods, triggertime
from switchboard.controllers.workers import CacheWait, resource_version, run_workers, split_key

# Endpoints holding a leader-election record belong to no Service; never delete them.
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


class EndpointsController:
    """Writes the v1 Endpoints of every Service with a selector."""

    def __init__(
        self,
        client: rest.Client,
        pods: Informer,
        services: Informer,
        endpoints: Informer,
        *,
        max_capacity: int = endpointsubsets.MAX_CAPACITY,
        events: EventRecorder | None = None,
        queue_clock: workqueue.Clock | None = None,
    ) -> None:
        if max_capacity < 1:
            raise ValueError("max_capacity must be at least 1")
        self.client = client
        self.pods = pods
        self.services = services
        self.endpoints = endpoints
        self.max_capacity = max_capacity
        self.events = events
        self.queue = workqueue.WorkQueue(name="endpoints", clock=queue_clock)
        self._membership = servicepods.ServicePods(services, pods)
        self._trigger_times = triggertime.TriggerTimeTracker()
        # Service key → resourceVersion of our last write of its Endpoints.
        self._written: dict[str, int] = {}
        self._cache_wait = CacheWait(self.queue)
        self._membership.enqueue_changes(self.queue)
        endpoints.add_handlers(
            self._on_endpoints_written, self._on_endpoints_update, self._on_endpoints_delete
        )

    async def run(self, workers: int = 5) -> None:
        """Once the caches have synced, sync Services with `workers` workers until cancelled."""
        informers = (self.pods, self.services, self.endpoints)
        await run_workers(self.queue, self.sync, informers, workers, also=[self._check_leftovers])

    async def _check_leftovers(self) -> None:
        """Queue every Endpoints object once, so those whose Service went away are removed."""
        for obj in self.endpoints.list():
            if LEADER_ANNOTATION not in _annotations(obj):
                self.queue.add(informer.key_of(obj))

    # ---- event handlers: enqueue only (parameters named as the informer protocols name them)

    def _on_endpoints_written(self, obj: Obj) -> None:
        self._cache_wait.arrived(informer.key_of(obj))

    def _on_endpoints_update(self, old: Obj, new: Obj) -> None:
        self._on_endpoints_written(new)

    def _on_endpoints_delete(self, obj: Obj) -> None:
        key = informer.key_of(obj)
        self._written.pop(key, None)
        self.queue.add(key)

    # ---- the sync ------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Bring the Endpoints of Service `key` ("namespace/name") to the desired state."""
        namespace, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            self._trigger_times.forget(key)
            self._written.pop(key, None)
            if self.endpoints.get(key) is not None:
                with contextlib.suppress(errors.NotFound):
                    await self.client.delete(kinds.ENDPOINTS, namespace, name)
            return
        if not endpointrules.manages_endpoints(svc):
            return
        current = self.endpoints.get(key)
        written = self._written.get(key)
        if written is not None:
            seen = resource_version(current)
            if current is None or (seen is not None and seen < written):
                self._cache_wait.wait(key)
                return
        self._cache_wait.done(key)
        pods = self._membership.pods_for(svc)
        desired = endpointsubsets.endpoints_for(
            svc,
            pods,
            current,
            trigger_time=self._trigger_times.compute(svc, pods),
            capacity=self.max_capacity,
        )
        if desired is None:
            return
        try:
            if current is None:
                result = await self.client.create(kinds.ENDPOINTS, namespace, desired)
            else:
                result = await self.client.update(kinds.ENDPOINTS, desired)
        except errors.ClientError as exc:
            if isinstance(exc, errors.APIError) and errors.namespace_terminating(exc):
                return  # creates keep failing until the namespace is gone
            if self.events is not None:
                verb = "create" if current is None else "update"
                self.events.record(
                    {**desired, "apiVersion": "v1", "kind": "Endpoints"},
                    "Warning",
                    f"FailedTo{verb.capitalize()}Endpoint",
                    f"Failed to {verb} endpoint for service {key}: {exc}",
                )
            raise
        rv = resource_version(result)
        if rv is not None:
            self._written[key] = rv


def _annotations(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("annotations") or {}
