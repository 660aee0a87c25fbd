"""Legacy v1 Endpoints from a Service and its pods: the pure half of the Endpoints controller.

Values in, values out, as Kubernetes' pkg/controller/endpoint computes them:

- A pod is included unless it is terminal or has no IP; a terminating pod
  only when the Service publishes not-ready addresses. Ready pods (all of
  them with publishNotReadyAddresses) go to `addresses`, the rest to
  `notReadyAddresses`. Ports resolve per pod as for EndpointSlices
  (`endpointrules.find_port`); one IP of the Service's primary family per pod.
  A headless Service without ports still lists its pods, in a portless subset.
- Subsets are packed canonically (`repack`): addresses offering the same
  ports with the same readiness share a subset, everything sorted, so equal
  states compare equal and no write happens.
- At most 1000 addresses: beyond that the object is truncated (ready
  addresses kept first, each subset cut in proportion) and annotated
  `endpoints.kubernetes.io/over-capacity: truncated`.
- The object carries the Service's labels (plus the headless label for
  headless Services) and the last-change-trigger-time annotation.

`endpoints_for` answers the controller's one question: given the Service,
its pods and the Endpoints that exist, what to write — or None for nothing.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from collections.abc import Iterable, Mapping
from typing import Any

from switchboard.api.kinds import Obj
from switchboard.controllers import endpointrules, triggertime

MAX_CAPACITY = 1000
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
TRUNCATED = "truncated"

_PortKey = tuple[str, int, str, str | None]
_AddressKey = tuple[str, str]


def _primary_family(service: Obj, pod: Obj) -> int:
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        return 6 if families[0] == "IPv6" else 4
    cluster_ip = spec.get("clusterIP") or ""
    if cluster_ip and cluster_ip != "None":
        return 6 if ":" in cluster_ip else 4
    ips = endpointrules.pod_ips(pod)
    return 6 if ips and ":" in ips[0] else 4


def _address(service: Obj, pod: Obj) -> Obj | None:
    family = _primary_family(service, pod)
    for text in endpointrules.pod_ips(pod):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.version == family:
            address: Obj = {"ip": str(ip)}
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                address["nodeName"] = node_name
            address["targetRef"] = endpointrules.target_ref(pod)
            if endpointrules.should_set_hostname(pod, service):
                address["hostname"] = pod["spec"]["hostname"]
            return address
    return None


def _port(service_port: Mapping[str, Any], number: int) -> Obj:
    port: Obj = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol") is not None:
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_key(port: Mapping[str, Any]) -> _PortKey:
    return (
        port.get("name") or "",
        int(port.get("port") or 0),
        port.get("protocol") or "TCP",
        port.get("appProtocol"),
    )


def _address_key(address: Mapping[str, Any]) -> _AddressKey:
    return (str(address.get("ip", "")), str((address.get("targetRef") or {}).get("uid", "")))


def _sort_key_address(address: Mapping[str, Any]) -> tuple[bytes, str]:
    ip, uid = _address_key(address)
    return (ip.encode(), uid)


def desired_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The Endpoints subsets for `service`, packed canonically (see `repack`)."""
    spec = service.get("spec") or {}
    publish = endpointrules.publishes_not_ready(service)
    service_ports = spec.get("ports") or []
    headless = endpointrules.is_headless(service)
    entries: list[tuple[Obj, Obj | None, bool]] = []
    for pod in pods:
        if not endpointrules.should_pod_be_in_endpoints(pod, include_terminating=publish):
            continue
        address = _address(service, pod)
        if address is None:
            continue
        ready = publish or endpointrules.is_pod_ready(pod)
        if not service_ports:
            if headless:
                entries.append((address, None, ready))
            continue
        for sp in service_ports:
            number = endpointrules.find_port(pod, sp)
            if number is not None:
                entries.append((address, _port(sp, number), ready))
    return repack(entries)


def repack(entries: Iterable[tuple[Obj, Obj | None, bool]]) -> list[Obj]:
    """Pack (address, port or None, ready) triples into the canonical subsets.

    Addresses are identified by IP and pod UID; an address not ready on some port is
    not ready there even if another entry says ready. Addresses with identical
    (address, readiness) sets share one subset listing all their ports.
    """
    addresses: dict[_AddressKey, Obj] = {}
    ports: dict[_PortKey | None, Obj | None] = {}
    by_port: dict[_PortKey | None, dict[_AddressKey, bool]] = {}
    for address, port, ready in entries:
        akey = _address_key(address)
        addresses.setdefault(akey, address)
        pkey = None if port is None else _port_key(port)
        ports.setdefault(pkey, port)
        seen = by_port.setdefault(pkey, {})
        seen[akey] = seen.get(akey, True) and ready
    groups: dict[tuple[tuple[_AddressKey, bool], ...], list[_PortKey | None]] = {}
    for pkey, members in by_port.items():
        groups.setdefault(tuple(sorted(members.items())), []).append(pkey)
    subsets: list[Obj] = []
    for group, pkeys in groups.items():
        subset: Obj = {}
        ready_addrs = [copy.deepcopy(addresses[a]) for a, ok in group if ok]
        not_ready = [copy.deepcopy(addresses[a]) for a, ok in group if not ok]
        if ready_addrs:
            subset["addresses"] = sorted(ready_addrs, key=_sort_key_address)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_sort_key_address)
        real = sorted((k for k in pkeys if k is not None), key=_none_last)
        if real:
            subset["ports"] = [copy.deepcopy(ports[k]) for k in real]
        subsets.append(subset)
    return sorted(subsets, key=_subset_sort_key)


