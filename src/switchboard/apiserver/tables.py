"""Server-side Tables: what `kubectl get` prints, computed as kube-apiserver computes it.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
columns it gets back verbatim: it upper-cases their names, shows columns of
priority 1 only under `-o wide`, and adds NAMESPACE (under `-A`) and LABELS
from each row's embedded object metadata. Were the server to send a plain list
instead, kubectl would print NAME and AGE alone, so all column logic lives
here, in the server.

Design
------
Each served kind has a `_Printer`: its column definitions and a function from
one object (a plain JSON dict) and `now` to that object's cells. Printers are
looked up by `ResourceKind.gvk`, as `api.kinds` prescribes for everything
kind-specific; a kind without one gets NAME and AGE, the columns of a custom
resource that declares no printer columns.

The printers mirror kube-apiserver's (pkg/printers/internalversion): the same
column names, types, priorities and descriptions, and the same cell wording,
down to `<none>`, `<pending>`, `+ 1 more...`, the pod status walk over init
and app containers and `2 (5s ago)` restarts. Like the real server, which
prints with `Wide: true`, every row carries a cell for every column; kubectl
hides the wide ones itself.

Objects are read as the API defaults them (Service type ClusterIP, port
protocol TCP, one replica), so a row reads right even for an object that was
stored before defaulting.

Time is an argument: ages are measured against the `now` passed in, never the
clock, so this module is pure and its tests exact. Ages are formatted like
Kubernetes' `duration.HumanDuration` (`human_duration`).

Each row's `object` follows `?includeObject=`: `Metadata`, kubectl's default,
embeds a PartialObjectMetadata; `Object` embeds the whole object; `None`
leaves it out. Anything else is a `ValueError` for the caller to turn into a
400.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

from switchboard.api import kinds

Obj = kinds.Obj
Cell = str | int

INCLUDE_OBJECT = ("None", "Metadata", "Object")


class Column(TypedDict):
    """A meta.k8s.io/v1 TableColumnDefinition."""

    name: str
    type: str  # "string", "integer", "date", …
    format: str  # "name" marks the column kubectl treats as the object's name
    description: str
    priority: int  # 0: always shown; 1: only with -o wide


class RowCondition(TypedDict):
    type: str
    status: str
    reason: str
    message: str


class Row(TypedDict):
    cells: list[Cell]
    conditions: NotRequired[list[RowCondition]]
    object: NotRequired[Obj]


class Table(TypedDict):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    columnDefinitions: list[Column]
    rows: list[Row]


# --- public API -------------------------------------------------------------


def columns(kind: kinds.ResourceKind) -> list[Column]:
    """The column definitions of `kind`, wide ones (priority 1) included."""
    return [c.copy() for c in _printer(kind).columns]


def row(
    kind: kinds.ResourceKind, obj: Obj, now: datetime, *, include_object: str = "Metadata"
) -> Row:
    """One object's TableRow; a watch event's object is `table(kind, [obj], now=now)`."""
    _check_include_object(include_object)
    return _row(_printer(kind), kind, obj, _aware(now), include_object)


def table(
    kind: kinds.ResourceKind,
    objects: Iterable[Obj],
    *,
    now: datetime,
    list_meta: Mapping[str, Any] | None = None,
    include_object: str = "Metadata",
) -> Table:
    """A meta.k8s.io/v1 Table of `objects`, one row each, in the order given.

    `list_meta` is the list's metadata (resourceVersion, continue,
    remainingItemCount); for a single-object GET pass the object's
    resourceVersion, as kube-apiserver does.
    """
    _check_include_object(include_object)
    printer = _printer(kind)
    now = _aware(now)
    meta = {
        k: list_meta[k]
        for k in ("resourceVersion", "continue", "remainingItemCount")
        if list_meta and list_meta.get(k) not in (None, "")
    }
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [c.copy() for c in printer.columns],
        "rows": [_row(printer, kind, obj, now, include_object) for obj in objects],
    }


def human_duration(d: timedelta) -> str:
    """`d` the way Kubernetes' duration.HumanDuration writes it: 5s, 3m2s, 10m, 2d3h, …"""
    micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    seconds = int(micros / 1_000_000)  # truncates toward zero, like Go's int(d.Seconds())
    # Two seconds of clock skew between machines still reads as "just now".
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return _two_units(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _two_units(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


# --- rows -------------------------------------------------------------------

CellsFn = Callable[[Obj, datetime], list[Cell]]


@dataclass(frozen=True, slots=True)
class _Printer:
    columns: tuple[Column, ...]
    cells: CellsFn
    conditions: Callable[[Obj], list[RowCondition]] | None = None


def _row(
    printer: _Printer, kind: kinds.ResourceKind, obj: Obj, now: datetime, include_object: str
) -> Row:
    out: Row = {"cells": printer.cells(obj, now)}
    if printer.conditions is not None and (conditions := printer.conditions(obj)):
        out["conditions"] = conditions
    if include_object == "Metadata":
        out["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": copy.deepcopy(obj.get("metadata") or {}),
        }
    elif include_object == "Object":
        whole = copy.deepcopy(obj)
        whole.setdefault("apiVersion", kind.api_version)
        whole.setdefault("kind", kind.kind)
        out["object"] = whole
    return out


def _check_include_object(value: str) -> None:
    if value not in INCLUDE_OBJECT:
        raise ValueError(f"includeObject must be one of None, Metadata or Object, not {value!r}")


def _printer(kind: kinds.ResourceKind) -> _Printer:
    return _PRINTERS.get(kind.gvk, _DEFAULT)


# --- small readers ----------------------------------------------------------


def _dig(obj: Mapping[str, Any] | None, *path: str) -> Any:
    """obj[path[0]][path[1]]…, or None where any step is missing or null."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _list(obj: Mapping[str, Any] | None, *path: str) -> list[Any]:
    value = _dig(obj, *path)
    return value if isinstance(value, list) else []


def _str(obj: Mapping[str, Any] | None, *path: str) -> str:
    value = _dig(obj, *path)
    return value if isinstance(value, str) else ""


def _int(obj: Mapping[str, Any] | None, *path: str, default: int = 0) -> int:
    value = _dig(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _name(obj: Obj) -> str:
    return _str(obj, "metadata", "name")


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _since(value: Any, now: datetime) -> str:
    t = _time(value)
    return "<unknown>" if t is None else human_duration(now - t)


def _age(obj: Obj, now: datetime) -> str:
    return _since(_dig(obj, "metadata", "creationTimestamp"), now)


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def _format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted key=value pairs, `<none>` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(selector: Any) -> str | None:
    """metav1.LabelSelectorAsSelector(selector).String(); None for an invalid selector."""
    if not isinstance(selector, Mapping):
        return ""
    reqs: list[tuple[str, str]] = [
        (k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and values:
            word = "in" if op == "In" else "notin"
            reqs.append((key, f"{key} {word} ({','.join(sorted(values))})"))
        elif op == "Exists" and not values:
            reqs.append((key, key))
        elif op == "DoesNotExist" and not values:
            reqs.append((key, f"!{key}"))
        else:
            return None
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def _container_cells(obj: Obj) -> list[Cell]:
    containers = _list(obj, "spec", "template", "spec", "containers")
    return [
        ",".join(_str(c, "name") for c in containers),
        ",".join(_str(c, "image") for c in containers),
    ]


def _list_with_more(items: list[str], count: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _column(
    name: str, description: str, *, type_: str = "string", priority: int = 0, fmt: str = ""
) -> Column:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_WIDE = 1  # the priority of columns kubectl shows only with -o wide
_NAME = _column("Name", "Name must be unique within a namespace.", fmt="name")
_AGE = _column("Age", "The server time when this object was created.")
_CONTAINERS = _column("Containers", "Names of each container in the template.", priority=_WIDE)
_IMAGES = _column("Images", "Images referenced by each container in the template.", priority=_WIDE)


# --- Namespace, Lease, anything else ----------------------------------------


def _namespace_cells(ns: Obj, now: datetime) -> list[Cell]:
    return [_name(ns), _str(ns, "status", "phase"), _age(ns, now)]


def _lease_cells(lease: Obj, now: datetime) -> list[Cell]:
    return [_name(lease), _str(lease, "spec", "holderIdentity"), _age(lease, now)]


def _default_cells(obj: Obj, now: datetime) -> list[Cell]:
    return [_name(obj), _age(obj, now)]


# --- Pod --------------------------------------------------------------------


def _restartable(container: Any) -> bool:
    """A sidecar: an init container that keeps running (restartPolicy Always)."""
    return _str(container, "restartPolicy") == "Always"


def _condition(conditions: list[Any], type_: str) -> Any:
    return next((c for c in conditions if _str(c, "type") == type_), None)


def _later(current: datetime | None, status: Any) -> datetime | None:
    finished = _time(_dig(status, "lastState", "terminated", "finishedAt"))
    if finished is None or (current is not None and finished <= current):
        return current
    return finished


def _exit_reason(terminated: Any, prefix: str) -> str:
    """A terminated container without a reason is described by its signal or exit code."""
    if signal := _int(terminated, "signal"):
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{_int(terminated, 'exitCode')}"


def _pod_cells(pod: Obj, now: datetime) -> list[Cell]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    conditions = _list(status, "conditions")
    init_specs = _list(spec, "initContainers")
    sidecars = {_str(c, "name") for c in init_specs if _restartable(c)}
    total = len(_list(spec, "containers")) + len(sidecars)
    ready = 0
    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    if any(
        _str(c, "type") == "PodScheduled" and _str(c, "reason") == "SchedulingGated"
        for c in conditions
    ):
        reason = "SchedulingGated"

    restarts, sidecar_restarts = 0, 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(_list(status, "initContainerStatuses")):
        restarts += _int(cs, "restartCount")
        last_restart = _later(last_restart, cs)
        is_sidecar = _str(cs, "name") in sidecars
        if is_sidecar:
            sidecar_restarts += _int(cs, "restartCount")
            last_sidecar_restart = _later(last_sidecar_restart, cs)
        terminated = _dig(cs, "state", "terminated")
        waiting_reason = _str(cs, "state", "waiting", "reason")
        if terminated is not None and _int(terminated, "exitCode") == 0:
            continue
        if is_sidecar and _dig(cs, "started") is True:
            ready += 1 if _dig(cs, "ready") is True else 0
            continue
        if terminated is not None:
            term_reason = _str(terminated, "reason")
            reason = f"Init:{term_reason}" if term_reason else _exit_reason(terminated, "Init:")
        elif waiting_reason and waiting_reason != "PodInitializing":
            reason = f"Init:{waiting_reason}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _str(_condition(conditions, "Initialized"), "status") == "True":
        # Once initialized, only sidecars' restarts still count among init containers.
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(_list(status, "containerStatuses")):
            restarts += _int(cs, "restartCount")
            last_restart = _later(last_restart, cs)
            terminated = _dig(cs, "state", "terminated")
            if waiting_reason := _str(cs, "state", "waiting", "reason"):
                reason = waiting_reason
            elif terminated is not None:
                reason = _str(terminated, "reason") or _exit_reason(terminated, "")
            elif _dig(cs, "ready") is True and _dig(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                _str(c, "type") == "Ready" and _str(c, "status") == "True" for c in conditions
            )
            reason = "Running" if pod_ready else "NotReady"

    if _dig(pod, "metadata", "deletionTimestamp"):
        if _str(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = _list(status, "podIPs")
    pod_ip = _str(pod_ips[0], "ip") if pod_ips else _str(status, "podIP")
    gates = _list(spec, "readinessGates")
    gates_cell = "<none>"
    if gates:
        passing = sum(
            1
            for gate in gates
            if _str(_condition(conditions, _str(gate, "conditionType")), "status") == "True"
        )
        gates_cell = f"{passing}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _age(pod, now),
        pod_ip or "<none>",
        _str(spec, "nodeName") or "<none>",
        _str(status, "nominatedNodeName") or "<none>",
        gates_cell,
    ]


def _pod_conditions(pod: Obj) -> list[RowCondition]:
    # kube-apiserver marks finished pods' rows Completed, whatever their outcome.
    phase = _str(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


# --- Service, Endpoints, EndpointSlice --------------------------------------


def _service_external_ip(svc: Obj, service_type: str) -> str:
    external_ips = [ip for ip in _list(svc, "spec", "externalIPs") if isinstance(ip, str)]
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if service_type == "LoadBalancer":
        ingress = {
            _str(i, "ip") or _str(i, "hostname")
            for i in _list(svc, "status", "loadBalancer", "ingress")
        } - {""}
        return ",".join([*sorted(ingress), *external_ips]) or "<pending>"
    if service_type == "ExternalName":
        return _str(svc, "spec", "externalName")
    return "<unknown>"


def _service_cells(svc: Obj, now: datetime) -> list[Cell]:
    spec = svc.get("spec") or {}
    service_type = _str(spec, "type") or "ClusterIP"
    cluster_ips = _list(spec, "clusterIPs") or [_str(spec, "clusterIP")]
    ports = []
    for p in _list(spec, "ports"):
        node_port = _int(p, "nodePort")
        middle = f":{node_port}" if node_port > 0 else ""
        ports.append(f"{_int(p, 'port')}{middle}/{_str(p, 'protocol') or 'TCP'}")
    return [
        _name(svc),
        service_type,
        cluster_ips[0] or "<none>",
        _service_external_ip(svc, service_type),
        ",".join(ports) or "<none>",
        _age(svc, now),
        _format_labels(spec.get("selector")),
    ]


def _endpoints_cells(ep: Obj, now: datetime) -> list[Cell]:
    subsets = _list(ep, "subsets")
    if not subsets:
        return [_name(ep), "<none>", _age(ep, now)]
    addresses: list[str] = []
    count = 0
    for subset in subsets:
        ips = [_str(a, "ip") for a in _list(subset, "addresses")]
        ports = _list(subset, "ports")
        if not ports:  # a headless Service may publish addresses without ports
            count += len(ips)
            addresses.extend(ips)
            continue
        for port in ports:
            count += len(ips)
            addresses.extend(_host_port(ip, _int(port, "port")) for ip in ips)
    # kube-apiserver prints an empty cell, not <unset>, for subsets without addresses.
    return [_name(ep), _list_with_more(addresses, count, empty=""), _age(ep, now)]


def _endpointslice_cells(slice_: Obj, now: datetime) -> list[Cell]:
    ports = []
    for p in _list(slice_, "ports"):
        if isinstance(_dig(p, "port"), int):
            ports.append(str(_dig(p, "port")))
        elif isinstance(_dig(p, "name"), str):
            ports.append(_str(p, "name"))
        else:
            ports.append("*")
    addresses = [
        a for e in _list(slice_, "endpoints") for a in _list(e, "addresses") if isinstance(a, str)
    ]
    return [
        _name(slice_),
        _str(slice_, "addressType"),
        _list_with_more(ports, len(ports)),
        _list_with_more(addresses, len(addresses)),
        _age(slice_, now),
    ]


# --- Node -------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def _node_cells(node: Obj, now: datetime) -> list[Cell]:
    # The last Ready condition wins, as in kube-apiserver's condition map.
    ready = [c for c in _list(node, "status", "conditions") if _str(c, "type") == "Ready"]
    status = ["Unknown"]
    if ready:
        status = ["Ready" if _str(ready[-1], "status") == "True" else "NotReady"]
    if _dig(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")

    roles = set()
    for key, value in (_dig(node, "metadata", "labels") or {}).items():
        if key.startswith(_ROLE_PREFIX) and key[len(_ROLE_PREFIX) :]:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(value)

    def address(type_: str) -> str:
        addresses = _list(node, "status", "addresses")
        return next((_str(a, "address") for a in addresses if _str(a, "type") == type_), "<none>")

    info = _dig(node, "status", "nodeInfo")
    return [
        _name(node),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _age(node, now),
        _str(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        _str(info, "osImage") or "<unknown>",
        _str(info, "kernelVersion") or "<unknown>",
        _str(info, "containerRuntimeVersion") or "<unknown>",
    ]


# --- Deployment, ReplicaSet -------------------------------------------------


def _deployment_cells(deploy: Obj, now: datetime) -> list[Cell]:
    selector = _selector_string(_dig(deploy, "spec", "selector"))
    return [
        _name(deploy),
        f"{_int(deploy, 'status', 'readyReplicas')}/{_int(deploy, 'spec', 'replicas', default=1)}",
        _int(deploy, "status", "updatedReplicas"),
        _int(deploy, "status", "availableReplicas"),
        _age(deploy, now),
        *_container_cells(deploy),
        "<invalid>" if selector is None else selector,
    ]


def _replicaset_cells(rs: Obj, now: datetime) -> list[Cell]:
    selector = _selector_string(_dig(rs, "spec", "selector"))
    return [
        _name(rs),
        _int(rs, "spec", "replicas", default=1),
        _int(rs, "status", "replicas"),
        _int(rs, "status", "readyReplicas"),
        _age(rs, now),
        *_container_cells(rs),
        "<error>" if selector is None else selector or "<none>",
    ]


# --- Event (v1 and events.k8s.io/v1) ----------------------------------------


def _event_cells(ev: Obj, now: datetime) -> list[Cell]:
    # Reads both shapes: v1 field names first, then events.k8s.io/v1's.
    def field(v1: str, events_v1: str) -> Any:
        value = ev.get(v1)
        return value if value not in (None, "", 0, {}) else ev.get(events_v1)

    first = field("firstTimestamp", "deprecatedFirstTimestamp")
    first_seen = _since(first if first else ev.get("eventTime"), now)
    last = field("lastTimestamp", "deprecatedLastTimestamp")
    last_seen = _since(last, now) if last else first_seen
    count = field("count", "deprecatedCount")
    count = count if isinstance(count, int) else 0
    if isinstance(series := ev.get("series"), Mapping):
        last_seen = _since(series.get("lastObservedTime"), now)
        count = _int(series, "count")
    elif count == 0:
        count = 1  # singleton events carry no count in events.k8s.io/v1

    involved = field("involvedObject", "regarding") or {}
    kind, name = _str(involved, "kind").lower(), _str(involved, "name")
    source = field("source", "deprecatedSource") or {}
    reporter = field("reportingComponent", "reportingController")
    component = _str(source, "component") or (reporter if isinstance(reporter, str) else "")
    instance = _str(source, "host") or _str(ev, "reportingInstance")
    return [
        last_seen,
        _str(ev, "type"),
        _str(ev, "reason"),
        f"{kind}/{name}" if name else kind,
        _str(involved, "fieldPath"),
        f"{component}, {instance}" if instance else component,
        str(field("message", "note") or "").strip(),
        first_seen,
        count,
        _name(ev),
    ]


# --- the printers -----------------------------------------------------------

_DEFAULT = _Printer((_NAME, _column("Age", _AGE["description"], type_="date")), _default_cells)

_EVENT = _Printer(
    (
        _column("Last Seen", "The time at which the most recent occurrence was recorded."),
        _column("Type", "Type of this event (Normal, Warning)."),
        _column("Reason", "A short, machine understandable reason for the event."),
        _column("Object", "The object this event is about."),
        _column("Subobject", "The part of the object this event is about.", priority=_WIDE),
        _column("Source", "The component reporting this event.", priority=_WIDE),
        _column("Message", "A human-readable description of the status of this operation."),
        _column("First Seen", "The time at which the event was first recorded.", priority=_WIDE),
        _column("Count", "The number of times this event has occurred.", priority=_WIDE),
        _column("Name", _NAME["description"], priority=_WIDE, fmt="name"),
    ),
    _event_cells,
)

_PRINTERS: dict[tuple[str, str, str], _Printer] = {
    ("", "v1", "Namespace"): _Printer(
        (_NAME, _column("Status", "The status of the namespace"), _AGE), _namespace_cells
    ),
    ("", "v1", "Pod"): _Printer(
        (
            _NAME,
            _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", "The aggregate status of the containers in this pod."),
            _column("Restarts", "The number of times the containers in this pod have restarted."),
            _AGE,
            _column("IP", "podIP address allocated to the pod.", priority=_WIDE),
            _column(
                "Node", "NodeName indicates in which node this pod is scheduled.", priority=_WIDE
            ),
            _column("Nominated Node", "The node this pod preempted pods on.", priority=_WIDE),
            _column("Readiness Gates", "Readiness gates that hold, of all.", priority=_WIDE),
        ),
        _pod_cells,
        _pod_conditions,
    ),
    ("", "v1", "Service"): _Printer(
        (
            _NAME,
            _column("Type", "type determines how the Service is exposed."),
            _column("Cluster-IP", "clusterIP is the IP address of the service."),
            _column("External-IP", "IP addresses on which nodes also accept this service."),
            _column("Port(s)", "The list of ports that are exposed by this service."),
            _AGE,
            _column("Selector", "Route service traffic to pods matching this.", priority=_WIDE),
        ),
        _service_cells,
    ),
    ("", "v1", "Endpoints"): _Printer(
        (_NAME, _column("Endpoints", "The union of all subsets' addresses and ports."), _AGE),
        _endpoints_cells,
    ),
    ("discovery.k8s.io", "v1", "EndpointSlice"): _Printer(
        (
            _NAME,
            _column("AddressType", "The type of address carried by this EndpointSlice."),
            _column("Ports", "The network ports exposed by each endpoint in this slice."),
            _column("Endpoints", "The unique endpoints in this slice."),
            _AGE,
        ),
        _endpointslice_cells,
    ),
    ("", "v1", "Node"): _Printer(
        (
            _NAME,
            _column("Status", "The status of the node"),
            _column("Roles", "The roles of the node"),
            _AGE,
            _column("Version", "Kubelet Version reported by the node."),
            _column("Internal-IP", "List of addresses reachable to the node.", priority=_WIDE),
            _column("External-IP", "List of addresses reachable to the node.", priority=_WIDE),
            _column("OS-Image", "OS Image reported by the node.", priority=_WIDE),
            _column("Kernel-Version", "Kernel Version reported by the node.", priority=_WIDE),
            _column("Container-Runtime", "ContainerRuntime Version of the node.", priority=_WIDE),
        ),
        _node_cells,
    ),
    ("apps", "v1", "Deployment"): _Printer(
        (
            _NAME,
            _column("Ready", "Number of the pod with ready state"),
            _column("Up-to-date", "Pods targeted by this deployment with the desired template."),
            _column("Available", "Available pods targeted by this deployment."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _column("Selector", "Label selector for pods.", priority=_WIDE),
        ),
        _deployment_cells,
    ),
    ("apps", "v1", "ReplicaSet"): _Printer(
        (
            _NAME,
            _column("Desired", "The number of desired pods.", type_="integer"),
            _column("Current", "The most recently observed number of pods.", type_="integer"),
            _column("Ready", "The number of pods with a Ready Condition.", type_="integer"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _column("Selector", "Selector is a label query over pods.", priority=_WIDE),
        ),
        _replicaset_cells,
    ),
    ("", "v1", "Event"): _EVENT,
    ("events.k8s.io", "v1", "Event"): _EVENT,
    ("coordination.k8s.io", "v1", "Lease"): _Printer(
        (_NAME, _column("Holder", "The identity of the holder of a current lease."), _AGE),
        _lease_cells,
    ),
}
