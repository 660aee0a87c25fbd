"""Pods go to nodes that fit them, spread out, and say why when none fits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from switchboard.api.kinds import Obj
from switchboard.controllers import scheduling
from switchboard.controllers.scheduling import NodeInfo


def node(
    name: str,
    *,
    ready: str = "True",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    allocatable: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    status: Obj = {"conditions": [{"type": "Ready", "status": ready}]}
    if allocatable:
        status["allocatable"] = allocatable
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": status}


def pod(
    name: str = "p",
    *,
    labels: dict[str, str] | None = None,
    spec: Obj | None = None,
    cpu: str | None = None,
) -> Obj:
    container: Obj = {"name": "c", "image": "x"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels or {"app": "web"}},
        "spec": {"containers": [container], **(spec or {})},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", "0.1"),
        ("2", "2"),
        ("1Ki", "1024"),
        ("1.5Gi", "1610612736"),
        ("1k", "1000"),
        ("2e3", "2000"),
        (4, "4"),
        ("500u", "0.0005"),
    ],
)
def test_quantities_parse_as_kubernetes_writes_them(text: object, value: str) -> None:
    assert scheduling.parse_quantity(text) == Decimal(value)


def test_a_quantity_that_is_not_a_number_is_rejected() -> None:
    with pytest.raises(ValueError):
        scheduling.parse_quantity("lots")


def test_a_pod_goes_only_to_a_ready_node() -> None:
    nodes = [
        NodeInfo(node("down", ready="False")),
        NodeInfo(node("gone", ready="Unknown")),
        NodeInfo(node("up")),
    ]
    assert scheduling.schedule(pod(), nodes).node == "up"


def test_a_pod_that_fits_nowhere_says_why_per_node() -> None:
    nodes = [
        NodeInfo(node("a", ready="False")),
        NodeInfo(node("b", labels={"disk": "hdd"})),
        NodeInfo(node("c", labels={"disk": "hdd"})),
        NodeInfo(node("d", unschedulable=True)),
    ]
    decision = scheduling.schedule(pod(spec={"nodeSelector": {"disk": "ssd"}}), nodes)
    assert decision.node is None
    assert decision.message() == (
        "0/4 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )


def test_with_no_nodes_at_all_the_message_says_so() -> None:
    assert scheduling.schedule(pod(), []).message() == "no nodes available to schedule pods"


def test_node_selector_and_required_affinity_pick_matching_nodes() -> None:
    nodes = [NodeInfo(node("a", labels={"zone": "1"})), NodeInfo(node("b", labels={"zone": "2"}))]
    assert scheduling.schedule(pod(spec={"nodeSelector": {"zone": "2"}}), nodes).node == "b"
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["2"]}]}
                ]
            }
        }
    }
    assert scheduling.schedule(pod(spec={"affinity": affinity}), nodes).node == "a"


def test_tolerations_let_a_pod_onto_a_tainted_node() -> None:
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    nodes = [NodeInfo(node("tainted", taints=[taint]))]
    assert scheduling.schedule(pod(), nodes).node is None
    equal = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    assert scheduling.schedule(pod(spec={"tolerations": [equal]}), nodes).node == "tainted"
    exists = {"operator": "Exists"}
    assert scheduling.schedule(pod(spec={"tolerations": [exists]}), nodes).node == "tainted"
    wrong = {"key": "dedicated", "value": "web", "effect": "NoSchedule"}
    assert scheduling.schedule(pod(spec={"tolerations": [wrong]}), nodes).node is None


def test_replicas_spread_across_nodes() -> None:
    infos = [NodeInfo(node("a")), NodeInfo(node("b")), NodeInfo(node("c"))]
    placed = []
    for i in range(6):
        p = pod(f"web-{i}", labels={"app": "web", "pod-template-hash": str(i % 2)})
        target = scheduling.schedule(p, infos).node
        assert target is not None
        placed.append(target)
        next(info for info in infos if info.name == target).pods.append(p)
    assert sorted(placed) == ["a", "a", "b", "b", "c", "c"]


def test_spreading_counts_only_the_pods_own_workload() -> None:
    busy = NodeInfo(node("busy"), [pod(f"db-{i}", labels={"app": "db"}) for i in range(3)])
    has_web = NodeInfo(node("has-web"), [pod("web-0")])
    assert scheduling.schedule(pod("web-1"), [busy, has_web]).node == "busy"


def test_requests_must_fit_in_what_is_left_on_the_node() -> None:
    small = NodeInfo(node("small", allocatable={"cpu": "1", "pods": "10"}), [pod(cpu="800m")])
    decision = scheduling.schedule(pod(cpu="500m"), [small])
    assert decision.message() == "0/1 nodes are available: 1 Insufficient cpu."
    full = NodeInfo(node("full", allocatable={"pods": "1"}), [pod()])
    assert scheduling.schedule(pod(), [full]).message() == (
        "0/1 nodes are available: 1 Too many pods."
    )


def test_host_ports_already_taken_rule_a_node_out() -> None:
    ports = {
        "containers": [
            {"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}
        ]
    }
    taken = NodeInfo(node("taken"), [pod(spec=ports)])
    free = NodeInfo(node("free"))
    assert scheduling.schedule(pod(spec=ports), [taken, free]).node == "free"


def test_preferred_affinity_wins_over_spreading() -> None:
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]},
                }
            ]
        }
    }
    fast = NodeInfo(node("fast", labels={"ssd": "yes"}), [pod("web-0")])
    slow = NodeInfo(node("slow"))
    assert scheduling.schedule(pod(spec={"affinity": affinity}), [slow, fast]).node == "fast"


def test_a_new_templates_replicas_spread_even_while_old_replicas_remain() -> None:
    def web(name: str, template: str) -> Obj:
        return pod(name, labels={"app": "web", "pod-template-hash": template})

    a = NodeInfo(node("a"), [web("new-0", "new")])
    b = NodeInfo(node("b"), [web("new-1", "new")])
    c = NodeInfo(node("c"), [web("old-2", "old")])
    assert scheduling.schedule(web("new-2", "new"), [a, b, c]).node == "c"


def test_terminating_pods_do_not_count_against_spreading() -> None:
    leaving = pod("web-0")
    leaving["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    emptied = NodeInfo(node("a"), [leaving])
    busy = NodeInfo(node("b"), [pod("web-1")])
    assert scheduling.schedule(pod("web-2"), [busy, emptied]).node == "a"
