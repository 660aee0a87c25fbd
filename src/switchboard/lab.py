"""`switchboard up` and `switchboard down`: a whole cluster on this machine.

`up` makes the lab's network (`labnet`: an underlay bridge in a namespace
of its own, a namespace per node on it, one veth from the host), then runs
the cluster as child processes, each logging to `DIR/logs/`::

    apiserver           python -m switchboard.cli apiserver --data-dir DIR/apiserver
                            --bind-address 127.0.0.1 --port 0
                            --service-cluster-ip-range 10.96.0.0/16
    controller-manager  python -m switchboard.cli controller-manager
                            --kubeconfig DIR/apiserver/kubeconfig
                            --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24
                            --no-leader-elect
    dns (per node)      python -m switchboard.cli dns --kubeconfig DIR/apiserver/kubeconfig
                            --node-name node-I --netns PREFIX-node-I --listen ADDRESS:53
                            --allow 10.244.0.0/16 --allow SUBNET --allow 127.0.0.0/8
                            --service-ip 10.96.0.10
    agent (per node)    python -m switchboard.cli agent --kubeconfig DIR/apiserver/kubeconfig
                            --node-name node-I --node-ip ADDRESS --netns PREFIX-node-I
                            --data-dir DIR/nodes/node-I --no-dns --cluster-dns 10.96.0.10
                            --service-cluster-ip-range 10.96.0.0/16

The apiserver stays on loopback (off loopback it would need TLS and
authentication, which it does not have yet). The agents and the DNS
servers therefore run in the host namespace, where 127.0.0.1 is the
apiserver, and do their node's work — pods, rules, answering names —
inside the node's namespace, which `--netns` names. Nothing of the
cluster's own traffic needs the host namespace. A node's DNS is a process
of its own, not part of its agent, so that it goes on answering while the
agent restarts; it publishes itself as the node's endpoint of kube-dns.

Once the controller-manager has given every Node a podCIDR, `up` routes
each node's podCIDR via that node's address in every other node's
namespace (`labnet.set_pod_routes`), then waits until every Node is Ready,
writes `DIR/kubeconfig` and prints how to use the lab. With `--detach` it
returns and the processes run on in the background; otherwise it stays in
the foreground, keeps the routes in step with the Nodes' podCIDRs, and
removes everything on Ctrl-C, SIGTERM, SIGHUP or when a component exits.

`down` (`labstate.teardown`) finds what a run left from `DIR/lab.json`,
written before anything is created and updated as each process starts,
and from the lab's prefix, which is derived from DIR, so it also cleans up
after a crash at any point. The apiserver's data, the agents' state and
the logs stay in DIR; the next `up` from the same DIR finds the cluster's
objects again. docs/lab.md has the whole picture.

Errors::

    LabError    the lab could not be made; the message says why and what to do
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from switchboard import labnet, labstate
from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest

DEFAULT_DATA_DIR = "lab"
DEFAULT_NODES = 2
READY_TIMEOUT = 180.0  # seconds for the whole cluster to come up
APISERVER_TIMEOUT = 30.0
ROUTE_RESYNC = 5.0  # seconds between checks of podCIDRs while in the foreground
POD_CIDR = "10.244.0.0/16"  # cut into a /24 per node by the controller-manager
SERVICE_CIDR = labnet.SERVICE_CIDR
DNS_SERVICE_IP = "10.96.0.10"  # kube-system/kube-dns, the pods' nameserver
# The lab subnet must not overlap the cluster's own ranges.
CLUSTER_RANGES = (ipaddress.IPv4Network(POD_CIDR), ipaddress.IPv4Network(SERVICE_CIDR))
_T = TypeVar("_T")


class LabError(Exception):
    """The lab could not be made or removed; the message says why and what to do."""


# ---- the commands the lab runs: the one seam tests replace -----------------------------------


class Commands(Protocol):
    def apiserver(self, data_dir: Path) -> list[str]: ...

    def controller_manager(self, kubeconfig: Path) -> list[str]: ...

    def dns(self, kubeconfig: Path, node: labnet.Node) -> list[str]: ...

    def agent(self, kubeconfig: Path, node: labnet.Node, data_dir: Path) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class SwitchboardCommands:
    """This installation's own components, run by this Python interpreter."""

    python: str = sys.executable

    def _cli(self, *args: str) -> list[str]:
        return [self.python, "-m", "switchboard.cli", *args]

    def apiserver(self, data_dir: Path) -> list[str]:
        return self._cli(
            "apiserver",
            "--data-dir",
            str(data_dir),
            "--bind-address",
            "127.0.0.1",
            "--port",
            "0",
            "--service-cluster-ip-range",
            SERVICE_CIDR,
        )

    def controller_manager(self, kubeconfig: Path) -> list[str]:
        # One controller-manager: no Lease to wait for after a restart on the same DIR.
        return self._cli(
            "controller-manager",
            "--kubeconfig",
            str(kubeconfig),
            "--cluster-cidr",
            POD_CIDR,
            "--node-cidr-mask-size",
            "24",
            "--no-leader-elect",
        )

    def dns(self, kubeconfig: Path, node: labnet.Node) -> list[str]:
        return self._cli(
            "dns",
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            node.name,
            "--netns",
            node.netns,
            "--listen",
            f"{node.ip}:53",
            "--allow",
            POD_CIDR,
            # The nodes' own /24: processes on any node may ask any node's DNS.
            "--allow",
            str(ipaddress.ip_network(f"{node.ip}/24", strict=False)),
            "--allow",
            "127.0.0.0/8",
            "--service-ip",
            DNS_SERVICE_IP,
        )

    def agent(self, kubeconfig: Path, node: labnet.Node, data_dir: Path) -> list[str]:
        return self._cli(
            "agent",
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            node.name,
            "--node-ip",
            node.ip,
            "--netns",
            node.netns,
            "--data-dir",
            str(data_dir),
            # The node's DNS is a process of its own (`dns` above); pods still ask it.
            "--no-dns",
            "--cluster-dns",
            DNS_SERVICE_IP,
            "--service-cluster-ip-range",
            SERVICE_CIDR,
        )


