"""Rollout arithmetic: surge, unavailability, proportional scaling and status."""

from __future__ import annotations

import pytest

from switchboard.api.kinds import Obj
from switchboard.controllers import podtemplate as pt
from switchboard.controllers import rollout
from switchboard.controllers.pods import format_time

NOW = 1_700_000_000.0
T_OLD = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "v1"}]}}
T_NEW = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "v2"}]}}


def deployment(
    replicas: int = 3,
    *,
    template: Obj = T_NEW,
    surge: object = "25%",
    unavailable: object = "25%",
    strategy: str = "RollingUpdate",
    generation: int = 2,
    status: Obj | None = None,
    history: int | None = 10,
) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "template": template,
        "progressDeadlineSeconds": 600,
        "strategy": {"type": strategy},
    }
    if history is not None:
        spec["revisionHistoryLimit"] = history
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


def rs(
    name: str,
    replicas: int,
    *,
    available: int | None = None,
    actual: int | None = None,
    template: Obj = T_OLD,
    age: float = 100,
    revision: int = 1,
    annotations: dict[str, str] | None = None,
) -> Obj:
    ann = {pt.REVISION_ANNOTATION: str(revision), **(annotations or {})}
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": format_time(NOW - age),
            "annotations": ann,
            "generation": 1,
        },
        "spec": {"replicas": replicas, "template": pt.template_with_hash(template, name)},
        "status": {
            "replicas": replicas if actual is None else actual,
            "readyReplicas": replicas if available is None else available,
            "availableReplicas": replicas if available is None else available,
            "observedGeneration": 1,
        },
    }


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("0%", 5, True, 0),
        (None, 4, True, 0),
    ],
)
def test_int_or_percent_scales_against_the_replica_count(
    value: object, total: int, up: bool, expected: int
) -> None:
    assert rollout.int_or_percent(value, total, round_up=up) == expected


def test_a_string_that_is_not_a_percentage_is_rejected() -> None:
    with pytest.raises(ValueError):
        rollout.int_or_percent("3", 10, round_up=True)


def test_when_surge_and_unavailability_both_round_to_zero_one_pod_may_be_unavailable() -> None:
    assert rollout.resolve_fenceposts("10%", "10%", 3) == (1, 0)
    assert rollout.resolve_fenceposts(0, "10%", 3) == (0, 1)


def test_recreate_has_no_surge_and_no_unavailability_budget() -> None:
    d = deployment(strategy="Recreate")
    assert rollout.max_surge(d) == 0
    assert rollout.max_unavailable(d) == 0
    assert rollout.new_rs_replicas(d, [rs("old", 3)], 0) == 3


def test_the_new_replicaset_grows_within_the_surge() -> None:
    d = deployment(3)  # surge 1, unavailable 0
    old = rs("old", 3)
    assert rollout.new_rs_replicas(d, [old, None], 0) == 1
    assert rollout.new_rs_replicas(d, [old, rs("new", 1, template=T_NEW)], 1) == 1
    assert rollout.new_rs_replicas(d, [rs("old", 1), rs("new", 2)], 2) == 3


def test_old_replicasets_shrink_only_as_new_pods_become_available() -> None:
    d = deployment(3)
    old = rs("old", 3)
    waiting = rs("new", 1, available=0, template=T_NEW, age=1)
    assert rollout.rolling_scale_down(d, waiting, [old]) == {}
    ready = rs("new", 1, template=T_NEW, age=1)
    assert rollout.rolling_scale_down(d, ready, [old]) == {"old": 2}


def test_unhealthy_old_replicas_are_scaled_down_first() -> None:
    d = deployment(4, unavailable=1, surge=1)
    healthy = rs("healthy", 2, age=200)
    sick = rs("sick", 2, available=0, age=100)
    new = rs("new", 1, available=0, template=T_NEW, age=1)
    # all 5, minAvailable 3, new unavailable 1 → 1 may go: the sick one's.
    assert rollout.rolling_scale_down(d, new, [healthy, sick]) == {"sick": 1}


def test_a_resize_during_a_rollout_is_spread_in_proportion() -> None:
    d = deployment(20, surge=3, unavailable=2)
    old = rs("old", 8, annotations={pt.MAX_REPLICAS_ANNOTATION: "13"}, age=100)
    new = rs("new", 5, template=T_NEW, annotations={pt.MAX_REPLICAS_ANNOTATION: "13"}, age=1)
    sizes = rollout.proportional_sizes(d, new, [old])
    # 10 to add toward 20 + surge 3, split 8:5 (rounded), which adds up exactly.
    assert sizes == {"old": 14, "new": 9}
    assert sum(sizes.values()) == 23


def test_scaling_down_during_a_rollout_never_goes_below_zero() -> None:
    d = deployment(0)
    old = rs("old", 2, annotations={pt.MAX_REPLICAS_ANNOTATION: "4"})
    new = rs("new", 2, template=T_NEW, annotations={pt.MAX_REPLICAS_ANNOTATION: "4"}, age=1)
    assert rollout.proportional_sizes(d, new, [old]) == {"old": 0, "new": 0}


def test_with_one_active_replicaset_it_takes_the_whole_size() -> None:
    d = deployment(5)
    new = rs("new", 3, template=T_NEW)
    assert rollout.proportional_sizes(d, new, [rs("old", 0)]) == {"new": 5}
    assert rollout.proportional_sizes(d, None, [rs("a", 0, age=9), rs("b", 0, age=1)]) == {"b": 5}


def test_a_resize_is_told_from_a_rollout_by_the_desired_replicas_annotation() -> None:
    sized_for_3 = rs("a", 3, annotations={pt.DESIRED_REPLICAS_ANNOTATION: "3"})
    assert not rollout.is_scaling_event(deployment(3), [sized_for_3])
    assert rollout.is_scaling_event(deployment(5), [sized_for_3])
    assert not rollout.is_scaling_event(deployment(5), [rs("b", 0)])


def test_the_new_replicaset_is_the_oldest_with_the_deployments_template() -> None:
    d = deployment(template=T_NEW)
    a = rs("a", 1, template=T_NEW, age=5)
    b = rs("b", 1, template=T_NEW, age=50)
    c = rs("c", 1, template=T_OLD, age=500)
    assert rollout.find_new(d, [a, b, c]) is b
    assert [x["metadata"]["name"] for x in rollout.find_old([a, b, c], b)] == ["a", "c"]
    assert rollout.find_new(deployment(template={"spec": {}}), [a]) is None


def test_only_empty_settled_replicasets_beyond_the_history_limit_are_deleted() -> None:
    d = deployment(3, history=1)
    olds = [
        rs("r1", 0, revision=1),
        rs("r2", 1, revision=2),
        rs("r3", 0, revision=3),
        rs("r4", 0, revision=4),
    ]
    assert [x["metadata"]["name"] for x in rollout.history_to_delete(d, olds)] == ["r1", "r3"]
    assert rollout.history_to_delete(deployment(history=None), olds) == []


def test_recreate_waits_for_every_old_pod_to_stop() -> None:
    new = rs("new", 0, template=T_NEW)
    old = rs("old", 0)
    running = {"status": {"phase": "Running"}}
    failed = {"status": {"phase": "Failed"}}
    assert rollout.old_pods_running(new, {"uid-old": [running]}, [old])
    assert not rollout.old_pods_running(new, {"uid-old": [failed], "uid-new": [running]}, [old])
    assert rollout.old_pods_running(new, {}, [rs("old", 0, actual=1)])
