"""A Service's pods become EndpointSlices as Kubernetes' EndpointSlice controller makes them.

`slicing.reconcile` is pure: these tests hand it a Service, pods, Nodes and
the slices that exist, and check the writes it plans. `apply` plays the
apiserver's part (names for created slices, new resourceVersions), so a
test can run several rounds and see what a controller would leave behind.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.controllers import endpointrules, slicing, triggertime
from switchboard.controllers.slicing import SlicePlan

Obj = dict[str, Any]

NODES: dict[str, Obj] = {
    "node-a": {"metadata": {"name": "node-a", "labels": {slicing.LABEL_ZONE: "zone-a"}}},
    "node-b": {"metadata": {"name": "node-b"}},
}


def service(
    name: str = "web",
    *,
    selector: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    cluster_ip: str = "10.96.0.10",
    families: list[str] | None = None,
    labels: dict[str, str] | None = None,
    publish_not_ready: bool = False,
    uid: str = "svc-uid",
) -> Obj:
    spec: Obj = {
        "selector": {"app": name} if selector is None else selector,
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]
        if ports is None
        else ports,
        "clusterIP": cluster_ip,
        "ipFamilies": families or ["IPv4"],
    }
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    meta: Obj = {
        "name": name,
        "namespace": "default",
        "uid": uid,
        "creationTimestamp": "2024-05-01T10:00:00Z",
    }
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def pod(
    name: str,
    ip: str | None = "10.0.0.1",
    *,
    ready: bool = True,
    node: str = "node-a",
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    terminating: bool = False,
    container_ports: list[Obj] | None = None,
    hostname: str = "",
    subdomain: str = "",
    ips: list[str] | None = None,
    ready_since: str = "2024-05-01T10:05:00Z",
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "labels": {"app": "web"} if labels is None else labels,
        "resourceVersion": "7",
    }
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T11:00:00Z"
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "ports": container_ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status: Obj = {
        "phase": phase,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": ready_since,
            }
        ],
    }
    if ips is not None:
        status["podIPs"] = [{"ip": i} for i in ips]
        if ips:
            status["podIP"] = ips[0]
    elif ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def many_pods(count: int, **kwargs: Any) -> list[Obj]:
    return [pod(f"p{i:04d}", f"10.1.{i // 250}.{i % 250 + 1}", **kwargs) for i in range(count)]


def plan(svc: Obj, pods: Iterable[Obj], existing: Iterable[Obj] = (), **kwargs: Any) -> SlicePlan:
    return slicing.reconcile(svc, pods, existing, node_for=NODES.get, **kwargs)


_names = itertools.count(1)
_versions = itertools.count(100)


def apply(existing: list[Obj], p: SlicePlan) -> list[Obj]:
    """What the apiserver would hold after the plan's writes."""
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in p.delete:
        del by_name[s["metadata"]["name"]]
    for s in p.update:
        name = s["metadata"]["name"]
        assert name in by_name, f"update of missing slice {name}"
        if "resourceVersion" in s["metadata"]:
            assert s["metadata"]["resourceVersion"] == by_name[name]["metadata"]["resourceVersion"]
        stored = copy.deepcopy(s)
        stored["metadata"]["resourceVersion"] = str(next(_versions))
        by_name[name] = stored
    for s in p.create:
        stored = copy.deepcopy(s)
        meta = stored["metadata"]
        meta["name"] = meta.pop("generateName") + f"{next(_names):05d}"
        meta["resourceVersion"] = str(next(_versions))
        by_name[meta["name"]] = stored
    return sorted(by_name.values(), key=lambda s: s["metadata"]["name"])


def converge(svc: Obj, pods: list[Obj], existing: Iterable[Obj] = (), **kwargs: Any) -> list[Obj]:
    before = list(existing)
    slices = apply(before, plan(svc, pods, before, **kwargs))
    assert plan(svc, pods, slices, **kwargs).writes == 0, "a second pass still wants writes"
    return slices


def endpoints_of(slices: Iterable[Obj]) -> dict[str, Obj]:
    return {ep["targetRef"]["name"]: ep for s in slices for ep in s.get("endpoints") or []}