# ---- up --------------------------------------------------------------------------------------


def up(
    nodes: int,
    data_dir: Path,
    detach: bool,
    *,
    timeout: float = READY_TIMEOUT,
    commands: Commands | None = None,
    out: TextIO | None = None,
) -> int:
    """Make a lab of `nodes` nodes from `data_dir` and wait until it is Ready; an exit code.

    With `detach` it returns once the lab is Ready and leaves it running;
    otherwise it returns only when the lab has been stopped and removed.
    """
    stream = out if out is not None else sys.stdout
    if os.geteuid() != 0:
        print("switchboard up: making network namespaces needs root; run it as root", file=stream)
        return 2
    if not 1 <= nodes <= labnet.MAX_NODES:
        print(f"switchboard up: a lab has 1 to {labnet.MAX_NODES} nodes, not {nodes}", file=stream)
        return 2
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    prior = labstate.State.load(data_dir)
    running = _running(prior) if prior is not None else []
    if running:
        print(
            f"switchboard up: a lab is already running from {data_dir} "
            f"({', '.join(f'{p.role} pid {p.pid}' for p in running)}); "
            f"run `switchboard down --data-dir {data_dir}` first",
            file=stream,
        )
        return 1
    prefix = labnet.prefix_for(data_dir)
    if prior is not None or labnet.leftovers(prefix):
        print(f"removing what an earlier lab in {data_dir} left behind", file=stream)
        problems = labstate.teardown(data_dir)
        if problems:
            print(f"switchboard up: could not remove it: {'; '.join(problems)}", file=stream)
            return 1
    lab = _Lab(data_dir, prefix, commands or SwitchboardCommands(), stream)
    return asyncio.run(lab.run(nodes, detach, timeout))


def _running(state: labstate.State) -> list[labstate.Process]:
    candidates = [*state.processes, *([state.supervisor] if state.supervisor else [])]
    return [p for p in candidates if p.alive()]


