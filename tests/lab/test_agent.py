"""The node agent against the real apiserver: Node, pods as processes, probes, deletion, restart.

The apiserver runs as a process on 127.0.0.1 (one per module). Each test
makes its own node: a network namespace of the test's, where the agent
puts its bridge and its pods' veths; every pod gets a namespace of its own
under it. The agent itself runs in pytest's namespace (it only talks to the
apiserver on loopback), in-process, or as a process for the kill -9 test.
No controller-manager runs: pods are created already bound (spec.nodeName),
and the agent is given its podCIDR unless a test plays the controller.

What a pod does is observed as a person would: through the API (phase,
conditions, containerStatuses, events), through files its commands write
under the test's own directory, and over HTTP from inside its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import itertools
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns

from switchboard.agent import main, podnet, runtime
from switchboard.api import kinds
from switchboard.client import errors, rest
from tests.e2e.conftest import Server, start_server
from tests.lab.conftest import SESSION_PREFIX, NetLab, clean_environment
from tests.lab.test_podnet import fetch

pytestmark = pytest.mark.lab

POD_CIDR = "10.244.7.0/24"
NODE_IP = "10.250.7.1"  # only reported in the Node's status; no interface holds it
BRIDGE = "sbt-br0"
VETH_PREFIX = "sbt"
CLUSTER_DNS = "10.96.0.10"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
SHELL = "docker.io/library/busybox:1.36"  # not built in: runs its command from the node's disk
BACKOFF = 0.5


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("apiserver"), "--bookmark-interval", "1")
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Node:
    """One test's node: its namespace, data dir and agent (in-process or a process)."""

    name: str
    netns: str
    data_dir: Path
    pod_netns_prefix: str
    server: Server
    pod_cidr: str | None = POD_CIDR
    task: asyncio.Task[None] | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir / "agent.log"

    def options(self) -> dict[str, Any]:
        return {
            "node_ip": NODE_IP,
            "data_dir": str(self.data_dir),
            "netns": self.netns,
            "pod_cidr": self.pod_cidr,
            "api_port": 10250,
            "bridge": BRIDGE,
            "veth_prefix": VETH_PREFIX,
            "pod_netns_prefix": self.pod_netns_prefix,
            "cluster_dns": [CLUSTER_DNS],
            "restart_backoff": BACKOFF,
            "heartbeat_interval": 1.0,
        }

    def start(self, **extra: Any) -> None:
        """Run the agent in this process, as a task of the test's event loop."""
        self.task = asyncio.get_running_loop().create_task(
            main.run(self.server.kubeconfig, self.name, **self.options(), **extra)
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            done, _ = await asyncio.wait([self.task], timeout=30)
            if not done:
                stacks = io.StringIO()
                for task in asyncio.all_tasks():
                    task.print_stack(file=stacks)
                raise AssertionError(f"the agent did not stop within 30s:\n{stacks.getvalue()}")
            self.task = None

    def spawn(self) -> subprocess.Popen[bytes]:
        """Run the agent as a process of its own (stdout and stderr to agent.log)."""
        script = (
            "import json, logging, sys\n"
            "from switchboard.agent import main\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "sys.exit(main.serve(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3])))\n"
        )
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    script,
                    str(self.server.kubeconfig),
                    self.name,
                    json.dumps(self.options()),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_environment(),
            )
        return self.process

    def end_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> None:
        """Whatever the test left: pod processes, pod network, pod namespaces."""
        self.end_process()
        runtime.Runtime(self.data_dir).kill_recorded()
        if self.netns in netns.listnetns():
            network = podnet.PodNetwork(
                self.netns,
                BRIDGE,
                self.pod_cidr or POD_CIDR,
                self.data_dir / "network",
                veth_prefix=VETH_PREFIX,
            )
            network.teardown_node()
        for name in netns.listnetns():
            if name.startswith(self.pod_netns_prefix):
                netns.remove(name)


@pytest.fixture
async def client(apiserver: Server) -> AsyncIterator[rest.Client]:
    async with rest.Client.from_kubeconfig(apiserver.kubeconfig) as c:
        yield c


