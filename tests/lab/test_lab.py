"""The lab: its network in real namespaces, `up` and `down`, and cleaning up after a crash.

These tests make what `switchboard up` makes — the only tests here that
give the namespace pytest runs in a link: the lab's one veth, whose
connected route covers the lab subnet alone. Every packet they send goes to
a lab address. Each test's lab lives in a data directory of its own, so its
names (derived from that directory) are its own, and the `lab_dir` fixture
runs `teardown` afterwards and fails the test if anything of the lab is
left, passed or failed.

The network tests call `labnet` directly. `up` is tested in-process with
the real apiserver, controller-manager and nodes' DNS servers and a
stand-in agent (`fake_agent.py`); the test of the real `switchboard up`
command runs once `switchboard up` and `switchboard agent` are on the
command line.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from switchboard import lab, labnet, labstate
from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import rest
from tests.lab.conftest import clean_environment

pytestmark = pytest.mark.lab

FAKES = str(Path(__file__).with_name("fake_agent.py"))
# Runs argv[2:] inside network namespace argv[1]: setns, then exec.
ENTER = (
    "import os, sys\n"
    "from pyroute2 import netns\n"
    "netns.setns(sys.argv[1], flags=0)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
# Serves HTTP on argv[1]:argv[2], answering every GET with argv[3].
SERVE = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[3].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
OUTSIDE = ("192.0.2.2", "10.0.0.1", "172.16.0.1", "192.168.1.1", "8.8.8.8")


# ---- fixtures and helpers ---------------------------------------------------------------------


@dataclass
class Processes:
    """Processes a test starts itself; each ended by its own handle when the test ends."""

    started: list[subprocess.Popen[bytes]]

    def spawn(self, argv: list[str], netns_name: str | None = None) -> subprocess.Popen[bytes]:
        if netns_name is not None:
            argv = [sys.executable, "-c", ENTER, netns_name, *argv]
        process = subprocess.Popen(
            argv, env=clean_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.started.append(process)
        return process

    def serve(self, netns_name: str, address: str, answer: str) -> None:
        self.spawn([sys.executable, "-c", SERVE, address, "8080", answer], netns_name)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes([])
    try:
        yield started
    finally:
        for process in started.started:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def lab_dir(lab_available: None, tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "lab"
    data_dir.mkdir()
    try:
        yield data_dir
    finally:
        problems = labstate.teardown(data_dir)
        left = labnet.leftovers(labnet.prefix_for(data_dir))
    assert not problems and not left, f"the lab left {problems or left} behind"


def make_network(data_dir: Path, nodes: int = 2) -> labnet.Layout:
    with labnet.exclusive():
        routes, addresses = labnet.host_networks()
        subnet = labnet.choose_subnet(routes, addresses, avoid=lab.CLUSTER_RANGES)
        layout = labnet.plan(labnet.prefix_for(data_dir), nodes, subnet)
        labstate.State(data_dir.resolve(), layout.prefix, layout).save()
        labnet.create(layout)
    return layout


def fetch(url: str, netns_name: str | None = None, within: float = 10) -> str:
    """GET `url` from this namespace (or from inside `netns_name`), retrying while it starts."""
    if netns_name is not None:
        script = (
            "import sys, urllib.request, time\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            f"deadline = time.monotonic() + {within}\n"
            "while True:\n"
            "    try:\n"
            "        print(opener.open(sys.argv[1], timeout=2).read().decode(), end='')\n"
            "        break\n"
            "    except OSError:\n"
            "        if time.monotonic() > deadline: raise\n"
            "        time.sleep(0.1)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", ENTER, netns_name, sys.executable, "-c", script, url],
            capture_output=True,
            text=True,
            timeout=within + 10,
            env=clean_environment(),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout
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


def host_state() -> tuple[set[str], set[tuple[int, str, int, str]], set[str]]:
    """The host namespace's links, routes (table, dst, len, device) and addresses."""
    with IPRoute() as ipr:
        names = {int(link["index"]): str(link.get("ifname")) for link in ipr.link("dump")}
        routes = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.route("dump", family=family):
                device = names.get(int(route.get("oif") or 0), "")
                dst = str(route.get("dst") or "default")
                routes.add((int(route.get("table") or 0), dst, int(route["dst_len"]), device))
        addresses = {
            f"{names.get(int(a['index']))} {a.get('address')}/{a['prefixlen']}"
            for a in ipr.addr("dump")
        }
    return set(names.values()), routes, addresses


