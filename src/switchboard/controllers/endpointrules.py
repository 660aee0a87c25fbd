"""Which Services have computed endpoints, and which pods are their endpoints.

The rules both endpoint controllers share (`slicing` for EndpointSlices,
`endpointsubsets` for v1 Endpoints), as Kubernetes' pkg/controller/util/endpoint
states them:

- A Service has computed endpoints when it has a selector and is not of type
  ExternalName; an empty selector counts as none, as Kubernetes stores
  `selector: {}` as nil. Users write the endpoints of the others.
- A pod is an endpoint unless it is terminal (phase Succeeded or Failed) or
  has no IP; whether a terminating pod (deletionTimestamp set) is one is the
  caller's choice. Serving means the pod's Ready condition is True.
- Each pod resolves a ServicePort on its own: a numeric targetPort is used as
  it is, a named one is looked up among the pod's container ports (sidecars'
  included) with the same name and protocol; a pod without it has no such port.
- An endpoint carries the pod's hostname when the pod names the Service as its
  subdomain.

Values in, values out: no client, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.api.kinds import Obj

LABEL_HEADLESS = "service.kubernetes.io/headless"


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def service_key(obj: Obj) -> str:
    """`namespace/name`, the work-queue key of a Service (and of what belongs to it)."""
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def selector_of(service: Obj) -> dict[str, str] | None:
    """The Service's pod selector, or None when it has none (then users manage its endpoints).

    An empty selector counts as none: Kubernetes stores `selector: {}` as nil.
    """
    selector = _spec(service).get("selector")
    return dict(selector) if selector else None


def selects(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    present = labels or {}
    return all(present.get(k) == v for k, v in selector.items())


def manages_endpoints(service: Obj) -> bool:
    """True for Services whose endpoints the controllers compute: a selector, not ExternalName."""
    return _spec(service).get("type") != "ExternalName" and selector_of(service) is not None


def is_headless(service: Obj) -> bool:
    cluster_ip = _spec(service).get("clusterIP") or ""
    return cluster_ip in ("", "None")


def publishes_not_ready(service: Obj) -> bool:
    return bool(_spec(service).get("publishNotReadyAddresses"))


def is_pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def is_terminating(obj: Obj) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip", "") for p in status.get("podIPs") or []]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return [ip for ip in ips if ip]


def should_pod_be_in_endpoints(pod: Obj, *, include_terminating: bool) -> bool:
    """Terminal pods and pods without an IP never are; terminating ones only when asked."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not is_terminating(pod)


def should_set_hostname(pod: Obj, service: Obj) -> bool:
    spec = _spec(pod)
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == _meta(service).get("name")
        and _meta(pod).get("namespace") == _meta(service).get("namespace")
    )


def find_port(pod: Obj, service_port: Mapping[str, Any]) -> int | None:
    """The pod's port for one ServicePort: a number as is, a name via the containers' ports."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = _spec(pod)
    # Sidecars (init containers that keep running) serve ports as well.
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or []), *sidecars]:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return int(number) if number is not None else None
    return None


def target_ref(pod: Obj) -> Obj:
    meta = _meta(pod)
    return {
        "kind": "Pod",
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }
