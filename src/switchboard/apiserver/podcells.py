"""A pod's row in `kubectl get pods`: READY, STATUS and RESTARTS as kube-apiserver words them.

STATUS follows kube-apiserver's printPod: the pod's reason or phase,
overridden by the init container still in the way (`Init:1/2`,
`Init:CrashLoopBackOff`, `Init:ExitCode:1`), else by the app containers'
waiting or terminated reasons, and last by deletion (`Terminating`, or
`Unknown` on a lost node). Sidecars (init containers that keep running)
count in READY and, once the pod is initialized, in RESTARTS, which also
says how long ago the last restart was (`2 (5s ago)`).

Finished pods' rows carry a Completed row condition, whatever their outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from switchboard.apiserver.tablecells import (
    Cell,
    Obj,
    RowCondition,
    age,
    dig,
    human_duration,
    int_at,
    list_at,
    name_of,
    parse_time,
    str_at,
)


def _restartable(container: Any) -> bool:
    """A sidecar: an init container that keeps running (restartPolicy Always)."""
    return str_at(container, "restartPolicy") == "Always"


def _condition(conditions: list[Any], type_: str) -> Any:
    return next((c for c in conditions if str_at(c, "type") == type_), None)


def _later(current: datetime | None, status: Any) -> datetime | None:
    finished = parse_time(dig(status, "lastState", "terminated", "finishedAt"))
    if finished is None or (current is not None and finished <= current):
        return current
    return finished


def _exit_reason(terminated: Any, prefix: str) -> str:
    """A terminated container without a reason is described by its signal or exit code."""
    if signal := int_at(terminated, "signal"):
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{int_at(terminated, 'exitCode')}"


def pod_cells(pod: Obj, now: datetime) -> list[Cell]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    conditions = list_at(status, "conditions")
    init_specs = list_at(spec, "initContainers")
    sidecars = {str_at(c, "name") for c in init_specs if _restartable(c)}
    total = len(list_at(spec, "containers")) + len(sidecars)
    ready = 0
    phase = str_at(status, "phase")
    reason = str_at(status, "reason") or phase
    if any(
        str_at(c, "type") == "PodScheduled" and str_at(c, "reason") == "SchedulingGated"
        for c in conditions
    ):
        reason = "SchedulingGated"

    restarts, sidecar_restarts = 0, 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(list_at(status, "initContainerStatuses")):
        restarts += int_at(cs, "restartCount")
        last_restart = _later(last_restart, cs)
        is_sidecar = str_at(cs, "name") in sidecars
        if is_sidecar:
            sidecar_restarts += int_at(cs, "restartCount")
            last_sidecar_restart = _later(last_sidecar_restart, cs)
        terminated = dig(cs, "state", "terminated")
        waiting_reason = str_at(cs, "state", "waiting", "reason")
        if terminated is not None and int_at(terminated, "exitCode") == 0:
            continue
        if is_sidecar and dig(cs, "started") is True:
            ready += 1 if dig(cs, "ready") is True else 0
            continue
        if terminated is not None:
            term_reason = str_at(terminated, "reason")
            reason = f"Init:{term_reason}" if term_reason else _exit_reason(terminated, "Init:")
        elif waiting_reason and waiting_reason != "PodInitializing":
            reason = f"Init:{waiting_reason}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or str_at(_condition(conditions, "Initialized"), "status") == "True":
        # Once initialized, only sidecars' restarts still count among init containers.
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(list_at(status, "containerStatuses")):
            restarts += int_at(cs, "restartCount")
            last_restart = _later(last_restart, cs)
            terminated = dig(cs, "state", "terminated")
            if waiting_reason := str_at(cs, "state", "waiting", "reason"):
                reason = waiting_reason
            elif terminated is not None:
                reason = str_at(terminated, "reason") or _exit_reason(terminated, "")
            elif dig(cs, "ready") is True and dig(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                str_at(c, "type") == "Ready" and str_at(c, "status") == "True" for c in conditions
            )
            reason = "Running" if pod_ready else "NotReady"

    if dig(pod, "metadata", "deletionTimestamp"):
        if str_at(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = list_at(status, "podIPs")
    pod_ip = str_at(pod_ips[0], "ip") if pod_ips else str_at(status, "podIP")
    gates = list_at(spec, "readinessGates")
    gates_cell = "<none>"
    if gates:
        passing = sum(
            1
            for gate in gates
            if str_at(_condition(conditions, str_at(gate, "conditionType")), "status") == "True"
        )
        gates_cell = f"{passing}/{len(gates)}"
    return [
        name_of(pod),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod, now),
        pod_ip or "<none>",
        str_at(spec, "nodeName") or "<none>",
        str_at(status, "nominatedNodeName") or "<none>",
        gates_cell,
    ]


def pod_conditions(pod: Obj) -> list[RowCondition]:
    # kube-apiserver marks finished pods' rows Completed, whatever their outcome.
    phase = str_at(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]