class _Lab:
    """One `up`: makes the lab, supervises it in the foreground, removes it on failure."""

    def __init__(self, data_dir: Path, prefix: str, commands: Commands, out: TextIO) -> None:
        self.data_dir = data_dir
        self.commands = commands
        self.out = out
        self.state = labstate.State(data_dir, prefix)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.pod_cidrs: dict[str, str] = {}
        self._ready = False
        self._made_anything = False  # from here on, a failure must remove what was made
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self.apiserver_dir = data_dir / "apiserver"
        self.kubeconfig = self.apiserver_dir / labstate.KUBECONFIG
        self.logs = data_dir / "logs"

    async def run(self, nodes: int, detach: bool, ready_within: float) -> int:
        task = asyncio.current_task()
        assert task is not None
        self._on_stop_signals(task.cancel)
        left_running = False
        try:
            await self._start(nodes, time.monotonic() + ready_within)
            self._print_usage(detach)
            if detach:
                left_running = True
                return 0
            self.state.supervisor = labstate.Process.of("up", os.getpid())
            self.state.save()
            await self._supervise()
            return 1  # a component exited; _supervise said which
        except asyncio.CancelledError:
            print("\nstopping the lab", file=self.out)
            return 0 if self._ready else 130
        except (LabError, labnet.LabNetworkError, errors.ClientError, OSError, ValueError) as exc:
            print(f"switchboard up: {exc}", file=self.out)
            return 1
        finally:
            if self._made_anything and not left_running:
                self._on_stop_signals(lambda: None)  # a second Ctrl-C must not cut teardown short
                await _blocking(self._teardown)
            self._on_stop_signals(None)

    def _on_stop_signals(self, handler: Callable[[], object] | None) -> None:
        """Call `handler` on the loop at SIGINT, SIGTERM and SIGHUP; None restores the old ones.

        Plain signal handlers, not `loop.add_signal_handler`: that one relays
        signals through a wakeup fd, which pyroute2's forked helpers inherit,
        so the SIGTERM that ends such a helper would reach this loop too.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        if handler is None:
            for sig, previous in self._previous_handlers.items():
                signal.signal(sig, previous)
            self._previous_handlers.clear()
            return
        loop = asyncio.get_running_loop()
        main_pid = os.getpid()

        def relay(signum: int, frame: object) -> None:
            if os.getpid() != main_pid:
                # A forked helper inherited this handler: die as it would have.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            loop.call_soon_threadsafe(handler)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, relay)
            self._previous_handlers.setdefault(sig, previous)

    async def _start(self, nodes: int, deadline: float) -> None:
        layout = await _blocking(self._make_network, nodes)
        print(
            f"lab {layout.prefix}: {nodes} node(s) on {layout.subnet}, this machine at "
            f"{layout.host_ip} on {layout.host_link}",
            file=self.out,
        )
        self.logs.mkdir(exist_ok=True)
        for stale in (self.data_dir / labstate.KUBECONFIG, self.kubeconfig):  # an earlier run's
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self._spawn("apiserver", self.commands.apiserver(self.apiserver_dir))
        await self._wait_for_apiserver(min(deadline, time.monotonic() + APISERVER_TIMEOUT))
        self._spawn("controller-manager", self.commands.controller_manager(self.kubeconfig))
        for node in layout.nodes:  # before the agents, so that the first pods find it
            self._spawn(f"dns {node.name}", self.commands.dns(self.kubeconfig, node))
        for node in layout.nodes:
            node_dir = self.data_dir / "nodes" / node.name
            node_dir.mkdir(parents=True, exist_ok=True)
            self._spawn(f"agent {node.name}", self.commands.agent(self.kubeconfig, node, node_dir))
        print(f"waiting for {nodes} node(s) to be Ready", file=self.out)
        await self._wait_until_ready(layout, deadline)
        shutil.copyfile(self.kubeconfig, self.data_dir / labstate.KUBECONFIG)
        os.chmod(self.data_dir / labstate.KUBECONFIG, 0o600)
        self._ready = True

    def _make_network(self, nodes: int) -> labnet.Layout:
        with labnet.exclusive():
            present = labnet.leftovers(self.state.prefix)
            if present:  # another `up` from this DIR got here first: leave its lab alone
                raise LabError(
                    f"another `switchboard up` is making a lab from {self.data_dir} "
                    f"({', '.join(present)} exist already)"
                )
            routes, addresses = labnet.host_networks()
            subnet = labnet.choose_subnet(routes, addresses, avoid=CLUSTER_RANGES)
            layout = labnet.plan(self.state.prefix, nodes, subnet)
            self.state.layout = layout
            self.state.save()  # before anything exists, so `down` can always find it
            self._made_anything = True
            labnet.create(layout)
        return layout

    def _spawn(self, role: str, argv: list[str]) -> None:
        log_name = role.replace(" ", "-") + ".log"
        with open(self.logs / log_name, "ab") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches `up`, which stops them in order
                cwd=self.data_dir,
            )
        self.children[role] = child
        record = labstate.Process.started(role, child.pid, argv)
        if record is None:
            raise LabError(f"the {role} exited at once; see {self.logs / log_name}")
        self.state.processes.append(record)
        self.state.save()

    def _check_children(self) -> None:
        for role, child in self.children.items():
            code = child.poll()
            if code is not None:
                log = self.logs / (role.replace(" ", "-") + ".log")
                raise LabError(f"the {role} exited with {code}:\n{_tail(log)}\n(log: {log})")

    async def _wait_for_apiserver(self, deadline: float) -> None:
        while not self.kubeconfig.exists():
            self._check_children()
            if time.monotonic() > deadline:
                raise LabError(
                    f"the apiserver did not write {self.kubeconfig} in time; "
                    f"see {self.logs / 'apiserver.log'}"
                )
            await asyncio.sleep(0.05)

    async def _wait_until_ready(self, layout: labnet.Layout, deadline: float) -> None:
        async with rest.Client.from_kubeconfig(self.kubeconfig) as client:
            while True:
                self._check_children()
                found = await _nodes(client)
                await self._route_pods(layout, found)
                waiting = [
                    reason
                    for node in layout.nodes
                    if (reason := _not_ready(node.name, found.get(node.name))) is not None
                ]
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise LabError(
                        f"the lab was not Ready in time: {'; '.join(waiting)}; "
                        f"the components' logs are in {self.logs}"
                    )
                await asyncio.sleep(0.25)

    async def _route_pods(self, layout: labnet.Layout, found: Mapping[str, Obj]) -> None:
        cidrs = {name: cidr for name, node in found.items() if (cidr := pod_cidr(node))}
        if cidrs != self.pod_cidrs:
            await _blocking(labnet.set_pod_routes, layout, cidrs)
            self.pod_cidrs = cidrs

    async def _supervise(self) -> None:
        layout = self.state.layout
        assert layout is not None
        async with rest.Client.from_kubeconfig(self.kubeconfig) as client:
            last = time.monotonic()
            while True:
                try:
                    self._check_children()
                except LabError as exc:
                    print(f"switchboard up: {exc}", file=self.out)
                    return
                if time.monotonic() - last > ROUTE_RESYNC:
                    last = time.monotonic()
                    with contextlib.suppress(errors.ClientError):
                        await self._route_pods(layout, await _nodes(client, strict=True))
                await asyncio.sleep(0.2)

    def _teardown(self) -> None:
        problems = labstate.teardown(self.data_dir, self.children)
        for problem in problems:
            print(f"switchboard up: could not remove {problem}", file=self.out)
        print("the lab is gone" if not problems else "run `switchboard down`", file=self.out)

    def _print_usage(self, detach: bool) -> None:
        layout = self.state.layout
        assert layout is not None
        kubeconfig = self.data_dir / labstate.KUBECONFIG
        width = max(len(n.name) for n in layout.nodes)
        rows = "\n".join(
            f"  {n.name:<{width}}  {n.ip:<15}  podCIDR {self.pod_cidrs.get(n.name, '-'):<18}"
            f"  network namespace {n.netns}"
            for n in layout.nodes
        )
        stop = f"switchboard down --data-dir {self.data_dir}"
        first_ip = layout.nodes[0].ip
        print(
            f"\nThe lab is Ready.\n\n{rows}\n\n"
            f"This machine reaches the nodes through {layout.host_link} ({layout.host_ip}),\n"
            f"with one route, for {layout.subnet} only.\n\n"
            f"  export KUBECONFIG={kubeconfig}\n"
            "  kubectl get nodes -o wide\n"
            "  kubectl apply -f examples/demo.yaml\n"
            "  kubectl rollout status deployment/demo\n"
            f"  curl http://{first_ip}:30080/hostname     # the demo's NodePort, on any node\n\n"
            f"Logs are in {self.logs}.\n"
            + (
                f"Stop it and remove everything with: {stop}"
                if detach
                else f"Press Ctrl-C to stop it and remove everything (or run {stop})."
            ),
            file=self.out,
            flush=True,
        )


async def _nodes(client: rest.Client, *, strict: bool = False) -> dict[str, Obj]:
    """Nodes by name; while the apiserver is not answering yet, none (unless `strict`)."""
    try:
        items, _ = await client.list_all(kinds.NODES)
    except errors.ClientError:
        if strict:
            raise
        return {}
    return {str(n["metadata"]["name"]): n for n in items}


def pod_cidr(node: Obj) -> str | None:
    """The node's podCIDR (`spec.podCIDRs[0]`, else `spec.podCIDR`), if it has one."""
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or [spec.get("podCIDR")]
    return cidrs[0] if isinstance(cidrs[0], str) and cidrs[0] else None


