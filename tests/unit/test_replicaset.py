"""A ReplicaSet's status counts its active pods as Kubernetes does."""

from __future__ import annotations

from switchboard.api.kinds import Obj
from switchboard.client import errors
from switchboard.controllers.pods import format_time
from switchboard.controllers.replicaset import replicaset_status

NOW = 1_700_000_000.0


def rs(replicas: int = 3, min_ready: int = 0, status: Obj | None = None) -> Obj:
    return {
        "metadata": {"name": "web", "generation": 4},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}},
        },
        "status": status or {},
    }


def pod(labels: dict[str, str], ready_for: float | None = None) -> Obj:
    status: Obj = {"phase": "Running"}
    if ready_for is not None:
        status["conditions"] = [
            {"type": "Ready", "status": "True", "lastTransitionTime": format_time(NOW - ready_for)}
        ]
    return {"metadata": {"labels": labels}, "status": status}


FULL = {"app": "web", "tier": "fe"}


def test_status_counts_labelled_ready_and_available_pods() -> None:
    pods = [pod(FULL, 100), pod(FULL, 5), pod({"app": "web"}), pod(FULL)]
    status = replicaset_status(rs(min_ready=10), pods, None, NOW)
    assert status == {
        "replicas": 4,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 4,
    }


def test_zero_counts_are_omitted_but_replicas_is_always_there() -> None:
    assert replicaset_status(rs(0), [], None, NOW) == {"replicas": 0, "observedGeneration": 4}


def test_a_failed_create_is_reported_as_a_replica_failure_until_it_succeeds() -> None:
    forbidden = errors.APIError(403, "Forbidden", "exceeded quota", {})
    failing = replicaset_status(rs(3), [pod(FULL)], forbidden, NOW)
    (cond,) = failing["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "ReplicaFailure",
        "True",
        "FailedCreate",
    )
    assert cond["message"] == "exceeded quota"
    healed = replicaset_status(rs(3, status=failing), [pod(FULL)] * 3, None, NOW)
    assert "conditions" not in healed


def test_a_create_refused_because_the_namespace_is_going_is_not_a_failure() -> None:
    ours = errors.APIError(
        403,
        "Forbidden",
        "unable to create new content in namespace ns because it is being terminated",
        {},
    )
    theirs = errors.APIError(
        403, "Forbidden", "whatever", {"details": {"causes": [{"type": "NamespaceTerminating"}]}}
    )
    wire = errors.APIError(
        403, "Forbidden", "whatever", {"details": {"causes": [{"reason": "NamespaceTerminating"}]}}
    )
    quota = errors.APIError(403, "Forbidden", "exceeded quota", {})
    assert errors.namespace_terminating(ours)
    assert errors.namespace_terminating(theirs)
    assert errors.namespace_terminating(wire)
    assert not errors.namespace_terminating(quota)
