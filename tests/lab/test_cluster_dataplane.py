"""The data plane of a whole lab cluster under disturbance: an agent restart, a UDP endpoint's end.

As in test_cluster.py, one two-node lab serves the module: `switchboard up
--detach`, driven with `kubectl`, removed with `switchboard down` when the
module ends, passed or failed. Every request is made inside a pod with
`kubectl exec`, so it leaves from that pod's network namespace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.lab.labcluster import (
    Cluster,
    looper_pod,
    netexec_deployment,
    pause_pod,
    restart_agent,
    running_lab,
    service,
)

pytestmark = pytest.mark.lab

UDP_PORT = 8081
CLIENT_SOURCE_PORT = 40000
# `web`: HTTP on a ClusterIP; `echo-udp`: UDP on a ClusterIP, two pods; `client` asks.
MANIFEST = (
    netexec_deployment("web", replicas=2),
    service("web"),
    netexec_deployment("echo-udp", replicas=2, udp_port=UDP_PORT),
    service(
        "echo-udp",
        ports=[{"name": "udp", "port": UDP_PORT, "targetPort": "udp", "protocol": "UDP"}],
    ),
    pause_pod("client"),
)
# Runs in the looper pod: 60 requests to web's ClusterIP, 0.1 s apart, one line each.
# The address, not the name: this test is about the data plane (going by name through
# an agent restart is test_dns_survives_agent_restart.py's).
HTTP_LOOP = (
    "for i in $(seq 60); do"
    " curl -s -m 2 http://{ip}/hostname || echo FAIL-curl-exit-$?; echo; sleep 0.1;"
    " done"
)
# Runs inside the client pod: UDP "hostname" queries from one fixed source port to
# argv[1]:argv[2] every 0.2 s for argv[4] seconds, one line per answer ("-" for none);
# stops at the first answer that is not argv[3].
UDP_QUERIES = """
import socket, sys, time
address, port, avoid, within = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[5])))
s.settimeout(0.2)
deadline = time.monotonic() + within
while time.monotonic() < deadline:
    try:
        s.sendto(b"hostname", (address, port))
        answer = s.recv(512).decode().strip()
    except OSError:
        answer = "-"
    print(answer, flush=True)
    if answer not in ("-", avoid):
        break
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster") / "lab"
    data_dir.mkdir()
    with running_lab(data_dir, nodes=2) as cluster:
        cluster.apply(*MANIFEST)
        for deployment in ("web", "echo-udp"):
            cluster.kubectl(
                "rollout", "status", f"deployment/{deployment}", "--timeout=120s", timeout=130
            )
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
        yield cluster


def pod_states(cluster: Cluster) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (uid, restart counts) of every pod in the default namespace."""
    listed = json.loads(cluster.kubectl("get", "pods", "-o", "json"))
    return {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            tuple(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", [])),
        )
        for p in listed["items"]
    }


def test_restarting_the_agent_does_not_disturb_traffic(cluster: Cluster) -> None:
    # The requests come from a pod of their own, on the node whose agent restarts, so
    # they cross the data plane it rewrites; `kubectl exec` would pass through that agent.
    node_name = cluster.kubectl("get", "pod", "client", "-o", "jsonpath={.spec.nodeName}")
    web_ip = cluster.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    loop = HTTP_LOOP.replace("{ip}", web_ip)
    cluster.apply(looper_pod(node_name, loop))
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Running", "pod/looper", "--timeout=30s", timeout=40
    )
    before = {k: v for k, v in pod_states(cluster).items() if k != "looper"}
    time.sleep(1.0)
    agent = restart_agent(cluster, node_name)
    cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/looper",
        "--timeout=60s",
        timeout=70,
    )
    out = cluster.kubectl("logs", "looper")
    answers = [line for line in out.splitlines() if line]
    assert len(answers) == 60, out
    web = set(cluster.pods("web"))
    failed = [a for a in answers if a not in web]
    assert failed == [], f"{len(failed)} of 60 requests failed while the agent restarted"

    # The new agent keeps running and adopted the pods: same pods, no restarts.
    assert agent.alive(), "the restarted agent exited"
    assert {k: v for k, v in pod_states(cluster).items() if k != "looper"} == before
    node = json.loads(cluster.kubectl("get", "node", node_name, "-o", "json"))
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert cluster.exec("client", "curl", "-s", "-m", "2", "http://web/hostname") in web


def udp_queries(cluster: Cluster, cluster_ip: str, avoid: str, within: float) -> list[str]:
    """Answers to UDP queries from the client's fixed source port, until one is not `avoid`."""
    out = cluster.exec(
        "client",
        "python3",
        "-c",
        UDP_QUERIES,
        cluster_ip,
        str(UDP_PORT),
        avoid,
        str(within),
        str(CLIENT_SOURCE_PORT),
        timeout=within + 30,
    )
    return out.split()


def test_udp_clients_move_to_a_live_endpoint_when_theirs_goes_away(cluster: Cluster) -> None:
    cluster_ip = cluster.kubectl("get", "service", "echo-udp", "-o", "jsonpath={.spec.clusterIP}")
    pods = set(cluster.pods("echo-udp"))
    assert len(pods) == 2
    first = udp_queries(cluster, cluster_ip, avoid="", within=10)
    chosen = first[-1]
    assert chosen in pods, f"the UDP Service gave {first}, no pod's answer"
    # The same source port keeps reaching the same pod: conntrack holds the pick.
    again = udp_queries(cluster, cluster_ip, avoid="", within=5)
    assert again[-1] == chosen

    cluster.kubectl("delete", "pod", chosen, "--grace-period=0", "--force", "--wait=false")
    answers = udp_queries(cluster, cluster_ip, avoid=chosen, within=10)
    live = set(cluster.pods("echo-udp")) - {chosen}
    assert answers and answers[-1] in live, (
        f"from the same source port, answers after {chosen} went: {answers}"
    )
    cluster.kubectl("rollout", "status", "deployment/echo-udp", "--timeout=60s", timeout=70)
