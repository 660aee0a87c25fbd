"""Which conntrack entries the proxy deletes after a sync, and that it runs them in order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import threading
from typing import Any, cast

from switchboard.api import kinds
from switchboard.client import rest
from switchboard.client.informer import Informer
from switchboard.proxy import conntrack, model, proxier, ruleset
from switchboard.proxy.dataplane import DataPlane


def desired(
    protocol: model.Protocol, *endpoints: model.Endpoint, node_port: int = 0
) -> tuple[model.ServicePortInfo, tuple[model.Endpoint, ...]]:
    name = model.ServicePortName("default", "web", "p", protocol)
    return model.ServicePortInfo(name, "10.96.0.10", 80, node_port=node_port), endpoints


def name(protocol: model.Protocol) -> model.ServicePortName:
    return model.ServicePortName("default", "web", "p", protocol)


A = model.Endpoint("10.244.1.5", 8080)
B = model.Endpoint("10.244.2.6", 8080)


def test_a_tcp_endpoint_that_leaves_loses_its_unanswered_and_reset_connections() -> None:
    filters = conntrack.stale_filters(name("TCP"), desired("TCP", A, B), desired("TCP", B))
    endpoint = ("--reply-src", "10.244.1.5", "--reply-port-src", "8080")
    assert filters == [
        ("-p", "tcp", "--state", "SYN_SENT", *endpoint),
        ("-p", "tcp", "--state", "CLOSE", *endpoint),
    ]


def test_a_tcp_endpoint_that_stops_being_ready_and_then_leaves_is_cleaned_both_times() -> None:
    terminating = model.Endpoint("10.244.1.5", 8080, ready=False, serving=False, terminating=True)
    first = conntrack.stale_filters(
        name("TCP"), desired("TCP", A, B), desired("TCP", terminating, B)
    )
    second = conntrack.stale_filters(name("TCP"), desired("TCP", terminating, B), desired("TCP", B))
    assert first == second
    assert {f[5] for f in first} == {"10.244.1.5"}


def test_tcp_endpoints_that_stay_cost_nothing() -> None:
    assert conntrack.stale_filters(name("TCP"), desired("TCP", A), desired("TCP", A, B)) == []
    assert conntrack.stale_filters(name("TCP"), None, desired("TCP", A)) == []


def test_a_deleted_tcp_service_cleans_every_endpoint() -> None:
    filters = conntrack.stale_filters(name("TCP"), desired("TCP", A, B), None)
    assert [f[5] for f in filters] == ["10.244.1.5"] * 2 + ["10.244.2.6"] * 2


def test_a_udp_endpoint_that_leaves_loses_every_entry_to_it_through_the_cluster_ip() -> None:
    filters = conntrack.stale_filters(name("UDP"), desired("UDP", A, B), desired("UDP", B))
    assert filters == [("-p", "udp", "--orig-dst", "10.96.0.10", "--reply-src", "10.244.1.5")]


def test_a_udp_service_that_gains_its_first_endpoint_drops_the_entries_leading_nowhere() -> None:
    filters = conntrack.stale_filters(
        name("UDP"), desired("UDP", node_port=30053), desired("UDP", A, node_port=30053)
    )
    assert filters == [
        ("-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "80"),
        ("-p", "udp", "--orig-port-dst", "30053"),
    ]


def test_sctp_is_left_to_the_kernel() -> None:
    assert conntrack.stale_filters(name("SCTP"), desired("SCTP", A), None) == []


class Recorder(conntrack.Conntrack):
    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[str, ...]] = []
        self.release = threading.Event()

    def delete(self, *filters: str) -> None:
        self.release.wait(5)
        if filters == ("boom",):
            raise RuntimeError("conntrack failed")
        self.calls.append(filters)


def test_the_cleaner_runs_filters_in_order_off_the_callers_thread_and_survives_failures() -> None:
    recorder = Recorder()
    cleaner = conntrack.Cleaner(recorder)
    try:
        cleaner.submit([("a",), ("boom",), ("b",)])
        # Submitting returned while the first deletion is still blocked on its worker.
        assert recorder.calls == []
        cleaner.submit([("c",)])
        recorder.release.set()
        assert cleaner.wait_idle(5)
        assert recorder.calls == [("a",), ("b",), ("c",)]
    finally:
        cleaner.close()


def test_a_cleaner_that_never_ran_is_idle() -> None:
    cleaner = conntrack.Cleaner(Recorder())
    assert cleaner.wait_idle(0.1)
    cleaner.close()


# -- reconciling from the table ---------------------------------------------------------------
#
# Real `conntrack -L -f ipv4 -p udp`, `-p tcp --state SYN_SENT` and `--state CLOSE` output
# (conntrack v1.4.7), and one ESTABLISHED entry a reconcile never asks for, made in a
# throwaway namespace: a node address 192.168.50.2, a ClusterIP 10.96.0.10:53/udp with
# NodePort 30053 and a ClusterIP 10.96.0.20:80/tcp, DNATed by source port to 10.244.2.6
# (the live endpoint) or 10.244.1.5-7 (endpoints gone since): 40004 to the ClusterIP was
# not DNATed, 40005 went to a pod directly and 40006 to 30053 on loopback.
UDP_LISTING = """\
udp      17 29 src=127.0.0.1 dst=127.0.0.1 sport=40006 dport=30053 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=30053 dport=40006 mark=0 use=1
udp      17 29 src=192.168.50.2 dst=192.168.50.2 sport=40003 dport=30053 [UNREPLIED] src=10.244.1.5 dst=192.168.50.2 sport=5353 dport=40003 mark=0 use=1
udp      17 29 src=10.244.2.6 dst=10.244.2.6 sport=40005 dport=9999 [UNREPLIED] src=10.244.2.6 dst=10.244.2.6 sport=9999 dport=40005 mark=0 use=1
udp      17 29 src=192.168.50.2 dst=10.96.0.10 sport=40002 dport=53 [UNREPLIED] src=10.244.2.6 dst=192.168.50.2 sport=5353 dport=40002 mark=0 use=1
udp      17 29 src=192.168.50.2 dst=10.96.0.10 sport=40001 dport=53 [UNREPLIED] src=10.244.1.5 dst=192.168.50.2 sport=5353 dport=40001 mark=0 use=1
udp      17 29 src=192.168.50.2 dst=10.96.0.10 sport=40004 dport=53 [UNREPLIED] src=10.96.0.10 dst=192.168.50.2 sport=53 dport=40004 mark=0 use=2
"""  # noqa: E501
SYN_SENT_LISTING = """\
tcp      6 119 SYN_SENT src=192.168.50.2 dst=10.96.0.20 sport=41002 dport=80 [UNREPLIED] src=10.244.2.6 dst=192.168.50.2 sport=8080 dport=41002 mark=0 use=1
tcp      6 119 SYN_SENT src=192.168.50.2 dst=10.96.0.20 sport=41001 dport=80 [UNREPLIED] src=10.244.1.5 dst=192.168.50.2 sport=8080 dport=41001 mark=0 use=1
"""  # noqa: E501
CLOSE_LISTING = """\
tcp      6 9 CLOSE src=192.168.50.2 dst=10.96.0.20 sport=41003 dport=80 src=10.244.1.6 dst=192.168.50.2 sport=8080 dport=41003 [ASSURED] mark=0 use=1
"""  # noqa: E501
ESTABLISHED_LISTING = """\
tcp      6 431999 ESTABLISHED src=192.168.50.2 dst=10.96.0.20 sport=41004 dport=80 src=10.244.1.7 dst=192.168.50.2 sport=8080 dport=41004 [ASSURED] mark=0 use=1
"""  # noqa: E501
IPV6_LISTING = """\
udp      17 29 src=fd00:10:244::5 dst=fd00:10:96::a sport=40007 dport=53 [UNREPLIED] src=fd00:10:244::5 dst=fd00:10:244::5 sport=5353 dport=40007 mark=0 use=1
"""  # noqa: E501
LISTINGS = {
    ("-p", "udp"): UDP_LISTING,
    ("-p", "tcp", "--state", "SYN_SENT"): SYN_SENT_LISTING,
    ("-p", "tcp", "--state", "CLOSE"): CLOSE_LISTING,
}
NODE_ADDRESSES = ["127.0.0.1", "192.168.50.2", "10.244.1.5"]
LIVE_UDP = model.Endpoint("10.244.2.6", 5353)
LIVE_TCP = model.Endpoint("10.244.2.6", 8080)


def sample_services(
    udp: tuple[model.Endpoint, ...] = (LIVE_UDP,), tcp: tuple[model.Endpoint, ...] = (LIVE_TCP,)
) -> dict[model.ServicePortName, ruleset.Desired]:
    dns = model.ServicePortName("kube-system", "dns", "dns", "UDP")
    web = model.ServicePortName("default", "web", "http", "TCP")
    return {
        dns: (model.ServicePortInfo(dns, "10.96.0.10", 53, node_port=30053), udp),
        web: (model.ServicePortInfo(web, "10.96.0.20", 80), tcp),
    }


def udp_filter(destination: str, port: int, target: str, target_port: int) -> conntrack.Filter:
    return (
        "-p",
        "udp",
        "--orig-dst",
        destination,
        "--orig-port-dst",
        str(port),
        "--reply-src",
        target,
        "--reply-port-src",
        str(target_port),
    )


def tcp_filter(state: str, target: str) -> conntrack.Filter:
    return (
        "-p",
        "tcp",
        "--state",
        state,
        "--orig-dst",
        "10.96.0.20",
        "--orig-port-dst",
        "80",
        "--reply-src",
        target,
        "--reply-port-src",
        "8080",
    )


STALE_IN_SAMPLE = [
    tcp_filter("CLOSE", "10.244.1.6"),
    tcp_filter("SYN_SENT", "10.244.1.5"),
    udp_filter("10.96.0.10", 53, "10.244.1.5", 5353),
    udp_filter("10.96.0.10", 53, "10.96.0.10", 53),
    udp_filter("192.168.50.2", 30053, "10.244.1.5", 5353),
]


def test_a_conntrack_listing_gives_each_entrys_frontend_and_dnat_target() -> None:
    entries = conntrack.parse_entries(UDP_LISTING + SYN_SENT_LISTING + ESTABLISHED_LISTING)
    assert entries[1] == conntrack.Entry("udp", "", ("192.168.50.2", 30053), ("10.244.1.5", 5353))
    assert entries[6] == conntrack.Entry(
        "tcp", "SYN_SENT", ("10.96.0.20", 80), ("10.244.2.6", 8080)
    )
    assert entries[-1].state == "ESTABLISHED"
    assert len(entries) == 9


def test_a_listing_skips_what_it_cannot_read() -> None:
    text = (
        "icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 "
        "type=0 code=0 id=1 mark=0 use=1\n"
        "udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 [UNREPLIED]\n"
        "\n" + CLOSE_LISTING
    )
    assert [e.state for e in conntrack.parse_entries(text)] == ["CLOSE"]


def test_a_reconcile_deletes_entries_to_endpoints_that_are_gone_and_keeps_the_rest() -> None:
    entries = conntrack.parse_entries(
        UDP_LISTING + SYN_SENT_LISTING + CLOSE_LISTING + ESTABLISHED_LISTING
    )
    on_node = conntrack.nodeport_addresses(NODE_ADDRESSES, None)
    # Kept: the live endpoint's UDP entry and unanswered SYN, the established connection
    # to a gone endpoint, a pod reached directly and port 30053 on loopback.
    assert conntrack.reconcile_filters(entries, sample_services(), on_node) == STALE_IN_SAMPLE


def test_a_serving_terminating_endpoint_keeps_its_entries() -> None:
    going = model.Endpoint("10.244.1.5", 5353, ready=False, serving=True, terminating=True)
    entries = conntrack.parse_entries(UDP_LISTING)
    filters = conntrack.reconcile_filters(entries, sample_services(udp=(LIVE_UDP, going)))
    assert filters == [udp_filter("10.96.0.10", 53, "10.96.0.10", 53)]


def test_an_endpoint_at_another_port_is_not_the_same_target() -> None:
    moved = model.Endpoint("10.244.2.6", 5354)
    entries = conntrack.parse_entries(UDP_LISTING)
    filters = conntrack.reconcile_filters(entries, sample_services(udp=(moved,)))
    assert udp_filter("10.96.0.10", 53, "10.244.2.6", 5353) in filters


def test_nodeports_are_matched_only_on_the_addresses_they_open_on() -> None:
    entries = conntrack.parse_entries(UDP_LISTING)
    assert conntrack.nodeport_addresses(NODE_ADDRESSES, None) == {"192.168.50.2", "10.244.1.5"}
    # Without the node's addresses a NodePort frontend is never recognised.
    assert udp_filter("192.168.50.2", 30053, "10.244.1.5", 5353) not in (
        conntrack.reconcile_filters(entries, sample_services())
    )
    # NodePorts opened on loopback only: the entry to 127.0.0.1:30053 (not DNATed) is stale.
    loopback = conntrack.nodeport_addresses(NODE_ADDRESSES, ("127.0.0.0/8",))
    assert loopback == {"127.0.0.1"}
    filters = conntrack.reconcile_filters(entries, sample_services(), loopback)
    assert udp_filter("127.0.0.1", 30053, "127.0.0.1", 30053) in filters
    assert udp_filter("192.168.50.2", 30053, "10.244.1.5", 5353) not in filters


def test_ipv6_entries_are_reconciled_by_their_canonical_addresses() -> None:
    name = model.ServicePortName("kube-system", "dns", "dns", "UDP")
    live = model.Endpoint("fd00:10:244:0:0:0:0:6", 5353)
    services = {name: (model.ServicePortInfo(name, "fd00:10:96::a", 53), (live,))}
    filters = conntrack.reconcile_filters(conntrack.parse_entries(IPV6_LISTING), services)
    assert filters == [udp_filter("fd00:10:96::a", 53, "fd00:10:244::5", 5353)]


def test_sctp_and_services_without_entries_give_nothing_to_delete() -> None:
    name = model.ServicePortName("default", "s", "p", "SCTP")
    services = {name: (model.ServicePortInfo(name, "10.96.0.10", 53), ())}
    assert conntrack.reconcile_filters(conntrack.parse_entries(UDP_LISTING), services) == []
    assert conntrack.reconcile_filters([], sample_services()) == []


class FakeTable(conntrack.Conntrack):
    """The seam's fake: listings from LISTINGS, deletions recorded."""

    def __init__(self, fail_listing: bool = False) -> None:
        super().__init__(None)
        self.fail_listing = fail_listing
        self.deleted: list[tuple[str, ...]] = []
        self.listed: list[tuple[str, ...]] = []
        self.addresses_asked = 0

    def delete(self, *filters: str) -> None:
        self.deleted.append(filters)

    def list_entries(self, family: model.Family, *filters: str) -> str:
        if self.fail_listing:
            raise subprocess.CalledProcessError(1, ["conntrack", "-L"])
        self.listed.append((family, *filters))
        return LISTINGS[filters]

    def local_addresses(self, family: model.Family) -> list[str]:
        self.addresses_asked += 1
        return NODE_ADDRESSES


