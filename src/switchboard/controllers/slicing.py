"""How a Service's pods become EndpointSlices: the pure half of the EndpointSlice controller.

Everything here is values in, values out — no client, no clock, no I/O — so
every rule is unit-tested without a server. The controller
(`controllers.endpointslice`) reads a Service, its pods, the Nodes and the
Service's existing slices from informer caches, calls `reconcile`, and
writes the `SlicePlan` it gets back.

The rules follow Kubernetes' k8s.io/endpointslice reconciler, on top of
those both endpoint controllers share (`endpointrules`: which pods are
endpoints, how a pod resolves a ServicePort):

- Every pod that is an endpoint, terminating ones included, gets one,
  marked. Conditions: serving = the pod's Ready condition is True,
  terminating = deletionTimestamp set, ready = publishNotReadyAddresses or
  (serving and not terminating).
- Pods are grouped by the port set they resolve to, and each group has its
  own slices — a slice carries one port set for all its endpoints.
- One address type per IP family of the Service (IPv4, IPv6); a pod's
  addresses of the other family are ignored.
- A pod on a Node the cache does not know is left out (and reported in
  `SlicePlan.unplaced_pods`, so the controller retries) unless the Service
  publishes not-ready addresses.

Minimal churn. An endpoint is identified by its addresses, hostname and pod;
everything else (conditions, node, zone) may change in place. `reconcile`
keeps every endpoint in the slice it is already in, so one pod's change
rewrites exactly the slice holding it. Per port set:

1. walk the existing slices, dropping endpoints no longer wanted and
   refreshing changed ones; a slice left empty is deleted, a changed one is
   updated, an untouched one stays as it is;
2. new endpoints first fill the slices being updated anyway (fullest first);
3. what is left goes into the one untouched slice it fits best, and only
   then into new slices of at most `max_endpoints_per_slice`.

A create and a delete in the same pass become one update that reuses the
doomed slice's name. A Service with no endpoints at all keeps one empty
placeholder slice, as Kubernetes does, so consumers can tell "no endpoints"
from "not reconciled yet".
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchboard.api.kinds import Obj
from switchboard.controllers import endpointrules, triggertime

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_ZONE = "topology.kubernetes.io/zone"
# The managed-by value Kubernetes' own controller writes; slices carrying it are ours.
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100

IPV4 = "IPv4"
IPV6 = "IPv6"
_RESERVED_LABELS = frozenset({LABEL_SERVICE_NAME, LABEL_MANAGED_BY, endpointrules.LABEL_HEADLESS})

NodeLookup = Callable[[str], Obj | None]
PortKey = tuple[tuple[str, str, int, str | None], ...]
EndpointKey = tuple[tuple[str, ...], str, str, str]


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """The slice ports this pod serves, in the Service's port order."""
    ports: list[Obj] = []
    for sp in _spec(service).get("ports") or []:
        number = endpointrules.find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP"}
        port["port"] = number
        if sp.get("appProtocol") is not None:
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def port_key(ports: Iterable[Mapping[str, Any]] | None) -> PortKey:
    """An order-free identity of a port set, with the API's defaults applied (name "", TCP)."""
    return tuple(
        sorted(
            (
                p.get("name") or "",
                p.get("protocol") or "TCP",
                int(p.get("port") or 0),
                p.get("appProtocol"),
            )
            for p in ports or []
        )
    )


def address_types(service: Obj) -> list[str]:
    """The slice address types a Service needs: one per IP family it has."""
    spec = _spec(service)
    families = [f for f in spec.get("ipFamilies") or [] if f in (IPV4, IPV6)]
    if families:
        return list(dict.fromkeys(families))
    cluster_ip = spec.get("clusterIP") or ""
    if cluster_ip and cluster_ip != "None":
        return [IPV6 if ":" in cluster_ip else IPV4]
    # A headless Service not yet given families may have pods of either.
    return [IPV4, IPV6]


