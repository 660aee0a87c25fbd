"""The v1 Service's rules: what each type needs, and ValidateService, as Kubernetes words it.

Two parts. The vocabulary the registry and the allocators share: accessors
that read a Service dict tolerantly (`spec_of`, `ports_of`, `cluster_ips_of`)
and predicates named as in Kubernetes (`needs_node_ports`,
`needs_health_check`, `externally_accessible`, `should_allocate_node_ports`).
Then validation, transcribed from pkg/apis/core/validation/validation.go:
`validate` (ValidateService), `validate_cluster_ips`
(ValidateServiceClusterIPsRelatedFields, also run by the allocator before it
allocates), `validate_update` (ValidateServiceUpdate) and
`validate_status_update` (ValidateLoadBalancerStatus), each returning
`FieldError`s whose `str()` is the line kubectl prints, e.g.
`spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'`.

The ObjectMeta rules every kind shares are not repeated here: the apiserver
runs `validation.validate_object_meta` (and `validate_object_meta_update`)
for every kind, with the DNS-1035 label rule for Service names. Supported
values are listed in the sorted order Go's `sets.List` prints them. Bad
values that Go prints with `%#v` (lists, the duplicate-port key) are rendered
the Go way. One deliberate difference: `healthCheckNodePort` may still be 0
here, so that validation may run before the allocator fills it in (in
Kubernetes allocation always runs first, so its "Required value" for this
field is never seen).
"""

from __future__ import annotations

from typing import Any

from switchboard.api import fielderrors as fe
from switchboard.api import validation as v
from switchboard.api.fielderrors import FieldError
from switchboard.api.kinds import Obj

CLUSTER_IP_NONE = "None"
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"

# Supported values, in the sorted order Go's sets.List prints them.
TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
AFFINITIES = ("ClientIP", "None")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
IP_MODES = ("Proxy", "VIP")
TRAFFIC_DISTRIBUTIONS = ("PreferClose",)


# ---- accessors and predicates (shared with the allocators) --------------------------------


def spec_of(svc: Obj) -> dict[str, Any]:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def ports_of(svc: Obj) -> list[dict[str, Any]]:
    ports = spec_of(svc).get("ports")
    return [p if isinstance(p, dict) else {} for p in ports] if isinstance(ports, list) else []


