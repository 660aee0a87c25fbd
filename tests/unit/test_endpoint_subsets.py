"""Legacy v1 Endpoints are computed as Kubernetes' Endpoints controller computes them."""

from __future__ import annotations

from typing import Any

from switchboard.controllers import endpointrules, endpointsubsets, triggertime
from tests.unit.test_slicing import pod, service

Obj = dict[str, Any]


def ref(name: str) -> Obj:
    return {"kind": "Pod", "namespace": "default", "name": name, "uid": f"uid-{name}"}


def address(name: str, ip: str, node: str = "node-a") -> Obj:
    return {"ip": ip, "nodeName": node, "targetRef": ref(name)}


def test_ready_pods_are_addresses_and_unready_pods_not_ready_addresses() -> None:
    pods = [pod("b", "10.0.0.2", ready=False), pod("a", "10.0.0.1")]
    assert endpointsubsets.desired_subsets(service(), pods) == [
        {
            "addresses": [address("a", "10.0.0.1")],
            "notReadyAddresses": [address("b", "10.0.0.2")],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    ]


def test_terminating_pods_are_left_out_unless_not_ready_addresses_are_published() -> None:
    pods = [pod("a", "10.0.0.1", terminating=True)]
    assert endpointsubsets.desired_subsets(service(), pods) == []
    published = endpointsubsets.desired_subsets(service(publish_not_ready=True), pods)
    assert published[0]["addresses"] == [address("a", "10.0.0.1")]


def test_publishing_not_ready_addresses_lists_unready_pods_as_addresses() -> None:
    pods = [pod("a", "10.0.0.1", ready=False)]
    (subset,) = endpointsubsets.desired_subsets(service(publish_not_ready=True), pods)
    assert subset["addresses"] == [address("a", "10.0.0.1")]
    assert "notReadyAddresses" not in subset


def test_pods_without_ip_or_finished_are_left_out() -> None:
    pods = [pod("a", None), pod("b", "10.0.0.2", phase="Failed")]
    assert endpointsubsets.desired_subsets(service(), pods) == []


def test_pods_resolving_different_ports_get_different_subsets() -> None:
    svc = service(ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}])
    pods = [
        pod("a", "10.0.0.1", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.0.0.2", container_ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", "10.0.0.3"),
    ]
    subsets = endpointsubsets.desired_subsets(svc, pods)
    assert [(s["ports"][0]["port"], [a["ip"] for a in s["addresses"]]) for s in subsets] == [
        (8080, ["10.0.0.1"]),
        (9090, ["10.0.0.2"]),
    ]


def test_addresses_serving_the_same_ports_share_one_subset_with_all_ports() -> None:
    svc = service(
        ports=[
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
            {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53, "appProtocol": "dns"},
        ]
    )
    (subset,) = endpointsubsets.desired_subsets(svc, [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")])
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.1", "10.0.0.2"]
    assert subset["ports"] == [
        {"name": "dns", "port": 53, "protocol": "UDP", "appProtocol": "dns"},
        {"name": "http", "port": 8080, "protocol": "TCP"},
    ]


def test_a_headless_service_without_ports_lists_its_pods_without_ports() -> None:
    svc = service(cluster_ip="None", ports=[])
    assert endpointsubsets.desired_subsets(svc, [pod("a", "10.0.0.1")]) == [
        {"addresses": [address("a", "10.0.0.1")]}
    ]


def test_hostname_is_set_when_the_pod_subdomain_names_the_service() -> None:
    (subset,) = endpointsubsets.desired_subsets(
        service(), [pod("a", "10.0.0.1", hostname="a0", subdomain="web")]
    )
    assert subset["addresses"][0]["hostname"] == "a0"


def test_the_primary_family_address_is_used_for_a_dual_stack_pod() -> None:
    svc = service(families=["IPv6", "IPv4"])
    (subset,) = endpointsubsets.desired_subsets(svc, [pod("a", ips=["10.0.0.1", "fd00::1"])])
    assert subset["addresses"][0]["ip"] == "fd00::1"


def test_a_new_endpoints_object_carries_service_labels_and_trigger_time() -> None:
    svc = service(labels={"team": "a"}, cluster_ip="None")
    ep = endpointsubsets.endpoints_for(svc, [pod("a")], None, trigger_time="2024-05-01T10:00:00Z")
    assert ep is not None
    assert ep["apiVersion"] == "v1" and ep["kind"] == "Endpoints"
    assert ep["metadata"] == {
        "name": "web",
        "namespace": "default",
        "labels": {"team": "a", endpointrules.LABEL_HEADLESS: ""},
        "annotations": {triggertime.ANNOTATION_TRIGGER_TIME: "2024-05-01T10:00:00Z"},
    }


def test_an_endpoints_object_that_is_already_right_needs_no_write() -> None:
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)]
    current = endpointsubsets.endpoints_for(service(), pods, None)
    assert current is not None
    current["metadata"]["resourceVersion"] = "5"
    current["subsets"][0]["addresses"][0]["targetRef"]["resourceVersion"] = "3"
    assert endpointsubsets.endpoints_for(service(), list(reversed(pods)), current) is None


def test_an_update_keeps_the_current_metadata_and_replaces_the_subsets() -> None:
    current = endpointsubsets.endpoints_for(service(), [pod("a", "10.0.0.1")], None)
    assert current is not None
    current["metadata"]["resourceVersion"] = "5"
    new = endpointsubsets.endpoints_for(service(), [pod("a", "10.0.0.1", ready=False)], current)
    assert new is not None
    assert new["metadata"]["resourceVersion"] == "5"
    assert new["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.0.0.1"


def test_more_than_1000_addresses_are_truncated_and_annotated() -> None:
    pods = [pod(f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1100)]
    ep = endpointsubsets.endpoints_for(service(), pods, None)
    assert ep is not None
    assert sum(len(s.get("addresses", [])) for s in ep["subsets"]) == 1000
    assert ep["metadata"]["annotations"][endpointsubsets.ANNOTATION_OVER_CAPACITY] == "truncated"
    assert endpointsubsets.endpoints_for(service(), pods, ep) is None


def test_truncation_keeps_ready_addresses_before_not_ready_ones() -> None:
    subsets = [
        {
            "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 8)],
            "notReadyAddresses": [{"ip": f"10.0.1.{i}"} for i in range(1, 6)],
        }
    ]
    cut, truncated = endpointsubsets.truncate(subsets, capacity=10)
    assert truncated
    assert len(cut[0]["addresses"]) == 7 and len(cut[0]["notReadyAddresses"]) == 3


def test_dropping_below_capacity_removes_the_over_capacity_annotation() -> None:
    pods = [pod(f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1001)]
    ep = endpointsubsets.endpoints_for(service(), pods, None)
    assert ep is not None
    fewer = endpointsubsets.endpoints_for(service(), pods[:10], ep)
    assert fewer is not None
    assert "annotations" not in fewer["metadata"]