def test_the_cleaner_reconciles_in_turn_with_the_filters_submitted_around_it() -> None:
    table = FakeTable()
    cleaner = conntrack.Cleaner(table)
    try:
        cleaner.submit([("a",), conntrack.Reconcile(sample_services()), ("b",)])
        assert cleaner.wait_idle(5)
    finally:
        cleaner.close()
    assert table.deleted == [("a",), *STALE_IN_SAMPLE, ("b",)]
    assert table.listed == [("ipv4", *kind) for kind in conntrack.STALE_KINDS]


def test_a_reconcile_asks_for_the_nodes_addresses_only_when_a_service_has_a_nodeport() -> None:
    table = FakeTable()
    services = {
        name: (dataclasses.replace(info, node_port=0), endpoints)
        for name, (info, endpoints) in sample_services().items()
    }
    cleaner = conntrack.Cleaner(table)
    try:
        cleaner.submit([conntrack.Reconcile(services)])
        assert cleaner.wait_idle(5)
    finally:
        cleaner.close()
    assert table.addresses_asked == 0
    assert udp_filter("10.96.0.10", 53, "10.244.1.5", 5353) in table.deleted


class NoAddresses(FakeTable):
    def local_addresses(self, family: model.Family) -> list[str]:
        raise subprocess.CalledProcessError(1, ["ip", "-j", "addr"])


