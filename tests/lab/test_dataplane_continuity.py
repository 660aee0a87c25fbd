"""Traffic through a ClusterIP keeps flowing while the cluster changes under it.

Two promises of the Service data plane, each tested with real connections
in a two-node lab (`switchboard up --detach`, driven with `kubectl`,
removed with `switchboard down` when the module ends, passed or failed):

- an established TCP connection through a ClusterIP survives the node
  agent's crash and restart: the same socket keeps exchanging data during
  and after the restart, whichever node's agent it was, and new
  connections are served afterwards;
- a client opening a new connection per request is answered every time
  while the Deployment behind the Service scales down and up, since at
  least one endpoint is ready all along.

Every request leaves from a pod's own network namespace. The client of the
first test is a pod of its own whose output is read with `kubectl logs`,
since `kubectl exec` passes through the agent that is restarted.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import clean_environment
from tests.lab.labcluster import (
    Cluster,
    Manifest,
    netexec,
    netexec_deployment,
    pause_pod,
    pod,
    restart_agent,
    running_lab,
    service,
)

pytestmark = pytest.mark.lab

BACKEND = "conn-backend"
SCALED_REPLICAS = (3, 1, 4, 2)  # the first is the Deployment's own; then `kubectl scale`
REQUESTS_PER_STEP = 40  # new connections made after each step has settled
SETTLE_TIMEOUT = 180.0  # seconds for pods to start or go, on a machine shared with others


def manifest(client_node: str, backend_node: str, nodes: tuple[str, ...]) -> list[Manifest]:
    """`conn`: one backend on `backend_node`; `scaled`: a Deployment; a pause pod per node."""
    return [
        pod(BACKEND, netexec(), labels={"app": "conn"}, node=backend_node),
        service("conn"),
        # As Kubernetes' own e2e tests do: a pod scaled away keeps serving for a moment
        # after SIGTERM, while its endpoint's removal travels to every node's rules.
        netexec_deployment(
            "scaled", replicas=SCALED_REPLICAS[0], termination_grace_period=10, delay_shutdown=3
        ),
        service("scaled"),
        pause_pod("steady-client", node=client_node),
        *(pause_pod(f"pause-{node}", labels={"app": "pause"}, node=node) for node in nodes),
    ]


@pytest.fixture(scope="module")
def cluster(lab_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster") / "lab"
    data_dir.mkdir()
    with running_lab(data_dir, nodes=2) as cluster:
        nodes = tuple(node.name for node in cluster.layout().nodes)
        cluster.apply(*manifest(client_node=nodes[0], backend_node=nodes[1], nodes=nodes))
        cluster.kubectl(
            "rollout", "status", "deployment/scaled", "--timeout=180s", timeout=SETTLE_TIMEOUT
        )
        cluster.kubectl(
            "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=190
        )
        yield cluster


def cluster_ip(cluster: Cluster, service: str) -> str:
    return cluster.kubectl("get", "service", service, "-o", "jsonpath={.spec.clusterIP}")


def node_of(cluster: Cluster, pod: str) -> str:
    return cluster.kubectl("get", "pod", pod, "-o", "jsonpath={.spec.nodeName}")


# -- an established connection across an agent restart ------------------------------

# Runs as the client pod's command: one TCP connection to argv[1]:80, held open, with
# three HTTP/1.1 keep-alive requests on it every 0.25 s (an echo of the round's
# number, the client address the backend sees, the backend's name), and one request
# on a new connection after each round. A failure on the held connection ends the
# program: it never reconnects. One line per round and per new connection.
LONG_CONNECTION = r"""
import socket, sys, time
address, seconds = sys.argv[1], float(sys.argv[2])

def receive(sock, data=b""):
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.lower().split(":", 1) for line in lines[1:])
    length = int(fields["content-length"])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the peer")
        body += chunk
    status = lines[0].split()[1]
    if status != "200":
        raise ConnectionError("status " + status)
    return body.decode()

def ask(sock, path):
    sock.sendall(("GET " + path + " HTTP/1.1\r\nHost: conn\r\n\r\n").encode())
    return receive(sock)

