"""Pods are counted, judged ready and chosen for deletion as Kubernetes does."""

from __future__ import annotations

from switchboard.api.kinds import Obj
from switchboard.controllers import pods
from switchboard.controllers.pods import format_time, parse_time

NOW = 1_700_000_000.0


def pod(
    name: str,
    *,
    node: str = "",
    phase: str = "Running",
    ready: bool | None = None,
    ready_at: float = NOW - 100,
    created: float = NOW - 1000,
    restarts: int = 0,
    deleting: bool = False,
) -> Obj:
    meta: Obj = {"name": name, "namespace": "ns", "creationTimestamp": format_time(created)}
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    status: Obj = {"phase": phase}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": format_time(ready_at),
            }
        ]
    if restarts:
        status["containerStatuses"] = [{"name": "c", "restartCount": restarts}]
    spec: Obj = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec, "status": status}


def names(items: list[Obj]) -> list[str]:
    return [p["metadata"]["name"] for p in items]


def test_timestamps_round_trip_through_rfc3339() -> None:
    assert format_time(NOW) == "2023-11-14T22:13:20Z"
    assert parse_time("2023-11-14T22:13:20Z") == NOW
    assert parse_time("2023-11-14T22:13:20.5+00:00") == NOW + 0.5
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_finished_and_deleted_pods_are_not_active() -> None:
    assert pods.is_active(pod("a"))
    assert pods.is_active(pod("a", phase="Pending"))
    assert not pods.is_active(pod("a", phase="Failed"))
    assert not pods.is_active(pod("a", phase="Succeeded"))
    assert not pods.is_active(pod("a", deleting=True))


def test_a_pod_is_available_once_ready_for_min_ready_seconds() -> None:
    p = pod("a", ready=True, ready_at=NOW - 5)
    assert pods.is_available(p, 0, NOW)
    assert pods.is_available(p, 5, NOW)
    assert not pods.is_available(p, 6, NOW)
    assert not pods.is_available(pod("b", ready=False), 0, NOW)
    assert not pods.is_available(pod("c"), 0, NOW)


def test_unscheduled_pods_are_deleted_before_scheduled_ones() -> None:
    candidates = [pod("scheduled", node="n1"), pod("unscheduled")]
    assert names(pods.pods_to_delete(candidates, 1)) == ["unscheduled"]


def test_pending_pods_go_before_running_ones_and_unready_before_ready() -> None:
    candidates = [
        pod("running-ready", node="n", ready=True),
        pod("running-unready", node="n", ready=False),
        pod("pending", node="n", phase="Pending"),
        pod("unknown", node="n", phase="Unknown"),
    ]
    order = names(pods.pods_to_delete(candidates, 4))
    assert order == ["pending", "unknown", "running-unready", "running-ready"]


def test_pods_doubled_up_on_a_node_go_first() -> None:
    candidates = [
        pod("alone", node="n1", ready=True),
        pod("crowded", node="n2", ready=True),
    ]
    related = [*candidates, pod("other", node="n2", ready=True)]
    assert names(pods.pods_to_delete(candidates, 1, related)) == ["crowded"]


def test_recently_ready_then_restarting_then_newer_pods_go_first() -> None:
    recent = pod("recent", node="n", ready=True, ready_at=NOW - 10)
    old = pod("old", node="n", ready=True, ready_at=NOW - 1000)
    assert names(pods.pods_to_delete([old, recent], 1)) == ["recent"]
    crashy = pod("crashy", node="n", ready=True, restarts=4)
    steady = pod("steady", node="n", ready=True)
    assert names(pods.pods_to_delete([steady, crashy], 1)) == ["crashy"]
    newer = pod("newer", node="n", ready=True, created=NOW - 10)
    older = pod("older", node="n", ready=True, created=NOW - 5000)
    assert names(pods.pods_to_delete([older, newer], 1)) == ["newer"]


def test_deleting_none_or_more_than_exist_is_safe() -> None:
    candidates = [pod("a"), pod("b")]
    assert pods.pods_to_delete(candidates, 0) == []
    assert len(pods.pods_to_delete(candidates, 5)) == 2


def test_creations_go_in_doubling_batches() -> None:
    assert pods.slow_start_batches(0) == []
    assert pods.slow_start_batches(1) == [1]
    assert pods.slow_start_batches(10) == [1, 2, 4, 3]
    assert sum(pods.slow_start_batches(500)) == 500


def test_keys_name_namespaced_and_cluster_scoped_objects() -> None:
    assert pods.key({"metadata": {"name": "p", "namespace": "ns"}}) == "ns/p"
    assert pods.key({"metadata": {"name": "node-1"}}) == "node-1"
