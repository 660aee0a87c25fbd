"""Containers as processes: started in the pod's namespaces, restarted, stopped, adopted.

A container here is a process tree, not an image. Each instance starts as

    nsenter --net=/var/run/netns/<pod> -- unshare --uts [--mount] -- /bin/sh -c WRAPPER ...

so it runs in the pod's network namespace and a UTS namespace of its own
whose hostname is the pod's (every container of a pod gets the same name,
which is all a process can observe of sharing one). With a pod resolv.conf
the wrapper also gets a private mount namespace and bind-mounts the file
over /etc/resolv.conf. The wrapper (`_WRAPPER`) is a few lines of sh that
then run the container's argv in the foreground, write its exit code to
`<restartCount>.exit` next to the log (how an agent started later learns
how a container it did not start ended: that file, not the wrapper's own
status, is the exit code) and SIGKILL their process group, as the end of a
container's first process ends its pid namespace. Each instance begins a
session of its own (`setsid`), so its process group is the container.

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
`recover()`s it. A recorded pid is only trusted if /proc/<pid> still shows
the start time recorded with it, so a recycled pid is never taken for a
container. Exits are watched through pidfds, which work for processes the
agent did not start, so adopted containers are supervised like new ones.

**Restarts.** `restartPolicy` Always / OnFailure / Never, with the kubelet's
back-off: the first restart is immediate, then `backoff_base` (10 s)
doubling to `backoff_max` (300 s); a container that ran for
`backoff_reset` (10 min) starts from scratch. While it waits the container
is `Waiting: CrashLoopBackOff`. Init containers run one by one to
completion first (restarted on failure unless the policy is Never).

**Stopping.** SIGTERM to each container's main process (the wrapper's
child, as the kubelet signals a container's PID 1), then after the grace
period SIGKILL to the whole process group. A group is only ever signalled
while its leader, the wrapper, is provably the process this runtime
started: alive with the start time recorded for it, or a child of this
agent not yet reaped. Either way its pid, and so the group id, cannot have
been handed to anyone else (pids wrap quickly: 32768 is a common
pid_max). Processes that leave the container's group (a daemon calling
setsid) are not followed; without cgroups nothing can follow them.

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

from switchboard.agent import launch as launches

log = logging.getLogger(__name__)

BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0
KILL_WAIT = 10.0  # how long a SIGKILLed process may take to be gone
NETNS_RUN_DIR = "/var/run/netns"
CONTAINER_ID_SCHEME = "switchboard://"
START_ERROR_EXIT_CODE = 128
_STATE_FILE = "pod.json"
_MAX_NAME = 255
_FORMAT_VERSION = 1
_WRAPPER = r"""
exit_file=$1 pod_hostname=$2 resolv_conf=$3
shift 3
printf '%s' "$pod_hostname" > /proc/sys/kernel/hostname || exit 128
if [ -n "$resolv_conf" ]; then
  mount --bind "$resolv_conf" /etc/resolv.conf || echo "cannot bind-mount the pod's resolv.conf" >&2