@pytest.fixture
async def node(
    netlab: NetLab, apiserver: Server, tmp_path: Path, client: rest.Client
) -> AsyncIterator[Node]:
    token = secrets.token_hex(3)
    made = Node(
        name=f"node-{token}",
        netns=netlab.namespace(f"node-{token}"),
        data_dir=tmp_path / "agent",
        pod_netns_prefix=f"{SESSION_PREFIX}p{token}-",
        server=apiserver,
    )
    made.data_dir.mkdir()
    try:
        yield made
    finally:
        await made.stop()
        await asyncio.to_thread(made.cleanup)  # pyroute2 must not run on the loop thread
        with contextlib.suppress(errors.NotFound):
            await client.delete(kinds.NODES, None, made.name)


@pytest.fixture
async def namespace(client: rest.Client) -> str:
    name = f"agent-{secrets.token_hex(4)}"
    await client.create(kinds.NAMESPACES, None, {"metadata": {"name": name}})
    return name


# -- helpers ------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 20.0, every: float = 0.1
) -> Any:
    """The first truthy result of `check`, retried for `within` seconds; fails with the last one."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within}s; last seen: {last!r}")


def pod_manifest(
    node: Node, name: str, containers: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node.name, "containers": containers, **spec},
    }


def shell(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container running `sh -c script` from the node's disk (`$$$$` is sh's `$$`: Kubernetes
    expands `$(VAR)` in commands and turns `$$` into `$`)."""
    return {"name": name, "image": SHELL, "command": ["sh", "-c", script], **extra}


async def create_pod(client: rest.Client, namespace: str, manifest: dict[str, Any]) -> Any:
    return await client.create(kinds.PODS, namespace, manifest)


async def get_pod(client: rest.Client, namespace: str, name: str) -> Any:
    return await client.get(kinds.PODS, namespace, name)


def container(pod: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        s for s in pod["status"].get("containerStatuses") or [] if s["name"] == name
    )
    return found


def condition(pod: Any, kind: str) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


async def until_phase(
    client: rest.Client, namespace: str, name: str, phase: str, within: float = 20.0
) -> Any:
    async def check() -> Any:
        pod = await get_pod(client, namespace, name)
        return pod if pod.get("status", {}).get("phase") == phase else None

    return await eventually(check, within)


async def until_ready(
    client: rest.Client, namespace: str, name: str, ready: bool = True, within: float = 20.0
) -> Any:
    want = "True" if ready else "False"

    async def check() -> Any:
        pod = await get_pod(client, namespace, name)
        return pod if condition(pod, "Ready") == want else None

    return await eventually(check, within)


async def until_gone(client: rest.Client, namespace: str, name: str, within: float = 20.0) -> None:
    async def check() -> bool:
        try:
            await get_pod(client, namespace, name)
        except errors.NotFound:
            return True
        return False

    await eventually(check, within)


async def events_of(client: rest.Client, namespace: str, name: str) -> list[tuple[str, str]]:
    listed = await client.list(kinds.EVENTS, namespace)
    return [
        (e["reason"], e["message"])
        for e in listed["items"]
        if e["involvedObject"].get("name") == name
    ]


async def explain(client: rest.Client, namespace: str, name: str) -> str:
    """The pod's container states and events, for a failure message."""
    pod = await get_pod(client, namespace, name)
    return json.dumps(
        {
            "containerStatuses": pod["status"].get("containerStatuses"),
            "events": await events_of(client, namespace, name),
        },
        indent=1,
    )


async def until_event(
    client: rest.Client, namespace: str, name: str, reason: str, message_start: str
) -> None:
    """Wait for an Event about the pod (events are written in the background)."""

    async def check() -> bool:
        events = await events_of(client, namespace, name)
        return any(r == reason and m.startswith(message_start) for r, m in events)

    await eventually(check)


async def pid_in(path: Path) -> int:
    """The pid a container wrote to `path` (a pod can be Ready before its first line ran)."""

    async def written() -> str:
        return _whole_lines(path)

    return int(await eventually(written))


