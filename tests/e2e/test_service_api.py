"""Service rules and allocation through the HTTP API, asserted on Kubernetes' own Status.

Every rule of ValidateService and of the registry's allocation is driven with
a plain HTTP request against a real `switchboard apiserver` process, and the
answer is compared with what Kubernetes answers: the whole `message`, and
each `details.causes[]` as (reason, message, field). Whether an address or a
node port is held is observed the way a user would see it: by asking for it
in another Service.

One server (service CIDR 10.96.0.0/16, node ports 30000-32767) is shared by
the module; a second, with a /29 and four node ports, is run out of both.
Tests that ask for a specific clusterIP or nodePort take fresh values from
the static bands (10.96.0.10-10.96.0.254, 30000-30085), which dynamic
allocation leaves alone while the upper bands have room, so tests sharing
the server never take each other's values.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.apiserver_process import ApiServer, Reply, running_apiserver

pytestmark = pytest.mark.e2e

JSON = "application/json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_IP = "10.96.0.1"
NODE_PORTS = range(30000, 32768)
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PORT_80 = [{"port": 80}]

_CAUSE_REASONS = {
    "Required value": "FieldValueRequired",
    "Invalid value": "FieldValueInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
}

_fresh_ips = (f"10.96.0.{n}" for n in range(10, 255))
_fresh_node_ports = iter(range(30000, 30086))


def fresh_ip() -> str:
    """A clusterIP in the static band that no other test asks for."""
    return next(_fresh_ips)


def fresh_node_port() -> int:
    """A nodePort in the static band that no other test asks for."""
    return next(_fresh_node_ports)


# ---- the servers and a small client ---------------------------------------------------------


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as srv:
        yield srv


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server whose ranges fill up: 10.97.0.1-10.97.0.6 and node ports 30000-30003."""
    with running_apiserver(
        tmp_path_factory.mktemp("tiny"),
        "--service-cluster-ip-range",
        "10.97.0.0/29",
        "--service-node-port-range",
        "30000-30003",
    ) as srv:
        yield srv


class Services:
    """JSON requests on the Services of one namespace."""

    def __init__(self, srv: ApiServer, namespace: str) -> None:
        self.srv = srv
        self.namespace = namespace
        self.path = f"/api/v1/namespaces/{namespace}/services"

    def _send(self, method: str, path: str, body: Any = None, content_type: str = JSON) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        return self.srv.request(method, path, data, {"Content-Type": content_type})

    def create(self, body: dict[str, Any], *, dry_run: bool = False) -> Reply:
        return self._send("POST", self.path + ("?dryRun=All" if dry_run else ""), body)

    def get(self, name: str) -> Reply:
        return self._send("GET", f"{self.path}/{name}")

    def put(self, body: dict[str, Any]) -> Reply:
        return self._send("PUT", f"{self.path}/{body['metadata']['name']}", body)

    def patch(self, name: str, patch: dict[str, Any], content_type: str = MERGE) -> Reply:
        return self._send("PATCH", f"{self.path}/{name}", patch, content_type)

    def put_status(self, body: dict[str, Any]) -> Reply:
        return self._send("PUT", f"{self.path}/{body['metadata']['name']}/status", body)

    def patch_status(self, name: str, patch: dict[str, Any]) -> Reply:
        return self._send("PATCH", f"{self.path}/{name}/status", patch, MERGE)

    def delete(self, name: str) -> Reply:
        return self._send("DELETE", f"{self.path}/{name}")

    # What a user learns by asking for a value in another Service.

    def holds_ip(self, ip: str) -> bool:
        name = "probe-" + uuid.uuid4().hex[:8]
        reply = self.create(service(name, clusterIP=ip, ports=PORT_80))
        if reply.status == 201:
            assert self.delete(name).status == 200
            return False
        assert_invalid(
            reply,
            name,
            (
                "spec.clusterIPs",
                f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: '
                "provided IP is already allocated",
            ),
        )
        return True

    def holds_node_port(self, port: int) -> bool:
        name = "probe-" + uuid.uuid4().hex[:8]
        reply = self.create(service(name, type="NodePort", ports=[{"port": 80, "nodePort": port}]))
        if reply.status == 201:
            assert self.delete(name).status == 200
            return False
        assert_invalid(
            reply,
            name,
            (
                "spec.ports[0].nodePort",
                f"Invalid value: {port}: provided port is already allocated",
            ),
        )
        return True


def new_namespace(srv: ApiServer) -> str:
    name = "svc-" + uuid.uuid4().hex[:10]
    body = json.dumps({"metadata": {"name": name}}).encode()
    reply = srv.request("POST", "/api/v1/namespaces", body, {"Content-Type": JSON})
    assert reply.status == 201, reply.body
    return name


@pytest.fixture
def api(apiserver: ApiServer) -> Services:
    return Services(apiserver, new_namespace(apiserver))


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def created(reply: Reply) -> dict[str, Any]:
    assert reply.status == 201, reply.body
    obj: dict[str, Any] = reply.json()
    return obj


