"""kubectl's Service flows, asserted on the lines kubectl printed.

`kubectl expose`, `kubectl create service <type>`, `kubectl apply` (twice,
and across a type change), `kubectl patch` of the type and of the status
subresource, and `kubectl get svc`, whose PORT(S) column shows allocated
node ports as `80:31234/TCP` and whose EXTERNAL-IP column reads `<none>`,
`<pending>`, a load balancer's address or an ExternalName's target, as
against a real cluster. Each test works in a namespace of its own on the
module's server (service CIDR 10.96.0.0/16, node ports 30000-32767).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import Server, manifest, rows

pytestmark = pytest.mark.e2e

AGE = re.compile(r"^(\d+[smhdy])+$")
SERVICE_COLUMNS = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
NODE_PORTS = range(30000, 32768)


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }


def node_port_service(
    name: str, *, target_port: int = 8080, kind: str = "NodePort"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": kind,
            "selector": {"app": name},
            "ports": [
                {"name": "http", "port": 80, "targetPort": target_port},
                {"name": "metrics", "port": 9090},
            ],
        },
    }


def apply(server: Server, ns: str, obj: dict[str, Any]) -> list[str]:
    return server.kubectl("apply", "-n", ns, "-f", "-", stdin=manifest(obj)).stdout.splitlines()


def get_svc(server: Server, ns: str, *names: str) -> list[list[str]]:
    """The rows `kubectl get svc` printed, header first, with each AGE checked and dropped."""
    printed = rows(server.kubectl("get", "svc", "-n", ns, *names).stdout)
    assert printed[0] == SERVICE_COLUMNS
    for row in printed[1:]:
        assert AGE.match(row[-1]), row
    return [printed[0][:-1], *(row[:-1] for row in printed[1:])]


def spec_of(server: Server, ns: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = server.get_json("svc", name, "-n", ns)["spec"]
    return spec


def allocated(spec: dict[str, Any]) -> tuple[str, list[int]]:
    """The clusterIP and the node ports of a Service, each checked to lie in its range."""
    ip = spec["clusterIP"]
    assert ipaddress.ip_address(ip) in SERVICE_CIDR
    node_ports = [p["nodePort"] for p in spec["ports"] if "nodePort" in p]
    assert all(port in NODE_PORTS for port in node_ports)
    return ip, node_ports


def test_expose_deployment_as_node_port_allocates_a_cluster_ip_and_a_node_port(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, deployment("web"))

    out = server.kubectl(
        "expose", "deployment", "web", "-n", namespace, "--port=80", "--type=NodePort"
    )

    assert out.stdout.splitlines() == ["service/web exposed"]
    spec = spec_of(server, namespace, "web")
    ip, [node_port] = allocated(spec)
    assert spec["ports"] == [
        {"nodePort": node_port, "port": 80, "protocol": "TCP", "targetPort": 80}
    ]
    assert get_svc(server, namespace) == [
        SERVICE_COLUMNS[:-1],
        ["web", "NodePort", ip, "<none>", f"80:{node_port}/TCP"],
    ]


def test_applying_a_node_port_manifest_twice_keeps_its_cluster_ip_and_node_ports(
    server: Server, namespace: str
) -> None:
    assert apply(server, namespace, node_port_service("web")) == ["service/web created"]
    first = allocated(spec_of(server, namespace, "web"))

    assert apply(server, namespace, node_port_service("web")) == ["service/web unchanged"]
    assert allocated(spec_of(server, namespace, "web")) == first

    changed = node_port_service("web", target_port=8081)
    assert apply(server, namespace, changed) == ["service/web configured"]
    spec = spec_of(server, namespace, "web")
    assert allocated(spec) == first
    assert spec["ports"][0]["targetPort"] == 8081
    ip, [http, metrics] = first
    assert get_svc(server, namespace) == [
        SERVICE_COLUMNS[:-1],
        ["web", "NodePort", ip, "<none>", f"80:{http}/TCP,9090:{metrics}/TCP"],
    ]


def test_applying_a_type_change_and_back_allocates_and_drops_the_node_ports(
    server: Server, namespace: str
) -> None:
    cluster_ip = node_port_service("web", kind="ClusterIP")
    apply(server, namespace, cluster_ip)
    ip, _ = allocated(spec_of(server, namespace, "web"))

    assert apply(server, namespace, node_port_service("web")) == ["service/web configured"]
    kept_ip, [http, metrics] = allocated(spec_of(server, namespace, "web"))
    assert kept_ip == ip
    assert get_svc(server, namespace)[1] == [
        "web",
        "NodePort",
        ip,
        "<none>",
        f"80:{http}/TCP,9090:{metrics}/TCP",
    ]

    assert apply(server, namespace, cluster_ip) == ["service/web configured"]
    spec = spec_of(server, namespace, "web")
    assert allocated(spec) == (ip, [])
    assert "externalTrafficPolicy" not in spec
    assert get_svc(server, namespace)[1] == ["web", "ClusterIP", ip, "<none>", "80/TCP,9090/TCP"]


def test_patching_the_type_to_cluster_ip_drops_the_node_port_from_the_row(
    server: Server, namespace: str
) -> None:
    server.kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "-n", namespace)
    ip, _ = allocated(spec_of(server, namespace, "web"))

    out = server.kubectl(
        "patch", "svc", "web", "-n", namespace, "-p", '{"spec":{"type":"ClusterIP"}}'
    )

    assert out.stdout.splitlines() == ["service/web patched"]
    assert get_svc(server, namespace)[1] == ["web", "ClusterIP", ip, "<none>", "80/TCP"]


def test_create_service_nodeport_prints_created_and_a_node_port_row(
    server: Server, namespace: str
) -> None:
    out = server.kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "-n", namespace)

    assert out.stdout.splitlines() == ["service/web created"]
    spec = spec_of(server, namespace, "web")
    ip, [node_port] = allocated(spec)
    assert spec["selector"] == {"app": "web"}
    assert spec["ports"] == [
        {
            "name": "80-8080",
            "nodePort": node_port,
            "port": 80,
            "protocol": "TCP",
            "targetPort": 8080,
        }
    ]
    assert get_svc(server, namespace, "web") == [
        SERVICE_COLUMNS[:-1],
        ["web", "NodePort", ip, "<none>", f"80:{node_port}/TCP"],
    ]


def test_create_service_nodeport_with_a_taken_node_port_prints_already_allocated(
    server: Server, namespace: str
) -> None:
    create = (
        "create",
        "service",
        "nodeport",
        "--tcp=80:8080",
        "--node-port=30005",
        "-n",
        namespace,
    )
    server.kubectl(*create[:3], "first", *create[3:])

    out = server.kubectl(*create[:3], "second", *create[3:], check=False)

    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        'error: failed to create NodePort service: Service "second" is invalid: '
        "spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated"
    ]


def test_create_service_clusterip_prints_created_and_a_cluster_ip_row(
    server: Server, namespace: str
) -> None:
    out = server.kubectl(
        "create", "service", "clusterip", "web", "--tcp=80:8080,443:8443", "-n", namespace
    )

    assert out.stdout.splitlines() == ["service/web created"]
    ip, node_ports = allocated(spec_of(server, namespace, "web"))
    assert node_ports == []
    assert get_svc(server, namespace) == [
        SERVICE_COLUMNS[:-1],
        ["web", "ClusterIP", ip, "<none>", "80/TCP,443/TCP"],
    ]


def test_create_service_clusterip_none_prints_a_headless_row(
    server: Server, namespace: str
) -> None:
    out = server.kubectl(
        "create", "service", "clusterip", "db", "--clusterip=None", "-n", namespace
    )

    assert out.stdout.splitlines() == ["service/db created"]
    assert get_svc(server, namespace) == [
        SERVICE_COLUMNS[:-1],
        ["db", "ClusterIP", "None", "<none>", "<none>"],
    ]


def test_create_service_externalname_prints_its_target_as_external_ip(
    server: Server, namespace: str
) -> None:
    out = server.kubectl(
        "create", "service", "externalname", "db", "--external-name=db.example.com", "-n", namespace
    )

    assert out.stdout.splitlines() == ["service/db created"]
    assert get_svc(server, namespace) == [
        SERVICE_COLUMNS[:-1],
        ["db", "ExternalName", "<none>", "db.example.com", "<none>"],
    ]


def test_a_load_balancer_is_pending_until_its_status_names_an_address(
    server: Server, namespace: str
) -> None:
    server.kubectl("create", "service", "loadbalancer", "lb", "--tcp=80:8080", "-n", namespace)
    ip, [node_port] = allocated(spec_of(server, namespace, "lb"))
    assert get_svc(server, namespace)[1] == [
        "lb",
        "LoadBalancer",
        ip,
        "<pending>",
        f"80:{node_port}/TCP",
    ]

    status = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}}
    out = server.kubectl(
        "patch", "svc", "lb", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip

    assert out.stdout.splitlines() == ["service/lb patched"]
    assert get_svc(server, namespace)[1] == [
        "lb",
        "LoadBalancer",
        ip,
        "192.0.2.7",
        f"80:{node_port}/TCP",
    ]


def test_get_svc_prints_a_row_per_type_in_name_order(server: Server, namespace: str) -> None:
    ns = ("-n", namespace)
    server.kubectl("create", "service", "clusterip", "api", "--tcp=443:8443", *ns)
    server.kubectl("create", "service", "externalname", "db", "--external-name=db.example.com", *ns)
    server.kubectl("create", "service", "clusterip", "peers", "--clusterip=None", *ns)
    server.kubectl("create", "service", "loadbalancer", "edge", "--tcp=80:8080,443:8443", *ns)
    dns = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dns"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
            ],
        },
    }
    apply(server, namespace, dns)
    api_ip, _ = allocated(spec_of(server, namespace, "api"))
    dns_ip, _ = allocated(spec_of(server, namespace, "dns"))
    edge_ip, [edge_http, edge_https] = allocated(spec_of(server, namespace, "edge"))

    assert get_svc(server, namespace) == [
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"],
        ["api", "ClusterIP", api_ip, "<none>", "443/TCP"],
        ["db", "ExternalName", "<none>", "db.example.com", "<none>"],
        ["dns", "NodePort", dns_ip, "<none>", "53:30053/UDP,53:30053/TCP"],
        ["edge", "LoadBalancer", edge_ip, "<pending>", f"80:{edge_http}/TCP,443:{edge_https}/TCP"],
        ["peers", "ClusterIP", "None", "<none>", "<none>"],
    ]