def _whole_lines(path: Path) -> str:
    text = path.read_text() if path.exists() else ""
    return text if text.endswith("\n") else ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# -- the Node ------------------------------------------------------------------------------


async def test_the_node_registers_ready_with_its_addresses_and_capacity_and_heartbeats(
    node: Node, client: rest.Client
) -> None:
    node.start()

    async def ready() -> Any:
        with contextlib.suppress(errors.NotFound):
            obj = await client.get(kinds.NODES, None, node.name)
            return obj if condition(obj, "Ready") == "True" else None
        return None

    obj = await eventually(ready)
    status = obj["status"]
    assert {"type": "InternalIP", "address": NODE_IP} in status["addresses"]
    assert {"type": "Hostname", "address": node.name} in status["addresses"]
    assert status["capacity"]["pods"] == "110"
    assert int(status["allocatable"]["cpu"]) >= 1
    assert status["allocatable"]["memory"].endswith("Ki")
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    assert obj["spec"]["podCIDR"] == POD_CIDR
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == node.name

    lease = await client.get(kinds.LEASES, "kube-node-lease", node.name)
    assert lease["spec"]["holderIdentity"] == node.name
    assert lease["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    async def renewed() -> bool:
        again = await client.get(kinds.LEASES, "kube-node-lease", node.name)
        return bool(again["spec"]["renewTime"] != lease["spec"]["renewTime"])

    await eventually(renewed, within=5)

    await node.stop()
    stopped = await client.get(kinds.NODES, None, node.name)
    assert condition(stopped, "Ready") == "False"


async def test_without_a_pod_cidr_the_agent_waits_for_the_one_written_into_its_node(
    node: Node, client: rest.Client
) -> None:
    node.pod_cidr = None
    node.start()

    async def registered() -> Any:
        with contextlib.suppress(errors.NotFound):
            return await client.get(kinds.NODES, None, node.name)
        return None

    obj = await eventually(registered)
    await asyncio.sleep(0.5)
    obj = await client.get(kinds.NODES, None, node.name)
    assert condition(obj, "Ready") == "False"
    assert (
        "podCIDR" in next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]
    )

    # What the controller-manager's node IPAM does:
    await client.patch(
        kinds.NODES, None, node.name, {"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}
    )

    async def ready() -> bool:
        again = await client.get(kinds.NODES, None, node.name)
        return condition(again, "Ready") == "True"

    await eventually(ready)
    node.pod_cidr = POD_CIDR  # for the cleanup


# -- pods ----------------------------------------------------------------------------------


async def test_a_pod_runs_in_its_own_namespace_with_an_ip_from_the_pod_cidr(
    node: Node, client: rest.Client, namespace: str, netlab: NetLab
) -> None:
    node.start()
    netexec = {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}
    await create_pod(client, namespace, pod_manifest(node, "web", [netexec]))

    pod = await until_ready(client, namespace, "web")

    status = pod["status"]
    assert status["phase"] == "Running"
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(POD_CIDR)
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == NODE_IP
    assert status["qosClass"] == "BestEffort"
    assert status["startTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    web = container(pod, "web")
    assert web["ready"] and web["started"] and web["restartCount"] == 0
    assert web["containerID"].startswith("switchboard://")
    assert web["imageID"] and web["image"] == AGNHOST
    assert "running" in web["state"]
    # The pod answers on its own address, from its own namespace, with its own hostname.
    pod_netns = node.pod_netns_prefix + pod["metadata"]["uid"]
    assert fetch(netlab, pod_netns, f"http://{status['podIP']}:8080/hostname") == "web"
    for reason in ("Pulled", "Created", "Started"):
        await until_event(client, namespace, "web", reason, "")
    # A pod that is doing fine costs the API nothing.
    await asyncio.sleep(2)
    again = await get_pod(client, namespace, "web")
    assert again["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]


async def test_readiness_follows_the_probes_and_a_failed_liveness_probe_restarts(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    ready_file, alive_file = tmp_path / "ready", tmp_path / "alive"
    ready_file.touch()
    alive_file.touch()
    web = {
        "name": "web",
        "image": AGNHOST,
        "args": ["netexec", "--http-port=8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
    }
    gate = shell(
        "gate",
        "sleep 1000",
        readinessProbe={
            "exec": {"command": ["test", "-e", str(ready_file)]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        livenessProbe={
            "exec": {"command": ["test", "-e", str(alive_file)]},
            "initialDelaySeconds": 1,
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    )
    await create_pod(
        client,
        namespace,
        pod_manifest(node, "probed", [web, gate], terminationGracePeriodSeconds=1),
    )
    pod = await until_ready(client, namespace, "probed")
    assert container(pod, "web")["started"] is True

    ready_file.unlink()
    pod = await until_ready(client, namespace, "probed", ready=False)
    assert container(pod, "gate")["ready"] is False
    assert container(pod, "web")["ready"] is True
    assert pod["status"]["phase"] == "Running"
    ready_file.touch()
    await until_ready(client, namespace, "probed")

    alive_file.unlink()

    async def restarted() -> Any:
        pod = await get_pod(client, namespace, "probed")
        return pod if container(pod, "gate")["restartCount"] >= 1 else None

    try:
        pod = await eventually(restarted, within=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await explain(client, namespace, 'probed')}") from None
    assert container(pod, "web")["restartCount"] == 0
    await until_event(
        client,
        namespace,
        "probed",
        "Killing",
        "Container gate failed liveness probe, will be restarted",
    )
    await until_event(client, namespace, "probed", "Unhealthy", "Readiness probe failed: ")


async def test_a_crashing_container_is_restarted_with_growing_back_off(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    starts = tmp_path / "starts"
    crasher = shell("crasher", f"date +%s.%N >> {starts}; echo run $(wc -l < {starts}); exit 3")
    await create_pod(client, namespace, pod_manifest(node, "crasher", [crasher]))

    async def restarted_thrice() -> Any:
        pod = await get_pod(client, namespace, "crasher")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return pod if statuses and statuses[0]["restartCount"] >= 3 else None

    pod = await eventually(restarted_thrice, within=30)
    status = container(pod, "crasher")
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always: it keeps coming back

    async def four_runs() -> list[float]:  # the fourth may be Running before its first line
        times = [float(t) for t in _whole_lines(starts).split()]
        return times if len(times) >= 4 else []

    times = await eventually(four_runs)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Immediate first restart, then BACKOFF, 2 × BACKOFF, ...
    assert gaps[1] >= BACKOFF * 0.9 and gaps[2] >= 2 * BACKOFF * 0.9, gaps

    async def backing_off() -> Any:
        pod = await get_pod(client, namespace, "crasher")
        waiting = container(pod, "crasher")["state"].get("waiting") or {}
        return waiting if waiting.get("reason") == "CrashLoopBackOff" else None

    waiting = await eventually(backing_off, within=30, every=0.05)
    assert "restarting failed container=crasher" in waiting["message"]
    await until_event(
        client,
        namespace,
        "crasher",
        "BackOff",
        f"Back-off restarting failed container crasher in pod crasher_{namespace}"
        f"({pod['metadata']['uid']})",
    )


async def test_restart_policy_never_fails_the_pod_with_the_exit_code(
    node: Node, client: rest.Client, namespace: str
) -> None:
    node.start()
    failing = shell("job", "echo working; exit 7")
    created = await create_pod(
        client, namespace, pod_manifest(node, "job", [failing], restartPolicy="Never")
    )

    pod = await until_phase(client, namespace, "job", "Failed")

    status = container(pod, "job")
    assert status["state"]["terminated"]["exitCode"] == 7
    assert status["state"]["terminated"]["reason"] == "Error"
    assert status["restartCount"] == 0 and status["ready"] is False
    assert condition(pod, "Ready") == "False"
    # A finished pod gives its network back; its log stays for `kubectl logs`.
    uid = created["metadata"]["uid"]
    await eventually(lambda: _false_async(node.pod_netns_prefix + uid in netns.listnetns()))
    pods_runtime = runtime.Runtime(node.data_dir)
    recorded = pods_runtime.recover()[uid]
    assert (recorded.directory / "job" / "0.log").read_text() == "working\n"


async def _false_async(value: bool) -> bool:
    return not value


async def _async(value: Any) -> Any:
    return value


async def test_restart_policy_on_failure_restarts_until_the_container_succeeds(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    flag = tmp_path / "second-try"
    flaky = shell("flaky", f"if [ -e {flag} ]; then exit 0; fi; touch {flag}; exit 1")
    await create_pod(
        client, namespace, pod_manifest(node, "flaky", [flaky], restartPolicy="OnFailure")
    )

    pod = await until_phase(client, namespace, "flaky", "Succeeded")

    status = container(pod, "flaky")
    assert status["restartCount"] == 1
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert status["lastState"]["terminated"]["exitCode"] == 1


async def test_the_kubelet_api_hook_gets_the_runtime_which_finds_logs_and_execs_in_pods(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    handed: asyncio.Future[runtime.Runtime] = asyncio.get_running_loop().create_future()

    async def kubelet_api(pods: runtime.Runtime) -> None:
        handed.set_result(pods)
        await asyncio.Event().wait()  # a server would serve here until cancelled

    node.start(kubelet_api=kubelet_api)
    count = tmp_path / "count"
    script = (
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
        'echo "run $n"; [ $n -ge 2 ] || exit 1; exec sleep 1000'
    )
    await create_pod(client, namespace, pod_manifest(node, "talker", [shell("app", script)]))

    async def second_run_ready() -> Any:
        pod = await until_ready(client, namespace, "talker")
        return pod if container(pod, "app")["restartCount"] == 1 else None

    pod = await eventually(second_run_ready)
    pods = await asyncio.wait_for(handed, 5)

    current = pods.log_path(namespace, "talker", "app")
    previous = pods.log_path(namespace, "talker", "app", previous=True)
    assert current is not None and previous is not None
    assert await eventually(lambda: _async(_whole_lines(current))) == "run 2\n"
    assert previous.read_text() == "run 1\n"
    assert pods.log_path(namespace, "talker", "nope") is None
    assert pods.log_path(namespace, "nobody", "app") is None

    argv, env = pods.exec_argv(
        namespace, "talker", "app", ["sh", "-c", "hostname; cat /proc/net/fib_trie"]
    )
    done = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await done.communicate())[0].decode()
    assert done.returncode == 0, output
    assert output.splitlines()[0] == "talker"
    assert pod["status"]["podIP"] in output  # the pod's own network namespace
    assert env["HOSTNAME"] == "talker"
    with pytest.raises(runtime.PodNotFound):
        pods.exec_argv(namespace, "nobody", "app", ["true"])


async def test_a_container_gets_its_env_downward_api_working_dir_hostname_and_dns(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    out = tmp_path / "seen"
    script = f"{{ env; echo cwd=$(pwd); echo host=$(hostname); cat /etc/resolv.conf; }} > {out}"

    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    env = [
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "POD_IP", "valueFrom": field("status.podIP")},
        {"name": "NODE_NAME", "valueFrom": field("spec.nodeName")},
        {"name": "APP", "valueFrom": field("metadata.labels['app']")},
        {"name": "GREETING", "value": "hello $(POD_NAME)"},
    ]
    manifest = pod_manifest(
        node,
        "env",
        [shell("env", script, env=env, workingDir=str(tmp_path))],
        restartPolicy="Never",
    )
    manifest["metadata"]["labels"] = {"app": "demo"}
    await create_pod(client, namespace, manifest)

    pod = await until_phase(client, namespace, "env", "Succeeded")

    seen = out.read_text().splitlines()
    values = dict(line.split("=", 1) for line in seen if "=" in line)
    assert values["POD_NAME"] == "env"
    assert values["POD_NAMESPACE"] == namespace
    assert values["POD_IP"] == pod["status"]["podIP"]
    assert values["NODE_NAME"] == node.name
    assert values["APP"] == "demo"
    assert values["GREETING"] == "hello env"
    assert values["HOSTNAME"] == "env"
    assert values["cwd"] == str(tmp_path)
    assert values["host"] == "env"
    assert f"nameserver {CLUSTER_DNS}" in seen
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" in seen
    assert "options ndots:5" in seen
    assert container(pod, "env")["state"]["terminated"]["reason"] == "Completed"


async def test_an_image_neither_built_in_nor_given_a_command_waits_with_err_image_pull(
    node: Node, client: rest.Client, namespace: str
) -> None:
    node.start()
    await create_pod(
        client, namespace, pod_manifest(node, "nginx", [{"name": "web", "image": "nginx:1.27"}])
    )

    async def waiting() -> Any:
        pod = await get_pod(client, namespace, "nginx")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        state = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return (pod, state) if state.get("reason") == "ErrImagePull" else None

    pod, state = await eventually(waiting)
    assert 'image "nginx:1.27" is not built into this node' in state["message"]
    assert "no command" in state["message"]
    assert pod["status"]["phase"] == "Pending"
    await until_event(client, namespace, "nginx", "Failed", "Error: ErrImagePull")


async def test_a_command_that_does_not_exist_fails_to_start(
    node: Node, client: rest.Client, namespace: str
) -> None:
    node.start()
    missing = {"name": "missing", "image": SHELL, "command": ["no-such-program-here"]}
    await create_pod(
        client, namespace, pod_manifest(node, "missing", [missing], restartPolicy="Never")
    )

    pod = await until_phase(client, namespace, "missing", "Failed")

    terminated = container(pod, "missing")["state"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert terminated["exitCode"] == 128
    assert (
        'exec: "no-such-program-here": executable file not found in $PATH' in terminated["message"]
    )


async def test_init_containers_run_to_completion_before_the_containers(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    order = tmp_path / "order"
    manifest = pod_manifest(
        node,
        "init",
        [shell("main", f"echo main >> {order}")],
        initContainers=[
            shell("first", f"echo first >> {order}"),
            shell("second", f"echo second >> {order}"),
        ],
        restartPolicy="Never",
    )
    await create_pod(client, namespace, manifest)

    pod = await until_phase(client, namespace, "init", "Succeeded")

    assert order.read_text().split() == ["first", "second", "main"]
    assert condition(pod, "Initialized") == "True"
    inits = pod["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]


# -- deletion --------------------------------------------------------------------------------


async def test_deleting_a_pod_sends_sigterm_and_removes_it_once_its_processes_are_gone(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    seen = tmp_path / "signal"
    graceful = shell(
        "graceful",
        f"trap 'echo TERM > {seen}; exit 0' TERM; echo $$$$ > {tmp_path}/pid; "
        "while :; do sleep 0.1; done",
    )
    created = await create_pod(client, namespace, pod_manifest(node, "graceful", [graceful]))
    await until_ready(client, namespace, "graceful")
    pid = await pid_in(tmp_path / "pid")

    await client.delete(kinds.PODS, namespace, "graceful", grace_period_seconds=30)
    await until_gone(client, namespace, "graceful", within=10)

    assert seen.read_text() == "TERM\n"
    assert not alive(pid)
    assert node.pod_netns_prefix + created["metadata"]["uid"] not in netns.listnetns()
    assert created["metadata"]["uid"] not in runtime.Runtime(node.data_dir).recover()


async def test_a_pod_that_ignores_sigterm_shows_terminating_until_killed_after_its_grace(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.start()
    stubborn = shell(
        "stubborn", f"trap '' TERM; echo $$$$ > {tmp_path}/pid; while :; do sleep 0.1; done"
    )
    await create_pod(client, namespace, pod_manifest(node, "stubborn", [stubborn]))
    await until_ready(client, namespace, "stubborn")
    pid = await pid_in(tmp_path / "pid")

    asked = time.monotonic()
    await client.delete(kinds.PODS, namespace, "stubborn", grace_period_seconds=2)
    terminating = await until_ready(client, namespace, "stubborn", ready=False, within=5)
    assert terminating["metadata"]["deletionTimestamp"]
    assert alive(pid)
    await until_gone(client, namespace, "stubborn", within=15)

    assert time.monotonic() - asked >= 1.5
    assert not alive(pid)
    await until_event(client, namespace, "stubborn", "Killing", "Stopping container stubborn")


# -- agent restarts ------------------------------------------------------------------------


async def test_an_agent_killed_and_started_again_adopts_its_running_pods(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.spawn()
    sleeper = shell(
        "sleeper",
        f"echo $$$$ >> {tmp_path}/pids; trap 'echo TERM > {tmp_path}/signal; exit 0' TERM; "
        "while :; do sleep 0.1; done",
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
    )
    await create_pod(client, namespace, pod_manifest(node, "survivor", [sleeper]))
    before = await until_ready(client, namespace, "survivor")
    pid = await pid_in(tmp_path / "pids")

    assert node.process is not None
    node.process.send_signal(signal.SIGKILL)
    node.process.wait()
    assert alive(pid)  # the pod does not go with its agent
    node.spawn()

    async def heartbeat_after_restart() -> bool:
        lease = await client.get(kinds.LEASES, "kube-node-lease", node.name)
        return bool(lease["spec"]["renewTime"] > before["status"]["startTime"])

    await eventually(heartbeat_after_restart)
    await asyncio.sleep(2)  # time enough to restart the container, were it going to
    after = await until_ready(client, namespace, "survivor")

    assert (tmp_path / "pids").read_text().split() == [str(pid)]
    assert alive(pid)
    assert container(after, "sleeper")["containerID"] == container(before, "sleeper")["containerID"]
    assert container(after, "sleeper")["restartCount"] == 0
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["status"]["startTime"] == before["status"]["startTime"]

    # The new agent stops what it adopted just as it stops its own.
    await client.delete(kinds.PODS, namespace, "survivor", grace_period_seconds=10)
    await until_gone(client, namespace, "survivor")
    assert (tmp_path / "signal").read_text() == "TERM\n"
    assert not alive(pid)

    # Stopped properly, the agent says its node is not ready before it goes.
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=15) == 0
    stopped = await client.get(kinds.NODES, None, node.name)
    assert condition(stopped, "Ready") == "False"


async def test_pods_deleted_while_the_agent_was_down_are_stopped_when_it_returns(
    node: Node, client: rest.Client, namespace: str, tmp_path: Path
) -> None:
    node.spawn()
    uids, pids = {}, {}
    for name in ("forced", "graceful"):
        script = (
            f"echo $$$$ > {tmp_path}/{name}.pid; trap 'echo TERM > {tmp_path}/{name}.signal; "
            "exit 0' TERM; while :; do sleep 0.1; done"
        )
        created = await create_pod(
            client, namespace, pod_manifest(node, name, [shell("c", script)])
        )
        uids[name] = created["metadata"]["uid"]
    for name in uids:
        await until_ready(client, namespace, name)
        pids[name] = await pid_in(tmp_path / f"{name}.pid")
    assert node.process is not None
    node.process.send_signal(signal.SIGKILL)
    node.process.wait()

    await client.delete(kinds.PODS, namespace, "forced", grace_period_seconds=0)
    await client.delete(kinds.PODS, namespace, "graceful", grace_period_seconds=30)
    await until_gone(client, namespace, "forced")
    waiting = await get_pod(client, namespace, "graceful")
    assert waiting["metadata"]["deletionTimestamp"]  # nobody has confirmed it stopped yet
    node.spawn()

    await until_gone(client, namespace, "graceful")

    async def stopped() -> bool:
        return not any(alive(pid) for pid in pids.values())

    await eventually(stopped)
    for name in uids:
        assert (tmp_path / f"{name}.signal").read_text() == "TERM\n"

    async def cleaned_up() -> bool:
        names = netns.listnetns()
        left = [uid for uid in uids.values() if node.pod_netns_prefix + uid in names]
        return not left and runtime.Runtime(node.data_dir).recover() == {}

    await eventually(cleaned_up)