def ok(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    obj: dict[str, Any] = reply.json()
    return obj


def assert_invalid(reply: Reply, name: str, *causes: tuple[str, str]) -> None:
    """A 422 Invalid Status naming each (field, message), worded as Kubernetes words it."""
    assert reply.status == 422, reply.body
    lines = [f"{field}: {message}" for field, message in causes]
    joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    assert reply.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Service "{name}" is invalid: {joined}',
        "reason": "Invalid",
        "details": {
            "name": name,
            "kind": "Service",
            "causes": [
                {
                    "reason": _CAUSE_REASONS[message.split(":")[0]],
                    "message": message,
                    "field": field,
                }
                for field, message in causes
            ],
        },
        "code": 422,
    }


def assert_internal_error(reply: Reply, detail: str) -> None:
    """A 500 InternalError Status, as Kubernetes' NewInternalError builds it."""
    assert reply.status == 500, reply.body
    assert reply.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {detail}",
        "reason": "InternalError",
        "details": {"causes": [{"message": detail}]},
        "code": 500,
    }


def dynamic_ip(spec: dict[str, Any]) -> str:
    """The clusterIP the server picked, checked to be a usable address of the range."""
    ip = spec["clusterIP"]
    assert ipaddress.ip_address(ip) in SERVICE_CIDR
    assert ip not in (KUBERNETES_IP, "10.96.0.0", "10.96.255.255")
    return str(ip)


def dynamic_node_port(port: dict[str, Any]) -> int:
    node_port = port["nodePort"]
    assert node_port in NODE_PORTS
    return int(node_port)


# ---- every rule of ValidateService, one request each --------------------------------------

DNS_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
QUALIFIED_NAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
PORT_RANGE = "must be between 1 and 65535, inclusive"
ONLY_LOAD_BALANCER = "Forbidden: may only be used when `type` is 'LoadBalancer'"
NOT_FOR_EXTERNAL_NAME = "Forbidden: may not be set for ExternalName services"

