"""Cutting the cluster pod CIDR into node podCIDRs: which subnet each node gets."""

from __future__ import annotations

import ipaddress

import pytest

from switchboard.controllers import nodeipam
from switchboard.controllers.nodeipam import CidrSet, CidrSetExhausted


def test_nodes_get_consecutive_slash_24s_of_the_default_cluster_cidr() -> None:
    cidrs = CidrSet.parse(nodeipam.DEFAULT_CLUSTER_CIDR, nodeipam.DEFAULT_NODE_MASK_SIZE)
    assert cidrs.capacity == 256
    got = [str(cidrs.allocate()) for _ in range(3)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert cidrs.used == 3


def test_subnets_already_on_nodes_are_skipped() -> None:
    cidrs = CidrSet.parse("10.244.0.0/16", 24)
    assert cidrs.occupy("10.244.0.0/24")
    assert cidrs.occupy("10.244.2.0/24")
    assert [str(cidrs.allocate()) for _ in range(2)] == ["10.244.1.0/24", "10.244.3.0/24"]


def test_a_subnet_cannot_be_occupied_twice() -> None:
    cidrs = CidrSet.parse("10.244.0.0/16", 24)
    assert cidrs.occupy("10.244.7.0/24")
    assert not cidrs.occupy("10.244.7.0/24")
    assert cidrs.is_taken("10.244.7.0/24")


@pytest.mark.parametrize(
    "cidr",
    ["10.245.0.0/24", "10.244.0.0/25", "10.244.0.0/16", "10.244.0.1/24", "fd00::/64", "junk"],
)
def test_what_is_not_one_of_the_sets_subnets_is_not_occupied(cidr: str) -> None:
    cidrs = CidrSet.parse("10.244.0.0/16", 24)
    assert not cidrs.contains(cidr)
    assert not cidrs.occupy(cidr)
    cidrs.release(cidr)  # and releasing it is harmless
    assert cidrs.used == 0


def test_a_released_subnet_is_handed_out_again_only_after_the_others() -> None:
    cidrs = CidrSet.parse("10.244.0.0/22", 24)  # four subnets
    first, second = cidrs.allocate(), cidrs.allocate()
    cidrs.release(first)
    assert [str(cidrs.allocate()) for _ in range(3)] == [
        "10.244.2.0/24",
        "10.244.3.0/24",
        str(first),
    ]
    assert cidrs.is_taken(second)


def test_a_full_cluster_cidr_says_what_to_do() -> None:
    cidrs = CidrSet.parse("10.244.0.0/23", 24)
    cidrs.allocate()
    cidrs.allocate()
    with pytest.raises(CidrSetExhausted, match="larger --cluster-cidr"):
        cidrs.allocate()
    cidrs.release("10.244.1.0/24")
    assert str(cidrs.allocate()) == "10.244.1.0/24"


def test_ipv6_cluster_cidrs_are_cut_the_same_way() -> None:
    cidrs = CidrSet.parse("fd00:10:244::/56", 64)
    assert cidrs.capacity == 256
    assert cidrs.allocate() == ipaddress.ip_network("fd00:10:244::/64")
    assert cidrs.allocate() == ipaddress.ip_network("fd00:10:244:1::/64")


@pytest.mark.parametrize(
    ("cluster", "mask", "message"),
    [
        ("10.244.0.1/16", 24, "not a network address"),
        ("nonsense", 24, "not a network address"),
        ("10.244.0.0/16", 8, "must lie between"),
        ("10.244.0.0/16", 33, "must lie between"),
        ("10.0.0.0/8", 30, "at most 24"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(cluster: str, mask: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CidrSet.parse(cluster, mask)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}, "10.244.3.0/24"),
        ({"podCIDR": "10.244.3.0/24"}, "10.244.3.0/24"),
        ({"podCIDRs": ["10.244.4.0/24"]}, "10.244.4.0/24"),
        ({"podCIDR": ""}, None),
        ({}, None),
    ],
)
def test_a_nodes_pod_cidr_is_read_from_either_field(
    spec: dict[str, object], expected: str | None
) -> None:
    assert nodeipam.pod_cidr_of({"metadata": {"name": "n"}, "spec": spec}) == expected
