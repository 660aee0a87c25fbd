"""A TCP client is not pinned to an endpoint that is gone by what conntrack remembers.

Connection tracking keeps a flow's DNAT after the rules change. A SYN sent
to an endpoint that never answered (its pod's network was already gone while
the rules still listed it) leaves an entry in SYN_SENT for 120 s, and a new
SYN from the same source port would follow it to the dead address. The test
makes such an entry with a rule in the endpoint pod's own namespace, deletes
that pod, lets another pod take its place, and connects again from the same
source port: the new pod must answer at the first try.

The client is on node-1 (where the DNAT and its conntrack entries live), the
Service's pods on node-2.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.lab import labcluster
from tests.lab.labcluster import Cluster, Manifest, netexec, pause_pod, pod, running_lab

pytestmark = pytest.mark.lab

POD_NETNS_PREFIX = "sbpod-"
CLIENT_SOURCE_PORT = 41000

BACKEND_NODE = "node-2"
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
CLIENT = pause_pod("client", labels={}, node="node-1")
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


def test_an_unanswered_syn_does_not_pin_its_source_port_to_a_deleted_endpoint(
    cluster: Cluster,
) -> None:
    service = "unanswered"
    old, new = f"{service}-old", f"{service}-new"
    cluster.apply(labcluster.service(service))
    start_backend(cluster, backend(old, service))
    start_backend(cluster, backend(new, "standby"))
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
