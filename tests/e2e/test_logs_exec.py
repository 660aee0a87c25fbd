"""kubectl logs and exec, through the apiserver to a node agent, as each kubectl minor runs them.

The apiserver is the real process. The agent's API (`kubeletapi`) runs in
this test process, on an event loop of its own in a thread, over a fake pod
runtime: each container's log is a file in a temporary directory and exec
runs the command as it is on this machine. A Node made through the API
points at it (InternalIP 127.0.0.1, status.daemonEndpoints.kubeletEndpoint),
and each test binds its pods to that Node and reports them Running.

kubectl 1.30 and newer exec over WebSocket (v5.channel.k8s.io); 1.27–1.29
use SPDY, which the apiserver refuses with a Status saying what to use, and
1.29 speaks WebSocket too when KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client, config
from kubernetes.stream import stream

from switchboard.agent import kubeletapi
from tests.e2e.conftest import MINORS, Server, manifest

pytestmark = pytest.mark.e2e

# The client's config module carries no annotations.
load_kube_config: Any = config.load_kube_config
NODE = "logs-exec-node"
WEBSOCKET_MINORS = tuple(m for m in MINORS if m >= 30)
SPDY_MINORS = tuple(m for m in MINORS if m < 30)


class FakeRuntime:
    """Containers as log files under `root`; exec runs the command unchanged."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.containers: set[tuple[str, str, str]] = set()

    def add(self, namespace: str, pod: str, container: str, log: str = "") -> Path:
        self.containers.add((namespace, pod, container))
        path = self._path(namespace, pod, container, previous=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(log)
        return path

    def restart(self, namespace: str, pod: str, container: str, log: str = "") -> Path:
        """The container ended and started again: its log moves to previous, a new one begins."""
        current = self._path(namespace, pod, container, previous=False)
        current.replace(self._path(namespace, pod, container, previous=True))
        current.write_text(log)
        return current

    def _path(self, namespace: str, pod: str, container: str, *, previous: bool) -> Path:
        return (
            self.root / namespace / pod / (container + (".previous" if previous else "") + ".log")
        )

    def log_path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> Path | None:
        if (namespace, pod, container) not in self.containers:
            raise LookupError(container)
        path = self._path(namespace, pod, container, previous=previous)
        return path if path.exists() else None

    def exec_argv(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        if (namespace, pod, container) not in self.containers:
            raise LookupError(container)
        return list(command), {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


class AgentThread:
    """kubeletapi served on 127.0.0.1 from an event loop in a thread of this process."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            kubeletapi.start(runtime, "127.0.0.1", 0), self.loop
        ).result(timeout=10)
        self.port = kubeletapi.bound_port(self.runner)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> FakeRuntime:
    return FakeRuntime(tmp_path_factory.mktemp("pods"))


@pytest.fixture(scope="module")
def agent(server: Server, runtime: FakeRuntime) -> Iterator[AgentThread]:
    agent = AgentThread(runtime)
    try:
        server.kubectl(
            "create",
            "-f",
            "-",
            stdin=manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
        )
        node_status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}},
        }
        server.kubectl(
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": node_status}),
        )
        yield agent
    finally:
        agent.stop()


def make_pod(
    server: Server,
    namespace: str,
    name: str,
    containers: tuple[str, ...] = ("app",),
    *,
    node: str | None = NODE,
) -> None:
    spec: dict[str, Any] = {
        "containers": [{"name": c, "image": "busybox:1.36"} for c in containers],
    }
    if node:
        spec["nodeName"] = node
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    server.kubectl("create", "-n", namespace, "-f", "-", stdin=manifest(pod))
    if node:
        server.kubectl(
            "patch",
            "pod",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Running"}}',
        )


def get_raw(server: Server, path: str) -> tuple[int, Any]:
    """GET a path of the apiserver; (status code, decoded JSON or text)."""
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---- logs -------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", MINORS)
def test_logs_prints_the_container_log(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "listening on :8080\nGET / 200\nGET /healthz 200\n")

    out = server.kubectl("logs", "-n", namespace, "web", minor=minor)

    assert out.stdout == "listening on :8080\nGET / 200\nGET /healthz 200\n"


@pytest.mark.parametrize("minor", MINORS)
def test_logs_tail_prints_only_the_last_lines(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "".join(f"line {i}\n" for i in range(1, 11)))

    out = server.kubectl("logs", "-n", namespace, "web", "--tail=2", minor=minor)

    assert out.stdout == "line 9\nline 10\n"


@pytest.mark.parametrize("minor", MINORS)
def test_logs_previous_prints_the_log_of_the_terminated_container(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "first run\ncrashed\n")
    missing = server.kubectl("logs", "-n", namespace, "web", "--previous", minor=minor, check=False)
    runtime.restart(namespace, "web", "app", "second run\n")

    previous = server.kubectl("logs", "-n", namespace, "web", "--previous", minor=minor)
    current = server.kubectl("logs", "-n", namespace, "web", minor=minor)

    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        'Error from server (BadRequest): previous terminated container "app" in pod "web" not found'
    )
    assert previous.stdout == "first run\ncrashed\n"
    assert current.stdout == "second run\n"


@pytest.mark.parametrize("minor", MINORS)
def test_logs_follow_streams_lines_appended_after_it_started(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    log = runtime.add(namespace, "web", "app", "started\n")

    with server.watch("logs", "-f", "-n", namespace, "web", minor=minor) as follow:
        follow.wait_for("^started$")
        with log.open("a") as f:
            f.write("request one\n")
        follow.wait_for("^request one$")

        assert follow.process.poll() is None, "kubectl logs -f ended while the log went on"


def test_logs_follow_ends_when_the_container_restarts(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    log = runtime.add(namespace, "web", "app", "started\n")

    with server.watch("logs", "-f", "-n", namespace, "web") as follow:
        follow.wait_for("^started$")
        with log.open("a") as f:
            f.write("last words\n")
        runtime.restart(namespace, "web", "app", "new instance\n")
        follow.wait_for("^last words$")

        assert follow.process.wait(timeout=10) == 0
    assert "new instance" not in follow.lines


def test_logs_timestamps_put_an_rfc3339_time_before_each_line(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "one\ntwo\n")

    out = server.kubectl("logs", "-n", namespace, "web", "--timestamps")

    lines = out.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "two"]
    for line in lines:
        assert len(line.split(" ", 1)[0]) == len("2024-05-01T12:00:00.123456789Z")
        assert line.split(" ", 1)[0].endswith("Z")


def test_logs_limit_bytes_cuts_the_log(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "0123456789\nabcdef\n")

    out = server.kubectl("logs", "-n", namespace, "web", "--limit-bytes=4")

    assert out.stdout == "0123"


def test_logs_of_a_pod_with_two_containers_need_a_container_name(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web", ("app", "sidecar"))
    runtime.add(namespace, "web", "sidecar", "sidecar up\n")

    code, body = get_raw(server, f"/api/v1/namespaces/{namespace}/pods/web/log")
    chosen = server.kubectl("logs", "-n", namespace, "web", "-c", "sidecar")

    assert code == 400
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        "a container name must be specified for pod web, choose one of: [app sidecar]"
    )
    assert chosen.stdout == "sidecar up\n"


def test_logs_with_a_negative_tail_is_invalid(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app", "x\n")

    code, body = get_raw(server, f"/api/v1/namespaces/{namespace}/pods/web/log?tailLines=-1")

    assert code == 422
    assert body["message"] == (
        'PodLogOptions "web" is invalid: tailLines: Invalid value: -1: '
        "must be greater than or equal to 0"
    )


def test_logs_of_a_pod_on_no_node_are_empty(
    server: Server, agent: AgentThread, namespace: str
) -> None:
    make_pod(server, namespace, "pending", node=None)

    out = server.kubectl("logs", "-n", namespace, "pending")

    assert out.stdout == ""


# ---- exec -------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", WEBSOCKET_MINORS)
def test_exec_prints_what_the_command_printed(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl("exec", "-n", namespace, "web", "--", "echo", "hi", minor=minor)

    assert out.stdout == "hi\n"
    assert out.stderr == ""


@pytest.mark.parametrize("minor", WEBSOCKET_MINORS)
def test_exec_with_stdin_passes_it_to_the_command(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl(
        "exec", "-i", "-n", namespace, "web", "--", "cat", minor=minor, stdin="hello\nworld\n"
    )

    assert out.stdout == "hello\nworld\n"


@pytest.mark.parametrize("minor", WEBSOCKET_MINORS)
def test_exec_exits_with_the_exit_code_of_the_command(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl(
        "exec",
        "-n",
        namespace,
        "web",
        "--",
        "sh",
        "-c",
        "echo partial; echo broken >&2; exit 3",
        minor=minor,
        check=False,
    )

    assert out.returncode == 3
    assert out.stdout == "partial\n"
    assert out.stderr == "broken\ncommand terminated with exit code 3\n"


@pytest.mark.parametrize("minor", MINORS)
def test_exec_in_a_container_the_pod_does_not_have_prints_kubernetes_error(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl(
        "exec", "-n", namespace, "web", "-c", "nope", "--", "true", minor=minor, check=False
    )

    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error from server (BadRequest): container nope is not valid for pod web"
    )


@pytest.mark.parametrize("minor", MINORS)
def test_exec_in_a_pod_on_no_node_says_it_has_no_host(
    server: Server, agent: AgentThread, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "pending", node=None)

    out = server.kubectl("exec", "-n", namespace, "pending", "--", "true", minor=minor, check=False)

    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error from server (BadRequest): pod pending does not have a host assigned"
    )


def test_exec_in_a_container_the_agent_does_not_run_reports_it(
    server: Server, agent: AgentThread, namespace: str
) -> None:
    make_pod(server, namespace, "web")  # nothing added to the runtime: not started on the node

    out = server.kubectl("exec", "-n", namespace, "web", "--", "true", check=False)

    assert out.returncode == 1
    assert out.stderr.strip() == f'error: container not found ("app") in pod "{namespace}/web"'


def test_exec_relays_large_output_whole(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl("exec", "-n", namespace, "web", "--", "seq", "1", "200000")

    assert out.stdout == "".join(f"{i}\n" for i in range(1, 200001))


@pytest.mark.parametrize("minor", SPDY_MINORS)
def test_exec_with_an_spdy_kubectl_says_which_kubectl_to_use(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = server.kubectl("exec", "-n", namespace, "web", "--", "true", minor=minor, check=False)

    assert out.returncode == 1
    assert out.stderr.strip() == (
        "Error from server (BadRequest): this server runs exec over WebSocket only, not SPDY: "
        "use kubectl 1.30 or newer (or kubectl 1.29 with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true)"
    )


@pytest.mark.skipif(29 not in MINORS, reason="kubectl 1.29 is not installed")
def test_exec_with_kubectl_1_29_works_once_websockets_are_enabled(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")

    out = subprocess.run(
        server.command("exec", "-i", "-n", namespace, "web", "--", "cat", minor=29),
        input="over websocket\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"},
        check=False,
    )

    assert (out.returncode, out.stdout) == (0, "over websocket\n"), out.stderr


def test_exec_ended_by_its_client_kills_the_command(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, tmp_path: Path
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")
    pidfile = tmp_path / "pid"

    with server.watch(
        "exec", "-n", namespace, "web", "--", "sh", "-c", f"echo $$ > {pidfile}; echo up; sleep 60"
    ) as session:
        session.wait_for("^up$")
        pid = int(pidfile.read_text())
    # The watch is over: kubectl was ended by its own handle.

    assert wait_until(lambda: not Path(f"/proc/{pid}").exists()), "the command outlived its client"


def test_logs_follow_ended_by_its_client_releases_the_log_file(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    log = runtime.add(namespace, "web", "app", "started\n")

    with server.watch("logs", "-f", "-n", namespace, "web") as follow:
        follow.wait_for("^started$")
        assert log_is_open(log), "the agent should hold the followed log open"

    # The agent runs in this process: its open files are ours.
    assert wait_until(lambda: not log_is_open(log)), "the agent still follows a log nobody reads"


def test_exec_speaks_v4_channel_protocol_to_clients_that_ask_for_it(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")
    # v4 has no close signal for stdin, so the command reads one line only.
    query = "command=sh&command=-c&command=head -n 1; exit 5&stdin=true&stdout=true&stderr=true"

    async def session() -> tuple[str | None, dict[int, bytes]]:
        received: dict[int, bytes] = {}
        url = f"{server.url}/api/v1/namespaces/{namespace}/pods/web/exec?{query}"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws,
        ):
            await ws.send_bytes(b"\x00from v4\n")
            async for msg in ws:
                received[msg.data[0]] = received.get(msg.data[0], b"") + msg.data[1:]
            return ws.protocol, received

    protocol, received = asyncio.run(asyncio.wait_for(session(), timeout=30))

    assert protocol == "v4.channel.k8s.io"
    assert received[1] == b"from v4\n"
    status = json.loads(received[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]


def test_exec_through_the_kubernetes_python_client(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")
    cfg = client.Configuration()
    load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))

    out = stream(
        core.connect_get_namespaced_pod_exec,
        "web",
        namespace,
        command=["sh", "-c", "echo from python"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )

    assert out == "from python\n"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def log_is_open(path: Path) -> bool:
    fds = Path("/proc/self/fd")
    return any(_readlink(fd) == str(path) for fd in fds.iterdir())


def _readlink(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def test_logs_and_exec_on_a_node_whose_agent_is_down_say_it_cannot_be_reached(
    server: Server, agent: AgentThread, namespace: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens there once the socket is closed
    node = f"down-{namespace}"[:63]
    server.kubectl(
        "create",
        "-f",
        "-",
        stdin=manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
    )
    down = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": closed_port}},
    }
    server.kubectl(
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": down}),
    )
    make_pod(server, namespace, "web", node=node)

    logs = server.kubectl("logs", "-n", namespace, "web", check=False)
    execed = server.kubectl("exec", "-n", namespace, "web", "--", "true", check=False)

    address = f"http://127.0.0.1:{closed_port}"
    assert logs.returncode == 1
    assert logs.stderr.startswith(
        f'Error from server: Get "{address}/containerLogs/{namespace}/web/app"'
    )
    assert execed.returncode == 1
    assert execed.stderr.startswith(f"error: error dialing the node agent at {address}: ")
    server.kubectl("delete", "node", node)


@pytest.mark.skipif(shutil.which("script") is None, reason="script(1) makes the terminal")
@pytest.mark.parametrize("minor", WEBSOCKET_MINORS)
def test_exec_with_a_terminal_gives_the_command_one(
    server: Server, agent: AgentThread, runtime: FakeRuntime, namespace: str, minor: int
) -> None:
    make_pod(server, namespace, "web")
    runtime.add(namespace, "web", "app")
    kubectl = shlex.join(
        server.command(
            "exec", "-it", "-n", namespace, "web", "--", "sh", "-c", "tty; exit 4", minor=minor
        )
    )

    # script(1) runs kubectl on a terminal of its own, as a person at a shell would.
    out = subprocess.run(
        ["script", "-qec", kubectl, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert out.returncode == 4, out.stdout
    # (script may pass its stdin's end on as a NUL, which the remote terminal echoes as ^@)
    assert re.search(r"^(\^@)?/dev/pts/\d+$", out.stdout, re.MULTILINE), out.stdout
    assert "command terminated with exit code 4" in out.stdout
