"""Rebuilding the bitmaps from the stored Services, and what that finds wrong.

Kubernetes runs two repair controllers (pkg/registry/core/service/
ipallocator/controller/repair.go and portallocator/controller/repair.go)
at start and every few minutes. Each builds a fresh bitmap from every
Service, compares it with the live one and records Warning Events on the
Services it finds at fault. The same here, in one pass over the Services:

    ClusterIPNotValid          Cluster IP x is not a valid IP; please recreate service
    ClusterIPOutOfRange        Cluster IP [IPv4]:x is not within the service CIDR c; …
    ClusterIPAlreadyAllocated  Cluster IP [IPv4]:x was assigned to multiple services; …
    ClusterIPNotAllocated      Cluster IP [IPv4]:x is not allocated; repairing
    PortOutOfRange             Port n is not within the port range r; please recreate service
    PortAlreadyAllocated       Port n was assigned to multiple services; please recreate …
    PortNotAllocated           Port n is not allocated; repairing

The first Service (in the order given) to claim a value keeps it. "Not
allocated" is reported only from the second rebuild on: at start the
in-memory bitmaps are empty by design. A value the live bitmap holds but no
Service uses may belong to a write in flight, so it is kept through two
rebuilds and freed on the third that still finds it unused (Kubernetes'
numRepairsBeforeLeakCleanup). Families the cluster no longer serves are
skipped. Static allocation into a fresh bitmap cannot run out of room, so
the ServiceCIDRFull and PortRangeFull events of Kubernetes never arise here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchboard.allocators import errors
from switchboard.allocators.ipallocator import IPAllocator
from switchboard.allocators.portallocator import PortAllocator
from switchboard.api import validation as v
from switchboard.api.kinds import Obj
from switchboard.api.servicerules import (
    CLUSTER_IP_NONE,
    cluster_ips_of,
    int_of,
    needs_health_check,
    needs_node_ports,
    ports_of,
    spec_of,
    str_of,
)

LEAK_RUNS = 3  # rebuilds that must find a value unused before it is freed


@dataclass(frozen=True, slots=True)
class RepairEvent:
    """A Warning Event to record on the Service (involvedObject namespace/name/uid)."""

    reason: str  # ClusterIPAlreadyAllocated, PortOutOfRange, …
    action: str  # ClusterIPAllocation, ClusterIPValidation or PortAllocation
    message: str
    namespace: str
    name: str
    uid: str
    type: str = "Warning"


def collect_node_ports(svc: Obj) -> list[int]:
    """The node ports a Service holds: the same nodePort under two protocols counts once,
    under one protocol twice (a conflict); healthCheckNodePort last, unless a non-TCP
    port already holds it.

    Unlike Kubernetes, only NodePort and LoadBalancer Services hold nodePorts and only a
    Local LoadBalancer a health check port: a stray nodePort on an ExternalName Service
    (validation allows it) was never allocated, and counting it would let deleting that
    Service free a port another Service holds.
    """
    protocols: dict[int, set[str]] = {}
    ports: list[int] = []
    for port in ports_of(svc) if needs_node_ports(svc) else ():
        node_port, protocol = int_of(port.get("nodePort")), str_of(port.get("protocol"))
        if not node_port:
            continue
        seen = protocols.setdefault(node_port, set())
        if not seen or protocol in seen:
            ports.append(node_port)
        seen.add(protocol)
    health = int_of(spec_of(svc).get("healthCheckNodePort")) if needs_health_check(svc) else 0
    if health and (health not in protocols or "TCP" in protocols[health]):
        ports.append(health)
    return ports


def _keep_leaked(leaks: dict[tuple[str, str], int], key: tuple[str, str]) -> bool:
    count = leaks.get(key, LEAK_RUNS - 1)
    if count > 0:
        leaks[key] = count - 1
        return True
    leaks.pop(key, None)
    return False


def rebuild(
    cluster_ips: Mapping[str, IPAllocator],
    node_ports: PortAllocator,
    services: Iterable[Obj],
    *,
    leaks: dict[tuple[str, str], int],
    report_unallocated: bool,
) -> list[RepairEvent]:
    """Replace the allocators' state with what `services` hold; return what was wrong.

    `leaks` carries the unused-value counters from one rebuild to the next.
    """
    fresh_ips = {family: a.empty_like() for family, a in cluster_ips.items()}
    fresh_ports = node_ports.empty_like()
    events: list[RepairEvent] = []
    for svc in services:
        meta = svc.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        ref = (str_of(meta.get("namespace")), str_of(meta.get("name")), str_of(meta.get("uid")))

        def event(reason: str, action: str, message: str) -> None:
            events.append(RepairEvent(reason, action, message, *ref))  # noqa: B023

        ips = cluster_ips_of(svc) or [str_of(spec_of(svc).get("clusterIP"))]
        for ip in ips if ips[0] not in ("", CLUSTER_IP_NONE) else ():
            parsed = v.parse_ip(ip)
            if parsed is None:
                message = f"Cluster IP {ip} is not a valid IP; please recreate service"
                event("ClusterIPNotValid", "ClusterIPValidation", message)
                continue
            family = "IPv6" if parsed.version == 6 else "IPv4"
            fresh = fresh_ips.get(family)
            if fresh is None:
                continue
            shown = f"Cluster IP [{family}]:{parsed}"
            try:
                fresh.allocate(ip)
            except errors.AlreadyAllocated:
                message = f"{shown} was assigned to multiple services; please recreate service"
                event("ClusterIPAlreadyAllocated", "ClusterIPAllocation", message)
            except errors.NotInRange:
                cidr = fresh.cidr
                message = f"{shown} is not within the service CIDR {cidr}; please recreate service"
                event("ClusterIPOutOfRange", "ClusterIPAllocation", message)
            else:
                leaks.pop(("ip", str(parsed)), None)
                if report_unallocated and not cluster_ips[family].has(ip):
                    message = f"{shown} is not allocated; repairing"
                    event("ClusterIPNotAllocated", "ClusterIPAllocation", message)
        for port in collect_node_ports(svc):
            try:
                fresh_ports.allocate(port)
            except errors.AlreadyAllocated:
                message = f"Port {port} was assigned to multiple services; please recreate service"
                event("PortAlreadyAllocated", "PortAllocation", message)
            except errors.NotInRange:
                message = (
                    f"Port {port} is not within the port range {fresh_ports.port_range}; "
                    "please recreate service"
                )
                event("PortOutOfRange", "PortAllocation", message)
            else:
                leaks.pop(("port", str(port)), None)
                if report_unallocated and not node_ports.has(port):
                    event(
                        "PortNotAllocated",
                        "PortAllocation",
                        f"Port {port} is not allocated; repairing",
                    )

    unused: set[tuple[str, str]] = set()
    for family, stored in cluster_ips.items():
        for ip in stored:
            if not fresh_ips[family].has(ip):
                unused.add(("ip", ip))
                if _keep_leaked(leaks, ("ip", ip)):
                    fresh_ips[family].allocate(ip)
        stored.load(fresh_ips[family])
    for port in node_ports:
        if not fresh_ports.has(port):
            unused.add(("port", str(port)))
            if _keep_leaked(leaks, ("port", str(port))):
                fresh_ports.allocate(port)
    node_ports.load(fresh_ports)
    for key in set(leaks) - unused:  # given back meanwhile: start counting afresh next time
        del leaks[key]
    return events
