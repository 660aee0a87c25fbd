"""Pod addresses of a node's podCIDR: who gets which, what survives a restart, what is refused."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from switchboard.agent import ipam


def addresses(tmp_path: Path, cidr: str = "10.244.1.0/24") -> ipam.PodAddresses:
    return ipam.PodAddresses(cidr, tmp_path)


def test_the_gateway_is_the_first_address_and_pods_get_the_ones_after_it(tmp_path: Path) -> None:
    pods = addresses(tmp_path)
    assert pods.gateway == ipaddress.IPv4Address("10.244.1.1")
    assert str(pods.allocate("a", "ns-a").ip) == "10.244.1.2"
    assert str(pods.allocate("b", "ns-b").ip) == "10.244.1.3"


def test_a_pod_that_holds_an_address_gets_the_same_one_again(tmp_path: Path) -> None:
    pods = addresses(tmp_path)
    first = pods.allocate("a", "ns-a")
    assert pods.allocate("a", "ns-a") == first
    assert len(pods.allocations()) == 1


def test_a_released_address_is_reused_only_after_the_others(tmp_path: Path) -> None:
    pods = addresses(tmp_path, "10.244.1.0/29")  # .2 to .6 for pods
    for uid in "abc":
        pods.allocate(uid, f"ns-{uid}")
    pods.release("a")  # frees .2
    assert [str(pods.allocate(uid, "ns").ip) for uid in "def"] == [
        "10.244.1.5",
        "10.244.1.6",
        "10.244.1.2",
    ]


def test_a_new_instance_adopts_the_allocations_and_never_hands_them_out_twice(
    tmp_path: Path,
) -> None:
    before = addresses(tmp_path)
    held = {uid: before.allocate(uid, f"ns-{uid}") for uid in "abc"}
    before.release("b")
    after = addresses(tmp_path)
    assert after.allocations() == {"a": held["a"], "c": held["c"]}
    fresh = after.allocate("d", "ns-d")
    assert fresh.ip not in {a.ip for a in held.values()}


def test_a_full_pod_cidr_refuses_another_pod_with_advice(tmp_path: Path) -> None:
    pods = addresses(tmp_path, "10.244.1.0/30")  # one pod address: .2
    pods.allocate("a", "ns-a")
    with pytest.raises(ipam.AddressesExhausted, match="larger podCIDR"):
        pods.allocate("b", "ns-b")
    assert list(pods.allocations()) == ["a"]


@pytest.mark.parametrize(
    ("cidr", "complaint"),
    [("10.244.1.0/31", "too small"), ("fd00::/64", "IPv6"), ("10.244.1.7/24", "network address")],
)
def test_a_pod_cidr_that_cannot_serve_pods_is_rejected(
    tmp_path: Path, cidr: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        addresses(tmp_path, cidr)


def test_an_unreadable_state_file_is_refused_rather_than_started_over(tmp_path: Path) -> None:
    pods = addresses(tmp_path)
    pods.allocate("a", "ns-a")
    pods.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ipam.CorruptState, match="handed out twice"):
        addresses(tmp_path)


def test_a_state_file_naming_one_address_twice_is_refused(tmp_path: Path) -> None:
    pods = addresses(tmp_path)
    pods.allocate("a", "ns-a")
    pods.allocate("b", "ns-b")
    document = json.loads(pods.path.read_text(encoding="utf-8"))
    document["pods"]["b"]["ip"] = document["pods"]["a"]["ip"]
    pods.path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ipam.CorruptState):
        addresses(tmp_path)


def test_nodes_with_different_pod_cidrs_can_share_a_state_directory(tmp_path: Path) -> None:
    one, two = addresses(tmp_path, "10.244.1.0/24"), addresses(tmp_path, "10.244.2.0/24")
    one.allocate("a", "ns-a")
    two.allocate("b", "ns-b")
    assert list(addresses(tmp_path, "10.244.1.0/24").allocations()) == ["a"]
    assert list(addresses(tmp_path, "10.244.2.0/24").allocations()) == ["b"]


def test_forgetting_all_removes_the_state_file(tmp_path: Path) -> None:
    pods = addresses(tmp_path)
    pods.allocate("a", "ns-a")
    pods.forget_all()
    assert not pods.path.exists()
    assert addresses(tmp_path).allocations() == {}
