"""A client is not pinned to an endpoint that is gone by what conntrack remembers.

Connection tracking keeps a flow's DNAT after the rules change. A SYN sent
to an endpoint that never answered (its pod's network was already gone while
the rules still listed it) leaves an entry in SYN_SENT for 120 s, and a new
SYN from the same source port would follow it to the dead address. The first
tests make such an entry with a rule in the endpoint pod's own namespace,
delete that pod, let another pod take its place, and connect again from the
same source port: the new pod must answer at the first try.

The restart tests do the same while the agent of the client's node is down,
so the proxy that starts again has no previous state to compare with and
must find the stale entries in the kernel's table: a UDP client that keeps
its source port moves to a live endpoint within seconds of the start (while
the clients of endpoints that stayed keep theirs), and an unanswered SYN
does not pin its source port to the endpoint that went meanwhile.

The client is on node-1 (where the DNAT and its conntrack entries live), the
Service's pods on node-2. One test needs no lab cluster: it runs a reconcile
against a real table in a namespace of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.proxy import conntrack, model
from tests.lab import labcluster
from tests.lab.conftest import NetLab
from tests.lab.labcluster import Cluster, Manifest, netexec, pause_pod, pod, running_lab

pytestmark = pytest.mark.lab

POD_NETNS_PREFIX = "sbpod-"
CLIENT_SOURCE_PORT = 41000

CLIENT_NODE = "node-1"
BACKEND_NODE = "node-2"
UDP_PORT = 8081
# The endpoint that resets: accepts, reads the request and closes with SO_LINGER 0,
# so its kernel answers with RST, as a server process that ends with connections
# open does.
RESET_EVERY_CONNECTION = """
import socket, struct
server = socket.create_server(("0.0.0.0", 8080))
while True:
    conn, _ = server.accept()
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""
CLIENT = pause_pod("client", labels={}, node=CLIENT_NODE)
# Runs inside the client pod: connects from one fixed source port to argv[1]:argv[2]
# up to argv[4] times, 1 s each, and prints one line per try: the hostname that
# answered, or "- <error>". Stops at the first answer.
CONNECT = """
import socket, sys
address, port, source, tries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(tries):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", source))
    s.settimeout(1.0)
    try:
        s.connect((address, port))
        s.sendall(b"GET /hostname HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        print(data.partition(b"\\r\\n\\r\\n")[2].decode().strip(), flush=True)
        break
    except OSError as exc:
        print("-", type(exc).__name__, flush=True)
    finally:
        s.close()
"""


def backend(name: str, app: str) -> Manifest:
    """A netexec pod on the backend node, labelled app=`app`."""
    return pod(name, netexec(), labels={"app": app}, node=BACKEND_NODE, termination_grace_period=1)


def udp_backend(name: str, app: str) -> Manifest:
    """A netexec pod on the backend node, labelled app=`app`, that also answers UDP."""
    container = netexec(udp_port=UDP_PORT)
    return pod(name, container, labels={"app": app}, node=BACKEND_NODE, termination_grace_period=1)


def resetter(name: str, app: str) -> Manifest:
    """A pod on the backend node, labelled app=`app`, that resets every connection."""
    container = {
        "name": "resetter",
        "image": "python:3",
        "command": ["python3", "-c", RESET_EVERY_CONNECTION],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    return pod(name, container, labels={"app": app}, node=BACKEND_NODE, termination_grace_period=1)


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("conntrack") / "lab"
    data_dir.mkdir()
    with running_lab(data_dir, nodes=2) as cluster:
        cluster.apply(CLIENT)
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
        yield cluster


def connect(cluster: Cluster, cluster_ip: str, tries: int) -> list[str]:
    out = cluster.exec(
        "client",
        "python3",
        "-c",
        CONNECT,
        cluster_ip,
        "80",
        str(CLIENT_SOURCE_PORT),
        str(tries),
        timeout=tries * 2 + 30,
    )
    return out.splitlines()


def ready_endpoints(cluster: Cluster, service: str) -> list[str]:
    listed = json.loads(
        cluster.kubectl(
            "get", "endpointslices", "-l", f"kubernetes.io/service-name={service}", "-o", "json"
        )
    )
    return sorted(
        e["targetRef"]["name"]
        for s in listed["items"]
        for e in s.get("endpoints") or []
        if e.get("conditions", {}).get("ready") and e.get("targetRef")
    )


def wait_for_endpoints(cluster: Cluster, service: str, names: list[str]) -> None:
    deadline = time.monotonic() + 60
    while (found := ready_endpoints(cluster, service)) != names:
        assert time.monotonic() < deadline, f"the Service's ready endpoints stayed {found}"
        time.sleep(0.2)


def start_backend(cluster: Cluster, manifest: Manifest) -> None:
    cluster.apply(manifest)
    name = manifest["metadata"]["name"]
    cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=70)


