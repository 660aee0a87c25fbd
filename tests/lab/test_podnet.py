"""A node's pod network in real namespaces: pods reach each other, across nodes too,
and addresses, veths and namespaces come and go with the pods.

Each test makes its own "node" namespace (two for cross-node traffic, joined
by a veth of their own), so no packet of these tests touches the namespace
pytest runs in. Reachability is shown the way a user would: the built-in
agnhost netexec serves in pod B, and a process in pod A's namespace asks it
over HTTP for its hostname and for the address it sees A come from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from switchboard.agent import podnet
from tests.lab.conftest import NetLab

pytestmark = pytest.mark.lab

BRIDGE = "sbt-br0"
VETH_PREFIX = "sbt"
AGNHOST = [sys.executable, "-m", "switchboard.agent.agnhost"]
# Fetches a URL from inside a namespace, retrying while the server starts.
FETCH = """
import sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 20
while True:
    try:
        print(opener.open(sys.argv[1], timeout=2).read().decode(), end="")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


def node_network(
    netlab: NetLab, state_dir: Path, node: str, pod_cidr: str = "10.244.1.0/24"
) -> podnet.PodNetwork:
    network = podnet.PodNetwork(node, BRIDGE, pod_cidr, state_dir, veth_prefix=VETH_PREFIX)
    network.setup_node()
    return network


def fetch(netlab: NetLab, namespace: str, url: str) -> str:
    return netlab.run(namespace, [sys.executable, "-c", FETCH, url])


def serve_netexec(netlab: NetLab, namespace: str, hostname: str) -> None:
    netlab.spawn(namespace, [*AGNHOST, "netexec", "--http-port=8080"], HOSTNAME=hostname)


def node_links(node: str) -> set[str]:
    with IPRoute(netns=node, flags=0) as ipr:
        return {link.get("ifname") for link in ipr.link("dump")}


def test_a_pod_reaches_another_pod_on_its_node_by_the_pods_address(
    netlab: NetLab, state_dir: Path
) -> None:
    network = node_network(netlab, state_dir, netlab.namespace("node"))
    pod_a, pod_b = netlab.name("pod-a"), netlab.name("pod-b")
    ip_a = network.add_pod("uid-a", pod_a)
    ip_b = network.add_pod("uid-b", pod_b)
    serve_netexec(netlab, pod_b, hostname="pod-b")

    assert fetch(netlab, pod_a, f"http://{ip_b}:8080/hostname") == "pod-b"
    assert fetch(netlab, pod_a, f"http://{ip_b}:8080/clientip").startswith(f"{ip_a}:")


def test_a_pod_reaches_a_pod_on_another_node_through_the_route_to_its_pod_cidr(
    netlab: NetLab, tmp_path: Path
) -> None:
    node_1, node_2 = netlab.namespace("node-1"), netlab.namespace("node-2")
    netlab.veth((node_1, "sbt-n1"), (node_2, "sbt-n2"))
    netlab.address(node_1, "sbt-n1", "10.250.0.1/24")
    netlab.address(node_2, "sbt-n2", "10.250.0.2/24")
    network_1 = node_network(netlab, tmp_path / "node-1", node_1, "10.244.1.0/24")
    network_2 = node_network(netlab, tmp_path / "node-2", node_2, "10.244.2.0/24")
    network_1.add_route("10.244.2.0/24", "10.250.0.2")
    network_2.add_route("10.244.1.0/24", "10.250.0.1")
    pod_a, pod_b = netlab.name("pod-a"), netlab.name("pod-b")
    ip_a = network_1.add_pod("uid-a", pod_a)
    ip_b = network_2.add_pod("uid-b", pod_b)
    serve_netexec(netlab, pod_b, hostname="pod-b")

    assert fetch(netlab, pod_a, f"http://{ip_b}:8080/hostname") == "pod-b"
    # Routed, not masqueraded: pod B sees pod A's own address.
    assert fetch(netlab, pod_a, f"http://{ip_b}:8080/clientip").startswith(f"{ip_a}:")
    assert network_1.routes() == {"10.244.2.0/24": "10.250.0.2"}


def test_adding_a_pod_again_returns_its_address_and_wires_it_once(
    netlab: NetLab, state_dir: Path
) -> None:
    node = netlab.namespace("node")
    network = node_network(netlab, state_dir, node)
    pod = netlab.name("pod-a")
    first = network.add_pod("uid-a", pod)
    assert network.add_pod("uid-a", pod) == first
    assert network.pods() == {"uid-a": first}
    assert node_links(node) == {"lo", BRIDGE, podnet.veth_name("uid-a", VETH_PREFIX)}