def str_of(value: Any) -> str:
    """A string field, "" when absent."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def int_of(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def strings_of(value: Any) -> list[str] | None:
    """A string list field, or None when absent (Go's nil slice)."""
    return [str_of(x) for x in value] if isinstance(value, list) else None


def type_of(svc: Obj) -> str:
    """The Service type, "" counting as the default ClusterIP."""
    return str_of(spec_of(svc).get("type")) or "ClusterIP"


def cluster_ips_of(svc: Obj) -> list[str]:
    return strings_of(spec_of(svc).get("clusterIPs")) or []


def is_headless(svc: Obj) -> bool:
    return cluster_ips_of(svc) == [CLUSTER_IP_NONE]


def needs_cluster_ip(svc: Obj) -> bool:
    return type_of(svc) != "ExternalName"


def needs_node_ports(svc: Obj) -> bool:
    return type_of(svc) in ("NodePort", "LoadBalancer")


def needs_health_check(svc: Obj) -> bool:
    """LoadBalancer with externalTrafficPolicy Local: gets a healthCheckNodePort."""
    return type_of(svc) == "LoadBalancer" and spec_of(svc).get("externalTrafficPolicy") == "Local"


def externally_accessible(svc: Obj) -> bool:
    kind = type_of(svc)
    return kind in ("LoadBalancer", "NodePort") or (
        kind == "ClusterIP" and bool(spec_of(svc).get("externalIPs"))
    )


def should_allocate_node_ports(svc: Obj) -> bool:
    """NodePort always; LoadBalancer unless allocateLoadBalancerNodePorts is false."""
    kind = type_of(svc)
    if kind == "LoadBalancer":
        return spec_of(svc).get("allocateLoadBalancerNodePorts") is not False
    return kind == "NodePort"


def node_ports_of(svc: Obj) -> list[int]:
    """Every non-zero spec.ports[].nodePort, in port order (repeats kept)."""
    return [n for n in (int_of(p.get("nodePort")) for p in ports_of(svc)) if n]


def ingress_of(svc: Obj) -> list[dict[str, Any]]:
    status = svc.get("status")
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    ingress = lb.get("ingress") if isinstance(lb, dict) else None
    return [i for i in ingress if isinstance(i, dict)] if isinstance(ingress, list) else []


def family_of(ip: str) -> str:
    return "IPv6" if v.is_ipv6(ip) else "IPv4"


def other_family(family: str) -> str:
    return "IPv6" if family == "IPv4" else "IPv4"


# ---- validation --------------------------------------------------------------------------------


def _go_service_port(protocol: str, port: int) -> str:
    """The (protocol, port) key Kubernetes reports for a duplicate port, as Go's %#v."""
    return (
        f'core.ServicePort{{Name:"", Protocol:{v.go_quote(protocol)}, '
        f"AppProtocol:(*string)(nil), Port:{port}, "
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def validate(svc: Obj) -> list[FieldError]:
    """ValidateService without the shared ObjectMeta rules (see the module docstring)."""
    spec, annotations = spec_of(svc), _annotations(svc)
    kind, headless = str_of(spec.get("type")), is_headless(svc)
    errs: list[FieldError] = []
    hints, mode = (
        annotations.get(TOPOLOGY_HINTS_ANNOTATION),
        annotations.get(TOPOLOGY_MODE_ANNOTATION),
    )
    if hints is not None and mode is not None and hints != mode:
        path = f"metadata.annotations[{TOPOLOGY_MODE_ANNOTATION}]"
        detail = f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified"
        errs.append(fe.invalid(path, mode, detail))

    ports = ports_of(svc)
    if not ports and not headless and kind != "ExternalName":
        errs.append(fe.required("spec.ports"))
    if kind in ("LoadBalancer", "NodePort") and headless:
        detail = f"may not be set to 'None' for {kind} services"
        errs.append(fe.invalid("spec.clusterIPs[0]", CLUSTER_IP_NONE, detail))
    elif kind == "ExternalName":
        errs += _validate_external_name(spec)

    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_port(port, f"spec.ports[{i}]", len(ports) > 1, names)
    if spec.get("selector") is not None:
        errs += v.validate_labels(spec.get("selector"), "spec.selector")
    errs += _validate_session_affinity(spec)
    errs += validate_cluster_ips(svc)
    for i, ip in enumerate(strings_of(spec.get("externalIPs")) or []):
        path = f"spec.externalIPs[{i}]"
        errs += v.ip_address(path, ip) or v.non_special_ip(path, ip)
    if not kind:
        errs.append(fe.required("spec.type"))
    elif kind not in TYPES:
        errs.append(fe.not_supported("spec.type", kind, TYPES))
    errs += _validate_node_ports(svc)

    keys: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (str_of(port.get("protocol")), int_of(port.get("port")))
        if key in keys:
            errs.append(fe.duplicate_go(f"spec.ports[{i}]", _go_service_port(*key)))
        keys.add(key)

    errs += _validate_source_ranges(svc)
    if spec.get("allocateLoadBalancerNodePorts") is not None and kind != "LoadBalancer":
        detail = "may only be used when `type` is 'LoadBalancer'"
        errs.append(fe.forbidden("spec.allocateLoadBalancerNodePorts", detail))
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(fe.required("allocateLoadBalancerNodePorts"))  # sic: Kubernetes' path
    errs += _validate_load_balancer_class(svc, None)
    errs += _validate_traffic_policies(svc)
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(
            fe.not_supported("spec.trafficDistribution", distribution, TRAFFIC_DISTRIBUTIONS)
        )
    return errs


def _annotations(svc: Obj) -> dict[str, Any]:
    meta = svc.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _validate_external_name(spec: dict[str, Any]) -> list[FieldError]:
    errs = []
    detail = "may not be set for ExternalName services"
    if spec.get("clusterIPs"):
        errs.append(fe.forbidden("spec.clusterIPs", detail))
    if spec.get("ipFamilies"):
        errs.append(fe.forbidden("spec.ipFamilies", detail))
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(fe.forbidden("spec.ipFamilyPolicy", detail))
    cname = str_of(spec.get("externalName")).removesuffix(".")  # one trailing dot: fully qualified
    if cname:
        errs += v.dns1123_subdomain("spec.externalName", cname)
    else:
        errs.append(fe.required("spec.externalName"))
    return errs


def _validate_port(
    port: dict[str, Any], path: str, require_name: bool, names: set[str]
) -> list[FieldError]:
    errs: list[FieldError] = []
    name = str_of(port.get("name"))
    if require_name and not name:
        errs.append(fe.required(f"{path}.name"))
    elif name:
        errs += v.dns1123_label(f"{path}.name", name)
        if name in names:
            errs.append(fe.duplicate(f"{path}.name", name))
        names.add(name)
    errs += v.port_number(f"{path}.port", int_of(port.get("port")))
    protocol = str_of(port.get("protocol"))
    if not protocol:
        errs.append(fe.required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(fe.not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    target = port.get("targetPort")
    if isinstance(target, str):
        errs += v.iana_svc_name(f"{path}.targetPort", target)
    else:
        errs += v.port_number(f"{path}.targetPort", int_of(target))
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        errs += v.qualified_name(f"{path}.appProtocol", str_of(app_protocol))
    return errs


def _validate_session_affinity(spec: dict[str, Any]) -> list[FieldError]:
    affinity = str_of(spec.get("sessionAffinity"))
    path = "spec.sessionAffinityConfig"
    if not affinity:
        return [fe.required("spec.sessionAffinity")]
    if affinity not in AFFINITIES:
        return [fe.not_supported("spec.sessionAffinity", affinity, AFFINITIES)]
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        if config is not None:
            return [fe.forbidden(path, "must not be set when session affinity is None")]
        return []
    detail = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [fe.required(path, detail)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return [fe.required(f"{path}.clientIP", detail)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [fe.required(f"{path}.clientIP.timeoutSeconds", detail)]
    if not 0 < int_of(timeout) <= MAX_AFFINITY_TIMEOUT:
        detail = f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"
        return [fe.invalid(f"{path}.clientIP.timeoutSeconds", timeout, detail)]
    return []


def validate_cluster_ips(svc: Obj) -> list[FieldError]:
    """clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy on their own and together
    (ValidateServiceClusterIPsRelatedFields); the allocator runs it before allocating."""
    if str_of(spec_of(svc).get("type")) == "ExternalName":
        return []
    spec, errs = spec_of(svc), []
    cluster_ip, raw_ips = str_of(spec.get("clusterIP")), strings_of(spec.get("clusterIPs"))
    ips = raw_ips or []
    shown = v.go_strings(raw_ips)
    if cluster_ip and not ips:
        errs.append(fe.required("spec.clusterIPs"))
    elif cluster_ip and ips[0] != cluster_ip:
        errs.append(fe.invalid_go("spec.clusterIPs", shown, "first value must match `clusterIP`"))
    elif not cluster_ip and ips:
        detail = "must be empty when `clusterIP` is not specified"
        errs.append(fe.invalid_go("spec.clusterIPs", shown, detail))
    families = strings_of(spec.get("ipFamilies")) or []
    for i, family in enumerate(families):
        if family not in IP_FAMILIES:
            errs.append(fe.not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES))
        if family in families[:i]:
            errs.append(fe.duplicate(f"spec.ipFamilies[{i}]", family))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(fe.not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == CLUSTER_IP_NONE:
            if len(ips) > 1:
                bad_ips = True
                detail = "'None' must be the first and only value"
                errs.append(fe.invalid_go("spec.clusterIPs", shown, detail))
            continue
        ip_errs = v.ip_address(f"spec.clusterIPs[{i}]", ip)
        bad_ips = bad_ips or bool(ip_errs)
        errs += ip_errs
    if len(ips) > 2:
        errs.append(fe.invalid_go("spec.clusterIPs", shown, "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(ips) > 1 and {family_of(ip) for ip in ips} != {"IPv4", "IPv6"}:
        detail = "may specify no more than one IP for each IP family"
        errs.append(fe.invalid_go("spec.clusterIPs", shown, detail))
    if not is_headless(svc):
        for i, (ip, family) in enumerate(zip(ips, families, strict=False)):
            if family in IP_FAMILIES and family_of(ip) != family:
                detail = f"expected an {family} value as indicated by `ipFamilies[{i}]`"
                errs.append(fe.invalid(f"spec.clusterIPs[{i}]", ip, detail))
    return errs


def _validate_node_ports(svc: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    if str_of(spec_of(svc).get("type")) == "ClusterIP":
        for i, port in enumerate(ports_of(svc)):
            if int_of(port.get("nodePort")):
                detail = "may not be used when `type` is 'ClusterIP'"
                errs.append(fe.forbidden(f"spec.ports[{i}].nodePort", detail))
    seen: set[tuple[str, int]] = set()
    for i, port in enumerate(ports_of(svc)):
        node_port = int_of(port.get("nodePort"))
        if not node_port:
            continue
        key = (str_of(port.get("protocol")), node_port)
        if key in seen:
            errs.append(fe.duplicate(f"spec.ports[{i}].nodePort", node_port))
        seen.add(key)
    return errs


def _validate_source_ranges(svc: Obj) -> list[FieldError]:
    spec, errs = spec_of(svc), []
    only_lb = "may only be used when `type` is 'LoadBalancer'"
    is_lb = str_of(spec.get("type")) == "LoadBalancer"
    ranges = strings_of(spec.get("loadBalancerSourceRanges")) or []
    annotation = _annotations(svc).get(SOURCE_RANGES_ANNOTATION)
    if ranges:
        path = "spec.LoadBalancerSourceRanges"  # sic: Kubernetes capitalises it
        if not is_lb:
            errs.append(fe.forbidden(path, only_lb))
        for i, value in enumerate(ranges):
            # Historically these may be space-padded, as the annotation was.
            errs += v.cidr(f"{path}[{i}]", value.strip())
    elif annotation is not None:
        path = f"metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"
        if not is_lb:
            errs.append(fe.forbidden(path, only_lb))
        text = str_of(annotation).strip()
        for value in text.split(",") if text else []:
            errs += v.cidr(path, value.strip())
    return errs


def _validate_load_balancer_class(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = []
    new_class = spec_of(new).get("loadBalancerClass")
    path = "spec.loadBalancerClass"
    both_lb = old is not None and type_of(old) == "LoadBalancer" == type_of(new)
    if both_lb and old is not None and spec_of(old).get("loadBalancerClass") != new_class:
        errs.append(fe.invalid(path, new_class, "may not change once set"))
    if old is None:
        if str_of(spec_of(new).get("type")) == "LoadBalancer":
            if new_class is not None:
                errs += v.qualified_name(path, str_of(new_class))
        elif new_class is not None:
            errs.append(fe.forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _validate_traffic_policies(svc: Obj) -> list[FieldError]:
    spec, errs = spec_of(svc), []
    external = str_of(spec.get("externalTrafficPolicy"))
    if not externally_accessible(svc):
        if external:
            detail = "may only be set for externally-accessible services"
            errs.append(fe.invalid("spec.externalTrafficPolicy", external, detail))
    elif not external:
        errs.append(fe.required("spec.externalTrafficPolicy"))
    elif external not in TRAFFIC_POLICIES:
        errs.append(fe.not_supported("spec.externalTrafficPolicy", external, TRAFFIC_POLICIES))
    health = int_of(spec.get("healthCheckNodePort"))
    if not needs_health_check(svc):
        if health:
            detail = (
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` "
                "is 'Local'"
            )
            errs.append(fe.invalid("spec.healthCheckNodePort", health, detail))
    elif health:  # 0 is allowed here: the allocator fills it in (module docstring)
        errs += v.port_number("spec.healthCheckNodePort", health)
    internal = spec.get("internalTrafficPolicy")
    if internal is None and str_of(spec.get("type")) in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(fe.required("spec.internalTrafficPolicy"))
    elif internal is not None and internal not in TRAFFIC_POLICIES:
        errs.append(fe.not_supported("spec.internalTrafficPolicy", internal, TRAFFIC_POLICIES))
    return errs


def validate_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateServiceUpdate without the ObjectMeta rules: clusterIPs and ipFamilies may
    only grow or shrink by the secondary entry (except to/from ExternalName),
    loadBalancerClass and healthCheckNodePort are fixed once set, then `validate(new)`."""
    errs = _validate_cluster_ips_update(new, old) + _validate_ip_families_update(new, old)
    errs += _validate_load_balancer_class(new, old)
    old_health = int_of(spec_of(old).get("healthCheckNodePort"))
    new_health = int_of(spec_of(new).get("healthCheckNodePort"))
    if needs_health_check(old) and needs_health_check(new) and old_health != new_health:
        errs.append(fe.forbidden("spec.healthCheckNodePort", v.FIELD_IMMUTABLE))
    return errs + validate(new)


def _validate_cluster_ips_update(new: Obj, old: Obj) -> list[FieldError]:
    if "ExternalName" in (str_of(spec_of(new).get("type")), str_of(spec_of(old).get("type"))):
        return []
    if is_headless(old) and is_headless(new):
        return []
    old_ips, new_ips = cluster_ips_of(old), cluster_ips_of(new)
    shown = v.go_strings(strings_of(spec_of(new).get("clusterIPs")))
    errs = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(
                    fe.invalid_go(f"spec.clusterIPs[{i}]", shown, "may not change once set")
                )
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            detail = "primary clusterIP can not be unset"
            errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, detail))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, "may not change once set"))
        policy = spec_of(new).get("ipFamilyPolicy")
        if len(new_ips) == 1 and policy != "SingleStack":
            detail = "must be set to 'SingleStack' when releasing the secondary clusterIP"
            errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def _validate_ip_families_update(new: Obj, old: Obj) -> list[FieldError]:
    if "ExternalName" in (str_of(spec_of(new).get("type")), str_of(spec_of(old).get("type"))):
        return []
    if is_headless(old) or is_headless(new):
        return []  # headless Services may change families; to/from headless is not checked
    old_fams = strings_of(spec_of(old).get("ipFamilies")) or []
    raw = strings_of(spec_of(new).get("ipFamilies"))
    new_fams = raw or []
    # Kubernetes shows clusterIPs, not ipFamilies, as the bad value when the count changed.
    ips_shown = v.go_strings(strings_of(spec_of(new).get("clusterIPs")))
    errs = []
    if len(old_fams) == len(new_fams):
        for i, family in enumerate(old_fams):
            if family != new_fams[i]:
                shown = v.go_strings(raw, "[]core.IPFamily")
                errs.append(fe.invalid_go("spec.ipFamilies[0]", shown, "may not change once set"))
    elif len(old_fams) > len(new_fams):
        if not cluster_ips_of(new):
            shown = v.go_strings(raw, "[]core.IPFamily")
            errs.append(
                fe.invalid_go("spec.ipFamilies[0]", shown, "primary ipFamily can not be unset")
            )
        if new_fams and new_fams[0] != old_fams[0]:
            errs.append(fe.invalid_go("spec.ipFamilies[0]", ips_shown, "may not change once set"))
        policy = spec_of(new).get("ipFamilyPolicy")
        if len(new_fams) == 1 and policy != "SingleStack":
            detail = "must be set to 'SingleStack' when releasing the secondary ipFamily"
            errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    elif old_fams and new_fams[0] != old_fams[0]:
        errs.append(fe.invalid_go("spec.ipFamilies[0]", ips_shown, "may not change once set"))
    return errs


def validate_status_update(new: Obj, old: Obj) -> list[FieldError]:
    """status.loadBalancer.ingress (ValidateLoadBalancerStatus) on a status write."""
    path = "status.loadBalancer.ingress"
    ingress = ingress_of(new)
    if ingress and str_of(spec_of(new).get("type")) != "LoadBalancer":
        return [fe.forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    errs: list[FieldError] = []
    for i, entry in enumerate(ingress):
        ip, mode, hostname = (
            str_of(entry.get("ip")),
            entry.get("ipMode"),
            str_of(entry.get("hostname")),
        )
        if ip:
            errs += v.ip_address(f"{path}[{i}].ip", ip)
        if mode is None:
            if ip:
                errs.append(
                    fe.required(f"{path}[{i}].ipMode", "must be specified when `ip` is set")
                )
        elif not ip:
            detail = "may not be specified when `ip` is not set"
            errs.append(fe.forbidden(f"{path}[{i}].ipMode", detail))
        elif mode not in IP_MODES:
            errs.append(fe.not_supported(f"{path}[{i}].ipMode", mode, IP_MODES))
        if hostname:
            errs += v.dns1123_subdomain(f"{path}[{i}].hostname", hostname)
            if v.parse_ip(hostname) is not None:
                detail = "must be a DNS name, not an IP address"
                errs.append(fe.invalid(f"{path}[{i}].hostname", hostname, detail))
    return errs