def in_pod_netns(cluster: Cluster, pod: str, *argv: str) -> None:
    uid = cluster.kubectl("get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
    subprocess.run(["ip", "netns", "exec", POD_NETNS_PREFIX + uid, *argv], check=True, timeout=10)


def replace_the_endpoint(cluster: Cluster, service: str, old: str, new: str) -> None:
    """`old` goes, `new` (running, labelled otherwise) takes its place behind `service`."""
    cluster.kubectl("delete", "pod", old, "--grace-period=0", "--force", "--wait=false")
    cluster.kubectl("label", "pod", new, f"app={service}", "--overwrite")
    wait_for_endpoints(cluster, service, [new])


def pinned_by_an_unanswered_syn(
    cluster: Cluster, service: str, standby: str
) -> tuple[str, str, str]:
    """`service` with one endpoint that drops SYNs, whose entry the client's one try left.

    Returns the silent pod, a running pod labelled `app=standby` to take its
    place, and the ClusterIP.
    """
    old, new = f"{service}-old", f"{service}-new"
    cluster.apply(labcluster.service(service))
    start_backend(cluster, backend(old, service))
    start_backend(cluster, backend(new, standby))
    wait_for_endpoints(cluster, service, [old])
    cluster_ip = cluster.kubectl("get", "service", service, "-o", "jsonpath={.spec.clusterIP}")
    # The old pod stops answering its port, as a pod whose network is gone would (a rule
    # in its own namespace); the client's one try from its fixed port leaves the entry.
    in_pod_netns(
        cluster,
        old,
        "nft",
        "add table inet test; add chain inet test in { type filter hook input priority 0; };"
        " add rule inet test in tcp dport 8080 drop",
    )
    assert connect(cluster, cluster_ip, tries=1) == ["- TimeoutError"]
    return old, new, cluster_ip


def test_an_unanswered_syn_does_not_pin_its_source_port_to_a_deleted_endpoint(
    cluster: Cluster,
) -> None:
    service = "unanswered"
    old, new, cluster_ip = pinned_by_an_unanswered_syn(cluster, service, "standby")

    replace_the_endpoint(cluster, service, old, new)
    answers = connect(cluster, cluster_ip, tries=5)
    assert answers == [new], f"from the same source port after {old} went: {answers}"


def test_a_connection_reset_by_its_endpoint_does_not_pin_its_source_port_to_it(
    cluster: Cluster,
) -> None:
    service = "reset"
    old, new = f"{service}-old", f"{service}-new"
    cluster.apply(labcluster.service(service))
    start_backend(cluster, resetter(old, service))
    start_backend(cluster, backend(new, "standby"))
    wait_for_endpoints(cluster, service, [old])
    cluster_ip = cluster.kubectl("get", "service", service, "-o", "jsonpath={.spec.clusterIP}")

    assert connect(cluster, cluster_ip, tries=1) == ["- ConnectionResetError"]

    replace_the_endpoint(cluster, service, old, new)
    answers = connect(cluster, cluster_ip, tries=5)
    assert answers == [new], f"from the same source port after {old} went: {answers}"


# -- the proxy's restart ----------------------------------------------------------------------

# Runs in the pod `udp-clients` on the client's node: one UDP socket per source port
# argv[3] .. argv[3]+argv[4]-1, each asking argv[1]:argv[2] for its hostname every
# 0.5 s, for argv[5] seconds; one line per socket and round: "time source answer", the
# answer "-" when none came within 0.3 s. A pod of its own, not `kubectl exec`: it keeps
# sending while the node's agent is down.
UDP_CLIENTS = """
import select, socket, sys, time
address, port, first, count, duration = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
sockets = {}
for source in range(first, first + count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", source))
    sockets[s] = source
end = time.monotonic() + duration
while time.monotonic() < end:
    sent = time.time()
    for s in sockets:
        try:
            s.sendto(b"hostname", (address, port))
        except OSError:
            pass
    answers, deadline = {}, time.monotonic() + 0.3
    while len(answers) < len(sockets) and (left := deadline - time.monotonic()) > 0:
        for s in select.select([s for s in sockets if s not in answers], [], [], left)[0]:
            try:
                answers[s] = s.recv(512).decode().strip() or "-"
            except OSError:
                answers[s] = "-"
    for s, source in sockets.items():
        print(f"{sent:.3f} {source} {answers.get(s, '-')}", flush=True)
    time.sleep(max(0.0, 0.5 - (time.time() - sent)))
"""
UDP_CLIENT_PORTS = 16
UDP_CLIENT_FIRST_PORT = 42000
# From the agent's start to the first datagram a live endpoint answered. The agent
# starts, lists, syncs and reconciles in a few seconds; the entry the client keeps
# refreshing would never time out.
MOVED_WITHIN = 15.0


def until_agent_answers(cluster: Cluster, pod: str) -> None:
    """Wait until `kubectl exec` into `pod` works again (its node's agent serves it)."""
    deadline = time.monotonic() + 60
    while cluster.try_kubectl("exec", pod, "--", "true", timeout=10).returncode != 0:
        assert time.monotonic() < deadline, f"exec into {pod} did not work again"
        time.sleep(0.2)


Answer = tuple[float, int, str]  # (time, source port, answer)


def udp_answers(cluster: Cluster, pod: str) -> list[Answer]:
    """The lines the UDP client pod printed so far ([] while its node's agent is down)."""
    done = cluster.try_kubectl("logs", pod, timeout=20)
    if done.returncode != 0:
        return []
    answers = []
    for line in done.stdout.splitlines():
        at, source, answer = line.split()
        answers.append((float(at), int(source), answer))
    return answers


def test_a_restarted_proxy_moves_udp_clients_off_an_endpoint_gone_meanwhile_and_only_those(
    cluster: Cluster,
) -> None:
    service = "udp-restart"
    backends = [f"{service}-{i}" for i in range(4)]
    standby = f"{service}-new"
    cluster.apply(
        labcluster.service(
            service,
            ports=[{"name": "udp", "port": UDP_PORT, "targetPort": "udp", "protocol": "UDP"}],
        )
    )
    for name in backends:
        cluster.apply(udp_backend(name, service))
    cluster.apply(udp_backend(standby, "standby-udp"))
    for name in [*backends, standby]:
        cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=70)
    wait_for_endpoints(cluster, service, sorted(backends))
    cluster_ip = cluster.kubectl("get", "service", service, "-o", "jsonpath={.spec.clusterIP}")
    client = {
        "name": "clients",
        "image": "python:3",
        "command": ["python3", "-c", UDP_CLIENTS],
        "args": [
            cluster_ip,
            str(UDP_PORT),
            str(UDP_CLIENT_FIRST_PORT),
            str(UDP_CLIENT_PORTS),
            "300",
        ],
    }
    cluster.apply(pod("udp-clients", client, labels={}, node=CLIENT_NODE, restart_policy="Never"))
    cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod/udp-clients",
        "--timeout=60s",
        timeout=70,
    )

    # Each source port is pinned to the backend that answered it first.
    deadline = time.monotonic() + 30
    pinned: dict[int, str] = {}
    while len(pinned) < UDP_CLIENT_PORTS:
        assert time.monotonic() < deadline, f"not every UDP client got an answer: {pinned}"
        time.sleep(0.5)
        for _, source, answer in udp_answers(cluster, "udp-clients"):
            if answer != "-":
                pinned.setdefault(source, answer)
    assert set(pinned.values()) <= set(backends), pinned
    # The endpoint that goes: the one with the fewest clients, so most clients stay.
    gone = min(set(pinned.values()), key=lambda b: sum(v == b for v in pinned.values()))
    moving = {source for source, b in pinned.items() if b == gone}
    staying = set(pinned) - moving
    live = set(backends) - {gone} | {standby}

    with labcluster.agent_stopped(cluster, CLIENT_NODE):
        stopped_at = time.time()
        cluster.kubectl("delete", "pod", gone, "--grace-period=0", "--force", "--wait=false")
        cluster.kubectl("label", "pod", standby, f"app={service}", "--overwrite")
        wait_for_endpoints(cluster, service, sorted(live))
        started_at = time.time()

    # Read until every moving client got a live answer and a few seconds more went by.
    deadline = time.monotonic() + 60
    while True:
        answers = udp_answers(cluster, "udp-clients")
        moved: dict[int, float] = {}  # source port → its first live answer after the start
        for at, source, answer in answers:
            if source in moving and at > started_at and answer in live:
                moved.setdefault(source, at)
        last = max((at for at, _, _ in answers), default=0.0)
        if len(moved) == len(moving) and last > max(moved.values()) + 3:
            break
        assert time.monotonic() < deadline, (
            f"clients of {gone} that reached a live endpoint after the start: {moved}"
        )
        time.sleep(0.5)
    slowest = max(moved.values()) - started_at
    assert slowest < MOVED_WITHIN, f"the clients of {gone} moved only {slowest:.1f} s after"
    # A client of an endpoint that stayed was never sent elsewhere, across the restart.
    strayed = {
        (source, answer)
        for at, source, answer in answers
        if source in staying and at > stopped_at and answer not in ("-", pinned[source])
    }
    assert strayed == set(), f"clients of live endpoints were moved: {strayed}"
    cluster.kubectl("delete", "pod", "udp-clients", "--grace-period=0", "--force")


