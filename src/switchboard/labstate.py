"""What a lab is and which processes it runs, kept in DIR/lab.json; ending it all again.

`lab.up` records here, before it creates anything, the lab's prefix and
layout, and then every process it starts as a `Process`: role, pid, start
time and argv. Together the pid and the start time name one process for
ever, and the argv shows it is still running what was started, so
`teardown` signals a recorded pid only while it is still that process —
never one that reused the pid after a crash or a reboot.

`teardown(DIR)` is `switchboard down` and the clean-up of a failed `up`:

1. a foreground `up` (the `supervisor`) is asked to stop with SIGTERM and
   given time to remove its lab itself;
2. the agents' descendants are noted — the pods, which agents leave
   running for the next agent to adopt — with the network namespaces they
   are in, whatever the agent called those;
3. the agents, then the nodes' DNS servers (which withdraw their kube-dns
   endpoints while the apiserver still answers), then the
   controller-manager, then the apiserver get SIGTERM (to their process
   group: each leads a session of its own), and SIGKILL after
   `STOP_TIMEOUT`;
4. the pods noted, and any process still inside a namespace with the lab's
   prefix, are ended the same way;
5. `labnet.destroy` removes the host link and the namespaces, then
   DIR/kubeconfig goes, and DIR/lab.json once nothing is left.

Without DIR/lab.json the same steps run from the prefix alone (derived
from DIR), which finds the network and whatever runs inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from switchboard import labnet
from switchboard.agent import main as agent_main
from switchboard.agent import runtime

STATE_FILE = "lab.json"
KUBECONFIG = "kubeconfig"
STOP_TIMEOUT = 10.0  # seconds a process has after SIGTERM before SIGKILL
SUPERVISOR_TIMEOUT = 60.0  # seconds a foreground `up` has to tear down when asked
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Process:
    """A process the lab started, recorded so `down` ends it and only it."""

    role: str  # "apiserver", "controller-manager", "dns node-1", "agent node-1", "up"
    pid: int
    start_time: int  # /proc/<pid>/stat field 22: with the pid, names one process for ever
    argv: tuple[str, ...]

    @classmethod
    def of(cls, role: str, pid: int) -> Process | None:
        """The record of running process `pid` as /proc shows it, or None if it is gone.

        Only for a process well past its exec: for a moment after exec the
        kernel shows an empty command line. Use `started` for a new child.
        """
        seen = _proc_identity(pid)
        return None if seen is None else cls(role, pid, seen[0], seen[1])

    @classmethod
    def started(cls, role: str, pid: int, argv: Sequence[str]) -> Process | None:
        """The record of a child just started with `argv`, or None if it is gone already."""
        seen = _proc_identity(pid)
        return None if seen is None else cls(role, pid, seen[0], tuple(argv))

    def alive(self) -> bool:
        """Whether `pid` still is this process (not a zombie, not a reused pid)."""
        return _proc_identity(self.pid) == (self.start_time, self.argv)


def _proc_identity(pid: int) -> tuple[int, tuple[str, ...]] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None  # exited; only its parent's wait is missing
    argv = tuple(a.decode(errors="replace") for a in cmdline.split(b"\0")[:-1])
    return int(fields[19]), argv


@dataclass(slots=True)
class State:
    """DIR/lab.json: what this lab is and which processes it runs."""

    data_dir: Path
    prefix: str
    layout: labnet.Layout | None = None
    processes: list[Process] = field(default_factory=list)
    supervisor: Process | None = None  # a foreground `up`, which tears down itself

    @property
    def path(self) -> Path:
        return self.data_dir / STATE_FILE

    def save(self) -> None:
        doc = {
            "version": _STATE_VERSION,
            "dataDir": str(self.data_dir),
            "prefix": self.prefix,
            "network": self.layout.to_json() if self.layout else None,
            "processes": [_process_json(p) for p in self.processes],
            "supervisor": _process_json(self.supervisor) if self.supervisor else None,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, data_dir: Path) -> State | None:
        """The state of the lab in `data_dir`, or None if there is none or it is unreadable."""
        try:
            doc = json.loads((data_dir / STATE_FILE).read_text())
            network = doc.get("network")
            supervisor = doc.get("supervisor")
            return cls(
                data_dir,
                str(doc["prefix"]),
                labnet.Layout.from_json(network) if network else None,
                [_process_from(p) for p in doc.get("processes") or []],
                _process_from(supervisor) if supervisor else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _process_json(process: Process) -> dict[str, Any]:
    return asdict(process) | {"argv": list(process.argv)}


def _process_from(doc: Mapping[str, Any]) -> Process:
    return Process(str(doc["role"]), int(doc["pid"]), int(doc["start_time"]), tuple(doc["argv"]))


# ---- ending it all ---------------------------------------------------------------------------


def teardown(
    data_dir: Path, children: Mapping[str, subprocess.Popen[bytes]] | None = None
) -> list[str]:
    """End the lab's processes and remove its network and kubeconfig; what could not go.

    `children` are the Popen handles of a foreground `up`, reaped at the end.
    """
    state = State.load(data_dir)
    prefix = state.prefix if state is not None else labnet.prefix_for(data_dir)
    pod_namespaces: list[str] = []
    if state is not None:
        supervisor = state.supervisor
        if supervisor is not None and supervisor.pid != os.getpid() and supervisor.alive():
            # A foreground `up` removes its lab itself; give it the time to.
            os.kill(supervisor.pid, signal.SIGTERM)
            _wait_gone([supervisor], SUPERVISOR_TIMEOUT)
        agents = [p for p in state.processes if p.role.startswith("agent")]
        dns = [p for p in state.processes if p.role.startswith("dns ")]
        others = [p for p in state.processes if p not in agents and p not in dns]
        # Agents leave their pods running (for the next agent to adopt): note them
        # and their network namespaces, whatever those are called, before the agents go.
        pods = descendants(agents)
        pod_namespaces = namespaces_of(pods)
        stop(agents)
        stop(dns)  # together: each drains for a moment after withdrawing its endpoint
        for process in reversed(others):  # the controller-manager, then the apiserver
            stop([process])
        stop_pids(p.pid for p in pods if p.alive())
    # Pods an agent adopted after a restart are not its descendants: the agents' own
    # records name every container process (checked by start time before a kill).
    for node_dir in sorted((data_dir / "nodes").glob("*")):
        with contextlib.suppress(OSError, ValueError):
            recorded = runtime.Runtime(node_dir)
            pod_namespaces += [
                f"{agent_main.DEFAULT_POD_NETNS_PREFIX}{record.uid}"
                for record in recorded.recover().values()
            ]
            recorded.kill_recorded()
    stop_pids(labnet.pids_inside(prefix))
    problems = labnet.destroy(prefix, also=pod_namespaces)
    for child in (children or {}).values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    remaining = labnet.leftovers(prefix)
    if remaining and not problems:
        problems = [f"{what} (still there after removing it)" for what in remaining]
    with contextlib.suppress(FileNotFoundError):
        (data_dir / KUBECONFIG).unlink()
    if not problems:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / STATE_FILE).unlink()
    return problems


def descendants(processes: Sequence[Process]) -> list[Process]:
    """Every live process descended from one of `processes` (which are checked to be ours)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: list[Process] = []
    todo = [p.pid for p in processes if p.alive()]
    while todo:
        for pid in children.get(todo.pop(), []):
            record = Process.of("pod", pid)
            if record is not None:
                found.append(record)
                todo.append(pid)
    return found


