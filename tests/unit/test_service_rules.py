"""Service defaulting, registry preparation and validation, line for line as Kubernetes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from switchboard.api import service

LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
QNAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
BAD_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
BAD_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
ONLY_LB = "may only be used when `type` is 'LoadBalancer'"
DUP_PORT_80 = (
    'core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, '
    'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
)


def svc(*, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    meta: dict[str, Any] = {"name": "web", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {**base, **spec}}


def two_ports(**extra: Any) -> list[dict[str, Any]]:
    return [{"name": "a", "port": 80, **extra}, {"name": "b", "port": 81, **extra}]


def errors_of(s: dict[str, Any], *, defaulted: bool = True) -> list[str]:
    if defaulted:
        service.default(s)
        service.prepare_create(s)
    return [str(e) for e in service.validate(s)]


RULES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("a plain ClusterIP service is valid", svc(), []),
    ("ports are required", svc(ports=[]), ["spec.ports: Required value"]),
    ("headless needs no ports", svc(ports=[], clusterIP="None"), []),
    ("ExternalName needs no ports",
     svc(ports=[], type="ExternalName", externalName="db.example.com"), []),
    ("names are required with several ports", svc(ports=[{"port": 80}, {"port": 81}]),
     ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    ("port names are DNS labels", svc(ports=[{"name": "HTTP", "port": 80}]),
     [f'spec.ports[0].name: Invalid value: "HTTP": {LABEL}']),
    ("port names are unique", svc(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
     ['spec.ports[1].name: Duplicate value: "a"']),
    ("port numbers are 1-65535", svc(ports=[{"port": 0}]),
     ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
      "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ("protocol is TCP, UDP or SCTP", svc(ports=[{"port": 80, "protocol": "HTTP"}]),
     ['spec.ports[0].protocol: Unsupported value: "HTTP": supported values: '
      '"SCTP", "TCP", "UDP"']),
    ("a string targetPort is an IANA_SVC_NAME", svc(ports=[{"port": 80, "targetPort": "80"}]),
     ['spec.ports[0].targetPort: Invalid value: "80": must contain at least one letter (a-z)']),
    ("a numeric targetPort is a port number", svc(ports=[{"port": 80, "targetPort": 70000}]),
     ["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("a named targetPort is fine", svc(ports=[{"port": 80, "targetPort": "http"}]), []),
    ("appProtocol is a qualified name", svc(ports=[{"port": 80, "appProtocol": "a b"}]),
     [f'spec.ports[0].appProtocol: Invalid value: "a b": {QNAME}']),
    ("protocol and port are unique together",
     svc(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
     [f"spec.ports[1]: Duplicate value: {DUP_PORT_80}"]),
    ("TCP and UDP may share a port",
     svc(ports=[{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}]), []),
    ("nodePort is forbidden for ClusterIP", svc(ports=two_ports(nodePort=30001)),
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
      "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
      "spec.ports[1].nodePort: Duplicate value: 30001"]),
    ("nodePorts are unique per protocol", svc(type="NodePort", ports=two_ports(nodePort=30001)),
     ["spec.ports[1].nodePort: Duplicate value: 30001"]),
    ("TCP and UDP may share a nodePort", svc(type="NodePort", ports=[
        {"name": "a", "port": 53, "nodePort": 30053},
        {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053}]), []),
    ("NodePort cannot be headless", svc(type="NodePort", clusterIP="None"),
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort "
      "services"]),
    ("LoadBalancer cannot be headless", svc(type="LoadBalancer", clusterIP="None"),
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer "
      "services"]),
    ("ExternalName needs externalName", svc(type="ExternalName"),
     ["spec.externalName: Required value"]),
    ("externalName is a DNS subdomain", svc(type="ExternalName", externalName="Bad_Name"),
     [f'spec.externalName: Invalid value: "Bad_Name": {SUBDOMAIN}']),
    ("externalName may end in one dot", svc(type="ExternalName", externalName="db.example."), []),
    ("ExternalName has no cluster IPs or families",
     svc(type="ExternalName", externalName="db", clusterIP="10.0.0.1", ipFamilies=["IPv4"],
         ipFamilyPolicy="SingleStack"),
     ["spec.clusterIPs: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]),
    ("clusterIP must be an IP", svc(clusterIP="abc"),
     [f'spec.clusterIPs[0]: Invalid value: "abc": {BAD_IP}']),
    ("clusterIPs[0] must match clusterIP", svc(clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"]),
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: first value must match '
      "`clusterIP`"]),
    ("clusterIPs need clusterIP", svc(clusterIPs=["10.0.0.2"]),
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: must be empty when `clusterIP` '
      "is not specified"]),
    ("None stands alone", svc(clusterIP="None", clusterIPs=["None", "10.0.0.1"]),
     ['spec.clusterIPs: Invalid value: []string{"None", "10.0.0.1"}: \'None\' must be the '
      "first and only value"]),
    ("at most two cluster IPs",
     svc(clusterIP="10.0.0.1", clusterIPs=["10.0.0.1", "fd00::1", "10.0.0.2"]),
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.1", "fd00::1", "10.0.0.2"}: may only '
      "hold up to 2 values"]),
    ("one cluster IP per family", svc(clusterIP="10.0.0.1", clusterIPs=["10.0.0.1", "10.0.0.2"]),
     ['spec.clusterIPs: Invalid value: []string{"10.0.0.1", "10.0.0.2"}: may specify no more '
      "than one IP for each IP family"]),
    ("cluster IPs match their families", svc(clusterIP="10.0.0.1", ipFamilies=["IPv6"]),
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.1": expected an IPv6 value as indicated by '
      "`ipFamilies[0]`"]),
    ("families are IPv4 or IPv6", svc(ipFamilies=["IPv5"]),
     ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"']),
    ("families are unique", svc(ipFamilies=["IPv4", "IPv4"]),
     ['spec.ipFamilies[1]: Duplicate value: "IPv4"']),
    ("ipFamilyPolicy has three values", svc(ipFamilyPolicy="Both"),
     ['spec.ipFamilyPolicy: Unsupported value: "Both": supported values: "PreferDualStack", '
      '"RequireDualStack", "SingleStack"']),
    ("sessionAffinity is None or ClientIP", svc(sessionAffinity="Sticky"),
     ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
    ("ClientIP timeout at most 86400", svc(sessionAffinity="ClientIP", sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 86401}}),
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be "
      "greater than 0 and less than 86400"]),
    ("ClientIP timeout of 86400 is fine", svc(sessionAffinity="ClientIP", sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 86400}}), []),
    ("externalIPs are IPs", svc(externalIPs=["nope"]),
     [f'spec.externalIPs[0]: Invalid value: "nope": {BAD_IP}']),
    ("externalIPs are not loopback", svc(externalIPs=["127.0.0.1"]),
     ['spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
      "(127.0.0.0/8, ::1/128)"]),
    ("type has four values", svc(type="Foo"),
     ['spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"']),
    ("source ranges only for LoadBalancer", svc(loadBalancerSourceRanges=["10.0.0.0/8"]),
     [f"spec.LoadBalancerSourceRanges: Forbidden: {ONLY_LB}"]),
    ("source ranges are CIDRs (space-padded allowed)",
     svc(type="LoadBalancer", loadBalancerSourceRanges=[" 10.0.0.0/8 ", "bad"]),
     [f'spec.LoadBalancerSourceRanges[1]: Invalid value: "bad": {BAD_CIDR}']),
    ("the source-ranges annotation is checked too",
     svc(annotations={service.SOURCE_RANGES_ANNOTATION: "10.0.0.0/8, nope"}),
     [f"metadata.annotations[{service.SOURCE_RANGES_ANNOTATION}]: Forbidden: {ONLY_LB}",
      f'metadata.annotations[{service.SOURCE_RANGES_ANNOTATION}]: Invalid value: "nope": '
      f"{BAD_CIDR}"]),
    ("allocateLoadBalancerNodePorts only for LoadBalancer",
     svc(type="NodePort", allocateLoadBalancerNodePorts=False),
     [f"spec.allocateLoadBalancerNodePorts: Forbidden: {ONLY_LB}"]),
    ("externalTrafficPolicy only when externally accessible", svc(externalTrafficPolicy="Local"),
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
      "externally-accessible services"]),
    ("ClusterIP with externalIPs is externally accessible",
     svc(externalIPs=["192.0.2.1"], externalTrafficPolicy="Local"), []),
    ("externalTrafficPolicy is Cluster or Local",
     svc(type="NodePort", externalTrafficPolicy="Global"),
     ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", '
      '"Local"']),
    ("healthCheckNodePort only for LoadBalancer with Local", svc(type="NodePort",
     healthCheckNodePort=30000),
     ["spec.healthCheckNodePort: Invalid value: 30000: may only be set when `type` is "
      "'LoadBalancer' and `externalTrafficPolicy` is 'Local'"]),
    ("healthCheckNodePort is a port number", svc(type="LoadBalancer", externalTrafficPolicy="Local",
     healthCheckNodePort=70000),
     ["spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("internalTrafficPolicy is Cluster or Local", svc(internalTrafficPolicy="Node"),
     ['spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", '
      '"Local"']),
    ("trafficDistribution is PreferClose", svc(trafficDistribution="Nearby"),
     ['spec.trafficDistribution: Unsupported value: "Nearby": supported values: "PreferClose"']),
    ("loadBalancerClass only for LoadBalancer", svc(loadBalancerClass="example.com/lb"),
     [f"spec.loadBalancerClass: Forbidden: {ONLY_LB}"]),
    ("loadBalancerClass is a qualified name", svc(type="LoadBalancer", loadBalancerClass="a b"),
     [f'spec.loadBalancerClass: Invalid value: "a b": {QNAME}']),
    ("selector keys are label keys", svc(selector={"bad key": "web"}),
     [f'spec.selector: Invalid value: "bad key": {QNAME}']),
    ("topology annotations must agree", svc(annotations={
        service.TOPOLOGY_HINTS_ANNOTATION: "Auto", service.TOPOLOGY_MODE_ANNOTATION: "Off"}),
     [f'metadata.annotations[{service.TOPOLOGY_MODE_ANNOTATION}]: Invalid value: "Off": must '
      f"match annotations[{service.TOPOLOGY_HINTS_ANNOTATION}] when both are specified"]),
]  # fmt: skip


@pytest.mark.parametrize(("s", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule(s: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(copy.deepcopy(s)) == expected


UNDEFAULTED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("type is required", {"type": "", "sessionAffinity": "None"}, ["spec.type: Required value"]),
    ("sessionAffinity is required", {"type": "ClusterIP", "internalTrafficPolicy": "Cluster"},
     ["spec.sessionAffinity: Required value"]),
    ("a None affinity has no config",
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "sessionAffinityConfig": {}},
     ["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]),
    ("ClientIP needs clientIP config",
     {"type": "ClusterIP", "sessionAffinity": "ClientIP", "internalTrafficPolicy": "Cluster",
      "sessionAffinityConfig": {}},
     ["spec.sessionAffinityConfig.clientIP: Required value: when session affinity type is "
      "ClientIP"]),
    ("internalTrafficPolicy is required", {"type": "ClusterIP", "sessionAffinity": "None"},
     ["spec.internalTrafficPolicy: Required value"]),
    ("externalTrafficPolicy is required when externally accessible",
     {"type": "NodePort", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
     ["spec.externalTrafficPolicy: Required value"]),
    ("allocateLoadBalancerNodePorts is required for LoadBalancer (Kubernetes' odd path)",
     {"type": "LoadBalancer", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster"},
     ["allocateLoadBalancerNodePorts: Required value"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"), [r[1:] for r in UNDEFAULTED], ids=[r[0] for r in UNDEFAULTED]
)
def test_rule_without_defaults(spec: dict[str, Any], expected: list[str]) -> None:
    s = svc(ports=[{"port": 80, "protocol": "TCP", "targetPort": 80}], **spec)
    assert errors_of(s, defaulted=False) == expected


# ---- defaulting ------------------------------------------------------------------------------


def test_defaults_for_a_minimal_service() -> None:
    s = svc()
    service.default(s)
    assert s["spec"] == {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "sessionAffinity": "None",
        "type": "ClusterIP",
        "internalTrafficPolicy": "Cluster",
    }


def test_client_ip_affinity_gets_the_default_timeout() -> None:
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {}})
    service.default(s)
    assert s["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_none_affinity_drops_its_config() -> None:
    s = svc(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})
    service.default(s)
    assert "sessionAffinityConfig" not in s["spec"]


def test_empty_target_port_defaults_to_port() -> None:
    s = svc(ports=[{"port": 8080, "targetPort": ""}])
    service.default(s)
    assert s["spec"]["ports"][0]["targetPort"] == 8080


def test_load_balancer_defaults() -> None:
    s = svc(type="LoadBalancer")
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example"}]}}
    service.default(s)
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    assert s["spec"]["internalTrafficPolicy"] == "Cluster"
    assert s["spec"]["allocateLoadBalancerNodePorts"] is True
    assert s["status"]["loadBalancer"]["ingress"] == [
        {"ip": "192.0.2.9", "ipMode": "VIP"},
        {"hostname": "lb.example"},
    ]


def test_external_name_gets_no_traffic_policy_or_families() -> None:
    s = svc(type="ExternalName", externalName="db.example.com", internalTrafficPolicy="Cluster")
    service.default(s)
    for field in ("internalTrafficPolicy", "externalTrafficPolicy", "ipFamilies", "ipFamilyPolicy"):
        assert field not in s["spec"]


@pytest.mark.parametrize(
    ("selector", "family", "policy", "families"),
    [
        ({"app": "web"}, "IPv4", "SingleStack", ["IPv4"]),
        ({}, "IPv4", "RequireDualStack", ["IPv4", "IPv6"]),
        ({}, "IPv6", "RequireDualStack", ["IPv6", "IPv4"]),
    ],
)
def test_headless_services_get_families_from_defaulting(
    selector: dict[str, str], family: str, policy: str, families: list[str]
) -> None:
    s = svc(clusterIP="None", selector=selector)
    service.default(s, service_cidr_family=family)
    assert (s["spec"]["ipFamilyPolicy"], s["spec"]["ipFamilies"]) == (policy, families)


def test_headful_services_get_families_from_allocation_not_defaulting() -> None:
    s = svc()
    service.default(s)
    assert "ipFamilies" not in s["spec"] and "ipFamilyPolicy" not in s["spec"]


def test_prepare_create_clears_status_and_fills_cluster_ips() -> None:
    s = svc(clusterIP="10.96.0.10")
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    service.prepare_create(s)
    assert s["status"] == {"loadBalancer": {}}
    assert s["spec"]["clusterIPs"] == ["10.96.0.10"]


# ---- prepare_update --------------------------------------------------------------------------


def stored(**spec: Any) -> dict[str, Any]:
    """A Service as the apiserver stored it after allocation."""
    s = svc(**spec)
    service.default(s)
    s["spec"].setdefault("clusterIP", "10.96.0.10")
    s["spec"].setdefault("clusterIPs", [s["spec"]["clusterIP"]])
    s["spec"].setdefault("ipFamilies", ["IPv4"])
    s["spec"].setdefault("ipFamilyPolicy", "SingleStack")
    s["status"] = {"loadBalancer": {}}
    return s


def updated(old: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """Re-apply the manifest (no allocated values) with `spec` changes, prepared."""
    new = svc(**spec)
    service.default(new)
    service.prepare_update(new, old)
    return new


def test_reapplying_a_manifest_keeps_allocated_values() -> None:
    ports = [
        {"name": "http", "port": 80, "nodePort": 30080},
        {"name": "dns", "port": 53, "nodePort": 30053},
    ]
    old = stored(type="NodePort", ports=ports)
    new = updated(
        old, type="NodePort", ports=[{"name": "dns", "port": 53}, {"name": "http", "port": 80}]
    )
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert new["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert [p["nodePort"] for p in new["spec"]["ports"]] == [30053, 30080]
    assert errors_of_update(new, old) == []


def test_an_unnamed_single_port_keeps_its_node_port() -> None:
    old = stored(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    new = updated(old, type="NodePort", ports=[{"port": 8080}])
    assert new["spec"]["ports"][0]["nodePort"] == 30080


def test_node_ports_are_matched_by_name_only_as_in_kubernetes() -> None:
    old = stored(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    new = updated(old, type="NodePort", ports=[{"name": "http", "port": 80}])
    assert "nodePort" not in new["spec"]["ports"][0]  # the allocator will pick a new one


def test_a_node_port_the_new_object_already_uses_is_not_copied() -> None:
    ports = [
        {"name": "a", "port": 80, "nodePort": 30001},
        {"name": "b", "port": 81, "nodePort": 30002},
    ]
    old = stored(type="NodePort", ports=ports)
    new = updated(
        old,
        type="NodePort",
        ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30001}],
    )
    assert "nodePort" not in new["spec"]["ports"][0]


def test_node_port_to_cluster_ip_drops_node_ports_and_traffic_policy() -> None:
    old = stored(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    service.prepare_update(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert errors_of_update(new, old) == []


def test_a_node_port_changed_while_leaving_node_port_type_is_kept_and_refused() -> None:
    old = stored(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30081
    service.prepare_update(new, old)
    assert errors_of_update(new, old) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    ]


def test_load_balancer_to_cluster_ip_drops_what_only_load_balancers_use() -> None:
    old = stored(
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        healthCheckNodePort=30999,
        ports=[{"port": 80, "nodePort": 30080}],
        loadBalancerClass="example.com/lb",
    )
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    service.prepare_update(new, old)
    dropped = ("healthCheckNodePort", "allocateLoadBalancerNodePorts", "loadBalancerClass")
    for field in (*dropped, "externalTrafficPolicy"):
        assert field not in new["spec"], field
    assert new["status"] == {"loadBalancer": {}}
    assert errors_of_update(new, old) == []


def test_to_external_name_drops_cluster_ips_and_families() -> None:
    old = stored()
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="db.example.com")
    service.default(new)
    service.prepare_update(new, old)
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        assert field not in new["spec"], field
    assert errors_of_update(new, old) == []


def test_health_check_node_port_is_kept_on_reapply() -> None:
    old = stored(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30999)
    new = updated(old, type="LoadBalancer", externalTrafficPolicy="Local")
    assert new["spec"]["healthCheckNodePort"] == 30999


def test_status_is_kept_from_the_stored_object() -> None:
    old = stored(type="LoadBalancer")
    old["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}}
    new = updated(old, type="LoadBalancer")
    assert new["status"] == old["status"]


# ---- validate_update -------------------------------------------------------------------------


def errors_of_update(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    return [str(e) for e in service.validate_update(new, old)]


def test_cluster_ip_may_not_change_once_set() -> None:
    old = stored()
    new = updated(old, clusterIP="10.96.0.11")
    assert new["spec"]["clusterIPs"] == ["10.96.0.11"]  # normalised with clusterIP
    assert errors_of_update(new, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set'
    ]


def test_cluster_ips_may_change_to_and_from_external_name() -> None:
    old = stored(type="ExternalName", externalName="db.example.com", clusterIP="", clusterIPs=[])
    del old["spec"]["clusterIP"], old["spec"]["clusterIPs"]
    del old["spec"]["ipFamilies"], old["spec"]["ipFamilyPolicy"]
    new = updated(old, clusterIP="10.96.0.20")
    assert errors_of_update(new, old) == []


def test_ip_families_may_not_change_once_set() -> None:
    old = stored()
    new = copy.deepcopy(old)
    new["spec"]["ipFamilies"] = ["IPv6"]
    assert errors_of_update(new, old) == [
        'spec.ipFamilies[0]: Invalid value: []core.IPFamily{"IPv6"}: may not change once set',
        'spec.clusterIPs[0]: Invalid value: "10.96.0.10": expected an IPv6 value as indicated '
        "by `ipFamilies[0]`",
    ]


def test_health_check_node_port_is_immutable_while_needed() -> None:
    old = stored(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30999)
    new = copy.deepcopy(old)
    new["spec"]["healthCheckNodePort"] = 30998
    assert errors_of_update(new, old) == ["spec.healthCheckNodePort: Forbidden: field is immutable"]


def test_load_balancer_class_may_not_change() -> None:
    old = stored(type="LoadBalancer", loadBalancerClass="example.com/a")
    new = copy.deepcopy(old)
    new["spec"]["loadBalancerClass"] = "example.com/b"
    assert errors_of_update(new, old) == [
        'spec.loadBalancerClass: Invalid value: "example.com/b": may not change once set'
    ]


def test_update_checks_everything_create_checks() -> None:
    old = stored()
    new = updated(old, ports=[{"port": 0}])
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in (
        errors_of_update(new, old)
    )


# ---- status -------------------------------------------------------------------------------------


def status_errors(s: dict[str, Any], *ingress: dict[str, Any]) -> list[str]:
    new = copy.deepcopy(s)
    new["status"] = {"loadBalancer": {"ingress": list(ingress)}}
    return [str(e) for e in service.validate_status_update(new, s)]


def test_load_balancer_ingress_rules() -> None:
    lb = stored(type="LoadBalancer")
    assert status_errors(lb, {"ip": "192.0.2.1", "ipMode": "VIP"}, {"hostname": "lb.example"}) == []
    assert status_errors(lb, {"ip": "x", "ipMode": "VIP"}) == [
        f'status.loadBalancer.ingress[0].ip: Invalid value: "x": {BAD_IP}'
    ]
    assert status_errors(lb, {"ip": "192.0.2.1"}) == [
        "status.loadBalancer.ingress[0].ipMode: Required value: must be specified when `ip` is set"
    ]
    assert status_errors(lb, {"hostname": "lb.example", "ipMode": "VIP"}) == [
        "status.loadBalancer.ingress[0].ipMode: Forbidden: may not be specified when `ip` is "
        "not set"
    ]
    assert status_errors(lb, {"ip": "192.0.2.1", "ipMode": "Direct"}) == [
        'status.loadBalancer.ingress[0].ipMode: Unsupported value: "Direct": supported values: '
        '"Proxy", "VIP"'
    ]
    assert status_errors(lb, {"hostname": "192.0.2.1"}) == [
        'status.loadBalancer.ingress[0].hostname: Invalid value: "192.0.2.1": must be a DNS '
        "name, not an IP address"
    ]


def test_ingress_only_for_load_balancers() -> None:
    assert status_errors(stored(), {"ip": "192.0.2.1", "ipMode": "VIP"}) == [
        "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is "
        "'LoadBalancer'"
    ]


def test_prepare_status_update_keeps_spec_and_defaults_ip_mode() -> None:
    old = stored(type="LoadBalancer")
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    service.prepare_status_update(new, old)
    assert new["spec"] == old["spec"]
    assert new["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1", "ipMode": "VIP"}]
    assert service.validate_status_update(new, old) == []
