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

**Restarts.** `restartPolicy` Always / OnFailure / Never, with the kubelet's
back-off: the first restart is immediate, then `backoff_base` (10 s)
doubling to `backoff_max` (300 s); a container that ran for
`backoff_reset` (10 min) starts from scratch. While it waits the container
is `Waiting: CrashLoopBackOff`. Init containers run one by one to
completion first (restarted on failure unless the policy is Never).

**Stopping.** SIGTERM to each container's main process (the wrapper's
child, as the kubelet signals a container's PID 1), then after the grace
period SIGKILL to its whole process group.

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
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from switchboard.agent import containerstate, processes
from switchboard.agent import launch as launches

log = logging.getLogger(__name__)

BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
CONTAINER_ID_SCHEME = "switchboard://"
START_ERROR_EXIT_CODE = 128
KILL_WAIT = processes.KILL_WAIT
_MAX_NAME = 255

EventType = Literal["Normal", "Warning"]
OnEvent = Callable[[EventType, str, str], None]


class ContainerRuntimeError(Exception):
    """An operation on a pod's containers cannot be done; the message says why."""


class PodNotFound(ContainerRuntimeError, LookupError):
    """No pod of that namespace and name runs on this node."""


class ContainerNotFound(ContainerRuntimeError, LookupError):
    """The pod has no container of that name."""


class ContainerNotRunning(ContainerRuntimeError):
    """The container exists but has no running process."""


# -- what the runtime is given ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The pod as the runtime needs it: identity, namespaces, restart policy, DNS."""

    namespace: str
    name: str
    uid: str
    netns: str | None  # a name under /var/run/netns; None runs in the agent's own
    hostname: str
    restart_policy: str = "Always"
    resolv_conf: str | None = None


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
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.backoff_reset = backoff_reset
        self._pods: dict[str, RunningPod] = {}
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
        sandbox: Sandbox,
        init_containers: Sequence[launches.Launch],
        containers: Sequence[launches.Launch],
        *,
        on_change: Callable[[], None],
        on_event: OnEvent,
        record: containerstate.PodRecord | None = None,
    ) -> RunningPod:
        """Start supervising a pod (adopting what `record` says runs); the same one if known."""
        existing = self._pods.get(sandbox.uid)
        if existing is not None:
            return existing
        pod = RunningPod(
            self, sandbox, init_containers, containers, on_change, on_event, record=record
        )
        self._pods[sandbox.uid] = pod
        pod.start()
        return pod

    def get(self, uid: str) -> RunningPod | None:
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
        pid, launch = running.main_process(container)
        return processes.enter_argv(self.nsenter, pid, launch.working_dir, command), dict(
            launch.env
        )

    def _by_name(self, namespace: str, name: str) -> RunningPod | None:
        for pod in self._pods.values():
            if pod.sandbox.namespace == namespace and pod.sandbox.name == name:
                return pod
        return None

    def _recorded_by_name(self, namespace: str, name: str) -> containerstate.PodRecord | None:
        matches = [r for r in self.recover().values() if (r.namespace, r.name) == (namespace, name)]
        return max(matches, key=lambda r: r.directory.stat().st_mtime, default=None)

    def _wrap(self, sandbox: Sandbox, argv: Sequence[str], exit_file: Path) -> list[str]:
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

    def pod_dir_of(self, sandbox: Sandbox) -> Path:
        return self.pod_dir(sandbox.namespace, sandbox.name, sandbox.uid)


# -- one pod --------------------------------------------------------------------------


@dataclass(slots=True)
class _Container:
    launch: launches.Launch
    init: bool
    state: containerstate.State = field(
        default_factory=lambda: containerstate.Waiting("ContainerCreating")
    )
    last_state: containerstate.Terminated | None = None
    instances: int = 0  # started so far; restartCount is one less
    container_id: str = ""
    pid: int | None = None
    ticks: int | None = None
    crashes: int = 0  # consecutive restarts, for the back-off
    popen: subprocess.Popen[bytes] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False  # SIGKILLed by us

    @property
    def name(self) -> str:
        return self.launch.name

    @property
    def restart_count(self) -> int:
        return max(self.instances - 1, 0)

    def status(self) -> containerstate.ContainerStatus:
        return containerstate.ContainerStatus(
            name=self.name,
            image=self.launch.image,
            image_id=self.launch.image_id if self.instances else "",
            state=self.state,
            last_state=self.last_state,
            restart_count=self.restart_count,
            container_id=self.container_id,
        )


