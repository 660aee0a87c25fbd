"""What a pod's containers are doing, as values, and as the `pod.json` that outlives the agent.

The runtime's snapshot of a pod (`PodSnapshot`: a `ContainerStatus` per
container, each in a `State` of `Waiting`, `Running` or `Terminated`) is
what the agent turns into the Pod's status. The same states, with the pids
and start times of what runs, are written to `pod.json` in the pod's
directory after every change (`write_atomic`: a temporary file renamed
over the old one, so a reader never sees half of one), and read back as a
`PodRecord` by the next agent on the same data directory.

Times are wall-clock seconds (`time.time()`), as the Pod's status reports
them; the format carries a version so a later agent can refuse what it
does not understand.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "pod.json"
FORMAT_VERSION = 1


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
class PodRecord:
    """A pod as `pod.json` left it: enough to adopt its processes or to stop them."""

    namespace: str
    name: str
    uid: str
    directory: Path
    containers: dict[str, dict[str, Any]]


def read_record(path: Path) -> PodRecord:
    """The record in a `pod.json` (raises OSError, ValueError, KeyError or TypeError)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {doc.get('version')!r}")
    return PodRecord(
        namespace=str(doc["namespace"]),
        name=str(doc["name"]),
        uid=str(doc["uid"]),
        directory=path.parent,
        containers={str(c["name"]): c for c in doc["containers"]},
    )


def recorded_processes(record: PodRecord) -> list[tuple[int, int]]:
    found = []
    for saved in record.containers.values():
        pid, ticks = saved.get("pid"), saved.get("ticks")
        if isinstance(pid, int) and isinstance(ticks, int) and ticks:
            found.append((pid, ticks))
    return found


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def encode_state(state: State) -> dict[str, Any]:
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


def decode_state(doc: Any) -> State:
    if isinstance(doc, dict) and isinstance(doc.get("running"), dict):
        return Running(float(doc["running"]["startedAt"]))
    terminated = decode_terminated(doc)
    if terminated is not None:
        return terminated
    if isinstance(doc, dict) and isinstance(doc.get("waiting"), dict):
        return Waiting(
            str(doc["waiting"].get("reason", "")), str(doc["waiting"].get("message", ""))
        )
    return Waiting("ContainerCreating")


def decode_terminated(doc: Any) -> Terminated | None:
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