def record(role: str, pid: int) -> labstate.Process:
    """The lab's record of a running process, once it shows its command line."""
    deadline = time.monotonic() + 20
    while (found := labstate.Process.of(role, pid)) is None or not found.argv:
        assert time.monotonic() < deadline, f"process {pid} did not start"
        time.sleep(0.05)
    return found


def wait_inside(prefix: str, pid: int) -> None:
    """Wait until process `pid` has entered one of the lab's namespaces."""
    deadline = time.monotonic() + 20
    while pid not in labnet.pids_inside(prefix):
        assert time.monotonic() < deadline, f"process {pid} never entered the lab"
        time.sleep(0.05)


def route_error(netns_name: str, destination: str) -> int | None:
    """The errno of a route lookup for `destination` inside a namespace (None: it has a route)."""
    with IPRoute(netns=netns_name, flags=0) as ipr:
        try:
            ipr.route("get", dst=destination)
        except NetlinkError as exc:
            return int(exc.code)
    return None


# ---- the network --------------------------------------------------------------------------------


def test_the_host_gets_one_link_and_one_route_for_the_lab_subnet_and_nothing_else(
    lab_dir: Path,
) -> None:
    links, routes, addresses = host_state()
    layout = make_network(lab_dir)
    links_after, routes_after, addresses_after = host_state()

    assert links_after - links == {layout.host_link}
    assert links <= links_after
    assert routes <= routes_after and addresses <= addresses_after
    main_table = {r for r in routes_after - routes if r[0] == 254}
    assert main_table == {(254, str(layout.subnet.network_address), 24, layout.host_link)}
    # What else appeared is the kernel's local and broadcast entries of that one address.
    assert {r[3] for r in routes_after - routes} == {layout.host_link}
    assert addresses_after - addresses == {f"{layout.host_link} {layout.host_ip}/24"}


def test_this_machine_reaches_node_addresses_through_the_lab_link_only(
    lab_dir: Path, processes: Processes
) -> None:
    layout = make_network(lab_dir)
    for node in layout.nodes:
        processes.serve(node.netns, node.ip, node.name)

    for node in layout.nodes:
        assert fetch(f"http://{node.ip}:8080/") == node.name
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=layout.host_link)[0]
        for node in layout.nodes:
            assert ipr.route("get", dst=node.ip)[0].get("oif") == index
        unused = str(layout.subnet.network_address + 200)
        assert ipr.route("get", dst=unused)[0].get("oif") == index  # stays in the lab too


def test_no_lab_namespace_has_a_route_out_of_the_lab(lab_dir: Path) -> None:
    layout = make_network(lab_dir)
    for namespace in layout.namespaces:
        for destination in OUTSIDE:
            assert route_error(namespace, destination) == errno.ENETUNREACH, (
                f"{namespace} has a route to {destination}"
            )
        with IPRoute(netns=namespace, flags=0) as ipr:
            assert not [r for r in ipr.route("dump", family=socket.AF_INET) if r["dst_len"] == 0]


def test_nodes_reach_each_other_and_route_pod_cidrs_via_the_owning_node(
    lab_dir: Path, processes: Processes
) -> None:
    layout = make_network(lab_dir, nodes=3)
    n1, n2, n3 = layout.nodes
    processes.serve(n2.netns, n2.ip, "node-2 here")
    assert fetch(f"http://{n2.ip}:8080/", netns_name=n1.netns) == "node-2 here"

    cidrs = {"node-1": "10.244.0.0/24", "node-2": "10.244.1.0/24", "node-3": "10.244.2.0/24"}
    labnet.set_pod_routes(layout, cidrs)
    assert labnet.pod_routes(n1.netns) == {"10.244.1.0/24": n2.ip, "10.244.2.0/24": n3.ip}
    assert labnet.pod_routes(n3.netns) == {"10.244.0.0/24": n1.ip, "10.244.1.0/24": n2.ip}

    # node-3 went away and node-2 got another podCIDR: routes follow, nothing stale stays.
    labnet.set_pod_routes(layout, {"node-1": "10.244.0.0/24", "node-2": "10.244.7.0/24"})
    assert labnet.pod_routes(n1.netns) == {"10.244.7.0/24": n2.ip}
    assert labnet.pod_routes(n3.netns) == {"10.244.0.0/24": n1.ip, "10.244.7.0/24": n2.ip}


def test_two_labs_get_names_and_subnets_of_their_own(lab_dir: Path, tmp_path: Path) -> None:
    first = make_network(lab_dir)
    other_dir = tmp_path / "other"
    assert labnet.prefix_for(other_dir) != first.prefix
    routes, addresses = labnet.host_networks()
    second = labnet.choose_subnet(routes, addresses, avoid=lab.CLUSTER_RANGES)
    assert not second.overlaps(first.subnet)