def test_an_unanswered_syn_does_not_pin_its_source_port_across_a_proxy_restart(
    cluster: Cluster,
) -> None:
    service = "syn-restart"
    old, new, cluster_ip = pinned_by_an_unanswered_syn(cluster, service, "standby-syn")

    with labcluster.agent_stopped(cluster, CLIENT_NODE):
        replace_the_endpoint(cluster, service, old, new)

    until_agent_answers(cluster, "client")
    answers = connect(cluster, cluster_ip, tries=10)
    assert answers[-1:] == [new], f"from the same source port after {old} went: {answers}"


# -- a reconcile against a real table ---------------------------------------------------------

# In a namespace of the test's own: a node address, addresses standing for endpoints
# that are gone (10.244.1.5-7) or live (10.244.2.6), and DNAT rules by source port, so
# that ENTRIES below leaves one entry of each kind.
TABLE_RULES = """
table inet sample {
  chain out {
    type nat hook output priority -100;
    ip daddr 10.96.0.10 udp sport 40001 dnat ip to 10.244.1.5:5353
    ip daddr 10.96.0.10 udp sport 40002 dnat ip to 10.244.2.6:5353
    ip daddr 192.168.50.2 udp dport 30053 dnat ip to 10.244.1.5:5353
    ip daddr 10.96.0.20 tcp sport 41001 dnat ip to 10.244.1.5:8080
    ip daddr 10.96.0.20 tcp sport 41002 dnat ip to 10.244.2.6:8080
    ip daddr 10.96.0.20 tcp sport 41003 dnat ip to 10.244.1.6:8080
    ip daddr 10.96.0.20 tcp sport 41004 dnat ip to 10.244.1.7:8080
    ip6 daddr fd00:10:96::a udp dport 53 dnat ip6 to [fd00:10:244::5]:5353
  }
  chain in {
    type filter hook input priority 0;
    ip daddr { 10.244.1.5, 10.244.2.6 } tcp dport 8080 drop
  }
}
"""
# Makes the entries, writes argv[1], then holds its sockets for argv[2] seconds.
ENTRIES = """
import socket, struct, sys, threading, time

def udp(source, to, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", source))
    s.sendto(b"x", to)
    return s

def tcp(source, to, wait=True):
    s = socket.socket()
    s.bind(("0.0.0.0", source))
    if wait:
        s.connect(to)
    else:
        s.setblocking(False)
        try:
            s.connect(to)
        except BlockingIOError:
            pass
    return s

resetting = socket.create_server(("10.244.1.6", 8080))
serving = socket.create_server(("10.244.1.7", 8080))

def reset():
    conn, _ = resetting.accept()
    conn.recv(10)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()

threading.Thread(target=reset, daemon=True).start()
held = [
    udp(40001, ("10.96.0.10", 53)),  # to an endpoint that went: stale
    udp(40002, ("10.96.0.10", 53)),  # to the live endpoint
    udp(40003, ("192.168.50.2", 30053)),  # NodePort, to an endpoint that went: stale
    udp(40004, ("10.96.0.10", 53)),  # not DNATed, leads nowhere: stale
    udp(40005, ("10.244.2.6", 9999)),  # to a pod directly
    udp(40006, ("127.0.0.1", 30053)),  # loopback, where NodePorts do not open
    udp(40007, ("fd00:10:96::a", 53), socket.AF_INET6),  # IPv6, to an endpoint that went
    tcp(41001, ("10.96.0.20", 80), wait=False),  # SYN_SENT to an endpoint that went: stale
    tcp(41002, ("10.96.0.20", 80), wait=False),  # SYN_SENT to the live endpoint
]
reset_by_peer = tcp(41003, ("10.96.0.20", 80))  # CLOSE after a reset: stale
reset_by_peer.send(b"x")
try:
    reset_by_peer.recv(10)
except OSError:
    pass
held += [tcp(41004, ("10.96.0.20", 80)), serving.accept()[0]]  # ESTABLISHED
open(sys.argv[1], "w").write("ready")
time.sleep(float(sys.argv[2]))
"""


