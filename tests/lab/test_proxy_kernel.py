"""The Service data plane in a real kernel: packets reach pods through the proxy's nftables.

One module-wide topology, all in namespaces made here and removed at the
end, also on failure::

    client ns ─ eth0 198.18.0.2 ══ sbp-ext 198.18.0.1 ─ node ns ─ bridge 10.244.1.1/24
                (default via .1)                                  ├─ pod-a  agnhost netexec
                                                                  ├─ pod-b  (HTTP 8080, UDP 8081)
                                                                  └─ pod-c

Each test loads its own ruleset into the node namespace with a full sync
(which replaces whatever the previous test left, as a restarted agent
would), then sends packets from a pod, the node or the client and asserts
which pod answered (/hostname) and the source it saw (/clientip). The same
scenarios are traced without a kernel in tests/unit/test_proxy_ruleset.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from switchboard.agent import podnet
from switchboard.proxy import dataplane, model, nft, ruleset
from tests.lab.conftest import NetLab

pytestmark = pytest.mark.lab

AGNHOST = [sys.executable, "-m", "switchboard.agent.agnhost"]
BRIDGE = "sbp-br0"
NODE_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
GATEWAY = "10.244.1.1"
SERVICE_CIDR = "10.96.0.0/12"
CONFIG = ruleset.ProxyConfig(pod_cidrs=("10.244.0.0/16",))

# Asks a server `count` times, each on a new connection (so each is a new conntrack
# entry and a new pick), and prints the answers as JSON; failures print as their kind.
ASK = r"""
import http.client, json, socket, sys, time
mode, host, port, what, count, timeout = sys.argv[1:7]
answers = []
for _ in range(int(count)):
    started = time.monotonic()
    try:
        if mode == "http":
            conn = http.client.HTTPConnection(host, int(port), timeout=float(timeout))
            conn.request("GET", what)
            answers.append(conn.getresponse().read().decode())
            conn.close()
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(float(timeout))
                sock.connect((host, int(port)))
                sock.send(what.encode())
                answers.append(sock.recv(2048).decode())
    except ConnectionRefusedError:
        answers.append(f"refused after {time.monotonic() - started:.2f}s")
    except (TimeoutError, socket.timeout):
        answers.append("timeout")
    except OSError as exc:
        answers.append(f"error {exc}")
print(json.dumps(answers))
"""

# Keeps one HTTP connection open across a resync: asks, waits for a marker file, asks again.
KEEP_ALIVE = r"""
import http.client, json, os, sys, time
host, marker, out = sys.argv[1:4]
conn = http.client.HTTPConnection(host, 80, timeout=5)
answers = []
for step in range(2):
    conn.request("GET", "/hostname")
    answers.append([conn.getresponse().read().decode(), conn.sock.getsockname()[1]])
    if step == 0:
        with open(out + ".first", "w") as stream:
            json.dump(answers, stream)
        while not os.path.exists(marker):
            time.sleep(0.05)
with open(out, "w") as stream:
    json.dump(answers, stream)