def test_a_reconcile_without_the_nodes_addresses_still_cleans_the_cluster_ips() -> None:
    table = NoAddresses()
    cleaner = conntrack.Cleaner(table)
    try:
        cleaner.submit([conntrack.Reconcile(sample_services())])
        assert cleaner.wait_idle(5)
    finally:
        cleaner.close()
    assert table.deleted == [f for f in STALE_IN_SAMPLE if "30053" not in f]


def test_a_failed_listing_deletes_nothing_and_stops_nothing() -> None:
    table = FakeTable(fail_listing=True)
    cleaner = conntrack.Cleaner(table)
    try:
        cleaner.submit([conntrack.Reconcile(sample_services()), ("after",)])
        assert cleaner.wait_idle(5)
    finally:
        cleaner.close()
    assert table.deleted == [("after",)]


# -- the proxy drives it ----------------------------------------------------------------------


class RecordingBackend:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def apply(self, script: str) -> None:
        self.scripts.append(script)

    def close(self) -> None:
        pass


def cached(items: list[dict[str, Any]]) -> Informer:
    """An informer that has listed `items` (its client is never used)."""
    informer = Informer(cast(rest.Client, None), kinds.SERVICES)
    informer.replace(items, "1")
    return informer


DNS_SERVICE = {
    "metadata": {"namespace": "kube-system", "name": "dns", "resourceVersion": "1"},
    "spec": {
        "clusterIP": "10.96.0.10",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
    },
}
DNS_SLICE = {
    "metadata": {
        "namespace": "kube-system",
        "name": "dns-1",
        "resourceVersion": "1",
        "labels": {"kubernetes.io/service-name": "dns"},
    },
    "addressType": "IPv4",
    "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
    "endpoints": [{"addresses": ["10.244.2.6"], "conditions": {"ready": True}}],
}


async def test_a_proxy_that_starts_deletes_entries_to_endpoints_gone_meanwhile_and_no_others() -> (
    None
):
    table = FakeTable()
    proxy = proxier.Proxier(
        cast(rest.Client, None),
        DataPlane(RecordingBackend(), ruleset.ProxyConfig()),
        services=cached([DNS_SERVICE]),
        slices=cached([DNS_SLICE]),
        conntrack=table,
    )
    running = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.synced.wait(), 5)
        assert proxy.cleaner is not None
        assert await asyncio.to_thread(proxy.cleaner.wait_idle, 5)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    # The entries to the endpoint that went (by ClusterIP and NodePort), and the one
    # that was never DNATed; the live endpoint's entry (source port 40002) stays.
    assert table.deleted == [
        udp_filter("10.96.0.10", 53, "10.244.1.5", 5353),
        udp_filter("10.96.0.10", 53, "10.96.0.10", 53),
        udp_filter("192.168.50.2", 30053, "10.244.1.5", 5353),
    ]
