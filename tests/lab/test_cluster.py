"""A whole lab cluster, as a user meets it: `switchboard up`, kubectl, curl, `switchboard down`.

One two-node lab serves the module: `switchboard up --detach` as a process,
driven with the real `kubectl` through the lab's kubeconfig, and removed
with `switchboard down` when the module ends, passed or failed. The host
sends only to node addresses, through the lab's own link; every other
request is made inside a pod with `kubectl exec`, so it leaves from that
pod's network namespace.

Pods run commands of this machine in their own network namespace, so a
pod can `curl` and `getent` like the host, but with the pod's address and
the pod's resolv.conf (the cluster DNS and its search path).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard import labnet, labstate
from tests.lab.conftest import clean_environment
from tests.lab.labcluster import Cluster, netexec_deployment, pause_pod, service, switchboard

pytestmark = pytest.mark.lab

DEMO = Path(__file__).parents[2] / "examples" / "demo.yaml"
DEMO_NODE_PORT = 30080
# A Deployment that always keeps a ready endpoint while it is replaced: a new
# pod must pass its readinessProbe before an old one goes (maxUnavailable 0).
# As Kubernetes' own e2e tests do, a replaced pod keeps serving for a moment after
# SIGTERM, while its endpoint's removal travels to every node's rules; without it a
# connection can reach a pod that is already gone, here as on any cluster.
WEB = (
    netexec_deployment(
        "web",
        replicas=2,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        termination_grace_period=5,
        delay_shutdown=2,
    ),
    service("web"),
    pause_pod("client"),
)
# Runs inside the client pod: 40 requests to each name, 0.1 s apart, one line each.
CLIENT_LOOP = (
    "for i in $(seq 40); do"
    ' echo "fqdn $(curl -s -m 2 http://web.default.svc.cluster.local/hostname)";'
    ' echo "short $(curl -s -m 2 http://web/hostname)";'
    " sleep 0.1;"
    " done"
)


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster") / "lab"
    data_dir.mkdir()
    try:
        up = switchboard("up", "--nodes", "2", "--data-dir", str(data_dir), "--detach", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        state = labstate.State.load(data_dir.resolve())
        assert state is not None and state.layout is not None
        cluster = Cluster(data_dir, tuple(node.ip for node in state.layout.nodes))
        cluster.kubectl("apply", "-f", str(DEMO))
        cluster.apply(*WEB)
        for deployment in ("demo", "web"):
            cluster.kubectl(
                "rollout", "status", f"deployment/{deployment}", "--timeout=120s", timeout=130
            )
        cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s", timeout=70)
        yield cluster
    finally:
        down = switchboard("down", "--data-dir", str(data_dir), timeout=120)
        left = labnet.leftovers(labnet.prefix_for(data_dir.resolve()))
    assert down.returncode == 0, down.stdout + down.stderr
    assert left == [], f"the lab left {left} behind"


def get(url: str, within: float = 10) -> str:
    """GET `url` from this namespace, without any proxy, retrying while it is not yet served."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + within
    while True:
        try:
            with opener.open(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_demo_answers_on_every_node_address_with_the_names_of_its_pods(
    cluster: Cluster,
) -> None:
    pods = set(cluster.pods("demo"))
    assert len(pods) == 3
    for node_ip in cluster.node_ips:
        answers = {get(f"http://{node_ip}:{DEMO_NODE_PORT}/hostname") for _ in range(12)}
        assert answers <= pods, f"{node_ip} answered {answers - pods}, not a demo pod"
        assert answers, f"{node_ip} gave no answer"


@pytest.mark.parametrize("name", ["demo", "demo.default", "demo.default.svc.cluster.local"])
def test_a_pod_resolves_a_service_through_its_search_path_and_reaches_it(
    cluster: Cluster, name: str
) -> None:
    cluster_ip = cluster.kubectl("get", "service", "demo", "-o", "jsonpath={.spec.clusterIP}")
    client = "client"
    resolved = cluster.exec(client, "getent", "hosts", name).split()
    assert resolved[0] == cluster_ip
    assert "demo.default.svc.cluster.local" in resolved[1:]
    answer = cluster.exec(client, "curl", "-s", "-m", "2", f"http://{name}/hostname")
    assert answer in cluster.pods("demo")


def test_a_client_pod_reaches_web_by_its_names_while_the_backing_pods_are_replaced(
    cluster: Cluster,
) -> None:
    before = set(cluster.pods("web"))
    kubeconfig = str(cluster.data_dir / labstate.KUBECONFIG)
    loop = subprocess.Popen(
        ["kubectl", "--kubeconfig", kubeconfig, "exec", "client", "--", "sh", "-c", CLIENT_LOOP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    try:
        time.sleep(0.5)
        cluster.kubectl("rollout", "restart", "deployment/web")
        cluster.kubectl("rollout", "status", "deployment/web", "--timeout=90s", timeout=100)
        out, err = loop.communicate(timeout=120)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    after = set(cluster.pods("web"))
    assert loop.returncode == 0, err
    assert after.isdisjoint(before), "the rollout did not replace the pods"

    results = [line.split(" ", 1) for line in out.splitlines()]
    assert len(results) == 80
    failed = [line for line in results if len(line) < 2 or not line[1].startswith("web-")]
    assert failed == [], f"{len(failed)} of 80 requests got no pod's answer: {failed}"
    served = {line[1] for line in results}
    assert served <= before | after
    assert served & after, "no request reached a new pod while the loop ran"


def test_a_pod_reaches_a_cluster_ip_with_its_own_address_as_the_source(cluster: Cluster) -> None:
    cluster_ip = cluster.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    client_ip = cluster.pods("client")["client"]
    seen = {
        cluster.exec("client", "curl", "-s", "-m", "2", f"http://{cluster_ip}/clientip").rsplit(
            ":", 1
        )[0]
        for _ in range(4)
    }
    assert seen == {client_ip}


def test_kubectl_logs_and_exec_reach_a_lab_pod(cluster: Cluster) -> None:
    pod = sorted(cluster.pods("demo"))[0]
    assert cluster.exec(pod, "hostname").strip() == pod
    assert cluster.exec(pod, "sh", "-c", "echo out; echo err >&2; exit 0") == "out\n"
    logs = cluster.kubectl("logs", pod)
    assert "Started HTTP server on port 8080" in logs
