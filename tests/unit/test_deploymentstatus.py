"""A Deployment's status and conditions, as `kubectl rollout status` reads them."""

from __future__ import annotations

import pytest

from switchboard.controllers import deploymentstatus as dstatus
from switchboard.controllers.pods import format_time
from tests.unit.test_rollout import NOW, T_NEW, deployment, rs


def test_status_sums_the_replicasets_and_reports_availability() -> None:
    d = deployment(3)
    old = rs("old", 1)
    new = rs("new", 3, available=2, template=T_NEW)
    status = dstatus.calculate_status(d, [old, new], new, NOW)
    assert status["observedGeneration"] == 2
    assert status["replicas"] == 4
    assert status["updatedReplicas"] == 3
    assert status["availableReplicas"] == 3
    assert status["unavailableReplicas"] == 1
    available = dstatus.get_condition(status, "Available")
    assert available is not None
    assert available["status"] == "True"
    assert available["reason"] == "MinimumReplicasAvailable"


def test_a_finished_rollout_is_reported_as_new_replicaset_available() -> None:
    d = deployment(3)
    new = rs("new", 3, template=T_NEW)
    status = dstatus.rollout_status(d, [new], new, NOW)
    cond = dstatus.get_condition(status, "Progressing")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "NewReplicaSetAvailable")
    assert cond["message"] == 'ReplicaSet "new" has successfully progressed.'
    assert dstatus.requeue_after(d, status, NOW) is None


def test_a_rollout_without_progress_times_out_after_its_deadline() -> None:
    stale = format_time(NOW - 601)
    progressing = {
        "type": "Progressing",
        "status": "True",
        "reason": "ReplicaSetUpdated",
        "lastUpdateTime": stale,
        "lastTransitionTime": stale,
        "message": "",
    }
    d = deployment(
        3,
        status={
            "conditions": [progressing],
            "replicas": 3,
            "updatedReplicas": 1,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    )
    new = rs("new", 1, available=0, template=T_NEW)
    old = rs("old", 2)
    status = dstatus.rollout_status(d, [old, new], new, NOW)
    cond = dstatus.get_condition(status, "Progressing")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_a_stuck_rollout_is_checked_again_when_its_deadline_passes() -> None:
    d = deployment(3)
    status = {
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "ReplicaSetUpdated",
                "lastUpdateTime": format_time(NOW - 100),
            }
        ]
    }
    assert dstatus.requeue_after(d, status, NOW) == pytest.approx(501)