"""


@dataclass
class Pod:
    name: str
    namespace: str
    ip: str


@dataclass
class Cluster:
    lab: NetLab
    node: str
    client: str
    pods: dict[str, Pod]
    backend: nft.LibNftables

    def load(
        self,
        *ports: tuple[model.ServicePortInfo, list[model.Endpoint]],
        config: ruleset.ProxyConfig = CONFIG,
    ) -> dataplane.DataPlane:
        plane = dataplane.DataPlane(self.backend, config)
        plane.sync({info.name: (info, endpoints) for info, endpoints in ports})
        return plane

    def ask(
        self,
        namespace: str,
        host: str,
        port: int,
        what: str = "/hostname",
        *,
        count: int = 1,
        udp: bool = False,
        timeout: float = 3.0,
    ) -> list[str]:
        argv = [sys.executable, "-c", ASK, "udp" if udp else "http", host, str(port), what]
        out = self.lab.run(namespace, [*argv, str(count), str(timeout)], timeout=120)
        answers: list[str] = json.loads(out)
        return answers

    def endpoint(self, pod: str, port: int = 8080, **conditions: bool) -> model.Endpoint:
        conditions.setdefault("is_local", True)
        return model.Endpoint(self.pods[pod].ip, port, **conditions)


def info(
    name: str, cluster_ip: str, port: int = 80, protocol: model.Protocol = "TCP", **fields: object
) -> model.ServicePortInfo:
    return model.ServicePortInfo(
        model.ServicePortName("default", name, "", protocol),
        cluster_ip,
        port,
        **fields,  # type: ignore[arg-type]
    )


def wait_until_serving(lab: NetLab, namespace: str, ip: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        argv = [sys.executable, "-c", ASK, "http", ip, "8080", "/readyz", "1", "1"]
        if json.loads(lab.run(namespace, argv)) == ["ok"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"agnhost at {ip} did not start serving")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    lab = NetLab()
    backend: nft.LibNftables | None = None
    try:
        node = lab.namespace("px-node")
        network = podnet.PodNetwork(
            node, BRIDGE, "10.244.1.0/24", tmp_path_factory.mktemp("podnet"), veth_prefix="sbp"
        )
        network.setup_node()
        pods = {}
        for name in ("a", "b", "c"):
            namespace = lab.name(f"px-pod-{name}")
            ip = network.add_pod(f"uid-{name}", namespace)
            argv = [*AGNHOST, "netexec", "--http-port=8080", "--udp-port=8081"]
            lab.spawn(namespace, argv, HOSTNAME=f"pod-{name}")
            pods[name] = Pod(f"pod-{name}", namespace, ip)
        # Pod c also answers on 9090, for endpoints of one Service on different ports.
        argv = [*AGNHOST, "netexec", "--http-port=9090", "--udp-port=-1"]
        lab.spawn(pods["c"].namespace, argv, HOSTNAME="pod-c")
        client = lab.namespace("px-client")
        lab.veth((node, "sbp-ext"), (client, "eth0"))
        lab.address(node, "sbp-ext", f"{NODE_IP}/24")
        lab.address(client, "eth0", f"{CLIENT_IP}/24")
        with IPRoute(netns=client, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=NODE_IP)
        with IPRoute(netns=node, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            # The node's own sockets need a route for ClusterIPs (kube-proxy relies on the
            # default route); DNAT then re-routes the packet to the pod.
            ipr.route("add", dst=SERVICE_CIDR, oif=ipr.link_lookup(ifname=BRIDGE)[0])
        for pod in pods.values():
            wait_until_serving(lab, node, pod.ip)
        backend = nft.LibNftables(node)
        yield Cluster(lab, node, client, pods, backend)
    finally:
        if backend is not None:
            backend.close()
        problems = lab.cleanup()
    assert not problems, f"cleanup left things behind: {problems}"


def hostnames(answers: list[str]) -> set[str]:
    return set(answers)


def assert_refused_at_once(answers: list[str]) -> None:
    for answer in answers:
        assert answer.startswith("refused after "), answer
        assert float(answer.split()[-1].rstrip("s")) < 0.5


# -- ClusterIP -----------------------------------------------------------------


def test_a_cluster_ip_spreads_connections_over_its_endpoints_and_keeps_the_client_address(
    cluster: Cluster,
) -> None:
    cluster.load((info("web", "10.96.0.10"), [cluster.endpoint("b"), cluster.endpoint("c")]))
    a = cluster.pods["a"]
    assert hostnames(cluster.ask(a.namespace, "10.96.0.10", 80, count=24)) == {"pod-b", "pod-c"}
    for answer in cluster.ask(a.namespace, "10.96.0.10", 80, "/clientip", count=4):
        assert answer.startswith(f"{a.ip}:"), answer


def test_the_node_itself_reaches_a_cluster_ip(cluster: Cluster) -> None:
    cluster.load((info("web", "10.96.0.10"), [cluster.endpoint("b")]))
    assert cluster.ask(cluster.node, "10.96.0.10", 80) == ["pod-b"]


def test_a_pod_reaching_itself_through_its_service_is_answered_by_hairpin_masquerade(
    cluster: Cluster,
) -> None:
    cluster.load((info("web", "10.96.0.10"), [cluster.endpoint("a")]))
    a = cluster.pods["a"]
    assert cluster.ask(a.namespace, "10.96.0.10", 80) == ["pod-a"]
    assert cluster.ask(a.namespace, "10.96.0.10", 80, "/clientip")[0].startswith(f"{GATEWAY}:")


def test_a_service_without_endpoints_refuses_tcp_and_udp_at_once(cluster: Cluster) -> None:
    cluster.load(
        (info("web", "10.96.0.10", node_port=30080), []),
        (info("web", "10.96.0.10", protocol="UDP"), []),
    )
    a = cluster.pods["a"]
    assert_refused_at_once(
        [
            *cluster.ask(a.namespace, "10.96.0.10", 80, count=2),
            *cluster.ask(a.namespace, "10.96.0.10", 80, "hostname", udp=True),
            *cluster.ask(cluster.client, NODE_IP, 30080),
        ]
    )


def test_a_cluster_ip_refuses_ports_and_protocols_its_service_does_not_have_at_once(
    cluster: Cluster,
) -> None:
    cluster.load(
        (info("web", "10.96.0.10", protocol="TCP"), [cluster.endpoint("b", 8080)]),
        (info("web", "10.96.0.10", protocol="UDP"), [cluster.endpoint("c", 8081)]),
        (info("api", "10.96.0.11", protocol="TCP"), [cluster.endpoint("a", 8080)]),
    )
    a = cluster.pods["a"].namespace
    assert cluster.ask(a, "10.96.0.10", 80) == ["pod-b"]
    assert cluster.ask(a, "10.96.0.10", 80, "hostname", udp=True) == ["pod-c"]
    assert cluster.ask(a, "10.96.0.11", 80) == ["pod-a"]
    assert_refused_at_once(
        [
            *cluster.ask(a, "10.96.0.10", 81, count=2),
            *cluster.ask(a, "10.96.0.10", 81, "hostname", udp=True),
            *cluster.ask(a, "10.96.0.11", 80, "hostname", udp=True),  # a protocol it lacks
            *cluster.ask(cluster.node, "10.96.0.10", 81),  # the node's own, post-DNAT output
            *cluster.ask(cluster.client, "10.96.0.10", 81),  # routed through the node
        ]
    )
    assert cluster.ask(cluster.node, "10.96.0.10", 80) == ["pod-b"]


def test_unallocated_addresses_of_the_service_cidr_are_dropped_not_routed_on(
    cluster: Cluster,
) -> None:
    config = ruleset.ProxyConfig(pod_cidrs=CONFIG.pod_cidrs, service_cidrs=(SERVICE_CIDR,))
    cluster.load((info("web", "10.96.0.10"), [cluster.endpoint("b")]), config=config)
    a = cluster.pods["a"].namespace
    assert cluster.ask(a, "10.96.0.77", 80, timeout=1) == ["timeout"]
    # Routed on, the node would have asked the bridge who holds the address.
    neighbours = cluster.lab.run(cluster.node, ["ip", "neigh", "show", "10.96.0.77"])
    assert neighbours.strip() == ""
    assert cluster.ask(a, "10.96.0.10", 80) == ["pod-b"]
    assert_refused_at_once(cluster.ask(a, "10.96.0.10", 81))


def test_tcp_and_udp_on_the_same_port_number_reach_their_own_endpoints(cluster: Cluster) -> None:
    cluster.load(
        (info("dns", "10.96.0.10", protocol="TCP"), [cluster.endpoint("b", 8080)]),
        (info("dns", "10.96.0.10", protocol="UDP"), [cluster.endpoint("c", 8081)]),
    )
    a = cluster.pods["a"]
    assert cluster.ask(a.namespace, "10.96.0.10", 80) == ["pod-b"]
    assert (
        cluster.ask(a.namespace, "10.96.0.10", 80, "hostname", udp=True, count=3) == ["pod-c"] * 3
    )


def test_endpoints_of_one_service_on_different_ports_are_each_reached_on_their_own(
    cluster: Cluster,
) -> None:
    cluster.load(
        (
            info("web", "10.96.0.10", node_port=30080),
            [cluster.endpoint("b"), cluster.endpoint("c", 9090)],
        )
    )
    a = cluster.pods["a"]
    assert hostnames(cluster.ask(a.namespace, "10.96.0.10", 80, count=20)) == {"pod-b", "pod-c"}
    assert hostnames(cluster.ask(cluster.client, NODE_IP, 30080, count=20)) == {"pod-b", "pod-c"}


def test_terminating_endpoints_that_still_serve_take_over_when_none_is_ready(
    cluster: Cluster,
) -> None:
    cluster.load(
        (
            info("web", "10.96.0.10"),
            [
                cluster.endpoint("b", ready=False, serving=True, terminating=True),
                cluster.endpoint("c", ready=False, serving=False, terminating=True),
            ],
        )
    )
    a = cluster.pods["a"]
    assert hostnames(cluster.ask(a.namespace, "10.96.0.10", 80, count=8)) == {"pod-b"}


def test_client_ip_affinity_keeps_a_client_on_one_endpoint(cluster: Cluster) -> None:
    endpoints = [cluster.endpoint(p) for p in ("a", "b", "c")]
    cluster.load((info("web", "10.96.0.10", node_port=30080, affinity_timeout=60), endpoints))
    b = cluster.pods["b"]
    assert len(hostnames(cluster.ask(b.namespace, "10.96.0.10", 80, count=15))) == 1
    assert len(hostnames(cluster.ask(cluster.client, NODE_IP, 30080, count=15))) == 1


def test_internal_traffic_policy_local_reaches_only_this_nodes_endpoints(cluster: Cluster) -> None:
    remote_c = cluster.endpoint("c", is_local=False)  # on "another node", as far as the proxy knows
    cluster.load(
        (
            info("local", "10.96.0.10", internal_policy_local=True),
            [cluster.endpoint("a"), remote_c],
        ),
        (info("none", "10.96.0.11", internal_policy_local=True), [remote_c]),
    )
    b = cluster.pods["b"]
    assert hostnames(cluster.ask(b.namespace, "10.96.0.10", 80, count=10)) == {"pod-a"}
    assert cluster.ask(b.namespace, "10.96.0.11", 80, timeout=1.5) == ["timeout"]  # dropped


# -- NodePort and external IPs --------------------------------------------------------


def test_a_node_port_answers_on_the_node_address_masqueraded(cluster: Cluster) -> None:
    cluster.load(
        (info("web", "10.96.0.10", node_port=30080), [cluster.endpoint("b"), cluster.endpoint("c")])
    )
    answers = cluster.ask(cluster.client, NODE_IP, 30080, count=24)
    assert hostnames(answers) == {"pod-b", "pod-c"}
    assert cluster.ask(cluster.client, NODE_IP, 30080, "/clientip")[0].startswith(f"{GATEWAY}:")
    assert cluster.ask(cluster.node, NODE_IP, 30080)[0] in {"pod-b", "pod-c"}


def test_a_node_port_is_not_opened_on_loopback(cluster: Cluster) -> None:
    cluster.load((info("web", "10.96.0.10", node_port=30080), [cluster.endpoint("b")]))
    assert cluster.ask(cluster.node, "127.0.0.1", 30080)[0].startswith("refused")


def test_external_ips_reach_the_service(cluster: Cluster) -> None:
    cluster.load(
        (info("web", "10.96.0.10", external_ips=("198.51.100.7",)), [cluster.endpoint("c")])
    )
    assert cluster.ask(cluster.client, "198.51.100.7", 80) == ["pod-c"]
    assert cluster.ask(cluster.client, "198.51.100.7", 80, "/clientip")[0].startswith(f"{GATEWAY}:")


def test_external_traffic_policy_local_keeps_the_client_address_and_uses_local_endpoints_only(
    cluster: Cluster,
) -> None:
    remote_c = cluster.endpoint("c", is_local=False)
    web = info(
        "web",
        "10.96.0.10",
        node_port=30080,
        external_ips=("198.51.100.7",),
        external_policy_local=True,
    )
    cluster.load((web, [cluster.endpoint("a"), remote_c]))
    for host, port in ((NODE_IP, 30080), ("198.51.100.7", 80)):
        assert hostnames(cluster.ask(cluster.client, host, port, count=10)) == {"pod-a"}
        assert cluster.ask(cluster.client, host, port, "/clientip")[0].startswith(f"{CLIENT_IP}:")


def test_external_traffic_policy_local_drops_outside_clients_where_no_endpoint_is_local(
    cluster: Cluster,
) -> None:
    web = info(
        "web",
        "10.96.0.10",
        node_port=30080,
        external_ips=("198.51.100.7",),
        external_policy_local=True,
    )
    cluster.load((web, [cluster.endpoint("c", is_local=False)]))
    assert cluster.ask(cluster.client, NODE_IP, 30080, timeout=1.5) == ["timeout"]
    # Pods and the node are not outside clients: they still reach the remote endpoint.
    assert cluster.ask(cluster.pods["b"].namespace, "198.51.100.7", 80) == ["pod-c"]
    assert cluster.ask(cluster.node, NODE_IP, 30080) == ["pod-c"]


@pytest.mark.parametrize("policy", ["external", "internal"])
def test_a_local_terminating_endpoint_is_reached_on_its_own_port_beside_remote_ready_ones(
    cluster: Cluster, policy: str
) -> None:
    web = info(
        "web",
        "10.96.0.10",
        node_port=30080,
        external_policy_local=policy == "external",
        internal_policy_local=policy == "internal",
    )
    # Only pod c listens on 9090: a packet for b sent to c's port would be refused.
    remote_ready_c = cluster.endpoint("c", 9090, is_local=False)
    local_terminating_b = cluster.endpoint("b", ready=False, serving=True, terminating=True)
    cluster.load((web, [remote_ready_c, local_terminating_b]))
    a = cluster.pods["a"].namespace
    if policy == "external":
        assert cluster.ask(cluster.client, NODE_IP, 30080, count=6) == ["pod-b"] * 6
        assert cluster.ask(a, "10.96.0.10", 80, count=6) == ["pod-c"] * 6
    else:
        assert cluster.ask(a, "10.96.0.10", 80, count=6) == ["pod-b"] * 6
        assert cluster.ask(cluster.client, NODE_IP, 30080, count=6) == ["pod-c"] * 6


# -- syncs -------------------------------------------------------------------------


def listing(cluster: Cluster) -> object:
    """The table as nft lists it in JSON, without handles, every element list sorted."""
    out = subprocess.run(
        ["ip", "netns", "exec", cluster.node, "nft", "-j", "list", "table", "ip", "switchboard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def normal(value: object) -> object:
        if isinstance(value, dict):
            learned = str(value.get("name", "")).startswith("affinity-")  # the kernel's own
            return {
                k: normal(v)
                for k, v in value.items()
                if k != "handle" and not (learned and k == "elem")
            }
        if isinstance(value, list):
            items = [normal(v) for v in value]
            return sorted(items, key=json.dumps)
        return value

    return normal(json.loads(out)["nftables"])


def test_an_endpoint_change_is_applied_incrementally_and_leaves_the_table_a_full_sync_makes(
    cluster: Cluster,
) -> None:
    web = info("web", "10.96.0.10", node_port=30080, affinity_timeout=30)
    api = info("api", "10.96.0.11")
    plane = cluster.load((web, [cluster.endpoint("b")]), (api, [cluster.endpoint("a")]))
    a = cluster.pods["a"]
    assert cluster.ask(a.namespace, "10.96.0.10", 80) == ["pod-b"]

    state = plane.update(
        {
            web.name: (web, [cluster.endpoint("c"), cluster.endpoint("b", ready=False)]),
            api.name: None,
        }
    )

    assert cluster.ask(a.namespace, "10.96.0.10", 80, count=3) == ["pod-c"] * 3
    assert cluster.ask(a.namespace, "10.96.0.11", 80, timeout=1)[0] != "pod-a"
    incremental = listing(cluster)
    dataplane.DataPlane(cluster.backend, CONFIG).sync(state.services())
    assert listing(cluster) == incremental


def test_a_resync_at_start_removes_stale_rules_and_keeps_established_connections(
    cluster: Cluster, tmp_path: Path
) -> None:
    web = info("web", "10.96.0.20")
    cluster.load((web, [cluster.endpoint("b")]))
    marker, out = tmp_path / "resynced", tmp_path / "answers"
    a = cluster.pods["a"]
    cluster.lab.spawn(
        a.namespace, [sys.executable, "-c", KEEP_ALIVE, "10.96.0.20", str(marker), str(out)]
    )
    deadline = time.monotonic() + 20
    while not Path(f"{out}.first").exists():
        assert time.monotonic() < deadline, "the keep-alive client never got its first answer"
        time.sleep(0.05)
    # What an earlier run could have left behind: a chain and an element of its own.
    cluster.backend.apply(
        "add chain ip switchboard stale-from-earlier-run\n"
        "add element ip switchboard service-ips { 10.96.0.99 . tcp . 80 : drop }\n"
    )

    fresh = dataplane.DataPlane(cluster.backend, CONFIG)  # a restarted agent
    fresh.sync({web.name: (web, [cluster.endpoint("b")])})
    marker.touch()

    while not out.exists():
        assert time.monotonic() < deadline, "the keep-alive client never got its second answer"
        time.sleep(0.05)
    (first, first_port), (second, second_port) = json.loads(out.read_text())
    assert first == second == "pod-b" and first_port == second_port  # the same connection
    table = cluster.backend.list("table ip switchboard")
    assert "stale-from-earlier-run" not in table and "10.96.0.99" not in table


def test_sctp_ports_and_an_ip6_table_beside_the_ip_one_load_into_the_kernel(
    cluster: Cluster,
) -> None:
    cluster.load(
        (info("sig", "10.96.0.30", 3868, "SCTP", node_port=30868), [cluster.endpoint("b", 3868)])
    )
    v6 = ruleset.ProxyConfig(family="ipv6", pod_cidrs=("fd00:244::/48",))
    six = model.ServicePortInfo(
        model.ServicePortName("default", "web"),
        "fd00:96::10",
        80,
        node_port=30080,
        affinity_timeout=9,
    )
    plane6 = dataplane.DataPlane(cluster.backend, v6)
    state6 = plane6.sync({six.name: (six, [model.Endpoint("fd00:244::3", 8080, is_local=True)])})
    plane6.update({six.name: (six, [model.Endpoint("fd00:244::4", 8080)])})
    assert state6 is not None
    assert "sctp . 3868" in cluster.backend.list("table ip switchboard")
    tables = cluster.backend.list("tables")
    assert "table ip switchboard" in tables and "table ip6 switchboard" in tables
    listed = cluster.backend.list("map ip6 switchboard service-endpoints-tcp-addresses")
    assert "fd00:96::10 . 80 . 0 : fd00:244::4" in listed
    cluster.backend.apply("delete table ip6 switchboard\n")
