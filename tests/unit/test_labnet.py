"""The lab's addressing and bookkeeping, decided before anything touches the kernel."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard import lab, labnet, labstate

Net = ipaddress.IPv4Network
Iface = ipaddress.IPv4Interface


# ---- choosing the lab subnet ------------------------------------------------------------------


def test_the_first_candidate_is_taken_when_the_host_uses_none_of_it() -> None:
    routes = [Net("0.0.0.0/0"), Net("192.0.2.0/24")]
    assert labnet.choose_subnet(routes, [Iface("192.0.2.2/24")]) == Net("172.31.255.0/24")


def test_a_subnet_overlapping_a_host_route_is_skipped() -> None:
    routes = [Net("172.31.255.0/24"), Net("172.31.254.128/25"), Net("172.31.253.8/30")]
    assert labnet.choose_subnet(routes, []) == Net("172.31.252.0/24")


def test_an_address_without_a_route_still_rules_out_its_slash_16() -> None:
    addresses = [Iface("192.168.255.7/32")]  # added with noprefixroute, say
    chosen = labnet.choose_subnet([], addresses, avoid=[Net("172.16.0.0/12")])
    assert chosen == Net("10.255.255.0/24")


def test_no_subnet_is_taken_from_a_slash_16_the_host_has_an_address_in() -> None:
    # A cloud VPC (172.31.0.0/16) reaches further than the host's own connected /20.
    addresses = [Iface("172.31.5.20/20")]
    chosen = labnet.choose_subnet([Net("172.31.0.0/20")], addresses)
    assert chosen == Net("172.30.255.0/24")


def test_the_clusters_own_ranges_are_avoided_too() -> None:
    chosen = labnet.choose_subnet([], [], avoid=[Net("172.31.0.0/16"), Net("172.30.0.0/16")])
    assert chosen == Net("192.168.255.0/24")


def test_a_host_whose_routes_cover_every_candidate_gets_a_clear_error() -> None:
    routes = [Net("172.16.0.0/12"), Net("192.168.0.0/16"), Net("10.0.0.0/8")]
    with pytest.raises(labnet.NoFreeSubnet, match="switchboard down"):
        labnet.choose_subnet(routes, [])


# ---- names and addresses ----------------------------------------------------------------------


def test_nodes_are_numbered_from_one_with_addresses_from_dot_eleven() -> None:
    layout = labnet.plan("sblabc123", 3, Net("172.31.255.0/24"))
    assert [(n.name, n.netns, n.ip) for n in layout.nodes] == [
        ("node-1", "sblabc123-node-1", "172.31.255.11"),
        ("node-2", "sblabc123-node-2", "172.31.255.12"),
        ("node-3", "sblabc123-node-3", "172.31.255.13"),
    ]
    assert layout.host_ip == "172.31.255.1"
    assert layout.host_link == "sblabc123-host"
    assert layout.underlay == "sblabc123-underlay"
    assert layout.namespaces == (
        "sblabc123-underlay",
        "sblabc123-node-1",
        "sblabc123-node-2",
        "sblabc123-node-3",
    )


@pytest.mark.parametrize(
    ("prefix", "nodes", "subnet", "message"),
    [
        ("sbl-bad", 2, "172.31.255.0/24", "letters or digits"),
        ("averylongprefix", 2, "172.31.255.0/24", "1 to 10"),
        ("sblabc123", 0, "172.31.255.0/24", "1 to 200 nodes"),
        ("sblabc123", 201, "172.31.255.0/24", "1 to 200 nodes"),
        ("sblabc123", 2, "172.31.255.0/25", "too small"),
    ],
)
def test_a_layout_that_cannot_work_is_refused(
    prefix: str, nodes: int, subnet: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        labnet.plan(prefix, nodes, Net(subnet))


def test_the_prefix_is_derived_from_the_absolute_data_directory(tmp_path: Path) -> None:
    first = labnet.prefix_for(tmp_path / "a")
    assert first == labnet.prefix_for(tmp_path / "x" / ".." / "a")
    assert first != labnet.prefix_for(tmp_path / "b")
    assert first.startswith("sbl") and len(first + labnet.HOST_SUFFIX) <= 15


def test_a_layout_survives_the_state_file() -> None:
    layout = labnet.plan("sblabc123", 2, Net("172.30.250.0/24"))
    assert labnet.Layout.from_json(layout.to_json()) == layout


# ---- the state file and the processes it names -----------------------------------------------


def test_the_state_file_records_the_network_and_the_processes(tmp_path: Path) -> None:
    layout = labnet.plan("sblabc123", 1, Net("172.31.255.0/24"))
    process = labstate.Process("apiserver", 4242, 123456, ("python", "-m", "switchboard.cli"))
    labstate.State(tmp_path, "sblabc123", layout, [process], supervisor=process).save()
    loaded = labstate.State.load(tmp_path)
    assert loaded == labstate.State(tmp_path, "sblabc123", layout, [process], supervisor=process)


def test_an_unreadable_state_file_counts_as_none(tmp_path: Path) -> None:
    assert labstate.State.load(tmp_path) is None
    (tmp_path / labstate.STATE_FILE).write_text("{not json")
    assert labstate.State.load(tmp_path) is None


def test_a_process_is_ours_only_while_its_pid_start_time_and_command_line_match() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        argv = (sys.executable, "-c", "import time; time.sleep(30)")
        seen = None
        while seen is None or not seen.argv:
            seen = labstate.Process.of("apiserver", child.pid)
        assert seen.argv == argv and seen.alive()
        assert not labstate.Process("apiserver", child.pid, seen.start_time + 1, argv).alive()
        assert not labstate.Process("apiserver", child.pid, seen.start_time, ("other",)).alive()
    finally:
        child.kill()
        child.wait()
    assert not seen.alive()


def test_this_process_is_recorded_as_it_runs() -> None:
    me = labstate.Process.of("up", os.getpid())
    assert me is not None and me.alive()


# ---- what up waits for ------------------------------------------------------------------------


def test_a_node_is_ready_for_use_once_it_has_a_pod_cidr_and_is_ready() -> None:
    assert lab._not_ready("node-1", None) == "node-1 has not registered"
    node: dict[str, object] = {"metadata": {"name": "node-1"}, "spec": {}}
    assert "no podCIDR" in str(lab._not_ready("node-1", node))
    node["spec"] = {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}
    node["status"] = {"conditions": [{"type": "Ready", "status": "False", "message": "booting"}]}
    assert lab._not_ready("node-1", node) == "node-1 is not Ready (booting)"
    node["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert lab._not_ready("node-1", node) is None
    assert lab.pod_cidr(node) == "10.244.0.0/24"
