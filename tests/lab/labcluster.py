"""A lab cluster as the lab tests drive it: kubectl through its kubeconfig, `switchboard` itself.

Shared by the modules that start a whole lab with `switchboard up`:
`running_lab` starts one and removes it again, passed or failed;
`restart_agent` kills a node's agent with SIGKILL and starts it again, as a
crash and a supervisor's restart would.

The objects the tests apply are built here too, as dicts: `netexec_deployment`
and `netexec` (agnhost's test server, ready once it serves), `service` in front
of pods labelled app=<name>, `pod`, `pause_pod` (a place to run commands from)
and `looper_pod` (a script run once, read back with `kubectl logs`).
`Cluster.apply` sends them to kubectl as YAML documents.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from switchboard import labnet, labstate
from tests.lab.conftest import clean_environment

APPLY_STDIN = ("apply", "-f", "-")
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
HTTP_PORT = 8080  # where netexec serves HTTP, as the container port `http`

Manifest = dict[str, Any]


@dataclass
class Cluster:
    data_dir: Path
    node_ips: tuple[str, ...]
    # Agents this module started itself, stopped at the end if `switchboard down` did not.
    restarted: list[labstate.Process] = field(default_factory=list)

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / labstate.KUBECONFIG)

    def layout(self) -> labnet.Layout:
        """The lab's network: its nodes, with their names, namespaces and addresses."""
        state = labstate.State.load(self.data_dir.resolve())
        assert state is not None and state.layout is not None
        return state.layout

    def try_kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """kubectl's outcome, failed or not: for asking while a component may be down."""
        return subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_environment(),
            check=False,
        )

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        done = self.try_kubectl(*args, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, *objects: Manifest) -> None:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *APPLY_STDIN],
            input=yaml.safe_dump_all(objects, sort_keys=False),
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_environment(),
            check=False,
        )
        assert done.returncode == 0, f"kubectl apply: {done.stderr}"

    def pods(self, app: str) -> dict[str, str]:
        """Name → pod IP of the running pods labelled app=`app`."""
        listed = json.loads(self.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))
        return {
            p["metadata"]["name"]: p["status"].get("podIP", "")
            for p in listed["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        }

    def exec(self, pod: str, *argv: str, timeout: float = 60) -> str:
        return self.kubectl("exec", pod, "--", *argv, timeout=timeout)


def switchboard(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(),
        check=False,
    )


@contextlib.contextmanager
def running_lab(data_dir: Path, nodes: int = 2) -> Iterator[Cluster]:
    """A lab of `nodes` nodes (`switchboard up --detach`), removed with `switchboard down`.

    The teardown also fails when the lab left namespaces behind or a
    process with the lab's directory in its command line outlived it; such
    a process is ended all the same, by its pid.
    """
    cluster = Cluster(data_dir, ())
    try:
        up = switchboard(
            "up", "--nodes", str(nodes), "--data-dir", str(data_dir), "--detach", timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        cluster.node_ips = tuple(node.ip for node in cluster.layout().nodes)
        yield cluster
    finally:
        # The agents the tests restarted are their own: end them first, so that none
        # restarts a pod that `down` has just stopped.
        for agent in cluster.restarted:
            labstate.stop([agent])
        down = switchboard("down", "--data-dir", str(data_dir), timeout=120)
        left = labnet.leftovers(labnet.prefix_for(data_dir.resolve()))
        # Pods adopted by a restarted agent are not the lab's descendants; `down` finds
        # them through the agents' records. Whatever it missed is ended here all the
        # same (by pid, found by this lab's directory in its command line), then failed.
        stray = [p.pid for p in lab_processes(data_dir.resolve())]
        labstate.stop_pids(stray)
    assert down.returncode == 0, down.stdout + down.stderr
    assert left == [], f"the lab left {left} behind"
    assert stray == [], f"processes outlived the lab: {stray}"


def lab_processes(data_dir: Path) -> list[labstate.Process]:
    """Live processes whose command line names `data_dir` (the lab's pods, among others)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        record = labstate.Process.of("pod", int(entry))
        if record is not None and any(str(data_dir) in arg for arg in record.argv):
            found.append(record)
    return found


@contextlib.contextmanager
def agent_stopped(cluster: Cluster, node_name: str) -> Iterator[labstate.Process]:
    """The agent of `node_name` SIGKILLed for the block (its pods stay), then started again.

    The agent killed is the one running now: the lab's own, or one an earlier
    restart started; its record is yielded. The new one runs its command line
    and joins `cluster.restarted`, so the lab ends it too.
    """
    data_dir = cluster.data_dir.resolve()
    state = labstate.State.load(data_dir)
    assert state is not None
    role = f"agent {node_name}"
    candidates = [p for p in (*state.processes, *cluster.restarted) if p.role == role]
    running = [p for p in candidates if p.alive()]
    assert running, f"the {role} is not running before the test"
    [old] = running
    os.kill(old.pid, signal.SIGKILL)  # the agent alone: its pods stay, to be adopted
    deadline = time.monotonic() + 10
    while old.alive():
        assert time.monotonic() < deadline, f"the {role} did not die of SIGKILL"
        time.sleep(0.02)
    try:
        yield old
    finally:
        with open(data_dir / f"{role.replace(' ', '-')}-restarted.log", "ab") as log:
            child = subprocess.Popen(
                old.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=data_dir,
            )
        new = labstate.Process.started(role, child.pid, old.argv)
        assert new is not None, f"the restarted {role} exited at once"
        cluster.restarted.append(new)


def restart_agent(cluster: Cluster, node_name: str) -> labstate.Process:
    """SIGKILL the agent of `node_name` and start it again at once; the new agent."""
    with agent_stopped(cluster, node_name):
        pass
    return cluster.restarted[-1]


# -- manifests ------------------------------------------------------------------------------


def netexec(*, udp_port: int | None = None, delay_shutdown: int | None = None) -> Manifest:
    """The container `netexec`: HTTP on the port `http`, ready once /healthz answers.

    `udp_port` also serves UDP there, as the port `udp`; `delay_shutdown`
    keeps it serving that many seconds after SIGTERM.
    """
    args = ["netexec", f"--http-port={HTTP_PORT}"]
    ports: list[Manifest] = [{"name": "http", "containerPort": HTTP_PORT}]
    if udp_port is not None:
        args.append(f"--udp-port={udp_port}")
        ports.append({"name": "udp", "containerPort": udp_port, "protocol": "UDP"})
    if delay_shutdown is not None:
        args.append(f"--delay-shutdown={delay_shutdown}")
    return {
        "name": "netexec",
        "image": AGNHOST,
        "args": args,
        "ports": ports,
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": HTTP_PORT},
            "periodSeconds": 1,
        },
    }


def netexec_deployment(
    name: str,
    *,
    replicas: int,
    udp_port: int | None = None,
    delay_shutdown: int | None = None,
    termination_grace_period: int | None = None,
    strategy: Manifest | None = None,
) -> Manifest:
    """A Deployment `name` of `netexec` pods labelled app=`name`."""
    spec: Manifest = {"containers": [netexec(udp_port=udp_port, delay_shutdown=delay_shutdown)]}
    if termination_grace_period is not None:
        spec["terminationGracePeriodSeconds"] = termination_grace_period
    deployment: Manifest = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
    }
    if strategy is not None:
        deployment["strategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": deployment,
    }


def service(
    name: str, *, selector: dict[str, str] | None = None, ports: list[Manifest] | None = None
) -> Manifest:
    """A ClusterIP Service `name` for the pods labelled app=`name` (or `selector`).

    Without `ports`, port 80 leads to the pods' port `http`.
    """
    if selector is None:
        selector = {"app": name}
    if ports is None:
        ports = [{"name": "http", "port": 80, "targetPort": "http"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": ports},
    }


def pod(
    name: str,
    *containers: Manifest,
    labels: dict[str, str] | None = None,
    node: str | None = None,
    restart_policy: str | None = None,
    termination_grace_period: int | None = None,
) -> Manifest:
    """A Pod `name` labelled app=`name` (or `labels`; none when empty), on `node` if given."""
    metadata: Manifest = {"name": name}
    labels = labels if labels is not None else {"app": name}
    if labels:
        metadata["labels"] = labels
    spec: Manifest = {"containers": list(containers)}
    if node is not None:
        spec["nodeName"] = node
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    if termination_grace_period is not None:
        spec["terminationGracePeriodSeconds"] = termination_grace_period
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def pause_pod(
    name: str, *, labels: dict[str, str] | None = None, node: str | None = None
) -> Manifest:
    """A pod that only waits: a network namespace to run commands in with `kubectl exec`."""
    pause = {"name": "pause", "image": AGNHOST, "args": ["pause"]}
    return pod(name, pause, labels=labels, node=node)


def looper_pod(node: str, script: str) -> Manifest:
    """The pod `looper` on `node`: runs `sh -c script` once; its output is read with `kubectl logs`.

    A pod of its own rather than `kubectl exec`, which passes through the agent of the
    pod's node.
    """
    loop = {"name": "loop", "image": "busybox", "command": ["sh", "-c", script]}
    return pod("looper", loop, node=node, restart_policy="Never")