held = socket.create_connection((address, 80), timeout=10)
print("open", f"{time.time():.3f}", held.getsockname()[1], flush=True)
deadline = time.monotonic() + seconds
round = 0
while time.monotonic() < deadline:
    round += 1
    now = f"{time.time():.3f}"
    try:
        echoed = ask(held, f"/echo?msg=round-{round}")
        peer = ask(held, "/clientip")
        name = ask(held, "/hostname")
    except (OSError, ValueError, KeyError) as exc:
        print("held", round, now, "FAIL", repr(exc).replace(" ", "_"), flush=True)
        sys.exit(1)
    print("held", round, now, name, peer, echoed, flush=True)
    try:
        with socket.create_connection((address, 80), timeout=10) as fresh:
            answer = ask(fresh, "/hostname")
    except (OSError, ValueError, KeyError) as exc:
        answer = "FAIL:" + repr(exc).replace(" ", "_")
    print("new", round, now, answer, flush=True)
    time.sleep(0.25)
print("done", flush=True)
"""
HELD_SECONDS = 900  # a bound only: the test ends the pod once it has seen enough


def long_connection_pod(name: str, node: str, address: str) -> Manifest:
    """A pod on `node` that runs LONG_CONNECTION to `address` once, as its only command."""
    command = ["python3", "-c", LONG_CONNECTION, address, str(HELD_SECONDS)]
    client = {"name": "client", "image": "busybox", "command": command}
    return pod(name, client, labels={"app": "long-connection"}, node=node, restart_policy="Never")


@dataclass(frozen=True, slots=True)
class Round:
    """One line of the client pod: a round on the held connection, or a new connection."""

    kind: str  # "held" or "new"
    number: int
    at: float  # wall-clock time the round began
    answer: tuple[str, ...]  # held: (name, "ip:port", echo); new: (name,); or ("FAIL", why)

    @property
    def failed(self) -> bool:
        return self.answer[0] == "FAIL" or self.answer[0].startswith("FAIL:")


@dataclass(frozen=True, slots=True)
class ClientLog:
    opened_port: int | None
    rounds: tuple[Round, ...]
    done: bool  # the program ended (a failure, or its time ran out)
    text: str

    def held(self) -> list[Round]:
        return [r for r in self.rounds if r.kind == "held"]

    def new(self) -> list[Round]:
        return [r for r in self.rounds if r.kind == "new"]


def parse_client_log(text: str) -> ClientLog:
    opened, rounds, done = None, [], False
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "open":
            opened = int(words[2])
        elif words[0] in ("held", "new") and len(words) >= 4:
            rounds.append(Round(words[0], int(words[1]), float(words[2]), tuple(words[3:])))
            done = done or (words[0] == "held" and words[3] == "FAIL")
        elif words[0] == "done":
            done = True
    return ClientLog(opened, tuple(rounds), done, text)


def read_client(
    cluster: Cluster, pod: str, enough: Callable[[ClientLog], bool], within: float = 180
) -> ClientLog:
    """The client pod's log once `enough` holds of it or the program ended.

    While the agent of the pod's node is down `kubectl logs` fails; it is
    asked again until `within` seconds have passed.
    """
    deadline = time.monotonic() + within
    seen = ClientLog(None, (), False, "")
    while time.monotonic() < deadline:
        done = cluster.try_kubectl("logs", pod)
        if done.returncode == 0:
            seen = parse_client_log(done.stdout)
            if seen.done or enough(seen):
                return seen
        time.sleep(0.5)
    raise AssertionError(f"the client's log did not get there in {within} s:\n{seen.text[-3000:]}")


def reachable_from(cluster: Cluster, pod: str, address: str, within: float = 180) -> str:
    """The first answer of http://`address`/hostname asked from `pod`, asked until one comes."""
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        done = cluster.try_kubectl(
            "exec", pod, "--", "curl", "-s", "-m", "5", f"http://{address}/hostname", timeout=30
        )
        if done.returncode == 0 and done.stdout:
            return done.stdout
        last = done.stderr or done.stdout
        time.sleep(0.5)
    raise AssertionError(f"{address} gave {pod} no answer in {within} s: {last}")


NEW_CONNECTIONS = (
    "for i in $(seq 10); do curl -s -m 5 http://{ip}/hostname || echo FAIL-$?; echo; done"
)


