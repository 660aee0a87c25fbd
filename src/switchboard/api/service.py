"""v1 Service: defaulting and what the registry does before it validates.

Sources: pkg/apis/core/v1/defaults.go (SetDefaults_Service) and pkg/registry/
core/service/strategy.go and storage/storage.go (patchAllocatedValues,
normalizeClusterIPs, dropTypeDependentFields). The Service's validation
lives in `servicerules` and is re-exported here, so `service.validate`,
`service.validate_update`, `service.validate_status_update` and
`service.validate_cluster_ips` are this module's public face too.

How the apiserver drives a Service write. Kubernetes allocates *before* it
validates, so validation sees the allocated values:

    create:  default(svc) → prepare_create(svc)
             → txn, errs = allocations.allocate_create(svc)   (allocators.service)
             → validation.validate_object_meta(...) + validate(svc)
             → store write → txn.commit(); txn.rollback() on any failure
    update:  default(new) → prepare_update(new, old)
             → txn, errs = allocations.allocate_update(new, old)
             → object meta rules + validate_update(new, old) → store → commit
    status:  prepare_status_update(new, old) → validate_status_update(new, old)
    delete:  store delete → allocations.release(svc)

Validating before allocating works as well (the only value validation needs
from the allocator, healthCheckNodePort, may still be 0), and spends no
allocation on an invalid object.

`default()` fills ipFamilyPolicy/ipFamilies only for headless Services: for
the others they depend on the clusterIPs, on the stored object (an update
inherits its policy) and on the families the cluster serves, so
`ServiceAllocations` sets them as it allocates, as Kubernetes' registry does.
"""

from __future__ import annotations

import copy

from switchboard.api.kinds import Obj
from switchboard.api.servicerules import (
    CLUSTER_IP_NONE,
    DEFAULT_AFFINITY_TIMEOUT,
    SOURCE_RANGES_ANNOTATION,
    TOPOLOGY_HINTS_ANNOTATION,
    TOPOLOGY_MODE_ANNOTATION,
    cluster_ips_of,
    externally_accessible,
    ingress_of,
    int_of,
    is_headless,
    needs_cluster_ip,
    needs_health_check,
    needs_node_ports,
    node_ports_of,
    other_family,
    ports_of,
    spec_of,
    str_of,
    type_of,
    validate,
    validate_cluster_ips,
)
from switchboard.api.serviceupdates import validate_status_update, validate_update

__all__ = [
    "CLUSTER_IP_NONE",
    "SOURCE_RANGES_ANNOTATION",
    "TOPOLOGY_HINTS_ANNOTATION",
    "TOPOLOGY_MODE_ANNOTATION",
    "default",
    "prepare_create",
    "prepare_status_update",
    "prepare_update",
    "validate",
    "validate_cluster_ips",
    "validate_status_update",
    "validate_update",
]

# ---- defaulting ------------------------------------------------------------------------------


def default(svc: Obj, *, service_cidr_family: str = "IPv4") -> None:
    """Apply SetDefaults_Service in place: type, sessionAffinity (+ClientIP timeout 10800),
    port protocol and targetPort, externalTrafficPolicy, internalTrafficPolicy,
    allocateLoadBalancerNodePorts and status.loadBalancer.ingress[].ipMode.

    ipFamilyPolicy/ipFamilies: a headless Service gets them here (SingleStack and
    [service_cidr_family] with a selector; RequireDualStack and both families without
    one). Every other non-ExternalName Service gets them from
    `ServiceAllocations.allocate_create`/`allocate_update`, which must run after this and
    after `prepare_create`/`prepare_update`: they depend on the clusterIPs requested or
    allocated, on the stored object (an update inherits its policy) and on the families
    the cluster serves. ExternalName Services get none.
    """
    spec = svc.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = spec.get("sessionAffinityConfig")
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}
            }
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in ports_of(svc):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        target = port.get("targetPort")
        if target is None or target == "" or (type(target) is int and target == 0):
            port["targetPort"] = int_of(port.get("port"))
    if externally_accessible(svc) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    kind = spec["type"]
    if spec.get("internalTrafficPolicy") is None and kind in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    if kind == "ExternalName":
        spec.pop("internalTrafficPolicy", None)  # Kubernetes drops it when read back
    if kind == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        for ingress in ingress_of(svc):
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"
    _default_headless_families(svc, service_cidr_family)


def _default_headless_families(svc: Obj, family: str) -> None:
    spec = spec_of(svc)
    if type_of(svc) == "ExternalName" or spec.get("ipFamilies") or spec.get("ipFamilyPolicy"):
        return
    if spec.get("clusterIP") != CLUSTER_IP_NONE and not is_headless(svc):
        return
    if spec.get("selector"):
        spec["ipFamilyPolicy"], spec["ipFamilies"] = "SingleStack", [family]
    else:
        spec["ipFamilyPolicy"] = "RequireDualStack"
        spec["ipFamilies"] = [family, other_family(family)]


# ---- registry preparation --------------------------------------------------------------------


