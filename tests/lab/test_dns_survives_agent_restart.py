"""A pod keeps resolving and reaching a Service by name while its node's agent restarts.

Pods ask the kube-dns ClusterIP, which the proxy spreads over every node's
DNS server; each server publishes itself as one endpoint of kube-dns
(`kube-dns-<node>`). If a node's DNS stopped with its agent, its endpoint
would stay ready while nothing answered there, and lookups landing on it
would time out. So the agent of the looper's node is killed with SIGKILL
and started again while the looper resolves `web` and fetches from it by
name every 0.1 s; not one lookup or fetch may fail.

One two-node lab serves the module (`running_lab`): `switchboard up
--detach`, driven with `kubectl`, removed with `switchboard down` when the
module ends, passed or failed. Every lookup and request is made inside the
looper pod, so it leaves from that pod's network namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.labcluster import (
    Cluster,
    looper_pod,
    netexec_deployment,
    restart_agent,
    running_lab,
    service,
)

pytestmark = pytest.mark.lab

NODE = "node-1"  # the looper's node, whose agent restarts
# `web`: two netexec pods behind a ClusterIP, which the looper reaches by name.
MANIFEST = (netexec_deployment("web", replicas=2), service("web"))
# Runs in the looper pod until {stop} exists (or four minutes have passed): resolve `web`
# through the pod's search path and fetch from it by name, 0.1 s apart, one line each:
# "<time> lookup ok|FAIL ..." and "<time> fetch <answer>|FAIL ...". A lookup gets two
# tries of 2 s each; a fetch has 3 s for name and answer. Lab pods run this machine's
# commands on its file system, so a file the test makes tells the looper to stop.
LOOP = """
end=$(( $(date +%s) + 240 ))
while [ ! -e {stop} ] && [ "$(date +%s)" -lt "$end" ]; do
  t=$(date +%s.%N)
  out=$(nslookup -timeout=2 -retry=1 web 2>&1)
  if echo "$out" | grep -qx "Address: {ip}"; then
    echo "$t lookup ok"
  else
    echo "$t lookup FAIL $(echo "$out" | tr '\\n' ' ')"
  fi
  t=$(date +%s.%N)
  if page=$(curl -s -m 3 http://web/hostname); then
    echo "$t fetch $page"
  else
    echo "$t fetch FAIL curl-exit-$?"
  fi
  sleep 0.1
done
"""
AGENT_BACK_WITHIN = 120.0  # seconds for a restarted agent to serve again, on a loaded machine
AFTER_RETURN = 5.0  # seconds the looper goes on once the agent is back


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster") / "lab"
    data_dir.mkdir()
    with running_lab(data_dir, nodes=2) as cluster:
        cluster.apply(*MANIFEST)
        cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
        yield cluster


def looper_lines(cluster: Cluster) -> list[tuple[float, str, str]] | None:
    """The looper's lines as (time, lookup|fetch, outcome), or None while its agent is away."""
    done = cluster.try_kubectl("logs", "looper", timeout=30)
    if done.returncode != 0:
        return None
    lines = []
    for line in done.stdout.splitlines():
        stamp, kind, outcome = [*line.split(" ", 2), "", ""][:3]
        lines.append((float(stamp), kind, outcome))
    return lines


def wait_for(what: str, within: float, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} within {within:.0f}s"
        time.sleep(0.5)


def test_a_pod_resolves_and_reaches_a_service_by_name_while_its_nodes_agent_restarts(
    cluster: Cluster, tmp_path: Path
) -> None:
    web_ip = cluster.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    stop = tmp_path / "stop-looper"
    loop = LOOP.replace("{stop}", str(stop)).replace("{ip}", web_ip)
    cluster.apply(looper_pod(NODE, loop))
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Running", "pod/looper", "--timeout=60s", timeout=70
    )
    try:
        # Names resolve before the restart: what follows is about the restart alone.
        wait_for(
            "the looper made ten lookups",
            60,
            lambda: len([k for _, k, _ in looper_lines(cluster) or [] if k == "lookup"]) >= 10,
        )
        killed_at = time.time()
        agent = restart_agent(cluster, NODE)
        # The new agent serves the looper's logs once it is back, as it does everything else.
        wait_for(
            f"the restarted agent of {NODE} served logs",
            AGENT_BACK_WITHIN,
            lambda: looper_lines(cluster) is not None,
        )
        back_at = time.time()
        time.sleep(AFTER_RETURN)
    finally:
        stop.touch()
    cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/looper",
        "--timeout=60s",
        timeout=70,
    )
    lines = looper_lines(cluster)
    assert lines is not None
    web = set(cluster.pods("web"))
    during = [line for line in lines if killed_at <= line[0] <= back_at]
    assert any(kind == "lookup" for _, kind, _ in during), "no lookup while the agent was away"
    assert any(stamp > back_at for stamp, _, _ in lines), "the looper stopped before the agent"
    failed = [
        line
        for line in lines
        if (line[1] == "lookup" and line[2] != "ok") or (line[1] == "fetch" and line[2] not in web)
    ]
    assert failed == [], (
        f"{len(failed)} of {len(lines)} lookups and fetches by name failed; the agent was "
        f"killed at {killed_at:.3f} and back at {back_at:.3f}: {failed}"
    )
    assert agent.alive(), "the restarted agent exited"