@pytest.mark.parametrize("restarted", ["client", "backend"], ids=lambda who: f"{who}-node")
def test_an_established_connection_through_a_cluster_ip_survives_an_agent_restart(
    cluster: Cluster, restarted: str
) -> None:
    client_node, backend_node = (node.name for node in cluster.layout().nodes)
    assert node_of(cluster, BACKEND) == backend_node
    restarted_node = client_node if restarted == "client" else backend_node
    conn_ip = cluster_ip(cluster, "conn")
    client = f"long-connection-{restarted}"
    marker = f"after-restart-{restarted}"
    cluster.apply(long_connection_pod(client, client_node, conn_ip))
    try:
        cluster.kubectl(
            "wait", "--for=condition=Ready", f"pod/{client}", "--timeout=120s", timeout=130
        )
        before = read_client(cluster, client, lambda log: len(log.held()) >= 4)
        assert not before.done, f"the client ended before the restart:\n{before.text}"
        client_ip = cluster.kubectl("get", "pod", client, "-o", "jsonpath={.status.podIP}")

        killed_at = time.time()
        agent = restart_agent(cluster, restarted_node)
        # Only the new agent can program a Service made after the old one died: once it
        # answers on the restarted node, that node's data plane is the new agent's.
        cluster.kubectl("create", "service", "clusterip", marker, "--tcp=80:8080")
        cluster.kubectl("set", "selector", f"service/{marker}", "app=conn")
        marker_ip = cluster_ip(cluster, marker)
        answer = reachable_from(cluster, f"pause-{restarted_node}", marker_ip)
        assert answer == BACKEND
        serving_at = time.time()

        log = read_client(
            cluster, client, lambda log: sum(r.at > serving_at for r in log.held()) >= 20
        )
        fresh = {
            node: cluster.exec(
                f"pause-{node}", "sh", "-c", NEW_CONNECTIONS.format(ip=conn_ip), timeout=120
            ).split()
            for node in (client_node, backend_node)
        }
        still_running = cluster.kubectl("get", "pod", client, "-o", "jsonpath={.status.phase}")
    finally:
        cluster.kubectl("delete", "service", marker, "--ignore-not-found")
        cluster.kubectl("delete", "pod", client, "--ignore-not-found", timeout=120)

    held = log.held()
    failed = [r for r in held if r.failed]
    assert failed == [], f"the held connection broke:\n{log.text[-3000:]}"
    assert not log.done and still_running == "Running", f"the client ended:\n{log.text[-3000:]}"
    # The same connection all along, seen from both ends: the client never reconnected
    # (its program cannot), and the backend saw the same client address and port.
    assert log.opened_port is not None
    expected = (BACKEND, f"{client_ip}:{log.opened_port}")
    wrong = [r for r in held if r.answer[:2] != expected or r.answer[2] != f"round-{r.number}"]
    assert wrong == [], f"answers on the held connection other than {expected}: {wrong[:5]}"
    assert [r.number for r in held] == list(range(1, len(held) + 1))
    during = [r for r in held if killed_at < r.at < serving_at]
    assert during, (
        f"no round on the held connection between the kill ({killed_at:.3f}) "
        f"and the new agent serving ({serving_at:.3f}):\n{log.text[-3000:]}"
    )
    assert sum(r.at > serving_at for r in held) >= 20

    # New connections, during the restart and after it, from both nodes.
    failed_new = [r for r in log.new() if r.answer != (BACKEND,)]
    assert failed_new == [], (
        f"new connections failed around the restart (the agent killed at {killed_at:.3f}, "
        f"the new one serving at {serving_at:.3f}): {failed_new}"
    )
    for node, answers in fresh.items():
        assert answers == [BACKEND] * 10, f"new connections from {node} after the restart"
    assert agent.alive(), "the restarted agent exited"


# -- scaling down and up under a steady client -----------------------------------------

# Runs in the steady client pod through `kubectl exec -i`: a new connection to
# argv[1]:80 per request, GET /hostname, one line per request (its number, start
# time, duration, local port, and the answer or FAIL:<why>), until stdin closes.
STEADY_CLIENT = r"""
import socket, sys, threading, time
address = sys.argv[1]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
deadline = time.monotonic() + float(sys.argv[2])
number = 0
while not stop.is_set() and time.monotonic() < deadline:
    number += 1
    started, port = time.time(), 0
    try:
        with socket.socket() as s:
            s.settimeout(10)
            s.bind(("", 0))
            port = s.getsockname()[1]
            s.connect((address, 80))
            s.sendall(b"GET /hostname HTTP/1.0\r\nHost: scaled\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode() if b" " in head else "none"
        answer = body.decode() if status == "200" and body.strip() else "FAIL:status-" + status
    except OSError as exc:
        answer = "FAIL:" + repr(exc).replace(" ", "_")
    took = time.time() - started
    print("req", number, f"{started:.6f}", f"{took:.3f}", port, answer, flush=True)
    time.sleep(0.05)
print("done", flush=True)
"""
STEADY_SECONDS = 1800  # a bound only: the test closes stdin when it has seen enough