def only_slice(p: SlicePlan) -> Obj:
    assert len(p.create) == 1 and not p.update and not p.delete
    return p.create[0]


# --- one pod, one endpoint ------------------------------------------------------------------


def test_a_ready_pod_becomes_a_ready_serving_endpoint_that_names_its_pod_and_node() -> None:
    s = only_slice(plan(service(), [pod("a", "10.0.0.1")]))
    assert s["endpoints"] == [
        {
            "addresses": ["10.0.0.1"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
            "nodeName": "node-a",
            "zone": "zone-a",
        }
    ]


def test_a_pod_that_is_not_ready_is_neither_ready_nor_serving() -> None:
    ep = only_slice(plan(service(), [pod("a", ready=False)]))["endpoints"][0]
    assert ep["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_a_terminating_pod_stays_marked_terminating_and_not_ready() -> None:
    ep = only_slice(plan(service(), [pod("a", terminating=True)]))["endpoints"][0]
    assert ep["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_publish_not_ready_addresses_makes_every_endpoint_ready() -> None:
    pods = [pod("a", "10.0.0.1", ready=False), pod("b", "10.0.0.2", terminating=True)]
    eps = endpoints_of([only_slice(plan(service(publish_not_ready=True), pods))])
    assert eps["a"]["conditions"] == {"ready": True, "serving": False, "terminating": False}
    assert eps["b"]["conditions"] == {"ready": True, "serving": True, "terminating": True}


def test_pods_without_an_ip_or_in_a_terminal_phase_are_left_out() -> None:
    pods = [
        pod("no-ip", None),
        pod("done", "10.0.0.2", phase="Succeeded"),
        pod("failed", "10.0.0.3", phase="Failed"),
        pod("ok", "10.0.0.4"),
    ]
    assert list(endpoints_of([only_slice(plan(service(), pods))])) == ["ok"]


def test_a_node_without_a_zone_label_gives_no_zone() -> None:
    ep = only_slice(plan(service(), [pod("a", node="node-b")]))["endpoints"][0]
    assert ep["nodeName"] == "node-b"
    assert "zone" not in ep


def test_hostname_is_published_only_when_the_pod_subdomain_names_the_service() -> None:
    pods = [
        pod("named", "10.0.0.1", hostname="db-0", subdomain="web"),
        pod("other-subdomain", "10.0.0.2", hostname="db-1", subdomain="api"),
        pod("no-subdomain", "10.0.0.3", hostname="db-2"),
    ]
    eps = endpoints_of([only_slice(plan(service(), pods))])
    assert eps["named"]["hostname"] == "db-0"
    assert "hostname" not in eps["other-subdomain"]
    assert "hostname" not in eps["no-subdomain"]


def test_a_pod_on_a_node_nobody_knows_is_left_out_and_reported() -> None:
    p = plan(service(), [pod("lost", "10.0.0.1", node="gone"), pod("ok", "10.0.0.2")])
    assert list(endpoints_of(p.create)) == ["ok"]
    assert p.unplaced_pods == ("lost",)


def test_publishing_not_ready_addresses_keeps_pods_of_unknown_nodes() -> None:
    p = plan(service(publish_not_ready=True), [pod("lost", "10.0.0.1", node="gone")])
    assert list(endpoints_of(p.create)) == ["lost"]
    assert p.unplaced_pods == ()


# --- the slice object -------------------------------------------------------------------------


def test_a_new_slice_has_the_shape_kubernetes_gives_it() -> None:
    svc = service(
        labels={"team": "a", slicing.LABEL_SERVICE_NAME: "spoofed"},
        ports=[
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
            {"name": "grpc", "protocol": "TCP", "port": 81, "targetPort": 81, "appProtocol": "h2c"},
        ],
    )
    s = only_slice(plan(svc, [pod("a")], trigger_time="2024-05-01T10:05:00Z"))
    assert s["apiVersion"] == "discovery.k8s.io/v1"
    assert s["kind"] == "EndpointSlice"
    assert s["addressType"] == "IPv4"
    assert s["metadata"] == {
        "generateName": "web-",
        "namespace": "default",
        "labels": {
            "team": "a",
            slicing.LABEL_SERVICE_NAME: "web",
            slicing.LABEL_MANAGED_BY: "endpointslice-controller.k8s.io",
        },
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": "web",
                "uid": "svc-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "annotations": {triggertime.ANNOTATION_TRIGGER_TIME: "2024-05-01T10:05:00Z"},
    }
    assert s["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080},
        {"name": "grpc", "protocol": "TCP", "port": 81, "appProtocol": "h2c"},
    ]


def test_an_unnamed_port_is_written_with_an_empty_name() -> None:
    svc = service(ports=[{"protocol": "UDP", "port": 53, "targetPort": 5353}])
    assert only_slice(plan(svc, [pod("a")]))["ports"] == [
        {"name": "", "protocol": "UDP", "port": 5353}
    ]


def test_slices_of_a_headless_service_carry_the_headless_label() -> None:
    s = only_slice(plan(service(cluster_ip="None"), [pod("a")]))
    assert s["metadata"]["labels"][endpointrules.LABEL_HEADLESS] == ""


def test_without_a_trigger_time_no_annotation_is_written() -> None:
    assert "annotations" not in only_slice(plan(service(), [pod("a")]))["metadata"]


# --- ports ------------------------------------------------------------------------------------

NAMED = [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}]


def test_a_named_target_port_resolves_per_pod_and_pods_group_by_resolved_ports() -> None:
    pods = [
        pod("a", "10.0.0.1", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.0.0.2", container_ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", "10.0.0.3", container_ports=[{"name": "web", "containerPort": 8080}]),
    ]
    slices = converge(service(ports=NAMED), pods)
    by_port = {s["ports"][0]["port"]: sorted(endpoints_of([s])) for s in slices}
    assert by_port == {8080: ["a", "c"], 9090: ["b"]}


def test_a_pod_without_the_named_port_lands_in_a_slice_without_that_port() -> None:
    pods = [
        pod("has", "10.0.0.1", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("lacks", "10.0.0.2"),
    ]
    slices = converge(service(ports=NAMED), pods)
    by_ports = {tuple(p["port"] for p in s["ports"]): sorted(endpoints_of([s])) for s in slices}
    assert by_ports == {(8080,): ["has"], (): ["lacks"]}


def test_a_named_port_only_matches_a_container_port_of_the_same_protocol() -> None:
    udp = [{"name": "web", "containerPort": 8080, "protocol": "UDP"}]
    s = only_slice(plan(service(ports=NAMED), [pod("a", container_ports=udp)]))
    assert s["ports"] == []


def test_a_sidecar_init_container_port_resolves_a_named_target_port() -> None:
    p = pod("a")
    p["spec"]["initContainers"] = [
        {"name": "proxy", "restartPolicy": "Always", "ports": [{"name": "web", "containerPort": 7}]}
    ]
    assert only_slice(plan(service(ports=NAMED), [p]))["ports"][0]["port"] == 7


# --- sizes ------------------------------------------------------------------------------------


def test_250_pods_fill_three_slices_of_at_most_100_endpoints() -> None:
    slices = converge(service(), many_pods(250))
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100, 100]
    assert len(endpoints_of(slices)) == 250


def test_the_slice_size_limit_is_configurable() -> None:
    slices = converge(service(), many_pods(25), max_endpoints_per_slice=10)
    assert sorted(len(s["endpoints"]) for s in slices) == [5, 10, 10]


# --- minimal churn ----------------------------------------------------------------------------


def test_a_reconciled_service_plans_no_writes() -> None:
    pods = many_pods(150)
    slices = converge(service(), pods)
    assert plan(service(), pods, slices).writes == 0


def test_one_pod_turning_unready_rewrites_only_the_slice_holding_it() -> None:
    pods = many_pods(250)
    slices = converge(service(), pods)
    pods[137] = pod("p0137", pods[137]["status"]["podIP"], ready=False)
    p = plan(service(), pods, slices)
    assert not p.create and not p.delete
    assert len(p.update) == 1
    (updated,) = p.update
    holder = next(s for s in slices if "p0137" in endpoints_of([s]))
    assert updated["metadata"]["name"] == holder["metadata"]["name"]
    assert endpoints_of([updated])["p0137"]["conditions"]["ready"] is False


def test_a_pod_whose_targetref_resource_version_changed_needs_no_write() -> None:
    pods = many_pods(3)
    slices = converge(service(), pods)
    pods[1]["metadata"]["resourceVersion"] = "99"
    slices[0]["endpoints"][1]["targetRef"]["resourceVersion"] = "1"
    assert plan(service(), pods, slices).writes == 0


def test_removing_a_pod_rewrites_only_its_slice() -> None:
    pods = many_pods(250)
    slices = converge(service(), pods)
    del pods[10]
    p = plan(service(), pods, slices)
    assert (len(p.create), len(p.update), len(p.delete)) == (0, 1, 0)
    assert "p0010" not in endpoints_of(apply(slices, p))


def test_a_new_pod_fills_the_partly_full_slice_instead_of_creating_one() -> None:
    pods = many_pods(150)
    slices = converge(service(), pods)
    partial = next(s for s in slices if len(s["endpoints"]) == 50)
    p = plan(service(), [*pods, pod("new", "10.9.9.9")], slices)
    assert not p.create and not p.delete
    assert [s["metadata"]["name"] for s in p.update] == [partial["metadata"]["name"]]
    assert len(p.update[0]["endpoints"]) == 51


def test_new_pods_join_a_slice_that_is_being_rewritten_anyway() -> None:
    pods = many_pods(150)
    slices = converge(service(), pods)
    full = next(s for s in slices if len(s["endpoints"]) == 100)
    leaving = full["endpoints"][0]["targetRef"]["name"]
    pods = [p for p in pods if p["metadata"]["name"] != leaving] + [pod("new", "10.9.9.9")]
    p = plan(service(), pods, slices)
    assert [s["metadata"]["name"] for s in p.update] == [full["metadata"]["name"]]
    assert "new" in endpoints_of(p.update)


def test_a_slice_whose_pods_all_left_is_deleted() -> None:
    pods = many_pods(101)
    slices = converge(service(), pods)
    small = next(s for s in slices if len(s["endpoints"]) == 1)
    gone = small["endpoints"][0]["targetRef"]["name"]
    p = plan(service(), [x for x in pods if x["metadata"]["name"] != gone], slices)
    assert [s["metadata"]["name"] for s in p.delete] == [small["metadata"]["name"]]
    assert not p.create and not p.update


def test_a_needed_new_slice_reuses_a_slice_that_would_be_deleted() -> None:
    # All pods change their port set: the old slice is rewritten, not deleted and recreated.
    pods = many_pods(3)
    slices = converge(service(), pods)
    svc = service(ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9000}])
    p = plan(svc, pods, slices)
    assert not p.create and not p.delete
    (updated,) = p.update
    assert updated["metadata"]["name"] == slices[0]["metadata"]["name"]
    assert updated["metadata"]["resourceVersion"] == slices[0]["metadata"]["resourceVersion"]
    assert updated["ports"][0]["port"] == 9000


