"""A Pod's status as the kubelet writes it, from what the runtime and the probes know.

Pure functions: `pod_status` takes the Pod, the runtime's `PodSnapshot`, the
probes' verdicts and a few facts (IPs, times) and returns the whole
`status` object the agent writes. Nothing here reads a clock or the kernel,
so every rule is unit-tested.

- **phase** follows the kubelet's getPhase: Pending while an init container
  has not succeeded or a container has never started; Running while one
  runs or is being restarted; Succeeded when every container ended with 0
  and none will restart; Failed when one ended otherwise and none will
  restart (restartPolicy Never, or the pod is being deleted).
- **conditions**: PodReadyToStartContainers (network wired), Initialized,
  ContainersReady, Ready (ContainersReady and every readiness gate) and
  PodScheduled, in the kubelet's order and wording. A condition whose
  status is unchanged keeps its lastTransitionTime; conditions of types
  the kubelet does not own (a readiness gate's, DisruptionTarget) are kept.
- **containerStatuses** carry state, lastState, ready, started,
  restartCount, image, imageID and containerID.
- **qosClass** is Guaranteed, Burstable or BestEffort by Kubernetes' rules.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchboard.agent import containerstate, launch
from switchboard.api.kinds import Obj

_OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
_QOS_RESOURCES = ("cpu", "memory")


@dataclass(frozen=True, slots=True)
class Probed:
    """What a running container's probes say."""

    ready: bool
    started: bool


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def pod_status(
    pod: Obj,
    snapshot: containerstate.PodSnapshot | None,
    probed: Mapping[str, Probed],
    *,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: float,
    sandbox_ready: bool,
    terminal: bool = False,
) -> Obj:
    """The pod's whole `status`; `terminal` once it is being deleted and nothing runs."""
    spec = pod.get("spec") or {}
    policy = str(spec.get("restartPolicy") or "Always")
    inits, mains = _statuses(pod, snapshot)
    init_objs = [container_status(s, None, init=True) for s in inits]
    main_objs = [container_status(s, probed.get(s.name), init=False) for s in mains]
    if snapshot is not None and snapshot.stopping:
        for obj in main_objs:
            obj["ready"] = False
    current_phase = phase(policy, inits, mains, terminal=terminal)
    status: Obj = {
        "phase": current_phase,
        "conditions": conditions(
            pod,
            init_objs,
            main_objs,
            phase=current_phase,
            sandbox_ready=sandbox_ready,
            now=format_time(now),
        ),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": main_objs,
        "qosClass": qos_class(pod),
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_objs:
        status["initContainerStatuses"] = init_objs
    return status


def _statuses(
    pod: Obj, snapshot: containerstate.PodSnapshot | None
) -> tuple[list[containerstate.ContainerStatus], list[containerstate.ContainerStatus]]:
    if snapshot is not None:
        return list(snapshot.init_containers), list(snapshot.containers)
    spec = pod.get("spec") or {}
    inits = spec.get("initContainers") or []

    def waiting(container: Obj, reason: str) -> containerstate.ContainerStatus:
        return containerstate.ContainerStatus(
            name=str(container["name"]),
            image=str(container.get("image", "")),
            image_id="",
            state=containerstate.Waiting(reason),
            last_state=None,
            restart_count=0,
            container_id="",
        )

    main_reason = "PodInitializing" if inits else "ContainerCreating"
    return (
        [waiting(c, "PodInitializing") for c in inits],
        [waiting(c, main_reason) for c in spec.get("containers") or []],
    )


def container_status(
    status: containerstate.ContainerStatus, probed: Probed | None, *, init: bool
) -> Obj:
    """One entry of containerStatuses (or initContainerStatuses)."""
    state = status.state
    running = isinstance(state, containerstate.Running)
    if init:
        ready = isinstance(state, containerstate.Terminated) and state.exit_code == 0
        started = running
    else:
        started = running and probed is not None and probed.started
        ready = running and probed is not None and probed.ready
    obj: Obj = {
        "name": status.name,
        "image": status.image,
        "imageID": status.image_id,
        "ready": ready,
        "restartCount": status.restart_count,
        "started": started,
        "state": state_object(state),
        "lastState": state_object(status.last_state) if status.last_state else {},
    }
    if status.container_id:
        obj["containerID"] = status.container_id
    return obj


def state_object(state: containerstate.State) -> Obj:
    if isinstance(state, containerstate.Waiting):
        waiting: Obj = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, containerstate.Running):
        return {"running": {"startedAt": format_time(state.started_at)}}
    terminated: Obj = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": format_time(
            state.started_at if state.started_at is not None else state.finished_at
        ),
        "finishedAt": format_time(state.finished_at),
    }
    if state.message:
        terminated["message"] = state.message
    if state.container_id:
        terminated["containerID"] = state.container_id
    return {"terminated": terminated}


