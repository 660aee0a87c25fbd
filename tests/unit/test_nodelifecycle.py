"""A silent node is marked Unknown and tainted; its pods leave after their toleration."""

from __future__ import annotations

from switchboard.api.kinds import Obj
from switchboard.controllers import nodelifecycle as nl
from switchboard.controllers.pods import format_time, parse_time

NOW = 1_700_000_000.0


def node(conditions: list[Obj] | None = None, taints: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": "n1"},
        "spec": {"taints": taints} if taints else {},
        "status": {"conditions": conditions} if conditions is not None else {},
    }


def test_a_silent_nodes_conditions_become_unknown() -> None:
    conditions = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "NetworkUnavailable", "status": "False"},
    ]
    result = nl.conditions_unknown(node(conditions), NOW)
    assert result is not None
    by_type = {c["type"]: c for c in result}
    assert by_type["Ready"]["status"] == "Unknown"
    assert by_type["Ready"]["reason"] == "NodeStatusUnknown"
    assert by_type["Ready"]["message"] == "Kubelet stopped posting node status."
    assert by_type["Ready"]["lastTransitionTime"] == format_time(NOW)
    assert by_type["MemoryPressure"]["status"] == "Unknown"
    assert by_type["NetworkUnavailable"]["status"] == "False"
    assert nl.conditions_unknown(node(result), NOW + 10) is None


def test_a_node_that_never_reported_gets_a_ready_unknown_condition() -> None:
    result = nl.conditions_unknown(node([]), NOW)
    assert result is not None
    assert result[0]["reason"] == "NodeStatusNeverUpdated"


def test_unreachable_and_not_ready_nodes_are_tainted_and_ready_ones_are_not() -> None:
    other = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    unreachable = nl.desired_taints(node(taints=[other]), "Unknown", NOW)
    assert unreachable == [
        other,
        {"key": nl.TAINT_UNREACHABLE, "effect": "NoSchedule"},
        {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(NOW)},
    ]
    # Ready=False swaps unreachable for not-ready; Ready again removes ours only.
    not_ready = nl.desired_taints(node(taints=unreachable), "False", NOW + 5)
    assert {t["key"] for t in not_ready} == {"dedicated", nl.TAINT_NOT_READY}
    assert nl.desired_taints(node(taints=not_ready), "True", NOW) == [other]


def test_the_taint_keeps_its_time_so_eviction_clocks_survive_restarts() -> None:
    first = nl.desired_taints(node(), "Unknown", NOW)
    again = nl.desired_taints(node(taints=first), "Unknown", NOW + 60)
    assert again == first
    assert parse_time(again[1]["timeAdded"]) == NOW


def test_pods_tolerate_an_unavailable_node_for_their_toleration_or_the_default() -> None:
    taint = {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute"}
    plain: Obj = {"spec": {}}
    assert nl.tolerated_for(plain, taint, 300) == 300
    brief = {
        "spec": {
            "tolerations": [
                {
                    "key": nl.TAINT_UNREACHABLE,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                }
            ]
        }
    }
    assert nl.tolerated_for(brief, taint, 300) == 30
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert nl.tolerated_for(forever, taint, 300) is None