def test_a_change_of_the_service_labels_relabels_its_slices() -> None:
    slices = converge(service(), many_pods(3))
    p = plan(service(labels={"tier": "front"}), many_pods(3), slices)
    (updated,) = p.update
    assert updated["metadata"]["labels"]["tier"] == "front"


# --- placeholders, ownership, address types --------------------------------------------------


def test_a_service_without_pods_gets_one_empty_placeholder_slice() -> None:
    s = only_slice(plan(service(), []))
    assert s["endpoints"] == [] and s["ports"] == []
    assert plan(service(), [], apply([], plan(service(), []))).writes == 0


def test_the_placeholder_becomes_the_first_real_slice() -> None:
    slices = converge(service(), [])
    p = plan(service(), [pod("a")], slices)
    assert not p.create and not p.delete
    assert p.update[0]["metadata"]["name"] == slices[0]["metadata"]["name"]
    assert list(endpoints_of(p.update)) == ["a"]


def test_a_service_whose_pods_all_left_keeps_a_placeholder() -> None:
    slices = converge(service(), many_pods(3))
    after = apply(slices, plan(service(), [], slices))
    assert len(after) == 1 and not after[0]["endpoints"] and not after[0]["ports"]


def test_slices_owned_by_an_earlier_service_of_the_same_name_are_deleted() -> None:
    stale = converge(service(uid="old-uid"), many_pods(2))
    p = plan(service(uid="new-uid"), many_pods(2), stale)
    assert [s["metadata"]["name"] for s in p.delete] == [stale[0]["metadata"]["name"]]
    assert len(p.create) == 1