def _none_last(key: _PortKey) -> tuple[str, int, str, str]:
    return (key[0], key[1], key[2], key[3] or "")


def _subset_sort_key(subset: Mapping[str, Any]) -> tuple[Any, ...]:
    ports = tuple(_none_last(_port_key(p)) for p in subset.get("ports") or [])
    first = (subset.get("addresses") or subset.get("notReadyAddresses") or [{}])[0]
    return (ports, _sort_key_address(first))


def _count(subsets: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    ready = not_ready = 0
    for subset in subsets:
        ready += len(subset.get("addresses") or [])
        not_ready += len(subset.get("notReadyAddresses") or [])
    return ready, not_ready


def truncate(subsets: list[Obj], capacity: int = MAX_CAPACITY) -> tuple[list[Obj], bool]:
    """Cut `subsets` to `capacity` addresses, ready ones first, each subset in proportion."""
    total_ready, total_not_ready = _count(subsets)
    if total_ready + total_not_ready <= capacity:
        return subsets, False
    cut_ready = total_ready > capacity
    limit = capacity if cut_ready else capacity - total_ready
    total = total_ready if cut_ready else total_not_ready
    room = limit
    result: list[Obj] = []
    for original in subsets:
        subset = copy.deepcopy(original)
        field = "addresses" if cut_ready else "notReadyAddresses"
        members = subset.get(field) or []
        share = min(math.ceil(len(members) / total * limit), room)
        kept = members[:share]
        room -= len(kept)
        if kept:
            subset[field] = kept
        else:
            subset.pop(field, None)
        if cut_ready:
            subset.pop("notReadyAddresses", None)
        result.append(subset)
    return [s for s in result if s.get("addresses") or s.get("notReadyAddresses")], True


def _strip_ref_versions(subsets: Iterable[Mapping[str, Any]]) -> list[Obj]:
    out: list[Obj] = []
    for subset in subsets:
        clean = copy.deepcopy(dict(subset))
        for field in ("addresses", "notReadyAddresses"):
            for address in clean.get(field) or []:
                (address.get("targetRef") or {}).pop("resourceVersion", None)
        out.append(clean)
    return out


def _canonical(subsets: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """Subsets in a comparable form: refs without resourceVersion, everything sorted."""
    out: list[Obj] = []
    for subset in _strip_ref_versions(subsets):
        for field in ("addresses", "notReadyAddresses"):
            if subset.get(field):
                subset[field] = sorted(subset[field], key=_sort_key_address)
            else:
                subset.pop(field, None)
        if subset.get("ports"):
            subset["ports"] = sorted(subset["ports"], key=lambda p: _none_last(_port_key(p)))
        else:
            subset.pop("ports", None)
        out.append(subset)
    return sorted(out, key=_subset_sort_key)


def endpoints_for(
    service: Obj,
    pods: Iterable[Obj],
    current: Obj | None,
    *,
    trigger_time: str | None = None,
    capacity: int = MAX_CAPACITY,
) -> Obj | None:
    """The Endpoints object to write for `service`, or None when `current` is already right.

    The result keeps `current`'s metadata (name, resourceVersion) for an update and has
    none of those for a create.
    """
    subsets, truncated = truncate(desired_subsets(service, pods), capacity)
    meta = service.get("metadata") or {}
    service_labels = dict(meta.get("labels") or {})
    if current is not None:
        cur_meta = current.get("metadata") or {}
        cur_labels = {
            k: v
            for k, v in (cur_meta.get("labels") or {}).items()
            if k != endpointrules.LABEL_HEADLESS
        }
        over = (cur_meta.get("annotations") or {}).get(ANNOTATION_OVER_CAPACITY)
        headless_ok = (endpointrules.LABEL_HEADLESS in (cur_meta.get("labels") or {})) == (
            endpointrules.is_headless(service)
        )
        if (
            _canonical(current.get("subsets") or []) == _canonical(subsets)
            and cur_labels == service_labels
            and headless_ok
            and (over == TRUNCATED) == truncated
        ):
            return None
        new = copy.deepcopy(current)
    else:
        new = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": meta.get("name", ""), "namespace": meta.get("namespace", "")},
        }
    new["subsets"] = subsets
    new_meta = new["metadata"]
    labels = service_labels
    if endpointrules.is_headless(service):
        labels[endpointrules.LABEL_HEADLESS] = ""
    if labels:
        new_meta["labels"] = labels
    else:
        new_meta.pop("labels", None)
    annotations = dict(new_meta.get("annotations") or {})
    if trigger_time:
        annotations[triggertime.ANNOTATION_TRIGGER_TIME] = trigger_time
    else:
        annotations.pop(triggertime.ANNOTATION_TRIGGER_TIME, None)
    if truncated:
        annotations[ANNOTATION_OVER_CAPACITY] = TRUNCATED
    else:
        annotations.pop(ANNOTATION_OVER_CAPACITY, None)
    if annotations:
        new_meta["annotations"] = annotations
    else:
        new_meta.pop("annotations", None)
    return new
