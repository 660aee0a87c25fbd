"""From API objects to the data plane's input: Services and EndpointSlices → desired ports.

Pure functions, no I/O. For one Service (and the EndpointSlices labelled with
its name) `desired_ports` says what the data plane should serve: one entry
per Service port, with every endpoint of the slices and its conditions — the
data plane itself picks ready endpoints, or the serving-and-terminating ones
when none is ready, and local ones for Local policies.

Kubernetes' rules for which Services a proxy serves: not headless, not
ExternalName, not labelled `service.kubernetes.io/headless`, and not
labelled `service.kubernetes.io/service-proxy-name` (a value this proxy does
not own).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from switchboard.api.kinds import Obj
from switchboard.proxy import model, ruleset

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def service_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def slice_service_key(slice_: Obj) -> str | None:
    meta = slice_.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None


def proxied(svc: Obj, proxy_name: str = "") -> bool:
    """Whether this proxy serves the Service at all."""
    labels = (svc.get("metadata") or {}).get("labels") or {}
    if HEADLESS_LABEL in labels:
        return False
    if labels.get(PROXY_NAME_LABEL, "") != proxy_name:
        return False
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return False
    cluster_ip = spec.get("clusterIP")
    return bool(cluster_ip) and cluster_ip != "None"


def _family_ok(address: str, family: model.Family) -> bool:
    return (":" in address) == (family == "ipv6")


def _endpoints(
    slices: Iterable[Obj], port_name: str, protocol: str, node_name: str, family: model.Family
) -> list[model.Endpoint]:
    seen: dict[tuple[str, int], model.Endpoint] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != ("IPv6" if family == "ipv6" else "IPv4"):
            continue
        target = next(
            (
                p.get("port")
                for p in s.get("ports") or []
                if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol
            ),
            None,
        )
        if not isinstance(target, int) or not 0 < target < 65536:
            continue
        for ep in s.get("endpoints") or []:
            cond: dict[str, Any] = ep.get("conditions") or {}
            ready = cond.get("ready") is not False  # nil means ready, as in Kubernetes
            serving = cond.get("serving", ready) is not False
            terminating = cond.get("terminating") is True
            for address in (ep.get("addresses") or [])[:1]:  # only the first is used
                if not isinstance(address, str) or not _family_ok(address, family):
                    continue
                key = (address, target)
                # An endpoint moving between slices shows up twice: keep the readier view.
                if key in seen and (seen[key].ready or not ready):
                    continue
                try:
                    seen[key] = model.Endpoint(
                        address,
                        target,
                        ready=ready,
                        serving=serving,
                        terminating=terminating,
                        is_local=bool(node_name) and ep.get("nodeName") == node_name,
                    )
                except model.InvalidInput:
                    continue
    return sorted(seen.values())


def desired_ports(
    svc: Obj,
    slices: Iterable[Obj],
    *,
    node_name: str = "",
    family: model.Family = "ipv4",
) -> dict[model.ServicePortName, ruleset.Desired]:
    """Every port of `svc` with its endpoints; empty when the Service is not served.

    A port whose fields the data plane refuses (a malformed address in an
    object written by some other API server) is left out rather than failing
    the whole sync.
    """
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    slices = list(slices)
    cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
    cluster_ip = next((ip for ip in cluster_ips if _family_ok(ip, family)), None)
    if cluster_ip is None:
        return {}
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(
            ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
                "timeoutSeconds", 10800
            )
        )
    external_ips = tuple(ip for ip in spec.get("externalIPs") or [] if _family_ok(ip, family))
    lb_ips = tuple(
        i["ip"]
        for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if isinstance(i, dict) and i.get("ip") and _family_ok(i["ip"], family)
    )
    external_local = spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    out: dict[model.ServicePortName, ruleset.Desired] = {}
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol not in model.PROTOCOLS:
            continue
        try:
            name = model.ServicePortName(
                meta.get("namespace", ""),
                meta.get("name", ""),
                port.get("name") or "",
                cast(model.Protocol, protocol),
            )
            info = model.ServicePortInfo(
                name=name,
                cluster_ip=cluster_ip,
                port=int(port.get("port", 0)),
                node_port=int(port.get("nodePort") or 0),
                external_ips=external_ips,
                load_balancer_ips=lb_ips,
                affinity_timeout=affinity,
                external_policy_local=external_local,
                internal_policy_local=internal_local,
            )
        except (model.InvalidInput, TypeError, ValueError):
            continue
        out[name] = (info, _endpoints(slices, name.port, protocol, node_name, family))
    return out


def trigger_time(slice_: Obj) -> str | None:
    """When the change a slice carries happened (for network programming latency)."""
    annotations = (slice_.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(TRIGGER_TIME_ANNOTATION)
    return value if isinstance(value, str) else None