@dataclass(frozen=True, slots=True)
class Request:
    number: int
    at: float
    took: float
    port: int
    answer: str

    @property
    def failed(self) -> bool:
        return self.answer.startswith("FAIL:")


class SteadyClient:
    """STEADY_CLIENT in a pod, its lines collected as they come; `on_failure` sees each failure."""

    def __init__(
        self, cluster: Cluster, pod: str, address: str, on_failure: Callable[[Request], None]
    ) -> None:
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.other_lines: list[str] = []
        self._process = subprocess.Popen(
            [
                *("kubectl", "--kubeconfig", cluster.kubeconfig, "exec", "-i", pod, "--"),
                *("python3", "-c", STEADY_CLIENT, address, str(STEADY_SECONDS)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_environment(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            words = line.split()
            if len(words) == 6 and words[0] == "req":
                request = Request(
                    int(words[1]), float(words[2]), float(words[3]), int(words[4]), words[5]
                )
                with self._lock:
                    self.requests.append(request)
                if request.failed:
                    self._on_failure(request)
            else:
                with self._lock:
                    self.other_lines.append(line.rstrip())

    def wait_requests_after(self, moment: float, count: int, within: float = 180) -> None:
        """Until `count` requests started after `moment` have their answer (or failure)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._lock:
                if sum(r.at > moment for r in self.requests) >= count:
                    return
            assert self._process.poll() is None, f"the client ended: {self.other_lines}"
            time.sleep(0.2)
        raise AssertionError(f"the client made fewer than {count} requests in {within} s")

    def stop(self) -> list[Request]:
        """Close the client's stdin, so it ends; its requests."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()  # the agent then ends the command in the pod
                self._process.wait()
        self._reader.join(timeout=10)
        with self._lock:
            return list(self.requests)


class NodeRecorder:
    """What the client's node did while the steady client ran, to explain a failure.

    Nothing here is asserted on. It records, with the time each line was
    read, `nft monitor` (the changes to the node's rules, as far as it can
    print them: not the elements of the endpoint maps), `conntrack -E`
    (connections as the node tracked them, with the endpoint each was
    DNATed to) and the Service's EndpointSlices as kubectl watches them;
    and on demand the node's whole ruleset and conntrack table. All of it
    is read inside the lab's node namespace, which it does not change.
    """

    def __init__(self, cluster: Cluster, node: str, service: str) -> None:
        [netns] = [n.netns for n in cluster.layout().nodes if n.name == node]
        self._netns = netns
        self._lock = threading.Lock()
        self.lines: dict[str, list[tuple[float, str]]] = {}
        self.snapshots: list[tuple[float, str]] = []
        self._processes: list[subprocess.Popen[str]] = []
        watches = {
            "nft monitor": ["ip", "netns", "exec", netns, "nft", "monitor"],
            "conntrack -E": ["ip", "netns", "exec", netns, "conntrack", "-E", "-p", "tcp"],
            "endpointslices": [
                *("kubectl", "--kubeconfig", cluster.kubeconfig, "get", "endpointslices"),
                *("-l", f"kubernetes.io/service-name={service}", "-o", "wide", "-w"),
            ],
        }
        for name, argv in watches.items():
            self.lines[name] = []
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=clean_environment(),
                )
            except OSError as exc:
                self.lines[name].append((time.time(), f"not recorded: {exc}"))
                continue
            self._processes.append(process)
            threading.Thread(target=self._read, args=(name, process), daemon=True).start()

    def _read(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._lock:
                self.lines[name].append((time.time(), line.rstrip()))

    def snapshot(self, reason: str) -> None:
        parts = [reason]
        for argv in (["nft", "list", "ruleset"], ["conntrack", "-L", "-p", "tcp"]):
            done = subprocess.run(
                ["ip", "netns", "exec", self._netns, *argv],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            parts.append(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
        with self._lock:
            self.snapshots.append((time.time(), "\n".join(parts)))

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def report(self, failures: list[Request], pod_ips: dict[str, str]) -> str:
        """Everything recorded, failures first, as text."""
        names = {ip: name for name, ip in pod_ips.items()}
        out = [f"pods: {pod_ips}", ""]
        with self._lock:
            for failure in failures:
                out.append(f"failed: {failure}")
                tracked = [
                    f"  {at:.6f} {line}"
                    for at, line in self.lines["conntrack -E"]
                    if f"sport={failure.port} " in line
                ]
                out.extend(tracked or ["  conntrack saw no connection from that port"])
                hit = {ip: name for ip, name in names.items() if any(ip in t for t in tracked)}
                out.append(f"  endpoints in its conntrack entries: {hit}")
                for name in ("nft monitor", "endpointslices"):
                    near = [
                        f"  {at:.6f} {name}: {line}"
                        for at, line in self.lines[name]
                        if failure.at - 2 <= at <= failure.at + failure.took + 1
                    ]
                    out.extend(near)
                out.append("")
            for name, lines in self.lines.items():
                out.append(f"== {name}")
                out.extend(f"{at:.6f} {line}" for at, line in lines)
            for at, text in self.snapshots:
                out.append(f"== snapshot at {at:.6f}")
                out.append(text)
        return "\n".join(out)


def settled(
    cluster: Cluster, app: str, replicas: int, within: float = SETTLE_TIMEOUT
) -> dict[str, str]:
    """Name → IP of the pods labelled app=`app` once exactly `replicas` run, all Ready."""
    deadline = time.monotonic() + within
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = json.loads(cluster.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
        ready = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        if len(pods) == len(ready) == replicas:
            return {p["metadata"]["name"]: p["status"]["podIP"] for p in ready}
        time.sleep(0.5)
    names = [p["metadata"]["name"] for p in pods]
    raise AssertionError(f"{app} did not settle at {replicas} ready pods in {within} s: {names}")


@dataclass(frozen=True, slots=True)
class Step:
    replicas: int
    scaled_at: float
    settled_at: float
    pods: dict[str, str]  # name → IP once settled


def test_a_steady_client_is_answered_while_the_deployment_scales_down_and_up(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = cluster_ip(cluster, "scaled")
    client_node = node_of(cluster, "steady-client")
    steps = [Step(SCALED_REPLICAS[0], 0.0, time.time(), settled(cluster, "scaled", 3))]
    recorder = NodeRecorder(cluster, client_node, "scaled")
    recorder.snapshot(f"before scaling: {steps[0].pods}")
    try:
        client = SteadyClient(
            cluster,
            "steady-client",
            address,
            on_failure=lambda r: recorder.snapshot(f"when request {r.number} failed: {r}"),
        )
        try:
            client.wait_requests_after(steps[0].settled_at, REQUESTS_PER_STEP)
            for replicas in SCALED_REPLICAS[1:]:
                scaled_at = time.time()
                cluster.kubectl("scale", "deployment/scaled", f"--replicas={replicas}")
                pods = settled(cluster, "scaled", replicas)
                steps.append(Step(replicas, scaled_at, time.time(), pods))
                recorder.snapshot(f"once {replicas} replicas were ready: {pods}")
                client.wait_requests_after(steps[-1].settled_at, REQUESTS_PER_STEP)
        finally:
            requests = client.stop()
    finally:
        recorder.close()

    every_pod = {name: ip for step in steps for name, ip in step.pods.items()}
    failed = [r for r in requests if r.failed]
    if failed:
        diagnostics = tmp_path / "node-record.txt"
        diagnostics.write_text(recorder.report(failed, every_pod))
        timeline = [
            f"{s.replicas} replicas: scaled at {s.scaled_at:.3f}, settled at {s.settled_at:.3f}"
            for s in steps
        ]
        raise AssertionError(
            f"{len(failed)} of {len(requests)} requests failed with a ready endpoint all along: "
            f"{failed[:10]}; steps: {timeline}; the node's rules and connections: {diagnostics}"
        )
    strangers = [r for r in requests if r.answer not in every_pod]
    assert strangers == [], f"answers from no pod of the Deployment: {strangers[:10]}"

    # Once a step has settled, only its pods answer, and the pods it added among them.
    for previous, step, following in zip(
        [None, *steps[:-1]], steps, [*steps[1:], None], strict=True
    ):
        until = following.scaled_at if following else float("inf")
        answers = {r.answer for r in requests if step.settled_at < r.at < until}
        assert answers <= set(step.pods), f"after scaling to {step.replicas}: {answers}"
        added = set(step.pods) - set(previous.pods) if previous else set()
        assert not added or answers & added, f"none of {added} answered after the scale-up"