def _addresses(pod: Obj, address_type: str) -> list[str]:
    found: list[str] = []
    for text in endpointrules.pod_ips(pod):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if (ip.version == 6) == (address_type == IPV6):
            found.append(str(ip))
    return found


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj, address_type: str) -> Obj:
    serving = endpointrules.is_pod_ready(pod)
    terminating = endpointrules.is_terminating(pod)
    ready = endpointrules.publishes_not_ready(service) or (serving and not terminating)
    endpoint: Obj = {
        "addresses": _addresses(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": endpointrules.target_ref(pod),
    }
    node_name = _spec(pod).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
    zone = (_meta(node).get("labels") or {}).get(LABEL_ZONE) if node is not None else None
    if zone:
        endpoint["zone"] = zone
    if endpointrules.should_set_hostname(pod, service):
        endpoint["hostname"] = _spec(pod)["hostname"]
    return endpoint


def endpoint_key(endpoint: Mapping[str, Any]) -> EndpointKey:
    """What makes an endpoint the same endpoint: its addresses, hostname and pod."""
    ref = endpoint.get("targetRef") or {}
    return (
        tuple(sorted(endpoint.get("addresses") or [])),
        endpoint.get("hostname") or "",
        ref.get("namespace") or "",
        ref.get("name") or "",
    )


def _same_ref(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    def strip(ref: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return None if ref is None else {k: v for k, v in ref.items() if k != "resourceVersion"}

    return strip(a) == strip(b)


def endpoints_equal_beyond_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two endpoints with the same key need no rewrite."""
    if a.get("nodeName") != b.get("nodeName") or a.get("zone") != b.get("zone"):
        return False
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    if any(ca.get(c) != cb.get(c) for c in ("ready", "serving", "terminating")):
        return False
    return _same_ref(a.get("targetRef"), b.get("targetRef"))


# ---------------------------------------------------------------------------
# Slice metadata
# ---------------------------------------------------------------------------


def owner_reference(service: Obj) -> Obj:
    meta = _meta(service)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(slice_: Obj, service: Obj) -> bool:
    uid = _meta(service).get("uid")
    return any(
        ref.get("uid") == uid and ref.get("kind") == "Service" and ref.get("apiVersion") == "v1"
        for ref in _meta(slice_).get("ownerReferences") or []
    )


def slice_labels(
    current: Mapping[str, str] | None, service: Obj, controller_name: str = CONTROLLER_NAME
) -> tuple[dict[str, str], bool]:
    """The labels a slice of `service` must carry, and whether `current` differs in the
    Service-derived part (the reserved labels are overwritten, never compared)."""
    mine = {k: v for k, v in (current or {}).items() if k not in _RESERVED_LABELS}
    wanted = {
        k: v for k, v in (_meta(service).get("labels") or {}).items() if k not in _RESERVED_LABELS
    }
    changed = mine != wanted
    if endpointrules.is_headless(service):
        wanted[endpointrules.LABEL_HEADLESS] = ""
    wanted[LABEL_SERVICE_NAME] = _meta(service).get("name", "")
    wanted[LABEL_MANAGED_BY] = controller_name
    return wanted, changed


def new_slice(
    service: Obj, ports: Sequence[Obj], address_type: str, controller_name: str = CONTROLLER_NAME
) -> Obj:
    meta = _meta(service)
    labels, _ = slice_labels(None, service, controller_name)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{meta.get('name', '')}-",
            "namespace": meta.get("namespace", ""),
            "labels": labels,
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": address_type,
        "ports": [dict(p) for p in ports],
        "endpoints": [],
    }


def _name(slice_: Obj) -> str:
    return str(_meta(slice_).get("name") or "")


def _endpoints(slice_: Obj) -> list[Obj]:
    return list(slice_.get("endpoints") or [])


def _is_placeholder_of(slice_: Obj, placeholder: Obj) -> bool:
    meta, want = _meta(slice_), placeholder["metadata"]
    return (
        meta.get("namespace") == want["namespace"]
        and (meta.get("labels") or {}) == want["labels"]
        and slice_.get("addressType") == placeholder["addressType"]
        and not slice_.get("ports")
        and not slice_.get("endpoints")
    )


# ---------------------------------------------------------------------------
# The reconciler
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """The writes that bring a Service's slices to the desired state.

    `create` slices have a generateName and no name; `update` slices carry the
    name and resourceVersion they replace; `delete` slices are as they were read.
    `unplaced_pods` names the pods left out because their Node is unknown.
    """

    create: tuple[Obj, ...] = ()
    update: tuple[Obj, ...] = ()
    delete: tuple[Obj, ...] = ()
    unplaced_pods: tuple[str, ...] = ()

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


@dataclass
class _Groups:
    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def reconcile(
    service: Obj,
    pods: Iterable[Obj],
    existing: Iterable[Obj],
    *,
    node_for: NodeLookup,
    max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
    trigger_time: str | None = None,
    controller_name: str = CONTROLLER_NAME,
) -> SlicePlan:
    """Compare the slices `existing` (this controller's slices of the Service, not pending
    deletion) with what `pods` call for, and return the writes that close the gap."""
    if max_endpoints_per_slice < 1:
        raise ValueError("max_endpoints_per_slice must be at least 1")
    pod_list = sorted(pods, key=lambda p: str(_meta(p).get("name", "")))
    supported = address_types(service)
    by_type: dict[str, list[Obj]] = {t: [] for t in supported}
    unsupported: list[Obj] = []
    for slice_ in sorted(existing, key=_name):
        group = by_type.get(str(slice_.get("addressType")))
        if group is None:
            unsupported.append(slice_)
        else:
            group.append(slice_)

    plan = _Groups()
    unplaced: list[str] = []
    for address_type in supported:
        groups = _reconcile_address_type(
            service,
            pod_list,
            by_type[address_type],
            node_for,
            address_type,
            max_endpoints_per_slice,
            controller_name,
            unplaced,
        )
        _recycle_deletions(service, groups)
        plan.create += groups.create
        plan.update += groups.update
        plan.delete += groups.delete
    plan.delete += unsupported

    if endpointrules.is_terminating(service):
        # Creating slices the garbage collector is about to remove would race it.
        plan.create = []
    for slice_ in (*plan.create, *plan.update):
        annotations = slice_["metadata"].setdefault("annotations", {})
        if trigger_time:
            annotations[triggertime.ANNOTATION_TRIGGER_TIME] = trigger_time
        else:
            annotations.pop(triggertime.ANNOTATION_TRIGGER_TIME, None)
        if not annotations:
            del slice_["metadata"]["annotations"]
    return SlicePlan(
        tuple(plan.create),
        tuple(plan.update),
        tuple(plan.delete),
        tuple(dict.fromkeys(unplaced)),
    )


def _reconcile_address_type(
    service: Obj,
    pods: list[Obj],
    existing: list[Obj],
    node_for: NodeLookup,
    address_type: str,
    max_per_slice: int,
    controller_name: str,
    unplaced: list[str],
) -> _Groups:
    groups = _Groups()
    existing_by_ports: dict[PortKey, list[Obj]] = {}
    for slice_ in existing:
        if owned_by(slice_, service):
            existing_by_ports.setdefault(port_key(slice_.get("ports")), []).append(slice_)
        else:
            # Left behind by an earlier Service of the same name.
            groups.delete.append(slice_)

    publish = endpointrules.publishes_not_ready(service)
    desired_ports: dict[PortKey, list[Obj]] = {}
    desired: dict[PortKey, dict[EndpointKey, Obj]] = {}
    for pod in pods:
        if not endpointrules.should_pod_be_in_endpoints(pod, include_terminating=True):
            continue
        ports = endpoint_ports(service, pod)
        key = port_key(ports)
        wanted = desired.setdefault(key, {})
        desired_ports.setdefault(key, ports)
        node_name = _spec(pod).get("nodeName") or ""
        node = node_for(node_name) if node_name else None
        if node is None and not publish:
            unplaced.append(str(_meta(pod).get("name", "")))
            continue
        endpoint = pod_to_endpoint(pod, node, service, address_type)
        if endpoint["addresses"]:
            wanted[endpoint_key(endpoint)] = endpoint

    for key, wanted in desired.items():
        create, update, delete = _reconcile_port_set(
            service,
            existing_by_ports.get(key, []),
            wanted,
            desired_ports[key],
            address_type,
            max_per_slice,
            controller_name,
        )
        groups.create += create
        groups.update += update
        groups.delete += delete
    for key, slices in existing_by_ports.items():
        if key not in desired:
            groups.delete += slices

    if len(existing) == len(groups.delete) and not groups.create:
        placeholder = new_slice(service, [], address_type, controller_name)
        if len(groups.delete) == 1 and _is_placeholder_of(groups.delete[0], placeholder):
            groups.delete = []
        else:
            groups.create.append(placeholder)
    return groups


def _reconcile_port_set(
    service: Obj,
    existing: list[Obj],
    wanted: dict[EndpointKey, Obj],
    ports: list[Obj],
    address_type: str,
    max_per_slice: int,
    controller_name: str,
) -> tuple[list[Obj], list[Obj], list[Obj]]:
    to_update: dict[str, Obj] = {}
    to_delete: list[Obj] = []
    unchanged: dict[str, Obj] = {}

    # 1. Keep each wanted endpoint where it is; drop the unwanted, refresh the changed.
    for slice_ in existing:
        kept: list[Obj] = []
        refreshed = False
        current = _endpoints(slice_)
        for endpoint in current:
            got = wanted.pop(endpoint_key(endpoint), None)
            if got is None:
                continue
            kept.append(got)
            refreshed = refreshed or not endpoints_equal_beyond_key(got, endpoint)
        labels, labels_changed = slice_labels(_meta(slice_).get("labels"), service, controller_name)
        if refreshed or len(kept) != len(current):
            if not kept:
                to_delete.append(slice_)
                continue
            changed = copy.deepcopy(slice_)
            changed["endpoints"] = kept
            changed["metadata"]["labels"] = labels
            to_update[_name(slice_)] = changed
        elif labels_changed:
            changed = copy.deepcopy(slice_)
            changed["metadata"]["labels"] = labels
            to_update[_name(slice_)] = changed
        else:
            unchanged[_name(slice_)] = slice_

    remaining = list(wanted.values())

    # 2. Slices being written anyway take new endpoints first, fullest first.
    if remaining and to_update:
        for slice_ in sorted(to_update.values(), key=lambda s: (-len(_endpoints(s)), _name(s))):
            room = max_per_slice - len(_endpoints(slice_))
            if room > 0 and remaining:
                slice_["endpoints"] = _endpoints(slice_) + remaining[:room]
                remaining = remaining[room:]

    # 3. The rest goes into the untouched slice it fits best, then into new slices.
    to_create: list[Obj] = []
    while remaining:
        target: Obj | None = None
        if len(remaining) < max_per_slice and unchanged:
            best = _slice_to_fill(list(unchanged.values()), len(remaining), max_per_slice)
            if best is not None:
                target = copy.deepcopy(best)
                del unchanged[_name(best)]
                to_update[_name(best)] = target
        if target is None:
            target = new_slice(service, ports, address_type, controller_name)
            to_create.append(target)
        room = max_per_slice - len(_endpoints(target))
        target["endpoints"] = _endpoints(target) + remaining[:room]
        remaining = remaining[room:]
    return to_create, list(to_update.values()), to_delete


def _slice_to_fill(slices: list[Obj], count: int, max_per_slice: int) -> Obj | None:
    """The slice that ends up closest to full when `count` endpoints are added, if any fits."""
    best: Obj | None = None
    closest = max_per_slice
    for slice_ in slices:
        diff = max_per_slice - (count + len(_endpoints(slice_)))
        if 0 <= diff < closest:
            best, closest = slice_, diff
            if diff == 0:
                break
    return best


def _recycle_deletions(service: Obj, groups: _Groups) -> None:
    """Turn create+delete pairs into updates of the doomed slice: one write instead of two."""
    kept: list[Obj] = []
    for doomed in groups.delete:
        if groups.create and owned_by(doomed, service):
            fresh = groups.create.pop()
            if fresh["addressType"] == doomed.get("addressType"):
                meta = fresh["metadata"]
                meta["name"] = _name(doomed)
                rv = _meta(doomed).get("resourceVersion")
                if rv:
                    meta["resourceVersion"] = rv
                groups.update.append(fresh)
                continue
            groups.create.append(fresh)
        kept.append(doomed)
    groups.delete = kept