def test_a_dual_stack_service_gets_one_slice_per_family_with_that_family_addresses() -> None:
    svc = service(families=["IPv4", "IPv6"])
    slices = converge(svc, [pod("a", ips=["10.0.0.1", "fd00::1"])])
    assert {s["addressType"]: s["endpoints"][0]["addresses"] for s in slices} == {
        "IPv4": ["10.0.0.1"],
        "IPv6": ["fd00::1"],
    }


def test_slices_of_an_address_type_the_service_lost_are_deleted() -> None:
    slices = converge(service(families=["IPv4", "IPv6"]), [pod("a", ips=["10.0.0.1", "fd00::1"])])
    p = plan(service(families=["IPv4"]), [pod("a", ips=["10.0.0.1", "fd00::1"])], slices)
    assert [s["addressType"] for s in p.delete] == ["IPv6"]
    assert p.writes == 1


def test_a_service_being_deleted_gets_no_new_slices() -> None:
    svc = service()
    svc["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert plan(svc, [pod("a")]).create == ()


# --- which services are managed ---------------------------------------------------------------


def test_only_services_with_a_selector_and_not_external_name_are_managed() -> None:
    assert endpointrules.manages_endpoints(service())
    assert not endpointrules.manages_endpoints(service(selector={}))
    external = service()
    external["spec"]["type"] = "ExternalName"
    assert not endpointrules.manages_endpoints(external)


def test_a_service_selects_pods_carrying_all_its_selector_labels() -> None:
    assert endpointrules.selects({"app": "web"}, {"app": "web", "x": "y"})
    assert not endpointrules.selects({"app": "web", "tier": "a"}, {"app": "web"})


# --- trigger times ----------------------------------------------------------------------------


def test_the_first_sync_of_a_service_reports_its_creation_time() -> None:
    tracker = triggertime.TriggerTimeTracker()
    assert tracker.compute(service(), [pod("a")]) == "2024-05-01T10:00:00Z"


def test_later_syncs_report_the_earliest_new_ready_transition() -> None:
    tracker = triggertime.TriggerTimeTracker()
    tracker.compute(service(), [pod("a"), pod("b")])
    later = [
        pod("a", ready_since="2024-05-01T10:20:00Z"),
        pod("b", ready_since="2024-05-01T10:10:00.250Z"),
    ]
    assert tracker.compute(service(), later) == "2024-05-01T10:10:00.25Z"
    assert tracker.compute(service(), later) is None


# --- invariants -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rounds=st.lists(
        st.sets(st.integers(min_value=0, max_value=60), max_size=45), min_size=1, max_size=5
    ),
    unready=st.sets(st.integers(min_value=0, max_value=60)),
    limit=st.integers(min_value=1, max_value=12),
)
def test_every_round_leaves_each_pod_in_exactly_one_slice_within_the_limit(
    rounds: list[set[int]], unready: set[int], limit: int
) -> None:
    slices: list[Obj] = []
    for present in rounds:
        pods = [pod(f"p{i}", f"10.0.1.{i + 1}", ready=i not in unready) for i in sorted(present)]
        slices = converge(service(), pods, slices, max_endpoints_per_slice=limit)
        names = [ep["targetRef"]["name"] for s in slices for ep in s["endpoints"]]
        assert sorted(names) == sorted(f"p{i}" for i in present)
        assert all(len(s["endpoints"]) <= limit for s in slices)
        assert slices, "a Service always keeps at least one slice"
