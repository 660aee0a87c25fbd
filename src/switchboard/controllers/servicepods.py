"""Which Services select a pod, and which pods a Service selects — from informer caches.

Both endpoint controllers (`endpointslice`, `endpoints`) run on the same
shared Service and Pod informers and ask the same two questions on every
event, so the answers must be cheap at thousands of Services and pods:

Both sides are indexed by namespace-qualified label pairs, "namespace/key=value":
pods by every label they carry, Services by every pair of their selector.

- *pod → Services*: a Service selecting the pod has all its selector pairs
  among the pod's labels, so it is in the Service bucket of any one of
  them. The union of the buckets of the pod's (few) labels, filtered by a
  full selector match, is the answer — never a scan of the namespace.
  Matching a selector map is a few dict lookups, so no parsing is needed.
- *Service → pods*: a selector's pods are all in the pod bucket of each of
  its pairs, so the smallest of those buckets, filtered, is the answer —
  typically the bucket of `app=<name>`, not the whole namespace.

`services_to_update` decides, for a pod update, which Services need a sync,
as Kubernetes' GetServicesToUpdateOnPodChange does: none when nothing an
endpoint shows changed; when labels changed, the Services that gained or
lost the pod (all of both sets when the endpoint itself changed too).

`enqueue_changes` has the Service and pod events of both informers queue
those answers on a controller's work queue. The indexes are registered
idempotently, so the two controllers (or any other) can share informers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from switchboard.api.kinds import Obj
from switchboard.client import workqueue
from switchboard.client.informer import Informer
from switchboard.controllers import endpointrules, workers

POD_LABELS_INDEX = "namespace-label"
SERVICE_SELECTOR_INDEX = "namespace-selector-pair"


def _ns(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _pairs(namespace: str, labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f"{namespace}/{k}={v}" for k, v in labels.items())


def pod_label_index(obj: Obj) -> Iterable[str]:
    """Pods by each of their labels, as "namespace/key=value"."""
    return _pairs(_ns(obj), _labels(obj))


def service_selector_index(obj: Obj) -> Iterable[str]:
    """Services by each pair of their selector, as "namespace/key=value"."""
    return _pairs(_ns(obj), endpointrules.selector_of(obj) or {})


def _ready_and_ips(pod: Obj) -> tuple[bool, tuple[str, ...]]:
    return endpointrules.is_pod_ready(pod), tuple(endpointrules.pod_ips(pod))


def pod_endpoint_changes(old: Obj, new: Obj) -> tuple[bool, bool]:
    """(the pod's endpoint may have changed, the Services selecting it may have changed)."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    labels_changed = (
        _labels(old) != _labels(new)
        or old_spec.get("hostname") != new_spec.get("hostname")
        or old_spec.get("subdomain") != new_spec.get("subdomain")
    )
    pod_changed = (
        (old.get("metadata") or {}).get("deletionTimestamp")
        != (new.get("metadata") or {}).get("deletionTimestamp")
        or _ready_and_ips(old) != _ready_and_ips(new)
        or (old.get("status") or {}).get("phase") != (new.get("status") or {}).get("phase")
        or old_spec.get("nodeName") != new_spec.get("nodeName")
    )
    return pod_changed, labels_changed


class ServicePods:
    """Answers pod ↔ Service questions from a Service informer and a Pod informer."""

    def __init__(self, services: Informer, pods: Informer) -> None:
        self.services = services
        self.pods = pods
        workers.ensure_index(services, SERVICE_SELECTOR_INDEX, service_selector_index)
        workers.ensure_index(pods, POD_LABELS_INDEX, pod_label_index)

    def enqueue_changes(self, queue: workqueue.WorkQueue) -> None:
        """Have Service and pod events queue the keys of the Services they may concern."""

        def on_service(obj: Obj) -> None:
            queue.add(endpointrules.service_key(obj))

        def on_service_update(old: Obj, new: Obj) -> None:
            queue.add(endpointrules.service_key(new))

        def on_pod(obj: Obj) -> None:
            for key in self.services_for_pod(obj):
                queue.add(key)

        def on_pod_update(old: Obj, new: Obj) -> None:
            for key in self.services_to_update(old, new):
                queue.add(key)

        self.services.add_handlers(on_service, on_service_update, on_service)
        self.pods.add_handlers(on_pod, on_pod_update, on_pod)

    def services_for(self, namespace: str, labels: Mapping[str, str]) -> set[str]:
        """Keys of the Services in `namespace` whose selector matches `labels`."""
        candidates: set[str] = set()
        for pair in _pairs(namespace, labels):
            candidates.update(self.services.keys_by_index(SERVICE_SELECTOR_INDEX, pair))
        found: set[str] = set()
        for key in candidates:
            svc = self.services.get(key)
            selector = endpointrules.selector_of(svc) if svc is not None else None
            if selector is not None and endpointrules.selects(selector, labels):
                found.add(key)
        return found

    def services_for_pod(self, pod: Obj) -> set[str]:
        return self.services_for(_ns(pod), _labels(pod))

    def services_to_update(self, old: Obj, new: Obj) -> set[str]:
        """The Services to sync after a pod changed from `old` to `new`."""
        if workers.same_resource_version(old, new):
            return set()  # a relist echo, not a change
        pod_changed, labels_changed = pod_endpoint_changes(old, new)
        if not labels_changed:
            return self.services_for_pod(new) if pod_changed else set()
        now = self.services_for_pod(new)
        before = self.services_for_pod(old)
        return now | before if pod_changed else now ^ before

    def pods_for(self, service: Obj) -> list[Obj]:
        """The pods the Service's selector matches (none for a selectorless Service)."""
        selector = endpointrules.selector_of(service)
        if selector is None:
            return []
        ns = _ns(service)
        buckets = [
            self.pods.keys_by_index(POD_LABELS_INDEX, f"{ns}/{k}={v}") for k, v in selector.items()
        ]
        smallest = min(buckets, key=len)
        pods = (self.pods.get(key) for key in smallest)
        return [p for p in pods if p is not None and endpointrules.selects(selector, _labels(p))]
