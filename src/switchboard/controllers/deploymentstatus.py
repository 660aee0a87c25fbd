"""A Deployment's status and conditions, derived from its ReplicaSets.

Pure functions (pkg/controller/deployment's calculateStatus and progress.go):
the counts are sums over the ReplicaSets' own status — `updatedReplicas` is
the new ReplicaSet's — and two conditions carry Kubernetes' reasons, which
`kubectl rollout status` and `kubectl describe` read:

- `Available`: True (MinimumReplicasAvailable) while at least
  `replicas - maxUnavailable` pods are available;
- `Progressing`: NewReplicaSetCreated / FoundNewReplicaSet when a rollout
  starts, ReplicaSetUpdated (with a fresh lastUpdateTime) whenever it moves,
  NewReplicaSetAvailable once complete, ProgressDeadlineExceeded when it has
  not moved for `progressDeadlineSeconds`, DeploymentPaused/Resumed.

A condition keeps its lastTransitionTime while its status stays the same;
zero counts are omitted as the API omits them, so an unchanged status
compares equal and is not written again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from switchboard.api.kinds import Obj
from switchboard.controllers.pods import format_time, parse_time
from switchboard.controllers.rollout import (
    max_unavailable,
    progress_deadline,
    spec_replicas,
    status_int,
    total_replicas,
    total_status,
    uid,
)

# Condition reasons, as deployment_util.go names them.
REASON_RS_UPDATED = "ReplicaSetUpdated"
REASON_RS_CREATE_ERROR = "ReplicaSetCreateError"
REASON_NEW_RS_CREATED = "NewReplicaSetCreated"
REASON_FOUND_NEW_RS = "FoundNewReplicaSet"
REASON_NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
REASON_TIMED_OUT = "ProgressDeadlineExceeded"
REASON_PAUSED = "DeploymentPaused"
REASON_RESUMED = "DeploymentResumed"
REASON_MIN_AVAILABLE = "MinimumReplicasAvailable"
REASON_MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return dict(c)
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = format_time(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """Add or replace a condition; same status and reason keep the existing one."""
    current = get_condition(status, cond["type"])
    if current is not None and current["status"] == cond["status"]:
        if current.get("reason") == cond.get("reason"):
            return
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def calculate_status(d: Obj, all_rs: Sequence[Obj | None], new: Obj | None, now: float) -> Obj:
    """The Deployment's status from its ReplicaSets, with the Available condition."""
    available = total_status(all_rs, "availableReplicas")
    status: Obj = {
        "observedGeneration": int(d["metadata"].get("generation") or 0),
        "replicas": total_status(all_rs, "replicas"),
        "updatedReplicas": status_int(new, "replicas"),
        "readyReplicas": total_status(all_rs, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total_replicas(all_rs) - available),
    }
    old_status = d.get("status") or {}
    if old_status.get("collisionCount") is not None:
        status["collisionCount"] = old_status["collisionCount"]
    if old_status.get("conditions"):
        status["conditions"] = copy.deepcopy(old_status["conditions"])
    if available >= spec_replicas(d) - max_unavailable(d):
        cond = new_condition(
            "Available", "True", REASON_MIN_AVAILABLE, "Deployment has minimum availability.", now
        )
    else:
        cond = new_condition(
            "Available",
            "False",
            REASON_MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    set_condition(status, cond)
    # The API omits zero counts; so do we, so an unchanged status compares equal.
    for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        if not status[field]:
            del status[field]
    if not status["unavailableReplicas"]:
        del status["unavailableReplicas"]
    return status


def is_complete(d: Obj, status: Obj) -> bool:
    want = spec_replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def is_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}

    def n(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    old_old = n(old, "replicas") - n(old, "updatedReplicas")
    new_old = n(status, "replicas") - n(status, "updatedReplicas")
    return (
        n(status, "updatedReplicas") > n(old, "updatedReplicas")
        or new_old < old_old
        or n(status, "readyReplicas") > n(old, "readyReplicas")
        or n(status, "availableReplicas") > n(old, "availableReplicas")
    )


def timed_out(d: Obj, status: Obj, now: float) -> bool:
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == REASON_NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == REASON_TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + deadline < now


def rollout_status(d: Obj, all_rs: Sequence[Obj | None], new: Obj | None, now: float) -> Obj:
    """The status `syncRolloutStatus` writes: counts plus Progressing and ReplicaFailure."""
    status = calculate_status(d, all_rs, new, now)
    deadline = progress_deadline(d)
    if deadline is None:
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    already_complete = (
        int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
        and current is not None
        and current.get("reason") == REASON_NEW_RS_AVAILABLE
    )
    if deadline is not None and not already_complete:
        rs_name = new["metadata"]["name"] if new is not None else None
        name = d["metadata"]["name"]
        if is_complete(d, status):
            msg = (
                f'ReplicaSet "{rs_name}" has successfully progressed.'
                if rs_name
                else f'Deployment "{name}" has successfully progressed.'
            )
            set_condition(
                status, new_condition("Progressing", "True", REASON_NEW_RS_AVAILABLE, msg, now)
            )
        elif is_progressing(d, status):
            msg = (
                f'ReplicaSet "{rs_name}" is progressing.'
                if rs_name
                else f'Deployment "{name}" is progressing.'
            )
            cond = new_condition("Progressing", "True", REASON_RS_UPDATED, msg, now)
            # Progress refreshes lastUpdateTime even with an unchanged reason.
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime")
            remove_condition(status, "Progressing")
            status.setdefault("conditions", []).append(cond)
        elif timed_out(d, status, now):
            msg = (
                f'ReplicaSet "{rs_name}" has timed out progressing.'
                if rs_name
                else f'Deployment "{name}" has timed out progressing.'
            )
            set_condition(status, new_condition("Progressing", "False", REASON_TIMED_OUT, msg, now))
    failure = _replica_failure(all_rs, new)
    if failure is not None:
        set_condition(status, failure)
    else:
        remove_condition(status, "ReplicaFailure")
    return status


def _replica_failure(all_rs: Sequence[Obj | None], new: Obj | None) -> Obj | None:
    ordered = ([new] if new is not None else []) + [
        rs for rs in all_rs if rs is not None and (new is None or uid(rs) != uid(new))
    ]
    for rs in ordered:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure":
                return {
                    "type": "ReplicaFailure",
                    "status": c.get("status"),
                    "lastUpdateTime": c.get("lastTransitionTime"),
                    "lastTransitionTime": c.get("lastTransitionTime"),
                    "reason": c.get("reason"),
                    "message": c.get("message"),
                }
    return None


def requeue_after(d: Obj, status: Obj, now: float) -> float | None:
    """Seconds until a stuck rollout should be checked against its deadline again."""
    deadline = progress_deadline(d)
    cond = get_condition(status, "Progressing")
    if deadline is None or cond is None:
        return None
    if cond.get("reason") in (REASON_NEW_RS_AVAILABLE, REASON_TIMED_OUT) or is_complete(d, status):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return max(0.0, since + deadline - now) + 1.0
