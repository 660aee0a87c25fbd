"""The v1 Service's rules: what each type needs, and ValidateService, as Kubernetes words it.

Two parts. The vocabulary the registry and the allocators share: accessors
that read a Service dict tolerantly (`spec_of`, `ports_of`, `cluster_ips_of`)
and predicates named as in Kubernetes (`needs_node_ports`,
`needs_health_check`, `externally_accessible`, `should_allocate_node_ports`).
Then validation, transcribed from pkg/apis/core/validation/validation.go:
`validate` (ValidateService), `validate_cluster_ips`
(ValidateServiceClusterIPsRelatedFields, also run by the allocator before it
allocates), and in `serviceupdates` the rules of a change, each returning
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
    return _ports(spec_of(svc))


def _ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
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
    return _needs_health_check(spec_of(svc), type_of(svc))


def _needs_health_check(spec: dict[str, Any], kind: str) -> bool:
    """`needs_health_check` given the spec and `type_of` the Service."""
    return kind == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def externally_accessible(svc: Obj) -> bool:
    return _externally_accessible(spec_of(svc), type_of(svc))


def _externally_accessible(spec: dict[str, Any], kind: str) -> bool:
    """`externally_accessible` given the spec and `type_of` the Service."""
    return kind in ("LoadBalancer", "NodePort") or (
        kind == "ClusterIP" and bool(spec.get("externalIPs"))
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
    return _family(v.parse_ip(ip))


def _family(address: v.IPAddress | None) -> str:
    """`family_of` an address already parsed (None: not an IP, counted as IPv4)."""
    return "IPv6" if address is not None and address.version == 6 else "IPv4"


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
    # Every Service write runs this: the spec's fields are read once and handed to each
    # rule, and a field path is formatted only for an error that needs it.
    spec, annotations = spec_of(svc), _annotations(svc)
    kind, raw_ips = str_of(spec.get("type")), strings_of(spec.get("clusterIPs"))
    headless = raw_ips == [CLUSTER_IP_NONE]  # is_headless
    errs: list[FieldError] = []
    hints, mode = (
        annotations.get(TOPOLOGY_HINTS_ANNOTATION),
        annotations.get(TOPOLOGY_MODE_ANNOTATION),
    )
    if hints is not None and mode is not None and hints != mode:
        path = f"metadata.annotations[{TOPOLOGY_MODE_ANNOTATION}]"
        detail = f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified"
        errs.append(fe.invalid(path, mode, detail))

    ports = _ports(spec)
    if not ports and not headless and kind != "ExternalName":
        errs.append(fe.required("spec.ports"))
    if kind in ("LoadBalancer", "NodePort") and headless:
        detail = f"may not be set to 'None' for {kind} services"
        errs.append(fe.invalid("spec.clusterIPs[0]", CLUSTER_IP_NONE, detail))
    elif kind == "ExternalName":
        errs += _validate_external_name(spec)

    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_port(port, i, len(ports) > 1, names)
    if spec.get("selector") is not None:
        errs += v.validate_labels(spec.get("selector"), "spec.selector")
    errs += _validate_session_affinity(spec)
    errs += _validate_cluster_ips(spec, kind, raw_ips)
    for i, ip in enumerate(strings_of(spec.get("externalIPs")) or []):
        path = f"spec.externalIPs[{i}]"
        errs += v.ip_address(path, ip) or v.non_special_ip(path, ip)
    if not kind:
        errs.append(fe.required("spec.type"))
    elif kind not in TYPES:
        errs.append(fe.not_supported("spec.type", kind, TYPES))
    errs += _validate_node_ports(kind, ports)

    keys: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (str_of(port.get("protocol")), int_of(port.get("port")))
        if key in keys:
            errs.append(fe.duplicate_go(f"spec.ports[{i}]", _go_service_port(*key)))
        keys.add(key)

    errs += _validate_source_ranges(spec, kind, annotations)
    if spec.get("allocateLoadBalancerNodePorts") is not None and kind != "LoadBalancer":
        detail = "may only be used when `type` is 'LoadBalancer'"
        errs.append(fe.forbidden("spec.allocateLoadBalancerNodePorts", detail))
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(fe.required("allocateLoadBalancerNodePorts"))  # sic: Kubernetes' path
    errs += _validate_load_balancer_class(spec, kind)
    errs += _validate_traffic_policies(spec, kind)
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
    port: dict[str, Any], index: int, require_name: bool, names: set[str]
) -> list[FieldError]:
    """spec.ports[index]; its path is formatted only when there is an error to report."""
    errs: list[FieldError] = []
    name = str_of(port.get("name"))
    if require_name and not name:
        errs.append(fe.required(f"spec.ports[{index}].name"))
    elif name:
        for msg in v.is_dns1123_label(name):
            errs.append(fe.invalid(f"spec.ports[{index}].name", name, msg))
        if name in names:
            errs.append(fe.duplicate(f"spec.ports[{index}].name", name))
        names.add(name)
    number = int_of(port.get("port"))
    if not 1 <= number <= 65535:
        errs += v.port_number(f"spec.ports[{index}].port", number)
    protocol = str_of(port.get("protocol"))
    if not protocol:
        errs.append(fe.required(f"spec.ports[{index}].protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(fe.not_supported(f"spec.ports[{index}].protocol", protocol, PROTOCOLS))
    target = port.get("targetPort")
    if isinstance(target, str):
        for msg in v.is_valid_port_name(target):
            errs.append(fe.invalid(f"spec.ports[{index}].targetPort", target, msg))
    elif not 1 <= int_of(target) <= 65535:
        errs += v.port_number(f"spec.ports[{index}].targetPort", int_of(target))
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        errs += v.qualified_name(f"spec.ports[{index}].appProtocol", str_of(app_protocol))
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
    spec = spec_of(svc)
    return _validate_cluster_ips(spec, str_of(spec.get("type")), strings_of(spec.get("clusterIPs")))


def _validate_cluster_ips(
    spec: dict[str, Any], kind: str, raw_ips: list[str] | None
) -> list[FieldError]:
    """`validate_cluster_ips` given the spec, its type and its clusterIPs (`strings_of`)."""
    if kind == "ExternalName":
        return []
    errs: list[FieldError] = []
    cluster_ip, ips = str_of(spec.get("clusterIP")), raw_ips or []
    if cluster_ip and not ips:
        errs.append(fe.required("spec.clusterIPs"))
    elif cluster_ip and ips[0] != cluster_ip:
        detail = "first value must match `clusterIP`"
        errs.append(fe.invalid_go("spec.clusterIPs", v.go_strings(raw_ips), detail))
    elif not cluster_ip and ips:
        detail = "must be empty when `clusterIP` is not specified"
        errs.append(fe.invalid_go("spec.clusterIPs", v.go_strings(raw_ips), detail))
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
    addresses: list[v.IPAddress | None] = []  # each of ips parsed once, for every rule below
    for i, ip in enumerate(ips):
        if i == 0 and ip == CLUSTER_IP_NONE:
            addresses.append(None)  # what parse_ip makes of it
            if len(ips) > 1:
                bad_ips = True
                detail = "'None' must be the first and only value"
                errs.append(fe.invalid_go("spec.clusterIPs", v.go_strings(raw_ips), detail))
            continue
        address = v.parse_ip(ip)
        addresses.append(address)
        if address is None:
            bad_ips = True
            errs += v.ip_address(f"spec.clusterIPs[{i}]", ip)
    if len(ips) > 2:
        detail = "may only hold up to 2 values"
        errs.append(fe.invalid_go("spec.clusterIPs", v.go_strings(raw_ips), detail))
    if bad_ips:
        return errs
    if len(ips) > 1 and {_family(a) for a in addresses} != {"IPv4", "IPv6"}:
        detail = "may specify no more than one IP for each IP family"
        errs.append(fe.invalid_go("spec.clusterIPs", v.go_strings(raw_ips), detail))
    if raw_ips != [CLUSTER_IP_NONE]:  # not headless
        for i, (address, family) in enumerate(zip(addresses, families, strict=False)):
            if family in IP_FAMILIES and _family(address) != family:
                detail = f"expected an {family} value as indicated by `ipFamilies[{i}]`"
                errs.append(fe.invalid(f"spec.clusterIPs[{i}]", ips[i], detail))
    return errs


def _validate_node_ports(kind: str, ports: list[dict[str, Any]]) -> list[FieldError]:
    errs: list[FieldError] = []
    if kind == "ClusterIP":
        for i, port in enumerate(ports):
            if int_of(port.get("nodePort")):
                detail = "may not be used when `type` is 'ClusterIP'"
                errs.append(fe.forbidden(f"spec.ports[{i}].nodePort", detail))
    seen: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        node_port = int_of(port.get("nodePort"))
        if not node_port:
            continue
        key = (str_of(port.get("protocol")), node_port)
        if key in seen:
            errs.append(fe.duplicate(f"spec.ports[{i}].nodePort", node_port))
        seen.add(key)
    return errs


def _validate_source_ranges(
    spec: dict[str, Any], kind: str, annotations: dict[str, Any]
) -> list[FieldError]:
    errs: list[FieldError] = []
    only_lb = "may only be used when `type` is 'LoadBalancer'"
    is_lb = kind == "LoadBalancer"
    ranges = strings_of(spec.get("loadBalancerSourceRanges")) or []
    annotation = annotations.get(SOURCE_RANGES_ANNOTATION)
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


def _validate_load_balancer_class(spec: dict[str, Any], kind: str) -> list[FieldError]:
    """loadBalancerClass on its own; `_validate_load_balancer_class_update` for a change."""
    new_class = spec.get("loadBalancerClass")
    if new_class is None:
        return []
    path = "spec.loadBalancerClass"
    if kind == "LoadBalancer":
        return v.qualified_name(path, str_of(new_class))
    return [fe.forbidden(path, "may only be used when `type` is 'LoadBalancer'")]


def _validate_traffic_policies(spec: dict[str, Any], kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    effective = kind or "ClusterIP"  # type_of
    external = str_of(spec.get("externalTrafficPolicy"))
    if not _externally_accessible(spec, effective):
        if external:
            detail = "may only be set for externally-accessible services"
            errs.append(fe.invalid("spec.externalTrafficPolicy", external, detail))
    elif not external:
        errs.append(fe.required("spec.externalTrafficPolicy"))
    elif external not in TRAFFIC_POLICIES:
        errs.append(fe.not_supported("spec.externalTrafficPolicy", external, TRAFFIC_POLICIES))
    health = int_of(spec.get("healthCheckNodePort"))
    if not _needs_health_check(spec, effective):
        if health:
            detail = (
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` "
                "is 'Local'"
            )
            errs.append(fe.invalid("spec.healthCheckNodePort", health, detail))
    elif health:  # 0 is allowed here: the allocator fills it in (module docstring)
        errs += v.port_number("spec.healthCheckNodePort", health)
    internal = spec.get("internalTrafficPolicy")
    if internal is None and kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(fe.required("spec.internalTrafficPolicy"))
    elif internal is not None and internal not in TRAFFIC_POLICIES:
        errs.append(fe.not_supported("spec.internalTrafficPolicy", internal, TRAFFIC_POLICIES))
    return errs
