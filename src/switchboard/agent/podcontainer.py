"""One container of a running pod: its launch, its state, and its entry in `pod.json`.

A `Container` is what `runningpod.RunningPod` supervises: the `Launch` it
runs, its current and last state, how many instances have started
(restartCount is one less), the pid and start time of the running instance,
and its consecutive crashes for the back-off.

`record()` is the container's entry in `pod.json`; `restore()` takes one
back in a new agent. A recorded pid is trusted only while /proc shows it
with the recorded start time; a container that ended while no agent watched
gets the exit code its wrapper left, or ContainerStatusUnknown when there is
none. One that was backing off backs off again, from the same exit and crash
count.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchboard.agent import containerstate, processes
from switchboard.agent import launch as launches


@dataclass(slots=True)
class Container:
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

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "init": self.init,
            "instances": self.instances,
            "containerID": self.container_id,
            "pid": self.pid,
            "ticks": self.ticks,
            "crashes": self.crashes,
            "state": containerstate.encode_state(self.state),
            "lastState": containerstate.encode_state(self.last_state) if self.last_state else None,
        }

    def restore(self, saved: Mapping[str, Any], directory: Path) -> None:
        """Take back the entry `record()` made; `directory` holds the instances' files."""
        self.instances = int(saved.get("instances", 0))
        self.container_id = str(saved.get("containerID", ""))
        self.crashes = int(saved.get("crashes", 0))
        self.last_state = containerstate.decode_terminated(saved.get("lastState"))
        state = containerstate.decode_state(saved.get("state"))
        pid, ticks = saved.get("pid"), saved.get("ticks")
        if (
            isinstance(state, containerstate.Running)
            and isinstance(pid, int)
            and isinstance(ticks, int)
        ):
            if ticks and processes.start_ticks(pid) == ticks:
                self.state, self.pid, self.ticks = state, pid, ticks
                return
            code = processes.read_exit_code(directory / f"{self.instances - 1}.exit")
            state = containerstate.Terminated(
                128 + signal.SIGKILL if code is None else code,
                "ContainerStatusUnknown" if code is None else "Completed" if code == 0 else "Error",
                time.time(),
                started_at=state.started_at,
                container_id=self.container_id,
            )
        elif (
            isinstance(state, containerstate.Waiting)
            and self.last_state is not None
            and self.crashes
        ):
            # It was backing off: do so again, from the same exit and crash count.
            state, self.last_state = self.last_state, None
            self.crashes -= 1
        self.state = (
            state
            if not isinstance(state, containerstate.Running)
            else containerstate.Waiting("ContainerCreating")
        )