def _not_ready(name: str, node: Obj | None) -> str | None:
    """Why node `name` is not ready for use yet, or None if it is."""
    if node is None:
        return f"{name} has not registered"
    if pod_cidr(node) is None:
        return f"{name} has no podCIDR yet (the controller-manager gives one)"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        message = (ready or {}).get("message") or "no Ready condition yet"
        return f"{name} is not Ready ({message})"
    return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


async def _blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking `fn` in a thread; if cancelled meanwhile, let it finish first.

    A half-made change to the network must not race the teardown that the
    cancellation starts.
    """
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


# ---- down ------------------------------------------------------------------------------------


def down(data_dir: Path, *, out: TextIO | None = None) -> int:
    """Stop the lab made from `data_dir` and remove all of it; an exit code."""
    stream = out if out is not None else sys.stdout
    if os.geteuid() != 0:
        print("switchboard down: removing network namespaces needs root", file=stream)
        return 2
    data_dir = data_dir.resolve()
    state = labstate.State.load(data_dir)
    prefix = state.prefix if state is not None else labnet.prefix_for(data_dir)
    found = labnet.leftovers(prefix)
    if state is None and not found and not (data_dir / labstate.KUBECONFIG).exists():
        print(f"no lab in {data_dir}", file=stream)
        return 0
    problems = labstate.teardown(data_dir)
    for problem in problems:
        print(f"switchboard down: could not remove {problem}", file=stream)
    if problems:
        return 1
    print(f"lab {prefix} removed", file=stream)
    return 0


# ---- command line ----------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `up` and `down` to the `switchboard` command line."""
    p = subparsers.add_parser(
        "up", help="start a lab cluster in network namespaces on this machine"
    )
    p.add_argument(
        "--nodes", type=int, default=DEFAULT_NODES, help=f"nodes (default: {DEFAULT_NODES})"
    )
    p.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"state, logs and kubeconfig (default: ./{DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--detach", action="store_true", help="return once Ready and leave the lab running"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=READY_TIMEOUT,
        help=f"seconds to wait for every node to be Ready (default: {READY_TIMEOUT:.0f})",
    )
    p.set_defaults(func=_up_command)
    d = subparsers.add_parser("down", help="stop a lab cluster and remove all it made")
    d.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"the lab's data directory (default: ./{DEFAULT_DATA_DIR})",
    )
    d.set_defaults(func=_down_command)


def _up_command(args: argparse.Namespace) -> int:
    return up(args.nodes, Path(args.data_dir), args.detach, timeout=args.timeout)


def _down_command(args: argparse.Namespace) -> int:
    return down(Path(args.data_dir))
