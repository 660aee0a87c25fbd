"""What `kubectl get` shows for each kind: its columns and how one object fills them.

Each served kind has a `Printer`: its column definitions and a function from
one object (a plain JSON dict) and `now` to that object's cells, and for
pods the row conditions. Printers are looked up by `ResourceKind.gvk`, as
`api.kinds` prescribes for everything kind-specific; a kind without one gets
NAME and AGE, the columns of a custom resource that declares no printer
columns.

The printers mirror kube-apiserver's (pkg/printers/internalversion): the same
column names, types, priorities and descriptions, and the same cell wording,
down to `<none>`, `<pending>`, `+ 1 more...`, the pod status walk over init
and app containers and `2 (5s ago)` restarts. Like the real server, which
prints with `Wide: true`, every row carries a cell for every column; kubectl
hides the wide ones itself.

Objects are read as the API defaults them (Service type ClusterIP, port
protocol TCP, one replica), so a row reads right even for an object that was
stored before defaulting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from switchboard.api import kinds
from switchboard.apiserver import podcells
from switchboard.apiserver.tablecells import (
    WIDE,
    Cell,
    Column,
    Obj,
    RowCondition,
    age,
    column,
    container_cells,
    dig,
    format_labels,
    host_port,
    int_at,
    list_at,
    list_with_more,
    name_of,
    selector_string,
    since,
    str_at,
)

CellsFn = Callable[[Obj, datetime], list[Cell]]


@dataclass(frozen=True, slots=True)
class Printer:
    columns: tuple[Column, ...]
    cells: CellsFn
    conditions: Callable[[Obj], list[RowCondition]] | None = None


def printer_for(kind: kinds.ResourceKind) -> Printer:
    """The printer of `kind`; NAME and AGE for a kind that has none."""
    return _PRINTERS.get(kind.gvk, _DEFAULT)


_NAME = column("Name", "Name must be unique within a namespace.", fmt="name")
_AGE = column("Age", "The server time when this object was created.")
_CONTAINERS = column("Containers", "Names of each container in the template.", priority=WIDE)
_IMAGES = column("Images", "Images referenced by each container in the template.", priority=WIDE)


# --- Namespace, Lease, anything else ----------------------------------------


def _namespace_cells(ns: Obj, now: datetime) -> list[Cell]:
    return [name_of(ns), str_at(ns, "status", "phase"), age(ns, now)]


def _lease_cells(lease: Obj, now: datetime) -> list[Cell]:
    return [name_of(lease), str_at(lease, "spec", "holderIdentity"), age(lease, now)]


def _default_cells(obj: Obj, now: datetime) -> list[Cell]:
    return [name_of(obj), age(obj, now)]


# --- Service, Endpoints, EndpointSlice --------------------------------------


def _service_external_ip(svc: Obj, service_type: str) -> str:
    external_ips = [ip for ip in list_at(svc, "spec", "externalIPs") if isinstance(ip, str)]
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if service_type == "LoadBalancer":
        ingress = {
            str_at(i, "ip") or str_at(i, "hostname")
            for i in list_at(svc, "status", "loadBalancer", "ingress")
        } - {""}
        return ",".join([*sorted(ingress), *external_ips]) or "<pending>"
    if service_type == "ExternalName":
        return str_at(svc, "spec", "externalName")
    return "<unknown>"


def _service_cells(svc: Obj, now: datetime) -> list[Cell]:
    spec = svc.get("spec") or {}
    service_type = str_at(spec, "type") or "ClusterIP"
    cluster_ips = list_at(spec, "clusterIPs") or [str_at(spec, "clusterIP")]
    ports = []
    for p in list_at(spec, "ports"):
        node_port = int_at(p, "nodePort")
        middle = f":{node_port}" if node_port > 0 else ""
        ports.append(f"{int_at(p, 'port')}{middle}/{str_at(p, 'protocol') or 'TCP'}")
    return [
        name_of(svc),
        service_type,
        cluster_ips[0] or "<none>",
        _service_external_ip(svc, service_type),
        ",".join(ports) or "<none>",
        age(svc, now),
        format_labels(spec.get("selector")),
    ]


def _endpoints_cells(ep: Obj, now: datetime) -> list[Cell]:
    subsets = list_at(ep, "subsets")
    if not subsets:
        return [name_of(ep), "<none>", age(ep, now)]
    addresses: list[str] = []
    count = 0
    for subset in subsets:
        ips = [str_at(a, "ip") for a in list_at(subset, "addresses")]
        ports = list_at(subset, "ports")
        if not ports:  # a headless Service may publish addresses without ports
            count += len(ips)
            addresses.extend(ips)
            continue
        for port in ports:
            count += len(ips)
            addresses.extend(host_port(ip, int_at(port, "port")) for ip in ips)
    # kube-apiserver prints an empty cell, not <unset>, for subsets without addresses.
    return [name_of(ep), list_with_more(addresses, count, empty=""), age(ep, now)]


def _endpointslice_cells(slice_: Obj, now: datetime) -> list[Cell]:
    ports = []
    for p in list_at(slice_, "ports"):
        if isinstance(dig(p, "port"), int):
            ports.append(str(dig(p, "port")))
        elif isinstance(dig(p, "name"), str):
            ports.append(str_at(p, "name"))
        else:
            ports.append("*")
    addresses = [
        a
        for e in list_at(slice_, "endpoints")
        for a in list_at(e, "addresses")
        if isinstance(a, str)
    ]
    return [
        name_of(slice_),
        str_at(slice_, "addressType"),
        list_with_more(ports, len(ports)),
        list_with_more(addresses, len(addresses)),
        age(slice_, now),
    ]


# --- Node -------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def _node_cells(node: Obj, now: datetime) -> list[Cell]:
    # The last Ready condition wins, as in kube-apiserver's condition map.
    ready = [c for c in list_at(node, "status", "conditions") if str_at(c, "type") == "Ready"]
    status = ["Unknown"]
    if ready:
        status = ["Ready" if str_at(ready[-1], "status") == "True" else "NotReady"]
    if dig(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")

    roles = set()
    for key, value in (dig(node, "metadata", "labels") or {}).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX) :]:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(value)

    def address(type_: str) -> str:
        addresses = list_at(node, "status", "addresses")
        return next(
            (str_at(a, "address") for a in addresses if str_at(a, "type") == type_), "<none>"
        )

    info = dig(node, "status", "nodeInfo")
    return [
        name_of(node),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        age(node, now),
        str_at(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        str_at(info, "osImage") or "<unknown>",
        str_at(info, "kernelVersion") or "<unknown>",
        str_at(info, "containerRuntimeVersion") or "<unknown>",
    ]


# --- Deployment, ReplicaSet -------------------------------------------------


def _deployment_cells(deploy: Obj, now: datetime) -> list[Cell]:
    selector = selector_string(dig(deploy, "spec", "selector"))
    ready = int_at(deploy, "status", "readyReplicas")
    wanted = int_at(deploy, "spec", "replicas", default=1)
    return [
        name_of(deploy),
        f"{ready}/{wanted}",
        int_at(deploy, "status", "updatedReplicas"),
        int_at(deploy, "status", "availableReplicas"),
        age(deploy, now),
        *container_cells(deploy),
        "<invalid>" if selector is None else selector,
    ]


def _replicaset_cells(rs: Obj, now: datetime) -> list[Cell]:
    selector = selector_string(dig(rs, "spec", "selector"))
    return [
        name_of(rs),
        int_at(rs, "spec", "replicas", default=1),
        int_at(rs, "status", "replicas"),
        int_at(rs, "status", "readyReplicas"),
        age(rs, now),
        *container_cells(rs),
        "<error>" if selector is None else selector or "<none>",
    ]


# --- Event (v1 and events.k8s.io/v1) ----------------------------------------


def _event_cells(ev: Obj, now: datetime) -> list[Cell]:
    # Reads both shapes: v1 field names first, then events.k8s.io/v1's.
    def field(v1: str, events_v1: str) -> Any:
        value = ev.get(v1)
        return value if value not in (None, "", 0, {}) else ev.get(events_v1)

    first = field("firstTimestamp", "deprecatedFirstTimestamp")
    first_seen = since(first if first else ev.get("eventTime"), now)
    last = field("lastTimestamp", "deprecatedLastTimestamp")
    last_seen = since(last, now) if last else first_seen
    count = field("count", "deprecatedCount")
    count = count if isinstance(count, int) else 0
    if isinstance(series := ev.get("series"), Mapping):
        last_seen = since(series.get("lastObservedTime"), now)
        count = int_at(series, "count")
    elif count == 0:
        count = 1  # singleton events carry no count in events.k8s.io/v1

    involved = field("involvedObject", "regarding") or {}
    kind, name = str_at(involved, "kind").lower(), str_at(involved, "name")
    source = field("source", "deprecatedSource") or {}
    reporter = field("reportingComponent", "reportingController")
    component = str_at(source, "component") or (reporter if isinstance(reporter, str) else "")
    instance = str_at(source, "host") or str_at(ev, "reportingInstance")
    return [
        last_seen,
        str_at(ev, "type"),
        str_at(ev, "reason"),
        f"{kind}/{name}" if name else kind,
        str_at(involved, "fieldPath"),
        f"{component}, {instance}" if instance else component,
        str(field("message", "note") or "").strip(),
        first_seen,
        count,
        name_of(ev),
    ]


# --- the printers -----------------------------------------------------------

_DEFAULT = Printer((_NAME, column("Age", _AGE["description"], type_="date")), _default_cells)

_EVENT = Printer(
    (
        column("Last Seen", "The time at which the most recent occurrence was recorded."),
        column("Type", "Type of this event (Normal, Warning)."),
        column("Reason", "A short, machine understandable reason for the event."),
        column("Object", "The object this event is about."),
        column("Subobject", "The part of the object this event is about.", priority=WIDE),
        column("Source", "The component reporting this event.", priority=WIDE),
        column("Message", "A human-readable description of the status of this operation."),
        column("First Seen", "The time at which the event was first recorded.", priority=WIDE),
        column("Count", "The number of times this event has occurred.", priority=WIDE),
        column("Name", _NAME["description"], priority=WIDE, fmt="name"),
    ),
    _event_cells,
)

_PRINTERS: dict[tuple[str, str, str], Printer] = {
    ("", "v1", "Namespace"): Printer(
        (_NAME, column("Status", "The status of the namespace"), _AGE), _namespace_cells
    ),
    ("", "v1", "Pod"): Printer(
        (
            _NAME,
            column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "The aggregate status of the containers in this pod."),
            column("Restarts", "The number of times the containers in this pod have restarted."),
            _AGE,
            column("IP", "podIP address allocated to the pod.", priority=WIDE),
            column(
                "Node", "NodeName indicates in which node this pod is scheduled.", priority=WIDE
            ),
            column("Nominated Node", "The node this pod preempted pods on.", priority=WIDE),
            column("Readiness Gates", "Readiness gates that hold, of all.", priority=WIDE),
        ),
        podcells.pod_cells,
        podcells.pod_conditions,
    ),
    ("", "v1", "Service"): Printer(
        (
            _NAME,
            column("Type", "type determines how the Service is exposed."),
            column("Cluster-IP", "clusterIP is the IP address of the service."),
            column("External-IP", "IP addresses on which nodes also accept this service."),
            column("Port(s)", "The list of ports that are exposed by this service."),
            _AGE,
            column("Selector", "Route service traffic to pods matching this.", priority=WIDE),
        ),
        _service_cells,
    ),
    ("", "v1", "Endpoints"): Printer(
        (_NAME, column("Endpoints", "The union of all subsets' addresses and ports."), _AGE),
        _endpoints_cells,
    ),
    ("discovery.k8s.io", "v1", "EndpointSlice"): Printer(
        (
            _NAME,
            column("AddressType", "The type of address carried by this EndpointSlice."),
            column("Ports", "The network ports exposed by each endpoint in this slice."),
            column("Endpoints", "The unique endpoints in this slice."),
            _AGE,
        ),
        _endpointslice_cells,
    ),
    ("", "v1", "Node"): Printer(
        (
            _NAME,
            column("Status", "The status of the node"),
            column("Roles", "The roles of the node"),
            _AGE,
            column("Version", "Kubelet Version reported by the node."),
            column("Internal-IP", "List of addresses reachable to the node.", priority=WIDE),
            column("External-IP", "List of addresses reachable to the node.", priority=WIDE),
            column("OS-Image", "OS Image reported by the node.", priority=WIDE),
            column("Kernel-Version", "Kernel Version reported by the node.", priority=WIDE),
            column("Container-Runtime", "ContainerRuntime Version of the node.", priority=WIDE),
        ),
        _node_cells,
    ),
    ("apps", "v1", "Deployment"): Printer(
        (
            _NAME,
            column("Ready", "Number of the pod with ready state"),
            column("Up-to-date", "Pods targeted by this deployment with the desired template."),
            column("Available", "Available pods targeted by this deployment."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            column("Selector", "Label selector for pods.", priority=WIDE),
        ),
        _deployment_cells,
    ),
    ("apps", "v1", "ReplicaSet"): Printer(
        (
            _NAME,
            column("Desired", "The number of desired pods.", type_="integer"),
            column("Current", "The most recently observed number of pods.", type_="integer"),
            column("Ready", "The number of pods with a Ready Condition.", type_="integer"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            column("Selector", "Selector is a label query over pods.", priority=WIDE),
        ),
        _replicaset_cells,
    ),
    ("", "v1", "Event"): _EVENT,
    ("events.k8s.io", "v1", "Event"): _EVENT,
    ("coordination.k8s.io", "v1", "Lease"): Printer(
        (_NAME, column("Holder", "The identity of the holder of a current lease."), _AGE),
        _lease_cells,
    ),
}