RULES = [
    pytest.param(
        {"selector": {"app": "web"}},
        [("spec.ports", "Required value")],
        id="a ClusterIP service needs ports",
    ),
    pytest.param(
        {"ports": [{"port": 80}, {"port": 81}]},
        [("spec.ports[0].name", "Required value"), ("spec.ports[1].name", "Required value")],
        id="every port is named when there are several",
    ),
    pytest.param(
        {"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]},
        [("spec.ports[1].name", 'Duplicate value: "http"')],
        id="port names are unique",
    ),
    pytest.param(
        {"ports": [{"name": "HTTP_1", "port": 80}]},
        [("spec.ports[0].name", f'Invalid value: "HTTP_1": {DNS_LABEL}')],
        id="a port name is a DNS label",
    ),
    pytest.param(
        {"ports": [{"port": 0}]},
        [
            ("spec.ports[0].port", f"Invalid value: 0: {PORT_RANGE}"),
            ("spec.ports[0].targetPort", f"Invalid value: 0: {PORT_RANGE}"),
        ],
        id="port 0 is out of range and so is the targetPort defaulted from it",
    ),
    pytest.param(
        {"ports": [{"port": 65536, "targetPort": 8080}]},
        [("spec.ports[0].port", f"Invalid value: 65536: {PORT_RANGE}")],
        id="port 65536 is out of range",
    ),
    pytest.param(
        {"ports": [{"port": 80, "protocol": "HTTP"}]},
        [
            (
                "spec.ports[0].protocol",
                'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
            )
        ],
        id="the protocol is TCP UDP or SCTP",
    ),
    pytest.param(
        {"ports": [{"port": 80, "targetPort": 70000}]},
        [("spec.ports[0].targetPort", f"Invalid value: 70000: {PORT_RANGE}")],
        id="a numeric targetPort is a port number",
    ),
    pytest.param(
        {"ports": [{"port": 80, "targetPort": "8080"}]},
        [
            (
                "spec.ports[0].targetPort",
                'Invalid value: "8080": must contain at least one letter (a-z)',
            )
        ],
        id="a string targetPort is a port name with a letter",
    ),
    pytest.param(
        {"ports": [{"port": 80, "targetPort": "a-very-long-port"}]},
        [
            (
                "spec.ports[0].targetPort",
                'Invalid value: "a-very-long-port": must be no more than 15 characters',
            )
        ],
        id="a targetPort name has at most 15 characters",
    ),
    pytest.param(
        {"ports": [{"port": 80, "targetPort": "web--http"}]},
        [
            (
                "spec.ports[0].targetPort",
                'Invalid value: "web--http": must not contain consecutive hyphens',
            )
        ],
        id="a targetPort name has no consecutive hyphens",
    ),
    pytest.param(
        {"ports": [{"port": 80, "appProtocol": "not a name"}]},
        [("spec.ports[0].appProtocol", f'Invalid value: "not a name": {QUALIFIED_NAME}')],
        id="an appProtocol is a qualified name",
    ),
    pytest.param(
        {"ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53}]},
        [
            (
                "spec.ports[1]",
                'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
                "AppProtocol:(*string)(nil), Port:53, "
                'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}',
            )
        ],
        id="the same protocol and port twice",
    ),
    pytest.param(
        {"ports": [{"port": 80, "nodePort": 30100}]},
        [("spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")],
        id="a ClusterIP service has no nodePort",
    ),
    pytest.param(
        {
            "type": "NodePort",
            "ports": [
                {"name": "a", "port": 80, "nodePort": 30100},
                {"name": "b", "port": 81, "nodePort": 30100},
            ],
        },
        [("spec.ports[1].nodePort", "Duplicate value: 30100")],
        id="the same protocol and nodePort twice",
    ),
    pytest.param(
        {"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]},
        [
            (
                "spec.ports[0].nodePort",
                "Invalid value: 40000: provided port is not in the valid range. "
                "The range of valid ports is 30000-32767",
            )
        ],
        id="a nodePort outside the node port range",
    ),
    pytest.param(
        {"clusterIP": "10.96.0.300", "ports": PORT_80},
        [
            (
                "spec.clusterIPs[0]",
                'Invalid value: "10.96.0.300": must be a valid IP address, '
                "(e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        ],
        id="a clusterIP that is not an IP address",
    ),
    pytest.param(
        {"clusterIP": "10.1.1.1", "ports": PORT_80},
        [
            (
                "spec.clusterIPs",
                'Invalid value: []string{"10.1.1.1"}: failed to allocate IP 10.1.1.1: the provided '
                "IP (10.1.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/16",
            )
        ],
        id="a clusterIP outside the service CIDR",
    ),
    pytest.param(
        {"clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.3"], "ports": PORT_80},
        [
            (
                "spec.clusterIPs",
                'Invalid value: []string{"10.96.0.3"}: first value must match `clusterIP`',
            )
        ],
        id="clusterIPs that disagree with clusterIP",
    ),
    pytest.param(
        {"type": "NodePort", "clusterIP": "None", "ports": PORT_80},
        [
            (
                "spec.clusterIPs[0]",
                "Invalid value: \"None\": may not be set to 'None' for NodePort services",
            )
        ],
        id="a NodePort service is not headless",
    ),
    pytest.param(
        {"type": "LoadBalancer", "clusterIP": "None", "ports": PORT_80},
        [
            (
                "spec.clusterIPs[0]",
                "Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
            )
        ],
        id="a LoadBalancer service is not headless",
    ),
    pytest.param(
        {"type": "ExternalName"},
        [("spec.externalName", "Required value")],
        id="an ExternalName service needs externalName",
    ),
    pytest.param(
        {"type": "ExternalName", "externalName": "db_primary.example.com"},
        [("spec.externalName", f'Invalid value: "db_primary.example.com": {DNS_SUBDOMAIN}')],
        id="an externalName is a DNS subdomain",
    ),
    pytest.param(
        {"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.0.4"},
        [("spec.clusterIPs", NOT_FOR_EXTERNAL_NAME)],
        id="an ExternalName service has no clusterIP",
    ),
    pytest.param(
        {
            "type": "ExternalName",
            "externalName": "db.example.com",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        [
            ("spec.ipFamilies", NOT_FOR_EXTERNAL_NAME),
            ("spec.ipFamilyPolicy", NOT_FOR_EXTERNAL_NAME),
        ],
        id="an ExternalName service has no IP families",
    ),
    pytest.param(
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
            "ports": PORT_80,
        },
        [
            (
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "Invalid value: 0: must be greater than 0 and less than 86400",
            )
        ],
        id="a ClientIP affinity timeout of 0",
    ),
    pytest.param(
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
            "ports": PORT_80,
        },
        [
            (
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "Invalid value: 86401: must be greater than 0 and less than 86400",
            )
        ],
        id="a ClientIP affinity timeout above a day",
    ),
    pytest.param(
        {"sessionAffinity": "Sticky", "ports": PORT_80},
        [
            (
                "spec.sessionAffinity",
                'Unsupported value: "Sticky": supported values: "ClientIP", "None"',
            )
        ],
        id="sessionAffinity is ClientIP or None",
    ),
    pytest.param(
        {"externalTrafficPolicy": "Local", "ports": PORT_80},
        [
            (
                "spec.externalTrafficPolicy",
                'Invalid value: "Local": may only be set for externally-accessible services',
            )
        ],
        id="externalTrafficPolicy on a ClusterIP service",
    ),
    pytest.param(
        {"type": "NodePort", "externalTrafficPolicy": "Nearest", "ports": PORT_80},
        [
            (
                "spec.externalTrafficPolicy",
                'Unsupported value: "Nearest": supported values: "Cluster", "Local"',
            )
        ],
        id="externalTrafficPolicy is Cluster or Local",
    ),
    pytest.param(
        {"internalTrafficPolicy": "Nearest", "ports": PORT_80},
        [
            (
                "spec.internalTrafficPolicy",
                'Unsupported value: "Nearest": supported values: "Cluster", "Local"',
            )
        ],
        id="internalTrafficPolicy is Cluster or Local",
    ),
    pytest.param(
        {"type": "NodePort", "healthCheckNodePort": 30500, "ports": PORT_80},
        [
            (
                "spec.healthCheckNodePort",
                "Invalid value: 30500: may only be set when `type` is 'LoadBalancer' and "
                "`externalTrafficPolicy` is 'Local'",
            )
        ],
        id="healthCheckNodePort on a NodePort service",
    ),
    pytest.param(
        {"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": PORT_80},
        [("spec.LoadBalancerSourceRanges", ONLY_LOAD_BALANCER)],
        id="loadBalancerSourceRanges on a ClusterIP service",
    ),
    pytest.param(
        {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"], "ports": PORT_80},
        [
            (
                "spec.LoadBalancerSourceRanges[0]",
                'Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
                "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )
        ],
        id="a load balancer source range is a CIDR",
    ),
    pytest.param(
        {"type": "NodePort", "allocateLoadBalancerNodePorts": False, "ports": PORT_80},
        [("spec.allocateLoadBalancerNodePorts", ONLY_LOAD_BALANCER)],
        id="allocateLoadBalancerNodePorts on a NodePort service",
    ),
    pytest.param(
        {"loadBalancerClass": "example.com/lb", "ports": PORT_80},
        [("spec.loadBalancerClass", ONLY_LOAD_BALANCER)],
        id="loadBalancerClass on a ClusterIP service",
    ),
    pytest.param(
        {"type": "LoadBalancer", "loadBalancerClass": "Not Valid", "ports": PORT_80},
        [("spec.loadBalancerClass", f'Invalid value: "Not Valid": {QUALIFIED_NAME}')],
        id="a loadBalancerClass is a qualified name",
    ),
    pytest.param(
        {"ipFamilyPolicy": "RequireDualStack", "ports": PORT_80},
        [
            (
                "spec.ipFamilyPolicy",
                'Invalid value: "RequireDualStack": this cluster is not configured for '
                "dual-stack services",
            )
        ],
        id="RequireDualStack on a single-stack cluster",
    ),
    pytest.param(
        {"ipFamilies": ["IPv6"], "ports": PORT_80},
        [("spec.ipFamilies[0]", 'Invalid value: "IPv6": not configured on this cluster')],
        id="an IP family the cluster does not serve",
    ),
    pytest.param(
        {"clusterIP": "fd00::10", "ports": PORT_80},
        [
            (
                "spec.clusterIPs[0]",
                'Invalid value: []string{"fd00::10"}: IPv6 is not configured on this cluster',
            )
        ],
        id="a clusterIP of a family the cluster does not serve",
    ),
    pytest.param(
        {"ipFamilyPolicy": "DualStack", "ports": PORT_80},
        [
            (
                "spec.ipFamilyPolicy",
                'Unsupported value: "DualStack": supported values: "PreferDualStack", '
                '"RequireDualStack", "SingleStack"',
            )
        ],
        id="ipFamilyPolicy is one of the three policies",
    ),
    pytest.param(
        {"type": "Ingress", "ports": PORT_80},
        [
            (
                "spec.type",
                'Unsupported value: "Ingress": supported values: "ClusterIP", "ExternalName", '
                '"LoadBalancer", "NodePort"',
            )
        ],
        id="the type is one of the four",
    ),
]


@pytest.mark.parametrize(("spec", "causes"), RULES)
def test_a_service_breaking_a_rule_is_refused_with_kubernetes_message_and_field(
    api: Services, spec: dict[str, Any], causes: list[tuple[str, str]]
) -> None:
    assert_invalid(api.create(service("web", **spec)), "web", *causes)

    assert api.get("web").status == 404


def test_a_service_name_is_a_dns_1035_label(api: Services) -> None:
    message = (
        'Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character, and end with an alphanumeric "
        "character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')"
    )

    assert_invalid(api.create(service("1web", ports=PORT_80)), "1web", ("metadata.name", message))


def test_a_cluster_ip_held_by_another_service_is_already_allocated(api: Services) -> None:
    ip = fresh_ip()
    created(api.create(service("first", clusterIP=ip, ports=PORT_80)))

    reply = api.create(service("second", clusterIP=ip, ports=PORT_80))

    assert_invalid(
        reply,
        "second",
        (
            "spec.clusterIPs",
            f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: '
            "provided IP is already allocated",
        ),
    )


def test_a_node_port_held_by_another_service_is_already_allocated(api: Services) -> None:
    port = fresh_node_port()
    created(api.create(service("first", type="NodePort", ports=[{"port": 80, "nodePort": port}])))

    reply = api.create(
        service(
            "second",
            type="LoadBalancer",
            ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": port}],
        )
    )

    assert_invalid(
        reply,
        "second",
        ("spec.ports[0].nodePort", f"Invalid value: {port}: provided port is already allocated"),
    )


def test_a_health_check_node_port_held_by_another_service_is_an_internal_error(
    api: Services,
) -> None:
    port = fresh_node_port()
    created(api.create(service("first", type="NodePort", ports=[{"port": 80, "nodePort": port}])))

    reply = api.create(
        service(
            "second",
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            healthCheckNodePort=port,
            ports=PORT_80,
        )
    )

    assert_internal_error(
        reply,
        f"failed to allocate requested HealthCheck NodePort {port}: "
        "provided port is already allocated",
    )
    assert api.get("second").status == 404


def test_the_first_address_of_the_range_belongs_to_default_kubernetes(
    apiserver: ApiServer, api: Services
) -> None:
    kubernetes = ok(Services(apiserver, "default").get("kubernetes"))

    assert kubernetes["spec"]["clusterIP"] == KUBERNETES_IP
    assert kubernetes["spec"]["clusterIPs"] == [KUBERNETES_IP]
    assert kubernetes["spec"]["type"] == "ClusterIP"
    assert kubernetes["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": apiserver.port}
    ]
    assert api.holds_ip(KUBERNETES_IP)


# ---- defaults ------------------------------------------------------------------------------


def test_a_cluster_ip_service_is_defaulted_as_kubernetes_defaults_it(api: Services) -> None:
    svc = created(api.create(service("web", selector={"app": "web"}, ports=PORT_80)))

    ip = dynamic_ip(svc["spec"])
    assert svc["spec"] == {
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
        "clusterIP": ip,
        "clusterIPs": [ip],
    }
    assert svc["status"] == {"loadBalancer": {}}


def test_a_node_port_service_gets_a_node_port_and_cluster_traffic_policy(api: Services) -> None:
    svc = created(
        api.create(service("web", type="NodePort", ports=[{"port": 80, "targetPort": "http"}]))
    )

    ip, (port,) = dynamic_ip(svc["spec"]), svc["spec"]["ports"]
    assert svc["spec"] == {
        "ports": [
            {
                "port": 80,
                "protocol": "TCP",
                "targetPort": "http",
                "nodePort": dynamic_node_port(port),
            }
        ],
        "type": "NodePort",
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
        "clusterIP": ip,
        "clusterIPs": [ip],
    }


def test_a_load_balancer_service_allocates_node_ports_by_default(api: Services) -> None:
    svc = created(api.create(service("web", type="LoadBalancer", ports=PORT_80)))

    ip, (port,) = dynamic_ip(svc["spec"]), svc["spec"]["ports"]
    assert svc["spec"] == {
        "ports": [
            {"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": dynamic_node_port(port)}
        ],
        "type": "LoadBalancer",
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": True,
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
        "clusterIP": ip,
        "clusterIPs": [ip],
    }
    assert svc["status"] == {"loadBalancer": {}}


def test_an_external_name_service_gets_no_address_and_no_families(api: Services) -> None:
    svc = created(api.create(service("db", type="ExternalName", externalName="db.example.com.")))

    assert svc["spec"] == {
        "type": "ExternalName",
        "externalName": "db.example.com.",
        "sessionAffinity": "None",
    }


def test_a_headless_service_with_a_selector_is_single_stack(api: Services) -> None:
    svc = created(api.create(service("web", clusterIP="None", selector={"app": "web"})))

    assert svc["spec"] == {
        "clusterIP": "None",
        "clusterIPs": ["None"],
        "selector": {"app": "web"},
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }


def test_a_headless_service_without_a_selector_requires_both_families(api: Services) -> None:
    svc = created(api.create(service("web", clusterIP="None")))

    assert svc["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert svc["spec"]["clusterIPs"] == ["None"]


def test_prefer_dual_stack_on_a_single_stack_cluster_gets_one_family(api: Services) -> None:
    svc = created(api.create(service("web", ipFamilyPolicy="PreferDualStack", ports=PORT_80)))

    assert svc["spec"]["ipFamilyPolicy"] == "PreferDualStack"
    assert svc["spec"]["ipFamilies"] == ["IPv4"]
    assert svc["spec"]["clusterIPs"] == [dynamic_ip(svc["spec"])]


def test_client_ip_affinity_without_a_timeout_defaults_to_10800_seconds(api: Services) -> None:
    svc = created(api.create(service("web", sessionAffinity="ClientIP", ports=PORT_80)))

    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_client_ip_affinity_keeps_a_timeout_of_a_whole_day(api: Services) -> None:
    config = {"clientIP": {"timeoutSeconds": 86400}}
    svc = created(
        api.create(
            service("web", sessionAffinity="ClientIP", sessionAffinityConfig=config, ports=PORT_80)
        )
    )

    assert svc["spec"]["sessionAffinityConfig"] == config


def test_no_affinity_drops_an_affinity_config(api: Services) -> None:
    config = {"clientIP": {"timeoutSeconds": 60}}
    svc = created(
        api.create(
            service("web", sessionAffinity="None", sessionAffinityConfig=config, ports=PORT_80)
        )
    )

    assert svc["spec"]["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in svc["spec"]


def test_tcp_and_udp_on_one_port_number_are_accepted_and_share_one_node_port(
    api: Services,
) -> None:
    ports = [{"name": "dns", "port": 53}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]

    svc = created(api.create(service("dns", type="NodePort", ports=ports)))

    tcp, udp = svc["spec"]["ports"]
    assert (tcp["protocol"], udp["protocol"]) == ("TCP", "UDP")
    assert tcp["nodePort"] == udp["nodePort"] == dynamic_node_port(tcp)


def test_a_local_load_balancer_gets_a_health_check_node_port(api: Services) -> None:
    svc = created(
        api.create(
            service("web", type="LoadBalancer", externalTrafficPolicy="Local", ports=PORT_80)
        )
    )

    health = svc["spec"]["healthCheckNodePort"]
    assert health in NODE_PORTS
    assert health != svc["spec"]["ports"][0]["nodePort"]
    assert api.holds_node_port(health)


def test_a_load_balancer_without_node_port_allocation_gets_only_the_ports_it_asks_for(
    api: Services,
) -> None:
    port = fresh_node_port()
    ports = [{"name": "http", "port": 80, "nodePort": port}, {"name": "admin", "port": 8080}]

    svc = created(
        api.create(
            service("web", type="LoadBalancer", allocateLoadBalancerNodePorts=False, ports=ports)
        )
    )

    http, admin = svc["spec"]["ports"]
    assert http["nodePort"] == port
    assert "nodePort" not in admin
    assert svc["spec"]["allocateLoadBalancerNodePorts"] is False


# ---- type changes in every direction -------------------------------------------------------


def _type_change_patch(old: str, new: str, ip: str, node_port: int, health: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": new}
    if new == "ExternalName":
        spec["externalName"] = "db.example.com"
    if old == "ExternalName":
        spec["externalName"] = None
        spec["clusterIP"] = ip  # from ExternalName, ask for a specific address
    if new in NODE_PORT_TYPES and old not in NODE_PORT_TYPES:
        spec["ports"] = [{"name": "http", "port": 80, "nodePort": node_port}]
    if new == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Local"
        spec["healthCheckNodePort"] = health
    return {"spec": spec}


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old, new in itertools.product(TYPES, TYPES) if old != new],
    ids=lambda value: str(value),
)
def test_a_type_change_makes_and_releases_allocations_as_kubernetes_does(
    api: Services, old: str, new: str
) -> None:
    ip, node_port, health = fresh_ip(), fresh_node_port(), fresh_node_port()
    spec: dict[str, Any] = {
        "type": old,
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80}],
    }
    if old == "ExternalName":
        spec["externalName"] = "db.example.com"
    else:
        spec["clusterIP"] = ip
    if old in NODE_PORT_TYPES:
        spec["ports"][0]["nodePort"] = node_port
    if old == "LoadBalancer":
        spec.update(externalTrafficPolicy="Local", healthCheckNodePort=health)
    created(api.create(service("web", **spec)))
    if old == "LoadBalancer":
        ok(
            api.patch_status(
                "web", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
            )
        )

    changed = ok(api.patch("web", _type_change_patch(old, new, ip, node_port, health)))

    got = ok(api.get("web"))
    assert got == changed
    spec = got["spec"]
    assert spec["type"] == new
    if new == "ExternalName":
        assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(spec)
    else:
        assert (spec["clusterIP"], spec["clusterIPs"]) == (ip, [ip])
        assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])
    (port,) = spec["ports"]
    if new in NODE_PORT_TYPES:
        assert port["nodePort"] == node_port
        local = "LoadBalancer" in (old, new)
        assert spec["externalTrafficPolicy"] == ("Local" if local else "Cluster")
    else:
        assert "nodePort" not in port
        assert "externalTrafficPolicy" not in spec
    if new == "LoadBalancer":
        assert spec["healthCheckNodePort"] == health
        assert spec["allocateLoadBalancerNodePorts"] is True
    else:
        assert "healthCheckNodePort" not in spec
        assert "allocateLoadBalancerNodePorts" not in spec
    assert got["status"] == {"loadBalancer": {}}
    # What is held now is exactly what the new type needs; the rest went back to the pool.
    assert api.holds_ip(ip) == (new != "ExternalName")
    assert api.holds_node_port(node_port) == (new in NODE_PORT_TYPES)
    assert api.holds_node_port(health) == (new == "LoadBalancer")


def test_a_node_port_service_turned_cluster_ip_with_its_ports_sent_back_drops_them(
    api: Services,
) -> None:
    port = fresh_node_port()
    svc = created(
        api.create(service("web", type="NodePort", ports=[{"port": 80, "nodePort": port}]))
    )
    svc["spec"]["type"] = "ClusterIP"  # the object read back, nodePort and policy still in it

    changed = ok(api.put(svc))

    assert "nodePort" not in changed["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in changed["spec"]
    assert not api.holds_node_port(port)


# ---- re-applying a manifest ----------------------------------------------------------------


def test_a_put_without_cluster_ip_or_node_ports_keeps_them_matched_by_port_name(
    api: Services,
) -> None:
    ports = [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]
    svc = created(api.create(service("web", type="NodePort", ports=ports)))
    node_ports = {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]}
    manifest = copy.deepcopy(svc)
    del manifest["spec"]["clusterIP"], manifest["spec"]["clusterIPs"]
    manifest["spec"]["ports"] = [
        {"name": "metrics", "port": 9090, "targetPort": 9091},
        {"name": "http", "port": 80},
    ]

    updated = ok(api.put(manifest))

    assert updated["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert updated["spec"]["clusterIPs"] == svc["spec"]["clusterIPs"]
    assert {p["name"]: p["nodePort"] for p in updated["spec"]["ports"]} == node_ports
    assert updated["spec"]["ports"][0]["targetPort"] == 9091


def test_a_patch_that_empties_cluster_ip_keeps_it(api: Services) -> None:
    svc = created(api.create(service("web", ports=PORT_80)))

    updated = ok(api.patch("web", {"spec": {"clusterIP": "", "clusterIPs": None}}))

    assert updated["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert updated["spec"]["clusterIPs"] == svc["spec"]["clusterIPs"]


def test_a_headless_service_sent_back_without_cluster_ip_stays_headless(api: Services) -> None:
    svc = created(api.create(service("web", clusterIP="None", selector={"app": "web"})))
    del svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"]

    updated = ok(api.put(svc))

    assert updated["spec"]["clusterIP"] == "None"
    assert updated["spec"]["clusterIPs"] == ["None"]


def test_a_strategic_patch_adding_a_port_keeps_the_node_port_of_the_others(
    api: Services,
) -> None:
    svc = created(api.create(service("web", type="NodePort", ports=[{"name": "http", "port": 80}])))
    http_node_port = svc["spec"]["ports"][0]["nodePort"]

    updated = ok(
        api.patch("web", {"spec": {"ports": [{"name": "admin", "port": 8080}]}}, STRATEGIC)
    )

    by_name = {p["name"]: p["nodePort"] for p in updated["spec"]["ports"]}
    assert set(by_name) == {"http", "admin"}
    assert by_name["http"] == http_node_port
    assert by_name["admin"] in NODE_PORTS
    assert by_name["admin"] != http_node_port


def test_renaming_a_port_gets_it_a_new_node_port_and_releases_the_old_one(api: Services) -> None:
    port = fresh_node_port()
    svc = created(
        api.create(
            service("web", type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": port}])
        )
    )
    svc["spec"]["ports"] = [{"name": "web", "port": 80}]

    updated = ok(api.put(svc))

    (renamed,) = updated["spec"]["ports"]
    assert dynamic_node_port(renamed) != port
    assert not api.holds_node_port(port)
    assert api.holds_node_port(renamed["nodePort"])


# ---- what may not change -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [["clusterIP"], ["clusterIP", "clusterIPs"]],
    ids=["clusterIP alone", "clusterIP and clusterIPs"],
)
def test_a_cluster_ip_may_not_change_once_set(api: Services, fields: list[str]) -> None:
    ip, other = fresh_ip(), fresh_ip()
    created(api.create(service("web", clusterIP=ip, ports=PORT_80)))
    patch = {"clusterIP": other, "clusterIPs": [other]}

    reply = api.patch("web", {"spec": {field: patch[field] for field in fields}})

    assert_invalid(
        reply,
        "web",
        ("spec.clusterIPs[0]", f'Invalid value: []string{{"{other}"}}: may not change once set'),
    )
    assert api.holds_ip(ip)
    assert not api.holds_ip(other)


def test_a_load_balancer_class_may_not_change_once_set(api: Services) -> None:
    created(
        api.create(
            service("web", type="LoadBalancer", loadBalancerClass="a.example.com/lb", ports=PORT_80)
        )
    )

    reply = api.patch("web", {"spec": {"loadBalancerClass": "b.example.com/lb"}})

    assert_invalid(
        reply,
        "web",
        ("spec.loadBalancerClass", 'Invalid value: "b.example.com/lb": may not change once set'),
    )


def test_a_health_check_node_port_is_immutable(api: Services) -> None:
    health = fresh_node_port()
    created(
        api.create(
            service(
                "web",
                type="LoadBalancer",
                externalTrafficPolicy="Local",
                healthCheckNodePort=health,
                ports=PORT_80,
            )
        )
    )

    reply = api.patch("web", {"spec": {"healthCheckNodePort": fresh_node_port()}})

    assert_invalid(reply, "web", ("spec.healthCheckNodePort", "Forbidden: field is immutable"))
    assert api.holds_node_port(health)


def test_a_local_load_balancer_turned_cluster_releases_its_health_check_node_port(
    api: Services,
) -> None:
    health = fresh_node_port()
    created(
        api.create(
            service(
                "web",
                type="LoadBalancer",
                externalTrafficPolicy="Local",
                healthCheckNodePort=health,
                ports=PORT_80,
            )
        )
    )

    updated = ok(api.patch("web", {"spec": {"externalTrafficPolicy": "Cluster"}}))

    assert "healthCheckNodePort" not in updated["spec"]
    assert not api.holds_node_port(health)


# ---- the status subresource ----------------------------------------------------------------


def test_a_status_write_changes_only_status_load_balancer(api: Services) -> None:
    svc = created(api.create(service("web", type="LoadBalancer", ports=PORT_80)))
    body = copy.deepcopy(svc)
    body["spec"]["type"] = "ClusterIP"
    body["spec"]["ports"] = [{"port": 81}]
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}

    written = ok(api.put_status(body))

    assert written["spec"] == svc["spec"]
    assert written["status"] == {
        "loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}
    }
    assert ok(api.get("web"))["status"] == written["status"]


def test_a_write_to_the_service_itself_leaves_its_status_alone(api: Services) -> None:
    created(api.create(service("web", type="LoadBalancer", ports=PORT_80)))
    ingress = {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}
    ok(api.patch_status("web", {"status": ingress}))

    updated = ok(
        api.patch(
            "web",
            {
                "metadata": {"labels": {"tier": "front"}},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}},
            },
        )
    )

    assert updated["metadata"]["labels"] == {"tier": "front"}
    assert updated["status"] == ingress