class RunningPod:
    """The supervisor of one pod's containers; made by `Runtime.run_pod`."""

    def __init__(
        self,
        runtime: Runtime,
        sandbox: Sandbox,
        init_containers: Sequence[launches.Launch],
        containers: Sequence[launches.Launch],
        on_change: Callable[[], None],
        on_event: OnEvent,
        *,
        record: containerstate.PodRecord | None,
    ) -> None:
        self.runtime = runtime
        self.sandbox = sandbox
        self.directory = runtime.pod_dir_of(sandbox)
        self._init = [_Container(launch, True) for launch in init_containers]
        self._main = [_Container(launch, False) for launch in containers]
        self._on_change = on_change
        self._on_event = on_event
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._deadline = 0.0
        self._wakeup = asyncio.Event()  # a container exited or the stop deadline moved
        self._task: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        if sandbox.resolv_conf is not None:
            containerstate.write_atomic(self.directory / "resolv.conf", sandbox.resolv_conf)
        if record is not None:
            self._restore(record)
        self._persist()

    # -- queries -----------------------------------------------------------------

    def snapshot(self) -> containerstate.PodSnapshot:
        running = any(isinstance(c.state, containerstate.Running) for c in self._all())
        return containerstate.PodSnapshot(
            init_containers=tuple(c.status() for c in self._init),
            containers=tuple(c.status() for c in self._main),
            initialized=all(
                isinstance(c.state, containerstate.Terminated) and c.state.exit_code == 0
                for c in self._init
            ),
            finished=self._task is not None and self._task.done() and not running,
            stopping=self._stopping,
        )

    def instances(self, container: str) -> int:
        found = self._find(container)
        return found.instances if found is not None else 0

    def main_process(self, container: str) -> tuple[int, launches.Launch]:
        found = self._find(container)
        if found is None:
            raise ContainerNotFound(f'container "{container}" is not in pod "{self.sandbox.name}"')
        if not isinstance(found.state, containerstate.Running) or found.pid is None:
            raise ContainerNotRunning(
                f'container "{container}" in pod "{self.sandbox.name}" is not running'
            )
        return found.pid, found.launch

    # -- control -----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"pod {self.sandbox.namespace}/{self.sandbox.name}"
        )

    def request_stop(self, grace: float) -> None:
        """Stop every container: SIGTERM, `grace` seconds, SIGKILL. A shorter grace wins."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, grace)
        if not self._stopping or deadline < self._deadline:
            self._deadline = deadline
            self._wakeup.set()
        if not self._stopping:
            self._stopping = True
            self._stop_requested.set()
            self._stopper = loop.create_task(self._stop())
            self._on_change()

    async def wait_stopped(self) -> None:
        if self._stopper is not None:
            await asyncio.shield(self._stopper)

    async def kill_container(self, name: str, container_id: str, grace: float) -> None:
        """Stop one instance (a failed liveness probe); the restart policy decides what next."""
        found = self._find(name)
        if found is None or found.container_id != container_id or found.pid is None:
            return
        deadline = asyncio.get_running_loop().time() + grace
        await self._terminate([found], lambda: deadline)

    async def detach(self) -> None:
        """Stop supervising without touching the processes (the agent is going away)."""
        tasks = [t for t in (self._task, self._stopper) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        # gather, not `suppress(CancelledError)`: that would swallow a cancel of the caller too.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._persist()

    # -- supervision -------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            if await self._run_init_containers():
                await asyncio.gather(*(self._keep_running(c) for c in self._main))
        except Exception:
            log.exception("supervising pod %s/%s failed", self.sandbox.namespace, self.sandbox.name)
        finally:
            self._persist()
            self._on_change()

    async def _run_init_containers(self) -> bool:
        for c in self._init:
            while not (isinstance(c.state, containerstate.Terminated) and c.state.exit_code == 0):
                if self._stopping:
                    return False
                if c.launch.error_reason:
                    await self._wait_with_error(c)
                    return False
                if isinstance(c.state, containerstate.Terminated):
                    if self.sandbox.restart_policy == "Never":
                        return False
                    if not await self._back_off(c):
                        return False
                await self._run_instance(c)
        return True

    async def _keep_running(self, c: _Container) -> None:
        while not self._stopping:
            if c.launch.error_reason:
                await self._wait_with_error(c)
                return
            if isinstance(c.state, containerstate.Terminated):
                if not self._restarts(c.state.exit_code):
                    return
                if not await self._back_off(c):
                    return
            await self._run_instance(c)

    def _restarts(self, exit_code: int) -> bool:
        policy = self.sandbox.restart_policy
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    async def _wait_with_error(self, c: _Container) -> None:
        reason, message = c.launch.error_reason, c.launch.error_message
        if c.state != containerstate.Waiting(reason, message):
            c.state = containerstate.Waiting(reason, message)
            if reason == launches.ERR_IMAGE_PULL:
                self._event(
                    "Warning", "Failed", f'Failed to pull image "{c.launch.image}": {message}'
                )
                self._event("Warning", "Failed", f"Error: {reason}")
            else:
                self._event("Warning", "Failed", f"Error: {message}")
            self._changed()
        await self._stop_requested.wait()

    async def _back_off(self, c: _Container) -> bool:
        """Wait before restarting `c`; False if the pod is stopping meanwhile."""
        ended = c.state if isinstance(c.state, containerstate.Terminated) else c.last_state
        if isinstance(c.state, containerstate.Terminated):
            ran = c.state.finished_at - (c.state.started_at or c.state.finished_at)
            if ran >= self.runtime.backoff_reset:
                c.crashes = 0
            c.last_state, c.state = c.state, containerstate.Waiting("ContainerCreating")
            c.crashes += 1
        steps = max(c.crashes - 1, 0)
        delay = 0.0 if steps == 0 else self.runtime.backoff_base * 2 ** (steps - 1)
        delay = min(delay, self.runtime.backoff_max)
        remaining = (ended.finished_at if ended else time.time()) + delay - time.time()
        if remaining > 0:
            sandbox = self.sandbox
            c.state = containerstate.Waiting(
                "CrashLoopBackOff",
                f"back-off {go_duration(delay)} restarting failed container={c.name} "
                f"pod={sandbox.name}_{sandbox.namespace}({sandbox.uid})",
            )
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod "
                f"{sandbox.name}_{sandbox.namespace}({sandbox.uid})",
            )
            self._changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), remaining)
        return not self._stopping

    async def _run_instance(self, c: _Container) -> None:
        if not (isinstance(c.state, containerstate.Running) and c.pid is not None):
            self._start(c)
            if c.pid is None:
                return
        await self._watch(c)

    def _start(self, c: _Container) -> None:
        if isinstance(c.state, containerstate.Terminated):
            c.last_state = c.state
        number = c.instances
        c.instances += 1
        c.container_id = CONTAINER_ID_SCHEME + secrets.token_hex(32)
        c.killed = False
        c.exited = asyncio.Event()
        directory = self.directory / c.name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            stem = old.stem
            if stem.isdigit() and int(stem) < number - 1:
                old.unlink(missing_ok=True)
        exit_file = directory / f"{number}.exit"
        exit_file.unlink(missing_ok=True)
        now = time.time()
        problem = processes.start_problem(c.launch)
        if problem is None:
            argv = self.runtime._wrap(self.sandbox, c.launch.argv, exit_file)
            fd = os.open(directory / f"{number}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                c.popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=subprocess.STDOUT,
                    env=dict(c.launch.env),
                    cwd=c.launch.working_dir,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                problem = f"starting {c.launch.argv[0]} failed: {exc.strerror or exc}"
            finally:
                os.close(fd)
        if problem is not None:
            c.state = containerstate.Terminated(
                START_ERROR_EXIT_CODE,
                "StartError",
                now,
                started_at=None,
                message=problem,
                container_id=c.container_id,
            )
            self._event("Warning", "Failed", f"Error: {problem}")
            self._changed()
            return
        assert c.popen is not None
        c.pid = c.popen.pid
        c.ticks = processes.start_ticks(c.pid) or 0
        c.state = containerstate.Running(now)
        self._event(
            "Normal", "Pulled", f'Container image "{c.launch.image}" already present on machine'
        )
        self._event("Normal", "Created", f"Created container {c.name}")
        self._event("Normal", "Started", f"Started container {c.name}")
        self._changed()

    async def _watch(self, c: _Container) -> None:
        assert c.pid is not None and isinstance(c.state, containerstate.Running)
        pid, ticks, popen = c.pid, c.ticks, c.popen
        await processes.wait_exit(pid, ticks, popen)
        returned: int | None = None
        if popen is not None:
            # Not reaped yet, the wrapper still holds its pid and so its group id: end
            # whatever is left in the group should the wrapper have been killed early.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            status = popen.wait()
            returned = 128 - status if status < 0 else status
        code = processes.read_exit_code(self.directory / c.name / f"{c.instances - 1}.exit")
        if code is None:
            code = returned
        if code is None and c.killed:
            code = 128 + signal.SIGKILL
        if code is None:
            reason, message, code = (
                "ContainerStatusUnknown",
                "the container's process ended while no agent watched it, leaving no exit code",
                128 + signal.SIGKILL,
            )
        else:
            reason, message = ("Completed" if code == 0 else "Error"), ""
        c.state = containerstate.Terminated(
            code,
            reason,
            time.time(),
            started_at=c.state.started_at,
            message=message,
            container_id=c.container_id,
        )
        c.pid, c.ticks, c.popen = None, None, None
        c.exited.set()
        self._wakeup.set()
        self._changed()

    async def _stop(self) -> None:
        for c in self._all():
            if isinstance(c.state, containerstate.Running):
                self._event("Normal", "Killing", f"Stopping container {c.name}")
        await self._terminate(list(self._all()), lambda: self._deadline)
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), KILL_WAIT)
        self._persist()
        self._on_change()

    async def _terminate(self, targets: list[_Container], deadline: Callable[[], float]) -> None:
        """SIGTERM the targets' main processes; SIGKILL the groups of those left at `deadline()`.

        The deadline is read again whenever something wakes the wait, so a
        shorter grace period requested meanwhile takes effect at once.
        """
        loop = asyncio.get_running_loop()
        running = [
            c for c in targets if isinstance(c.state, containerstate.Running) and c.pid is not None
        ]
        for c in running:
            processes.signal_main(c.pid or 0, c.ticks or 0, signal.SIGTERM)
        while pending := [c for c in running if not c.exited.is_set()]:
            remaining = deadline() - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
        pending = [c for c in running if not c.exited.is_set()]
        for c in pending:
            c.killed = True
            processes.kill_group(c.pid or 0, c.ticks or 0)
        if pending:
            waits = [asyncio.ensure_future(c.exited.wait()) for c in pending]
            try:
                await asyncio.wait(waits, timeout=KILL_WAIT)
            finally:
                for waiter in waits:
                    waiter.cancel()

    # -- state ------------------------------------------------------------------

    def _all(self) -> Iterator[_Container]:
        yield from self._init
        yield from self._main

    def _find(self, name: str) -> _Container | None:
        return next((c for c in self._all() if c.name == name), None)

    def _changed(self) -> None:
        self._persist()
        self._on_change()

    def _event(self, type_: EventType, reason: str, message: str) -> None:
        try:
            self._on_event(type_, reason, message)
        except Exception:
            log.exception("recording event %s failed", reason)

    def _persist(self) -> None:
        doc = {
            "version": containerstate.FORMAT_VERSION,
            "namespace": self.sandbox.namespace,
            "name": self.sandbox.name,
            "uid": self.sandbox.uid,
            "netns": self.sandbox.netns,
            "containers": [_encode_container(c) for c in self._all()],
        }
        try:
            containerstate.write_atomic(
                self.directory / containerstate.STATE_FILE, json.dumps(doc, indent=1)
            )
        except OSError as exc:
            log.error("cannot record the state of pod %s: %s", self.sandbox.name, exc)

    def _restore(self, record: containerstate.PodRecord) -> None:
        for c in self._all():
            saved = record.containers.get(c.name)
            if saved is None:
                continue
            c.instances = int(saved.get("instances", 0))
            c.container_id = str(saved.get("containerID", ""))
            c.crashes = int(saved.get("crashes", 0))
            c.last_state = containerstate.decode_terminated(saved.get("lastState"))
            state = containerstate.decode_state(saved.get("state"))
            pid, ticks = saved.get("pid"), saved.get("ticks")
            if (
                isinstance(state, containerstate.Running)
                and isinstance(pid, int)
                and isinstance(ticks, int)
            ):
                if ticks and processes.start_ticks(pid) == ticks:
                    c.state, c.pid, c.ticks = state, pid, ticks
                    continue
                code = processes.read_exit_code(self.directory / c.name / f"{c.instances - 1}.exit")
                state = containerstate.Terminated(
                    128 + signal.SIGKILL if code is None else code,
                    "ContainerStatusUnknown"
                    if code is None
                    else "Completed"
                    if code == 0
                    else "Error",
                    time.time(),
                    started_at=state.started_at,
                    container_id=c.container_id,
                )
            elif (
                isinstance(state, containerstate.Waiting) and c.last_state is not None and c.crashes
            ):
                # It was backing off: do so again, from the same exit and crash count.
                state, c.last_state = c.last_state, None
                c.crashes -= 1
            c.state = (
                state
                if not isinstance(state, containerstate.Running)
                else containerstate.Waiting("ContainerCreating")
            )


def go_duration(seconds: float) -> str:
    """A duration as Go prints it ("10s", "2m40s", "500ms"), as kubelet messages show it."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text


def _encode_container(c: _Container) -> dict[str, Any]:
    return {
        "name": c.name,
        "init": c.init,
        "instances": c.instances,
        "containerID": c.container_id,
        "pid": c.pid,
        "ticks": c.ticks,
        "crashes": c.crashes,
        "state": containerstate.encode_state(c.state),
        "lastState": containerstate.encode_state(c.last_state) if c.last_state else None,
    }
