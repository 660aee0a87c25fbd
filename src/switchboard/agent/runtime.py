"""Containers as processes: started in the pod's namespaces, restarted, stopped, adopted.

A container here is a process tree, not an image. Each instance starts as

    nsenter --net=/var/run/netns/<pod> -- unshare --uts [--mount] -- /bin/sh -c WRAPPER ...

so it runs in the pod's network namespace and a UTS namespace of its own
whose hostname is the pod's (every container of a pod gets the same name,
which is all a process can observe of sharing one), in a session of its
own, so its process group is the container. `processes` has the wrapper,
which also bind-mounts the pod's resolv.conf, leaves the exit code in
`<restartCount>.exit` and ends the group when the command ends, and the
rules for telling a container's processes from a recycled pid.

Layout, one directory per pod under `<data>/pods/`::

    <namespace>_<name>_<uid>/
        pod.json                 what runs: pids, start times, states, restart counts
        resolv.conf              the pod's, when it has one
        <container>/<n>.log      stdout and stderr of instance n (n = restartCount)
        <container>/<n>.exit     its exit code, written by the wrapper

Only the current and the previous instance's files are kept (`kubectl logs`
and `kubectl logs --previous`).

**Surviving the agent.** Nothing here needs the agent to stay alive:
`pod.json` is rewritten (atomically) on every change, and a new `Runtime`
`recover()`s it. A recorded pid is only trusted while /proc/<pid> shows
the start time recorded with it, and exits are watched through pidfds,
which work for processes the agent did not start, so adopted containers
are supervised like new ones.

**One pod** is a `runningpod.RunningPod`: init containers in order, then
restarts as `restartPolicy` says with the kubelet's back-off, and stopping
with a grace period. The `Runtime` makes and finds them, and gives each the
way into its pod's namespaces.

**Exec.** `exec_argv` is an argv that enters a running container's
namespaces (`nsenter --target`), used by exec probes and `kubectl exec`.

Errors::

    ContainerRuntimeError     an operation on a pod or container is impossible
     ├── PodNotFound          no pod of that name is on this node (also a LookupError)
     ├── ContainerNotFound    the pod has no container of that name (also a LookupError)
     └── ContainerNotRunning  the container has no running process
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from switchboard.agent import containerstate, processes, runningpod
from switchboard.agent import launch as launches

log = logging.getLogger(__name__)

BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
_MAX_NAME = 255


class ContainerRuntimeError(Exception):
    """An operation on a pod's containers cannot be done; the message says why."""


class PodNotFound(ContainerRuntimeError, LookupError):
    """No pod of that namespace and name runs on this node."""


class ContainerNotFound(ContainerRuntimeError, LookupError):
    """The pod has no container of that name."""


class ContainerNotRunning(ContainerRuntimeError):
    """The container exists but has no running process."""


# -- the runtime ----------------------------------------------------------------------