def test_destroy_removes_the_lab_even_with_processes_inside(
    lab_dir: Path, processes: Processes
) -> None:
    links, routes, addresses = host_state()
    layout = make_network(lab_dir)
    inside = processes.spawn(["sleep", "300"], layout.nodes[0].netns)
    wait_inside(layout.prefix, inside.pid)

    labstate.stop_pids(labnet.pids_inside(layout.prefix))
    assert labnet.destroy(layout.prefix) == []
    assert inside.wait(timeout=5) == -signal.SIGTERM
    assert labnet.leftovers(layout.prefix) == []
    assert host_state() == (links, routes, addresses)


# ---- down -------------------------------------------------------------------------------------


def test_down_after_a_crash_ends_what_the_lab_started_and_removes_its_network(
    lab_dir: Path, processes: Processes
) -> None:
    layout = make_network(lab_dir)
    component = processes.spawn([sys.executable, "-c", "import time; time.sleep(300)"])
    pod = processes.spawn(["sleep", "301"], layout.nodes[1].netns)
    stranger = processes.spawn(["sleep", "302"])  # its pid is recorded, but it is not ours
    wait_inside(layout.prefix, pod.pid)
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None
    recorded = record("apiserver", component.pid)
    impostor = record("agent node-1", stranger.pid)
    state.processes = [recorded, labstate.Process(impostor.role, impostor.pid, 1, impostor.argv)]
    state.save()
    (lab_dir / labstate.KUBECONFIG).write_text("stale")

    out = io.StringIO()
    assert lab.down(lab_dir, out=out) == 0, out.getvalue()

    assert component.wait(timeout=5) is not None
    assert pod.wait(timeout=5) is not None
    assert stranger.poll() is None
    assert labnet.leftovers(layout.prefix) == []
    assert not (lab_dir / labstate.KUBECONFIG).exists()
    assert not (lab_dir / labstate.STATE_FILE).exists()
    assert f"lab {layout.prefix} removed" in out.getvalue()


def test_down_finds_the_lab_by_its_prefix_without_a_state_file(lab_dir: Path) -> None:
    layout = make_network(lab_dir)
    (lab_dir / labstate.STATE_FILE).unlink()
    assert lab.down(lab_dir, out=io.StringIO()) == 0
    assert labnet.leftovers(layout.prefix) == []


def test_down_where_there_is_no_lab_says_so(lab_dir: Path) -> None:
    out = io.StringIO()
    assert lab.down(lab_dir, out=out) == 0
    assert out.getvalue().startswith("no lab in ")


# ---- up, with stand-ins for the controller-manager and the agent ------------------------------


@dataclass(frozen=True)
class FakeCommands:
    """The real apiserver, controller-manager and DNS; a stand-in agent (or a failing one)."""

    failing_agent: bool = False

    def apiserver(self, data_dir: Path) -> list[str]:
        return lab.SwitchboardCommands().apiserver(data_dir)

    def controller_manager(self, kubeconfig: Path) -> list[str]:
        return lab.SwitchboardCommands().controller_manager(kubeconfig)

    def dns(self, kubeconfig: Path, node: labnet.Node) -> list[str]:
        return lab.SwitchboardCommands().dns(kubeconfig, node)

    def agent(self, kubeconfig: Path, node: labnet.Node, data_dir: Path) -> list[str]:
        real = lab.SwitchboardCommands().agent(kubeconfig, node, data_dir)
        role = "fail" if self.failing_agent and node.name == "node-2" else "agent"
        return [sys.executable, FAKES, role, *real[4:]]


def api_nodes(data_dir: Path) -> dict[str, Obj]:
    """The lab's Nodes by name, as the API returns them."""

    async def read() -> dict[str, Obj]:
        async with rest.Client.from_kubeconfig(data_dir / labstate.KUBECONFIG) as client:
            items, _ = await client.list_all(kinds.NODES)
        return {str(n["metadata"]["name"]): n for n in items}

    return asyncio.run(read())


def addresses(node: Obj) -> dict[str, str]:
    return {a["type"]: a["address"] for a in node["status"]["addresses"]}


def kubectl(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(data_dir / labstate.KUBECONFIG), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_environment(),
        check=True,
    )
    return done.stdout


