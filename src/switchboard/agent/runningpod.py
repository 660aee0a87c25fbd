"""One pod's containers supervised: run in order, restarted, stopped, recorded.

`RunningPod` runs the init containers one by one to completion, then keeps
the app containers running as `restartPolicy` says, and stops them all on
request. Each container instance is a process tree started through the
`wrap` it is given (`runtime.Runtime` wraps it into the pod's namespaces);
its exits are watched through pidfds (`processes`), so an instance adopted
from a `pod.json` record is watched like one started here.

**Restarts.** `restartPolicy` Always / OnFailure / Never, with the kubelet's
back-off (`Backoff`): the first restart is immediate, then `base` (10 s)
doubling to `maximum` (300 s); a container that ran for `reset` (10 min)
starts from scratch. While it waits the container
is `Waiting: CrashLoopBackOff`. Init containers run one by one to
completion first (restarted on failure unless the policy is Never).

**Stopping.** SIGTERM to each container's main process (the wrapper's
child, as the kubelet signals a container's PID 1), then after the grace
period SIGKILL to its whole process group.

Every change is written to `pod.json` at once (`containerstate`), and the
owner is told through `on_change`; what a kubelet would record as an Event
goes to `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from switchboard.agent import containerstate, podcontainer, processes
from switchboard.agent import launch as launches

log = logging.getLogger(__name__)

CONTAINER_ID_SCHEME = "switchboard://"
START_ERROR_EXIT_CODE = 128
KILL_WAIT = processes.KILL_WAIT

EventType = Literal["Normal", "Warning"]
OnEvent = Callable[[EventType, str, str], None]
# argv of a container instance and the file its exit code goes to -> the argv to run.
Wrap = Callable[[Sequence[str], Path], list[str]]


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
class Backoff:
    """The kubelet's restart back-off, in seconds."""

    base: float  # the second restart waits this long, each further one twice as long …
    maximum: float  # … up to this
    reset: float  # a container that ran this long starts from scratch


class RunningPod:
    """The supervisor of one pod's containers; made by `runtime.Runtime.run_pod`."""

    def __init__(
        self,
        sandbox: Sandbox,
        directory: Path,
        init_containers: Sequence[launches.Launch],
        containers: Sequence[launches.Launch],
        on_change: Callable[[], None],
        on_event: OnEvent,
        *,
        backoff: Backoff,
        wrap: Wrap,
        record: containerstate.PodRecord | None,
    ) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.backoff = backoff
        self._wrap = wrap
        self._init = [podcontainer.Container(launch, True) for launch in init_containers]
        self._main = [podcontainer.Container(launch, False) for launch in containers]
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

    def has_container(self, name: str) -> bool:
        return self._find(name) is not None

    def main_process(self, container: str) -> tuple[int, launches.Launch] | None:
        """The pid of a running container's main process, and its launch; None if not running."""
        found = self._find(container)
        if found is None or found.pid is None:
            return None
        if not isinstance(found.state, containerstate.Running):
            return None
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

    async def _keep_running(self, c: podcontainer.Container) -> None:
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

    async def _wait_with_error(self, c: podcontainer.Container) -> None:
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

    async def _back_off(self, c: podcontainer.Container) -> bool:
        """Wait before restarting `c`; False if the pod is stopping meanwhile."""
        ended = c.state if isinstance(c.state, containerstate.Terminated) else c.last_state
        if isinstance(c.state, containerstate.Terminated):
            ran = c.state.finished_at - (c.state.started_at or c.state.finished_at)
            if ran >= self.backoff.reset:
                c.crashes = 0
            c.last_state, c.state = c.state, containerstate.Waiting("ContainerCreating")
            c.crashes += 1
        steps = max(c.crashes - 1, 0)
        delay = 0.0 if steps == 0 else self.backoff.base * 2 ** (steps - 1)
        delay = min(delay, self.backoff.maximum)
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

    async def _run_instance(self, c: podcontainer.Container) -> None:
        if not (isinstance(c.state, containerstate.Running) and c.pid is not None):
            self._start(c)
            if c.pid is None:
                return
        await self._watch(c)

    def _start(self, c: podcontainer.Container) -> None:
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
            argv = self._wrap(c.launch.argv, exit_file)
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

    async def _watch(self, c: podcontainer.Container) -> None:
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

    async def _terminate(
        self, targets: list[podcontainer.Container], deadline: Callable[[], float]
    ) -> None:
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

    def _all(self) -> Iterator[podcontainer.Container]:
        yield from self._init
        yield from self._main

    def _find(self, name: str) -> podcontainer.Container | None:
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
            "containers": [c.record() for c in self._all()],
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
            if saved is not None:
                c.restore(saved, self.directory / c.name)


def go_duration(seconds: float) -> str:
    """A duration as Go prints it ("10s", "2m40s", "500ms"), as kubelet messages show it."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:g}s"
    return f"{int(minutes)}m{text}" if minutes else text