def prepare_create(svc: Obj) -> None:
    """What the registry does before allocating on create: status starts empty, and a
    clusterIP given without clusterIPs (an older client) becomes clusterIPs[0]."""
    svc["status"] = {"loadBalancer": {}}
    spec = spec_of(svc)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


def prepare_update(new: Obj, old: Obj) -> None:
    """What the registry does to an update before allocating and validating.

    - Values it allocated and the client left empty are kept: clusterIP/clusterIPs,
      nodePorts matched by port name (Kubernetes matches by name only, so an unnamed
      single port keeps its nodePort under the name ""), healthCheckNodePort.
    - clusterIP and clusterIPs are brought in line (normalizeClusterIPs).
    - Fields the new type no longer uses are dropped when the client did not change
      them (dropTypeDependentFields); the allocator then releases what they held.
    - status is the stored one; status.loadBalancer is cleared unless LoadBalancer.
    """
    _patch_allocated_values(new, old)
    _normalize_cluster_ips(new, old)
    new["status"] = copy.deepcopy(old.get("status", {"loadBalancer": {}}))
    _drop_type_dependent_fields(new, old)


def _patch_allocated_values(new: Obj, old: Obj) -> None:
    n, o = spec_of(new), spec_of(old)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not n.get("clusterIP") and o.get("clusterIP"):
            n["clusterIP"] = o["clusterIP"]
        if not n.get("clusterIPs") and o.get("clusterIPs"):
            n["clusterIPs"] = list(o["clusterIPs"])
    if needs_node_ports(old) and needs_node_ports(new):
        used = set(node_ports_of(old)) & set(node_ports_of(new))
        by_name = {str_of(p.get("name")): int_of(p.get("nodePort")) for p in ports_of(old)}
        for port in ports_of(new):
            if not int_of(port.get("nodePort")):
                known = by_name.get(str_of(port.get("name")), 0)
                if known and known not in used:
                    port["nodePort"] = known
    both_checked = needs_health_check(old) and needs_health_check(new)
    if both_checked and not n.get("healthCheckNodePort") and o.get("healthCheckNodePort"):
        n["healthCheckNodePort"] = o["healthCheckNodePort"]


def _normalize_cluster_ips(new: Obj, old: Obj) -> None:
    n, o = spec_of(new), spec_of(old)
    old_ip, new_ip = str_of(o.get("clusterIP")), str_of(n.get("clusterIP"))
    old_ips, new_ips = cluster_ips_of(old), cluster_ips_of(new)
    if old_ips and not new_ips and old_ip == new_ip:
        # An older client that only knows clusterIP sent the object back.
        n["clusterIPs"] = list(old_ips)
        new_ips = old_ips
    if old_ip != new_ip and old_ips == new_ips:
        if old_ip and not new_ip:
            n.pop("clusterIPs", None)
        else:
            n["clusterIPs"] = [new_ip]


def _drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    n, o = spec_of(new), spec_of(old)
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if o.get("clusterIP") == n.get("clusterIP") and cluster_ips_of(old) == cluster_ips_of(new):
            n.pop("clusterIP", None)
            n.pop("clusterIPs", None)
        if o.get("ipFamilies") == n.get("ipFamilies"):
            n.pop("ipFamilies", None)
        if (o.get("ipFamilyPolicy") or "") == (n.get("ipFamilyPolicy") or ""):
            n.pop("ipFamilyPolicy", None)
    # Users may add, remove or change ports as long as they add no net-new nodePort.
    unchanged_ports = set(node_ports_of(old)) >= set(node_ports_of(new))
    if needs_node_ports(old) and not needs_node_ports(new) and unchanged_ports:
        for port in ports_of(new):
            port.pop("nodePort", None)
    same_health = int_of(o.get("healthCheckNodePort")) == int_of(n.get("healthCheckNodePort"))
    if needs_health_check(old) and not needs_health_check(new) and same_health:
        n.pop("healthCheckNodePort", None)
    if type_of(old) == "LoadBalancer" and type_of(new) != "LoadBalancer":
        before, after = (
            o.get("allocateLoadBalancerNodePorts"),
            n.get("allocateLoadBalancerNodePorts"),
        )
        if before is not None and before == after:
            n.pop("allocateLoadBalancerNodePorts", None)
        if o.get("loadBalancerClass") == n.get("loadBalancerClass"):
            n.pop("loadBalancerClass", None)
    same_policy = str_of(o.get("externalTrafficPolicy")) == str_of(n.get("externalTrafficPolicy"))
    if externally_accessible(old) and not externally_accessible(new) and same_policy:
        n.pop("externalTrafficPolicy", None)
    if type_of(new) != "LoadBalancer":
        status = new.setdefault("status", {})
        if isinstance(status, dict):
            status["loadBalancer"] = {}


def prepare_status_update(new: Obj, old: Obj) -> None:
    """A status write cannot change spec; load-balancer ingress IPs default to ipMode VIP."""
    new["spec"] = copy.deepcopy(old.get("spec", {}))
    if type_of(new) == "LoadBalancer":
        for ingress in ingress_of(new):
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"