def phase(
    restart_policy: str,
    init_containers: Iterable[containerstate.ContainerStatus],
    containers: Iterable[containerstate.ContainerStatus],
    *,
    terminal: bool = False,
) -> str:
    """The kubelet's getPhase over the containers' states."""
    for init in init_containers:
        state = init.state
        if isinstance(state, containerstate.Terminated) and state.exit_code == 0:
            continue
        ended = state if isinstance(state, containerstate.Terminated) else init.last_state
        if ended is not None and (restart_policy == "Never" or terminal):
            return "Failed"
        return "Failed" if terminal else "Pending"
    running = waiting = stopped = succeeded = 0
    for c in containers:
        ended = c.state if isinstance(c.state, containerstate.Terminated) else c.last_state
        if isinstance(c.state, containerstate.Running):
            running += 1
        elif ended is not None:
            stopped += 1
            succeeded += ended.exit_code == 0
        else:
            waiting += 1
    if terminal:
        return "Succeeded" if stopped and stopped == succeeded and not waiting else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def conditions(
    pod: Obj,
    init_statuses: list[Obj],
    statuses: list[Obj],
    *,
    phase: str,
    sandbox_ready: bool,
    now: str,
) -> list[Obj]:
    existing = {
        c.get("type"): c
        for c in (pod.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    }
    terminal = phase in ("Succeeded", "Failed")

    def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        value = "True" if ok else "False"
        before = existing.get(kind) or {}
        since = before.get("lastTransitionTime") if before.get("status") == value else None
        made: Obj = {"type": kind, "status": value, "lastTransitionTime": since or now}
        if not ok and reason:
            made["reason"] = reason
        if not ok and message:
            made["message"] = message
        return made

    unfinished = [s["name"] for s in init_statuses if not s["ready"]]
    unready = [s["name"] for s in statuses if not s["ready"]]
    containers_ready = not unready
    why_unready = "PodCompleted" if terminal else "ContainersNotReady"
    unready_message = f"containers with unready status: [{' '.join(unready)}]"
    gates = [
        str(g.get("conditionType"))
        for g in (pod.get("spec") or {}).get("readinessGates") or []
        if isinstance(g, dict)
    ]
    missing_gates = [g for g in gates if (existing.get(g) or {}).get("status") != "True"]
    if not containers_ready:
        ready = condition("Ready", False, why_unready, unready_message)
    elif missing_gates:
        ready = condition(
            "Ready",
            False,
            "ReadinessGatesNotReady",
            f'corresponding condition of pod readiness gate "{missing_gates[0]}" does not exist.',
        )
    else:
        ready = condition("Ready", True)
    owned = [
        condition("PodReadyToStartContainers", sandbox_ready and not terminal),
        condition(
            "Initialized",
            not unfinished,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(unfinished)}]",
        ),
        ready,
        condition("ContainersReady", containers_ready, why_unready, unready_message),
    ]
    scheduled = existing.get("PodScheduled") or {
        "type": "PodScheduled",
        "status": "True",
        "lastTransitionTime": now,
    }
    others = [c for kind, c in existing.items() if kind not in (*_OWN_CONDITIONS, "PodScheduled")]
    return [*owned, scheduled, *others]


def qos_class(pod: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, as Kubernetes classifies the pod's resources."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        resources = c.get("resources") or {}
        requests = {
            k: v for k, v in (resources.get("requests") or {}).items() if k in _QOS_RESOURCES
        }
        limits = {k: v for k, v in (resources.get("limits") or {}).items() if k in _QOS_RESOURCES}
        if requests or limits:
            any_set = True
        if set(limits) != set(_QOS_RESOURCES) or any(
            launch.parse_quantity(str(requests.get(k, limits[k])))
            != launch.parse_quantity(str(limits[k]))
            for k in _QOS_RESOURCES
        ):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