def test_a_reconcile_deletes_exactly_the_stale_entries_of_a_real_table(
    netlab: NetLab, tmp_path: Path
) -> None:
    ns = netlab.namespace("ct")
    netlab.veth((ns, "n0"), (ns, "n1"))
    for cidr in ("192.168.50.2/24", "10.244.1.5/24", "10.244.1.6/24", "10.244.1.7/24"):
        netlab.address(ns, "n0", cidr)
    netlab.address(ns, "n0", "10.244.2.6/24")  # the live endpoint's
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "n1", "up"],
        ["ip", "-6", "addr", "add", "fd00:10:244::5/64", "dev", "n0", "nodad"],
        ["ip", "route", "add", "10.96.0.0/16", "dev", "n0"],
        ["ip", "-6", "route", "add", "fd00:10:96::/64", "dev", "n0"],
        ["nft", TABLE_RULES],
    ):
        netlab.run(ns, argv)
    ready = tmp_path / "ready"
    netlab.spawn(ns, [sys.executable, "-c", ENTRIES, str(ready), "120"])
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the entries were not made"
        time.sleep(0.05)
    table = conntrack.Conntrack(ns)

    def entries() -> set[tuple[str, str, tuple[str, int], tuple[str, int]]]:
        return {
            (e.protocol, e.state, e.destination, e.target)
            for family in ("ipv4", "ipv6")
            for e in conntrack.parse_entries(table.list_entries(family))
        }

    before = entries()
    udp_name = model.ServicePortName("kube-system", "dns", "dns", "UDP")
    tcp_name = model.ServicePortName("default", "web", "http", "TCP")
    dns6_name = model.ServicePortName("kube-system", "dns6", "dns", "UDP")
    services = {
        udp_name: (
            model.ServicePortInfo(udp_name, "10.96.0.10", 53, node_port=30053),
            (model.Endpoint("10.244.2.6", 5353),),
        ),
        tcp_name: (
            model.ServicePortInfo(tcp_name, "10.96.0.20", 80),
            (model.Endpoint("10.244.2.6", 8080),),
        ),
    }
    services6 = {
        dns6_name: (
            model.ServicePortInfo(dns6_name, "fd00:10:96::a", 53),
            (model.Endpoint("fd00:10:244::6", 5353),),
        )
    }

    cleaner = conntrack.Cleaner(table)
    try:
        cleaner.submit(
            [conntrack.Reconcile(services, "ipv4"), conntrack.Reconcile(services6, "ipv6")]
        )
        assert cleaner.wait_idle(30)
    finally:
        cleaner.close()

    kept = {
        ("udp", "", ("10.96.0.10", 53), ("10.244.2.6", 5353)),
        ("udp", "", ("10.244.2.6", 9999), ("10.244.2.6", 9999)),
        ("udp", "", ("127.0.0.1", 30053), ("127.0.0.1", 30053)),
        ("tcp", "SYN_SENT", ("10.96.0.20", 80), ("10.244.2.6", 8080)),
        ("tcp", "ESTABLISHED", ("10.96.0.20", 80), ("10.244.1.7", 8080)),
    }
    stale = {
        ("udp", "", ("10.96.0.10", 53), ("10.244.1.5", 5353)),
        ("udp", "", ("192.168.50.2", 30053), ("10.244.1.5", 5353)),
        ("udp", "", ("10.96.0.10", 53), ("10.96.0.10", 53)),
        ("udp", "", ("fd00:10:96::a", 53), ("fd00:10:244::5", 5353)),
        ("tcp", "SYN_SENT", ("10.96.0.20", 80), ("10.244.1.5", 8080)),
        ("tcp", "CLOSE", ("10.96.0.20", 80), ("10.244.1.6", 8080)),
    }
    assert before == kept | stale
    assert entries() == kept