def test_removing_a_pod_frees_its_address_and_deletes_its_namespace_and_veth(
    netlab: NetLab, state_dir: Path
) -> None:
    node = netlab.namespace("node")
    network = node_network(netlab, state_dir, node, "10.244.1.0/30")  # room for one pod
    pod_a, pod_b = netlab.name("pod-a"), netlab.name("pod-b")
    address = network.add_pod("uid-a", pod_a)
    with pytest.raises(podnet.AddressesExhausted):
        network.add_pod("uid-b", pod_b)
    assert pod_b not in netns.listnetns()  # the failed add left nothing behind

    network.remove_pod("uid-a")

    assert network.pods() == {}
    assert pod_a not in netns.listnetns()
    assert podnet.veth_name("uid-a", VETH_PREFIX) not in node_links(node)
    assert network.add_pod("uid-b", pod_b) == address
    network.remove_pod("uid-a")  # removing an absent pod is not an error


def test_a_new_pod_network_adopts_the_pods_and_never_hands_their_addresses_out_again(
    netlab: NetLab, state_dir: Path
) -> None:
    node = netlab.namespace("node")
    before = node_network(netlab, state_dir, node)
    pod_a, pod_b, pod_c = netlab.name("pod-a"), netlab.name("pod-b"), netlab.name("pod-c")
    held = {"uid-a": before.add_pod("uid-a", pod_a), "uid-b": before.add_pod("uid-b", pod_b)}

    after = node_network(netlab, state_dir, node)  # an agent restart

    assert after.pods() == held
    assert after.add_pod("uid-a", pod_a) == held["uid-a"]
    assert after.add_pod("uid-c", pod_c) not in held.values()
    serve_netexec(netlab, pod_b, hostname="pod-b")
    assert fetch(netlab, pod_a, f"http://{held['uid-b']}:8080/hostname") == "pod-b"


def test_setting_up_a_node_twice_is_harmless_and_forwards_only_in_the_node_namespace(
    netlab: NetLab, state_dir: Path
) -> None:
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    node = netlab.namespace("node")
    network = node_network(netlab, state_dir, node)
    network.setup_node()

    assert netlab.run(node, ["cat", "/proc/sys/net/ipv4/ip_forward"]).strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding
    with IPRoute(netns=node, flags=0) as ipr:
        bridge = ipr.link_lookup(ifname=BRIDGE)[0]
        addresses = [(a.get("address"), a["prefixlen"]) for a in ipr.addr("dump", index=bridge)]
    assert addresses == [("10.244.1.1", 24)]


def test_the_host_end_of_a_pods_veth_is_a_hairpin_port_of_the_bridge(
    netlab: NetLab, state_dir: Path
) -> None:
    node = netlab.namespace("node")
    network = node_network(netlab, state_dir, node)
    network.add_pod("uid-a", netlab.name("pod-a"))
    with IPRoute(netns=node, flags=0) as ipr:
        bridge = ipr.link_lookup(ifname=BRIDGE)[0]
        port = ipr.link_lookup(ifname=podnet.veth_name("uid-a", VETH_PREFIX))[0]
        (link,) = ipr.brport("show", index=port)
    assert link.get("master") == bridge
    assert link.get(("protinfo", "mode")) == 1  # IFLA_BRPORT_MODE: hairpin


def test_tearing_down_a_node_removes_its_pods_routes_and_bridge(
    netlab: NetLab, state_dir: Path
) -> None:
    node = netlab.namespace("node")
    network = node_network(netlab, state_dir, node)
    pod = netlab.name("pod-a")
    network.add_pod("uid-a", pod)
    network.add_route("10.244.2.0/24", "10.244.1.254")

    network.teardown_node()

    assert network.pods() == {}
    assert network.routes() == {}
    assert pod not in netns.listnetns()
    assert node_links(node) == {"lo"}


def test_a_node_namespace_that_does_not_exist_is_reported_not_created(
    netlab: NetLab, state_dir: Path
) -> None:
    absent = netlab.name("absent-node")
    network = podnet.PodNetwork(absent, BRIDGE, "10.244.1.0/24", state_dir)
    with pytest.raises(podnet.NamespaceMissing, match="does not exist"):
        network.setup_node()
    assert absent not in netns.listnetns()


def test_a_route_over_the_nodes_own_pod_cidr_is_refused(netlab: NetLab, state_dir: Path) -> None:
    network = node_network(netlab, state_dir, netlab.namespace("node"))
    with pytest.raises(ValueError, match="own podCIDR"):
        network.add_route("10.244.0.0/16", "10.250.0.2")