def test_load_balancer_ingress_on_a_cluster_ip_service_is_forbidden(api: Services) -> None:
    created(api.create(service("web", ports=PORT_80)))

    reply = api.patch_status(
        "web", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
    )

    assert_invalid(
        reply,
        "web",
        (
            "status.loadBalancer.ingress",
            "Forbidden: may only be used when `spec.type` is 'LoadBalancer'",
        ),
    )


def test_each_invalid_load_balancer_ingress_is_named(api: Services) -> None:
    created(api.create(service("web", type="LoadBalancer", ports=PORT_80)))
    ingress = [
        {"ip": "192.0.2.10", "ipMode": "Tunnel"},
        {"hostname": "192.0.2.11"},
        {"hostname": "lb.example.com", "ipMode": "Proxy"},
        {"ip": "192.0.2.300"},
    ]

    reply = api.patch_status("web", {"status": {"loadBalancer": {"ingress": ingress}}})

    assert_invalid(
        reply,
        "web",
        (
            "status.loadBalancer.ingress[0].ipMode",
            'Unsupported value: "Tunnel": supported values: "Proxy", "VIP"',
        ),
        (
            "status.loadBalancer.ingress[1].hostname",
            'Invalid value: "192.0.2.11": must be a DNS name, not an IP address',
        ),
        (
            "status.loadBalancer.ingress[2].ipMode",
            "Forbidden: may not be specified when `ip` is not set",
        ),
        (
            "status.loadBalancer.ingress[3].ip",
            'Invalid value: "192.0.2.300": must be a valid IP address, '
            "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
    )


# ---- giving addresses back -----------------------------------------------------------------


def test_deleting_a_service_releases_its_cluster_ip_and_node_ports(api: Services) -> None:
    ip, node_port, health = fresh_ip(), fresh_node_port(), fresh_node_port()
    created(
        api.create(
            service(
                "web",
                type="LoadBalancer",
                clusterIP=ip,
                externalTrafficPolicy="Local",
                healthCheckNodePort=health,
                ports=[{"port": 80, "nodePort": node_port}],
            )
        )
    )
    assert api.holds_ip(ip)

    ok(api.delete("web"))

    assert not api.holds_ip(ip)
    assert not api.holds_node_port(node_port)
    assert not api.holds_node_port(health)


def test_a_dry_run_create_shows_the_allocation_but_holds_nothing(api: Services) -> None:
    ip, node_port = fresh_ip(), fresh_node_port()
    body = service(
        "web", type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": node_port}]
    )

    shown = created(api.create(body, dry_run=True))

    assert shown["spec"]["clusterIPs"] == [ip]
    assert shown["spec"]["ports"][0]["nodePort"] == node_port
    assert api.get("web").status == 404
    assert not api.holds_ip(ip)
    assert not api.holds_node_port(node_port)


def test_a_service_held_by_a_finalizer_keeps_its_address_until_it_is_gone(api: Services) -> None:
    ip = fresh_ip()
    body = service("web", clusterIP=ip, ports=PORT_80)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    created(api.create(body))

    deleting = ok(api.delete("web"))
    assert deleting["metadata"]["deletionTimestamp"]
    assert api.holds_ip(ip)

    ok(api.patch("web", {"metadata": {"finalizers": None}}))

    assert api.get("web").status == 404
    assert not api.holds_ip(ip)


def test_deleting_a_namespace_releases_the_addresses_of_its_services(
    apiserver: ApiServer, api: Services
) -> None:
    doomed = Services(apiserver, new_namespace(apiserver))
    ip, node_port = fresh_ip(), fresh_node_port()
    created(
        doomed.create(
            service(
                "web", type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": node_port}]
            )
        )
    )

    deleted = apiserver.request("DELETE", f"/api/v1/namespaces/{doomed.namespace}")
    assert deleted.status == 200, deleted.body

    deadline = time.monotonic() + 20
    while doomed.get("web").status != 404:
        assert time.monotonic() < deadline, "the namespace's service was not deleted within 20s"
        time.sleep(0.1)
    assert not api.holds_ip(ip)
    assert not api.holds_node_port(node_port)


# ---- a range that runs out -----------------------------------------------------------------


def test_the_kubernetes_service_has_the_first_address_of_any_range(tiny: ApiServer) -> None:
    kubernetes = ok(Services(tiny, "default").get("kubernetes"))

    assert kubernetes["spec"]["clusterIPs"] == ["10.97.0.1"]


def test_a_full_range_answers_500_range_is_full_until_a_delete_makes_room(
    tiny: ApiServer,
) -> None:
    api = Services(tiny, new_namespace(tiny))
    usable = {f"10.97.0.{n}" for n in range(2, 7)}  # .1 is default/kubernetes
    node_port_services = [
        created(api.create(service(f"np{i}", type="NodePort", ports=PORT_80))) for i in range(4)
    ]
    assert {s["spec"]["ports"][0]["nodePort"] for s in node_port_services} == set(
        range(30000, 30004)
    )

    assert_internal_error(
        api.create(service("np4", type="NodePort", ports=PORT_80)),
        "failed to allocate a nodePort: range is full",
    )
    # The address that NodePort service took first was given back with the failure.
    last = created(api.create(service("c5", ports=PORT_80)))
    taken = {s["spec"]["clusterIP"] for s in [*node_port_services, last]}
    assert taken == usable

    assert_internal_error(
        api.create(service("c6", ports=PORT_80)), "failed to allocate a serviceIP: range is full"
    )

    ok(api.delete("np2"))
    again = created(api.create(service("np5", type="NodePort", ports=PORT_80)))
    assert again["spec"]["clusterIP"] == node_port_services[2]["spec"]["clusterIP"]
    assert (
        again["spec"]["ports"][0]["nodePort"]
        == node_port_services[2]["spec"]["ports"][0]["nodePort"]
    )