def test_up_makes_a_ready_lab_that_kubectl_sees_and_down_removes_it(lab_dir: Path) -> None:
    out = io.StringIO()
    code = lab.up(2, lab_dir, detach=True, timeout=60, commands=FakeCommands(), out=out)
    assert code == 0, out.getvalue()
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None and state.layout is not None
    layout = state.layout
    assert [p.role for p in state.processes] == [
        "apiserver",
        "controller-manager",
        "dns node-1",
        "dns node-2",
        "agent node-1",
        "agent node-2",
    ]
    assert all(p.alive() for p in state.processes)
    assert f"export KUBECONFIG={lab_dir.resolve() / labstate.KUBECONFIG}" in out.getvalue()

    config = yaml.safe_load((lab_dir / labstate.KUBECONFIG).read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("http://127.0.0.1:")
    nodes = api_nodes(lab_dir)
    assert {name: addresses(node)["InternalIP"] for name, node in nodes.items()} == {
        n.name: n.ip for n in layout.nodes
    }
    cidrs = {name: str(lab.pod_cidr(node)) for name, node in nodes.items()}
    assert sorted(cidrs.values()) == ["10.244.0.0/24", "10.244.1.0/24"]
    n1, n2 = layout.nodes
    assert labnet.pod_routes(n1.netns) == {cidrs["node-2"]: n2.ip}
    assert labnet.pod_routes(n2.netns) == {cidrs["node-1"]: n1.ip}
    if shutil.which("kubectl"):
        rows = kubectl(lab_dir, "get", "nodes", "-o", "wide", "--no-headers").splitlines()
        assert sorted(r.split()[:2] for r in rows) == [["node-1", "Ready"], ["node-2", "Ready"]]
        for node in layout.nodes:
            assert any(r.split()[0] == node.name and node.ip in r.split() for r in rows), rows

    again = io.StringIO()
    assert lab.up(2, lab_dir, detach=True, commands=FakeCommands(), out=again) == 1
    assert "already running" in again.getvalue()

    assert lab.down(lab_dir, out=io.StringIO()) == 0
    assert not any(p.alive() for p in state.processes)
    assert labnet.leftovers(layout.prefix) == []
    assert not (lab_dir / labstate.KUBECONFIG).exists()


def test_down_cleans_up_after_every_process_of_the_lab_was_killed(lab_dir: Path) -> None:
    out = io.StringIO()
    assert lab.up(1, lab_dir, detach=True, timeout=60, commands=FakeCommands(), out=out) == 0
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None and state.layout is not None
    for process in state.processes:  # all started by this test, through `up`
        os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(p.alive() for p in state.processes) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert lab.down(lab_dir, out=io.StringIO()) == 0
    assert labnet.leftovers(state.layout.prefix) == []


def kube_dns_endpoints(data_dir: Path) -> dict[str, list[str]]:
    """kube-system/kube-dns's EndpointSlices: name → ready addresses."""

    async def read() -> dict[str, list[str]]:
        async with rest.Client.from_kubeconfig(data_dir / labstate.KUBECONFIG) as client:
            items, _ = await client.list_all(
                kinds.ENDPOINTSLICES,
                "kube-system",
                label_selector="kubernetes.io/service-name=kube-dns",
            )
        return {
            str(s["metadata"]["name"]): [
                a
                for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready")
                for a in e["addresses"]
            ]
            for s in items
        }

    return asyncio.run(read())


def resolve(server: str, name: str) -> list[str]:
    """The A records `server`:53 answers for `name`, asked from this namespace; [] for none."""
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1)
    except (dns.exception.Timeout, OSError):
        return []
    return sorted(
        rd.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset
    )


def answers(server: str, name: str, address: str) -> bool:
    return resolve(server, name) == [address]


def eventually(what: str, check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} within {within:.0f}s"
        time.sleep(0.2)


def test_each_nodes_dns_is_a_process_that_answers_and_withdraws_its_endpoint_when_stopped(
    lab_dir: Path,
) -> None:
    out = io.StringIO()
    assert lab.up(2, lab_dir, detach=True, timeout=60, commands=FakeCommands(), out=out) == 0
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None and state.layout is not None
    n1, n2 = state.layout.nodes
    # Through the lab link, to each node's address, as the lab allows its own subnet to ask.
    for address in (n1.ip, n2.ip):
        eventually(
            f"the DNS on {address} answered for the kubernetes Service",
            functools.partial(
                answers, address, "kubernetes.default.svc.cluster.local", "10.96.0.1"
            ),
        )
    eventually(
        "each node's DNS published itself as an endpoint of kube-dns",
        lambda: (
            kube_dns_endpoints(lab_dir) == {"kube-dns-node-1": [n1.ip], "kube-dns-node-2": [n2.ip]}
        ),
    )
    assert resolve(n1.ip, "kube-dns.kube-system.svc.cluster.local") == [lab.DNS_SERVICE_IP]

    [dns_2] = [p for p in state.processes if p.role == "dns node-2"]
    labstate.stop([dns_2])
    assert kube_dns_endpoints(lab_dir) == {"kube-dns-node-1": [n1.ip]}
    assert resolve(n2.ip, "kubernetes.default.svc.cluster.local") == []
    assert resolve(n1.ip, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]

    assert lab.down(lab_dir, out=io.StringIO()) == 0
    assert not any(p.alive() for p in state.processes)