def namespaces_of(processes: Iterable[Process]) -> list[str]:
    """The named network namespaces `processes` are in, other than this process's own."""
    own = labnet.netns_id(os.getpid())
    ids = {labnet.netns_id(p.pid) for p in processes} - {own, None}
    return sorted(name for name, ns in labnet.named_namespaces().items() if ns in ids)


def stop(processes: Sequence[Process]) -> None:
    """SIGTERM each process that still is ours (and its process group), then SIGKILL."""
    ours = [p for p in processes if p.alive()]
    for process in ours:
        _signal_group(process.pid, signal.SIGTERM)
    left = _wait_gone(ours, STOP_TIMEOUT)
    for process in left:
        if process.alive():
            _signal_group(process.pid, signal.SIGKILL)
    _wait_gone(left, STOP_TIMEOUT)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each component leads a session of its own (start_new_session), so its group
    # holds exactly what it started outside the lab's namespaces.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pids(pids: Iterable[int]) -> None:
    """End processes found inside the lab's namespaces (pods): SIGTERM, then SIGKILL."""
    records = [r for pid in pids if (r := Process.of("pod", pid)) is not None]
    for record in records:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    for record in _wait_gone(records, STOP_TIMEOUT):
        if record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)


def _wait_gone(processes: Sequence[Process], timeout: float) -> list[Process]:
    """Wait until none of `processes` is alive; those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in processes if p.alive()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