class Runtime:
    """Every pod's processes on this node, with their state under `<data_dir>/pods`."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        backoff_reset: float = BACKOFF_RESET,
    ) -> None:
        self.pods_dir = Path(data_dir) / "pods"
        self.backoff = runningpod.Backoff(backoff_base, backoff_max, backoff_reset)
        self._pods: dict[str, runningpod.RunningPod] = {}
        nsenter, unshare = shutil.which("nsenter"), shutil.which("unshare")
        if nsenter is None or unshare is None:
            raise ContainerRuntimeError(
                "nsenter and unshare (util-linux) are needed to run pods; install util-linux"
            )
        self.nsenter, self.unshare = nsenter, unshare

    def pod_dir(self, namespace: str, name: str, uid: str) -> Path:
        # A file name holds 255 bytes; a namespace, a pod name and a uid may need more.
        room = _MAX_NAME - len(namespace) - len(uid) - 2
        return self.pods_dir / f"{namespace}_{name[:room]}_{uid}"

    def recover(self) -> dict[str, containerstate.PodRecord]:
        """Pod uid → record of every pod a runtime on this data dir left behind."""
        found: dict[str, containerstate.PodRecord] = {}
        for path in sorted(self.pods_dir.glob(f"*/{containerstate.STATE_FILE}")):
            try:
                record = containerstate.read_record(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable pod state %s: %s", path, exc)
                continue
            found[record.uid] = record
        return found

    def run_pod(
        self,
        sandbox: runningpod.Sandbox,
        init_containers: Sequence[launches.Launch],
        containers: Sequence[launches.Launch],
        *,
        on_change: Callable[[], None],
        on_event: runningpod.OnEvent,
        record: containerstate.PodRecord | None = None,
    ) -> runningpod.RunningPod:
        """Start supervising a pod (adopting what `record` says runs); the same one if known."""
        existing = self._pods.get(sandbox.uid)
        if existing is not None:
            return existing
        pod = runningpod.RunningPod(
            sandbox,
            self.pod_dir_of(sandbox),
            init_containers,
            containers,
            on_change,
            on_event,
            backoff=self.backoff,
            wrap=functools.partial(self._wrap, sandbox),
            record=record,
        )
        self._pods[sandbox.uid] = pod
        pod.start()
        return pod

    def get(self, uid: str) -> runningpod.RunningPod | None:
        return self._pods.get(uid)

    def forget(self, uid: str, directory: Path | None = None) -> None:
        """Drop a finished pod and its directory (logs included): its API object is gone."""
        pod = self._pods.pop(uid, None)
        target = directory or (pod.directory if pod is not None else None)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)

    async def stop_recorded(self, record: containerstate.PodRecord, grace: float) -> None:
        """Stop the processes of a pod no longer wanted here, then forget it."""
        alive = [
            p
            for p in containerstate.recorded_processes(record)
            if processes.start_ticks(p[0]) == p[1]
        ]
        for pid, ticks in alive:
            processes.signal_main(pid, ticks, signal.SIGTERM)
        exits = [
            asyncio.ensure_future(processes.wait_exit(pid, ticks, None)) for pid, ticks in alive
        ]
        if exits:
            try:
                await asyncio.wait(exits, timeout=grace)
            finally:
                for waiter in exits:
                    waiter.cancel()
        for pid, ticks in alive:
            processes.kill_group(pid, ticks)
        self.forget(record.uid, record.directory)

    def kill_recorded(self) -> int:
        """SIGKILL every container of every recorded pod and drop all state; how many."""
        killed = 0
        for record in self.recover().values():
            for pid, ticks in containerstate.recorded_processes(record):
                if processes.kill_group(pid, ticks):
                    killed += 1
                    processes.reap(pid)
            self.forget(record.uid, record.directory)
        return killed

    async def close(self) -> None:
        """Stop supervising; the processes keep running for the next agent to adopt."""
        for pod in list(self._pods.values()):
            await pod.detach()
        self._pods.clear()

    # -- for the kubelet API (logs, exec) and exec probes -------------------------

    def log_path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> Path | None:
        """The log of the container's latest instance (or the one before); None if none."""
        running = self._by_name(namespace, pod)
        if running is not None:
            directory, instances = running.directory, running.instances(container)
        else:
            record = self._recorded_by_name(namespace, pod)
            if record is None or container not in record.containers:
                return None
            directory = record.directory
            instances = int(record.containers[container].get("instances", 0))
        number = instances - (2 if previous else 1)
        if number < 0:
            return None
        path = directory / container / f"{number}.log"
        return path if path.exists() else None

    def exec_argv(
        self, namespace: str, pod: str, container: str, command: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """argv and env that run `command` inside a running container's namespaces."""
        running = self._by_name(namespace, pod)
        if running is None:
            raise PodNotFound(f'pod "{pod}" in namespace "{namespace}" is not on this node')
        if not running.has_container(container):
            raise ContainerNotFound(f'container "{container}" is not in pod "{pod}"')
        process = running.main_process(container)
        if process is None:
            raise ContainerNotRunning(f'container "{container}" in pod "{pod}" is not running')
        pid, launch = process
        return processes.enter_argv(self.nsenter, pid, launch.working_dir, command), dict(
            launch.env
        )

    def _by_name(self, namespace: str, name: str) -> runningpod.RunningPod | None:
        for pod in self._pods.values():
            if pod.sandbox.namespace == namespace and pod.sandbox.name == name:
                return pod
        return None

    def _recorded_by_name(self, namespace: str, name: str) -> containerstate.PodRecord | None:
        matches = [r for r in self.recover().values() if (r.namespace, r.name) == (namespace, name)]
        return max(matches, key=lambda r: r.directory.stat().st_mtime, default=None)

    def _wrap(self, sandbox: runningpod.Sandbox, argv: Sequence[str], exit_file: Path) -> list[str]:
        resolv = self.pod_dir_of(sandbox) / "resolv.conf" if sandbox.resolv_conf else None
        return processes.container_argv(
            argv,
            nsenter=self.nsenter,
            unshare=self.unshare,
            netns=sandbox.netns,
            hostname=sandbox.hostname,
            exit_file=exit_file,
            resolv_conf=resolv,
        )

    def pod_dir_of(self, sandbox: runningpod.Sandbox) -> Path:
        return self.pod_dir(sandbox.namespace, sandbox.name, sandbox.uid)