fi
trap : TERM INT HUP QUIT
"$@"
echo "$?" > "$exit_file"
kill -KILL 0
"""

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


# -- what the agent sees ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Running:
    started_at: float  # wall clock, seconds


@dataclass(frozen=True, slots=True)
class Terminated:
    exit_code: int
    reason: str
    finished_at: float
    started_at: float | None = None
    message: str = ""
    container_id: str = ""


State = Waiting | Running | Terminated


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    image: str
    image_id: str
    state: State
    last_state: Terminated | None
    restart_count: int
    container_id: str


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    init_containers: tuple[ContainerStatus, ...]
    containers: tuple[ContainerStatus, ...]
    initialized: bool  # every init container succeeded
    finished: bool  # nothing runs and nothing will be started again
    stopping: bool


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


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A pod as `pod.json` left it: enough to adopt its processes or to stop them."""

    namespace: str
    name: str
    uid: str
    directory: Path
    containers: dict[str, dict[str, Any]]


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

    def recover(self) -> dict[str, PodRecord]:
        """Pod uid → record of every pod a runtime on this data dir left behind."""
        found: dict[str, PodRecord] = {}
        for path in sorted(self.pods_dir.glob(f"*/{_STATE_FILE}")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                record = PodRecord(
                    namespace=str(doc["namespace"]),
                    name=str(doc["name"]),
                    uid=str(doc["uid"]),
                    directory=path.parent,
                    containers={str(c["name"]): c for c in doc["containers"]},
                )
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
        record: PodRecord | None = None,
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

    async def stop_recorded(self, record: PodRecord, grace: float) -> None:
        """Stop the processes of a pod no longer wanted here, then forget it."""
        alive = [p for p in _recorded_processes(record) if _start_ticks(p[0]) == p[1]]
        for pid, ticks in alive:
            _signal_main(pid, ticks, signal.SIGTERM)
        exits = [asyncio.ensure_future(_wait_exit(pid, ticks, None)) for pid, ticks in alive]
        if exits:
            try:
                await asyncio.wait(exits, timeout=grace)
            finally:
                for waiter in exits:
                    waiter.cancel()
        for pid, ticks in alive:
            _kill_group(pid, ticks)
        self.forget(record.uid, record.directory)

    def kill_recorded(self) -> int:
        """SIGKILL every container of every recorded pod and drop all state; how many."""
        killed = 0
        for record in self.recover().values():
            for pid, ticks in _recorded_processes(record):
                if _kill_group(pid, ticks):
                    killed += 1
                    _reap(pid)
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
        argv = [
            self.nsenter,
            f"--target={pid}",
            "--net",
            "--uts",
            "--mount",
            f"--wd={launch.working_dir}",
            "--",
            *command,
        ]
        return argv, dict(launch.env)

    def _by_name(self, namespace: str, name: str) -> RunningPod | None:
        for pod in self._pods.values():
            if pod.sandbox.namespace == namespace and pod.sandbox.name == name:
                return pod
        return None

    def _recorded_by_name(self, namespace: str, name: str) -> PodRecord | None:
        matches = [r for r in self.recover().values() if (r.namespace, r.name) == (namespace, name)]
        return max(matches, key=lambda r: r.directory.stat().st_mtime, default=None)

    def _wrap(self, sandbox: Sandbox, argv: Sequence[str], exit_file: Path) -> list[str]:
        resolv = str(self.pod_dir_of(sandbox) / "resolv.conf") if sandbox.resolv_conf else ""
        enter = (
            [self.nsenter, f"--net={NETNS_RUN_DIR}/{sandbox.netns}", "--"] if sandbox.netns else []
        )
        unshare = [self.unshare, "--uts", *(["--mount"] if resolv else []), "--"]
        wrapper = ["/bin/sh", "-c", _WRAPPER, "container", str(exit_file), sandbox.hostname]
        return [*enter, *unshare, *wrapper, resolv, *argv]

    def pod_dir_of(self, sandbox: Sandbox) -> Path:
        return self.pod_dir(sandbox.namespace, sandbox.name, sandbox.uid)


# -- one pod --------------------------------------------------------------------------


@dataclass(slots=True)
class _Container:
    launch: launches.Launch
    init: bool
    state: State = field(default_factory=lambda: Waiting("ContainerCreating"))
    last_state: Terminated | None = None
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

    def status(self) -> ContainerStatus:
        return ContainerStatus(
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
        record: PodRecord | None,
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
            _write_atomic(self.directory / "resolv.conf", sandbox.resolv_conf)
        if record is not None:
            self._restore(record)
        self._persist()

    # -- queries -----------------------------------------------------------------

    def snapshot(self) -> PodSnapshot:
        running = any(isinstance(c.state, Running) for c in self._all())
        return PodSnapshot(
            init_containers=tuple(c.status() for c in self._init),
            containers=tuple(c.status() for c in self._main),
            initialized=all(
                isinstance(c.state, Terminated) and c.state.exit_code == 0 for c in self._init
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
        if not isinstance(found.state, Running) or found.pid is None:
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
            while not (isinstance(c.state, Terminated) and c.state.exit_code == 0):
                if self._stopping:
                    return False
                if c.launch.error_reason:
                    await self._wait_with_error(c)
                    return False
                if isinstance(c.state, Terminated):
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
            if isinstance(c.state, Terminated):
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
        if c.state != Waiting(reason, message):
            c.state = Waiting(reason, message)
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
        ended = c.state if isinstance(c.state, Terminated) else c.last_state
        if isinstance(c.state, Terminated):
            ran = c.state.finished_at - (c.state.started_at or c.state.finished_at)
            if ran >= self.runtime.backoff_reset:
                c.crashes = 0
            c.last_state, c.state = c.state, Waiting("ContainerCreating")
            c.crashes += 1
        steps = max(c.crashes - 1, 0)
        delay = 0.0 if steps == 0 else self.runtime.backoff_base * 2 ** (steps - 1)
        delay = min(delay, self.runtime.backoff_max)
        remaining = (ended.finished_at if ended else time.time()) + delay - time.time()
        if remaining > 0:
            sandbox = self.sandbox
            c.state = Waiting(
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
        if not (isinstance(c.state, Running) and c.pid is not None):
            self._start(c)
            if c.pid is None:
                return
        await self._watch(c)

    def _start(self, c: _Container) -> None:
        if isinstance(c.state, Terminated):
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
        problem = _start_problem(c.launch)
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
            c.state = Terminated(
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
        c.ticks = _start_ticks(c.pid) or 0
        c.state = Running(now)
        self._event(
            "Normal", "Pulled", f'Container image "{c.launch.image}" already present on machine'
        )
        self._event("Normal", "Created", f"Created container {c.name}")
        self._event("Normal", "Started", f"Started container {c.name}")
        self._changed()

    async def _watch(self, c: _Container) -> None:
        assert c.pid is not None and isinstance(c.state, Running)
        pid, ticks, popen = c.pid, c.ticks, c.popen
        await _wait_exit(pid, ticks, popen)
        returned: int | None = None
        if popen is not None:
            # Not reaped yet, the wrapper still holds its pid and so its group id: end
            # whatever is left in the group should the wrapper have been killed early.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            status = popen.wait()
            returned = 128 - status if status < 0 else status
        code = _read_exit_code(self.directory / c.name / f"{c.instances - 1}.exit")
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
        c.state = Terminated(
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
            if isinstance(c.state, Running):
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
        running = [c for c in targets if isinstance(c.state, Running) and c.pid is not None]
        for c in running:
            _signal_main(c.pid or 0, c.ticks or 0, signal.SIGTERM)
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
            _kill_group(c.pid or 0, c.ticks or 0)
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
            "version": _FORMAT_VERSION,
            "namespace": self.sandbox.namespace,
            "name": self.sandbox.name,
            "uid": self.sandbox.uid,
            "netns": self.sandbox.netns,
            "containers": [_encode_container(c) for c in self._all()],
        }
        try:
            _write_atomic(self.directory / _STATE_FILE, json.dumps(doc, indent=1))
        except OSError as exc:
            log.error("cannot record the state of pod %s: %s", self.sandbox.name, exc)

    def _restore(self, record: PodRecord) -> None:
        for c in self._all():
            saved = record.containers.get(c.name)
            if saved is None:
                continue
            c.instances = int(saved.get("instances", 0))
            c.container_id = str(saved.get("containerID", ""))
            c.crashes = int(saved.get("crashes", 0))
            c.last_state = _decode_terminated(saved.get("lastState"))
            state = _decode_state(saved.get("state"))
            pid, ticks = saved.get("pid"), saved.get("ticks")
            if isinstance(state, Running) and isinstance(pid, int) and isinstance(ticks, int):
                if ticks and _start_ticks(pid) == ticks:
                    c.state, c.pid, c.ticks = state, pid, ticks
                    continue
                code = _read_exit_code(self.directory / c.name / f"{c.instances - 1}.exit")
                state = Terminated(
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
            elif isinstance(state, Waiting) and c.last_state is not None and c.crashes:
                # It was backing off: do so again, from the same exit and crash count.
                state, c.last_state = c.last_state, None
                c.crashes -= 1
            c.state = state if not isinstance(state, Running) else Waiting("ContainerCreating")


# -- processes ------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot; None if it is gone or a zombie."""
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[3]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, process group, session, start ticks) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            raw = stream.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int) -> bool:
    """Whether `pid` is still the process that started at `ticks` (and not a zombie)."""
    return bool(ticks) and _start_ticks(pid) == ticks


def _signal_main(pid: int, ticks: int, sig: int) -> None:
    """Signal a container's main process: the wrapper's child, else the wrapper."""
    if not _alive(pid, ticks):
        return
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as stream:
            children = [int(p) for p in stream.read().split()]
    except OSError:
        children = []
    targets = [p for p in children if (_stat(p) or ("", -1))[1] == pid] or [pid]
    for target in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)


def _kill_group(pid: int, ticks: int) -> bool:
    """SIGKILL a container's process group, if its leader is still the one recorded."""
    if not _alive(pid, ticks):
        return False  # gone: the wrapper ended its group itself, and the id may be reused
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    """Collect the exit of a child of this process, if it is one, so no zombie is left."""
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)


async def _wait_exit(pid: int, ticks: int | None, popen: subprocess.Popen[bytes] | None) -> None:
    """Return once the process has ended; works for processes this agent did not start."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if popen is None and _start_ticks(pid) != ticks:
            return  # it ended before the pidfd was opened
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def _recorded_processes(record: PodRecord) -> list[tuple[int, int]]:
    found = []
    for saved in record.containers.values():
        pid, ticks = saved.get("pid"), saved.get("ticks")
        if isinstance(pid, int) and isinstance(ticks, int) and ticks:
            found.append((pid, ticks))
    return found


def _start_problem(launch: launches.Launch) -> str | None:
    """Why the container's argv cannot start here, checked before anything is spawned."""
    directory = launch.working_dir
    if not os.path.isdir(directory):
        return f'working directory "{directory}" does not exist on this node'
    if not launch.argv:
        return "the container has no command to run"
    program = launch.argv[0]
    if "/" in program:
        path = os.path.join(directory, program)
        found = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        found = (
            shutil.which(program, path=launch.env.get("PATH", launches.DEFAULT_PATH)) is not None
        )
    return None if found else f'exec: "{program}": executable file not found in $PATH'


def _read_exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def go_duration(seconds: float) -> str:
    """A duration as Go prints it ("10s", "2m40s", "500ms"), as kubelet messages show it."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text


# -- persistence ----------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _encode_container(c: _Container) -> dict[str, Any]:
    return {
        "name": c.name,
        "init": c.init,
        "instances": c.instances,
        "containerID": c.container_id,
        "pid": c.pid,
        "ticks": c.ticks,
        "crashes": c.crashes,
        "state": _encode_state(c.state),
        "lastState": _encode_state(c.last_state) if c.last_state else None,
    }


def _encode_state(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        return {"waiting": {"reason": state.reason, "message": state.message}}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    return {
        "terminated": {
            "exitCode": state.exit_code,
            "reason": state.reason,
            "finishedAt": state.finished_at,
            "startedAt": state.started_at,
            "message": state.message,
            "containerID": state.container_id,
        }
    }


def _decode_state(doc: Any) -> State:
    if isinstance(doc, dict) and isinstance(doc.get("running"), dict):
        return Running(float(doc["running"]["startedAt"]))
    terminated = _decode_terminated(doc)
    if terminated is not None:
        return terminated
    if isinstance(doc, dict) and isinstance(doc.get("waiting"), dict):
        return Waiting(
            str(doc["waiting"].get("reason", "")), str(doc["waiting"].get("message", ""))
        )
    return Waiting("ContainerCreating")


def _decode_terminated(doc: Any) -> Terminated | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("terminated"), dict):
        return None
    t = doc["terminated"]
    started = t.get("startedAt")
    return Terminated(
        int(t["exitCode"]),
        str(t.get("reason", "")),
        float(t["finishedAt"]),
        started_at=float(started) if started is not None else None,
        message=str(t.get("message", "")),
        container_id=str(t.get("containerID", "")),
    )