def test_up_removes_everything_when_a_component_fails(lab_dir: Path) -> None:
    out = io.StringIO()
    code = lab.up(
        2, lab_dir, detach=True, timeout=60, commands=FakeCommands(failing_agent=True), out=out
    )
    assert code == 1
    assert "the agent node-2 exited with 3" in out.getvalue()
    assert "failing on purpose" in out.getvalue()
    assert labnet.leftovers(labnet.prefix_for(lab_dir)) == []
    assert not (lab_dir / labstate.STATE_FILE).exists()
    assert not (lab_dir / labstate.KUBECONFIG).exists()


FOREGROUND_UP = """
import sys
from pathlib import Path
from switchboard import lab
from tests.lab.test_lab import FakeCommands
sys.exit(lab.up(1, Path(sys.argv[1]), detach=False, timeout=60, commands=FakeCommands()))
"""


@pytest.fixture
def foreground_up(lab_dir: Path, processes: Processes) -> subprocess.Popen[bytes]:
    """`up` without --detach, in a process of its own, once its lab is Ready."""
    up = subprocess.Popen(
        [sys.executable, "-c", FOREGROUND_UP, str(lab_dir)],
        cwd=Path(__file__).parents[2],
        env=clean_environment(),
        stdout=subprocess.DEVNULL,
    )
    processes.started.append(up)
    deadline = time.monotonic() + 90
    while not (lab_dir / labstate.KUBECONFIG).exists():
        assert up.poll() is None, f"up exited with {up.returncode}"
        assert time.monotonic() < deadline, "the lab was not Ready within 90s"
        time.sleep(0.1)
    return up


def test_up_in_the_foreground_removes_its_lab_on_sigterm(
    lab_dir: Path, foreground_up: subprocess.Popen[bytes]
) -> None:
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None and state.supervisor is not None
    assert state.supervisor.pid == foreground_up.pid

    foreground_up.send_signal(signal.SIGTERM)
    assert foreground_up.wait(timeout=60) == 0
    assert not any(p.alive() for p in state.processes)
    assert labnet.leftovers(state.prefix) == []
    assert not (lab_dir / labstate.STATE_FILE).exists()


def test_down_stops_a_foreground_up_which_removes_its_lab(
    lab_dir: Path, foreground_up: subprocess.Popen[bytes]
) -> None:
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None
    assert lab.down(lab_dir, out=io.StringIO()) == 0
    assert foreground_up.wait(timeout=5) == 0
    assert not any(p.alive() for p in state.processes)
    assert labnet.leftovers(state.prefix) == []


# ---- the real command -------------------------------------------------------------------------


def cli_lacks(*commands: str) -> str | None:
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "switchboard.cli", command, "--help"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            return f"`switchboard {command}` is not wired into the command line yet"
    return None


def test_switchboard_up_and_down_as_commands(lab_dir: Path) -> None:
    missing = cli_lacks("up", "down", "controller-manager", "agent")
    if missing:
        pytest.skip(missing)
    cli = [sys.executable, "-m", "switchboard.cli"]
    done = subprocess.run(
        [*cli, "up", "--nodes", "2", "--data-dir", str(lab_dir), "--detach"],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    state = labstate.State.load(lab_dir.resolve())
    assert state is not None and state.layout is not None
    rows = kubectl(lab_dir, "get", "nodes", "-o", "wide", "--no-headers").splitlines()
    assert sorted(r.split()[0] for r in rows) == ["node-1", "node-2"]
    assert all(" Ready " in f" {r} " for r in rows)
    for node in state.layout.nodes:
        assert any(node.ip in r.split() for r in rows)

    done = subprocess.run(
        [*cli, "down", "--data-dir", str(lab_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert labnet.leftovers(state.layout.prefix) == []
    assert not any(p.alive() for p in state.processes)
