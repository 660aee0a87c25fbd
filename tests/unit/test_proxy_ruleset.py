"""The nftables data plane, traced: which endpoint a packet reaches, and what a sync changes.

Packets go through `trace.Tracer`, which reads the elements `ruleset.full`
hands to nft; the lab tests (tests/lab/test_proxy_kernel.py) send real
packets through the same scenarios. Diffs are checked by applying their
commands to a model of the table and comparing with a full sync.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.proxy import dataplane, model, names, nft, ruleset, trace

CLIENT = "10.244.1.2"  # a pod on this node
OTHER_POD = "10.244.2.9"  # a pod on another node
NODE = "198.18.0.1"
OUTSIDE = "198.18.0.2"
CONFIG = ruleset.ProxyConfig(pod_cidrs=("10.244.0.0/16",))
ENDPOINTS_TCP = names.endpoint_map("ip", "tcp", 8080)


def port_name(name: str = "web", protocol: model.Protocol = "TCP") -> model.ServicePortName:
    return model.ServicePortName("default", name, "", protocol)


def service(
    name: str = "web",
    cluster_ip: str | None = "10.96.0.10",
    port: int = 80,
    protocol: model.Protocol = "TCP",
    **fields: object,
) -> model.ServicePortInfo:
    return model.ServicePortInfo(port_name(name, protocol), cluster_ip, port, **fields)  # type: ignore[arg-type]


def ep(ip: str, port: int = 8080, **conditions: bool) -> model.Endpoint:
    return model.Endpoint(ip, port, **conditions)


def state_of(
    *ports: tuple[model.ServicePortInfo, Sequence[model.Endpoint]],
    config: ruleset.ProxyConfig = CONFIG,
) -> ruleset.ProxyState:
    return ruleset.ProxyState.build(config, {info.name: (info, eps) for info, eps in ports})


def tracer(state: ruleset.ProxyState, **kwargs: object) -> trace.Tracer:
    return trace.Tracer(state, node_addresses=[NODE], **kwargs)  # type: ignore[arg-type]


def reached(
    t: trace.Tracer, src: str, dst: str, dport: int, times: int = 200, **kw: object
) -> set[str]:
    found = set()
    for _ in range(times):
        result = t.trace(src, dst, dport, **kw)  # type: ignore[arg-type]
        assert result.verdict == "dnat", result
        assert result.endpoint is not None
        found.add(result.endpoint[0])
    return found


# -- ClusterIP -----------------------------------------------------------------


def test_a_cluster_ip_spreads_connections_over_its_ready_endpoints_without_snat() -> None:
    s = state_of((service(), [ep("10.244.1.3"), ep("10.244.1.4"), ep("10.244.2.5")]))
    t = tracer(s)
    result = t.trace(CLIENT, "10.96.0.10", 80)
    assert result.verdict == "dnat" and not result.masquerade
    assert set(result.candidates) == {
        ("10.244.1.3", 8080),
        ("10.244.1.4", 8080),
        ("10.244.2.5", 8080),
    }
    assert reached(t, CLIENT, "10.96.0.10", 80) == {"10.244.1.3", "10.244.1.4", "10.244.2.5"}


@pytest.mark.parametrize("from_node", [False, True])
def test_a_cluster_ip_rejects_ports_and_protocols_its_service_does_not_have(
    from_node: bool,
) -> None:
    t = tracer(state_of((service(), [ep("10.244.1.3")])))
    src = NODE if from_node else CLIENT
    assert t.trace(src, "10.96.0.10", 81, from_node=from_node).verdict == "reject"
    assert t.trace(src, "10.96.0.10", 80, "UDP", from_node=from_node).verdict == "reject"
    assert t.trace(src, "10.96.0.10", 80, "SCTP", from_node=from_node).verdict == "reject"
    assert t.trace(src, "10.96.0.10", 80, from_node=from_node).endpoint == ("10.244.1.3", 8080)


def test_addresses_no_service_holds_are_left_to_routing_without_service_cidrs() -> None:
    t = tracer(state_of((service(external_ips=("198.51.100.7",)), [ep("10.244.1.3")])))
    assert t.trace(CLIENT, "10.96.0.11", 80).verdict == "accept"
    # Only ClusterIPs are checked: an external IP may be a real host's address too.
    assert t.trace(OUTSIDE, "198.51.100.7", 81).verdict == "accept"


def test_unallocated_addresses_of_the_service_cidrs_are_dropped() -> None:
    config = ruleset.ProxyConfig(pod_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/16",))
    t = tracer(state_of((service(), [ep("10.244.1.3")]), config=config))
    assert t.trace(CLIENT, "10.96.0.11", 80).verdict == "drop"
    assert t.trace(NODE, "10.96.0.11", 80, from_node=True).verdict == "drop"
    assert t.trace(CLIENT, "10.96.0.10", 81).verdict == "reject"
    assert t.trace(CLIENT, "10.96.0.10", 80).endpoint == ("10.244.1.3", 8080)
    assert t.trace(CLIENT, "10.97.0.1", 80).verdict == "accept"


def test_a_cluster_ip_is_checked_while_any_port_of_its_service_is_served() -> None:
    http = model.ServicePortInfo(model.ServicePortName("default", "web", "http"), "10.96.0.10", 80)
    dns = model.ServicePortInfo(
        model.ServicePortName("default", "web", "dns", "UDP"), "10.96.0.10", 53
    )
    local = model.ServicePortInfo(
        model.ServicePortName("default", "web", "admin"),
        "10.96.0.10",
        9000,
        internal_policy_local=True,
    )
    # Served means programmed, whatever its endpoints: none (reject), none local (drop).
    s = state_of((http, [ep("10.244.1.3")]), (dns, []), (local, [ep("10.244.2.3")]))
    t = tracer(s)
    assert t.trace(CLIENT, "10.96.0.10", 53, "UDP").verdict == "reject"
    assert t.trace(CLIENT, "10.96.0.10", 9000).verdict == "drop"
    assert t.trace(CLIENT, "10.96.0.10", 8443).verdict == "reject"
    only_dns = s.update({http.name: None, local.name: None})
    assert tracer(only_dns).trace(CLIENT, "10.96.0.10", 80).verdict == "reject"
    assert names.CLUSTER_IPS not in str(ruleset.diff(s, only_dns))
    none = only_dns.update({dns.name: None})
    assert tracer(none).trace(CLIENT, "10.96.0.10", 80).verdict == "accept"
    assert str(ruleset.diff(only_dns, none)).count(names.CLUSTER_IPS) == 1
    assert applied(only_dns, ruleset.diff(only_dns, none)) == table_of(none)
    back = none.update({http.name: (http, [ep("10.244.1.3")])})
    assert applied(none, ruleset.diff(none, back)) == table_of(back)
    assert tracer(back).trace(CLIENT, "10.96.0.10", 53, "UDP").verdict == "reject"


def test_a_pod_reaching_itself_through_its_service_is_masqueraded() -> None:
    s = state_of((service(), [ep(CLIENT, is_local=True)]))
    result = tracer(s).trace(CLIENT, "10.96.0.10", 80)
    assert result.endpoint == (CLIENT, 8080) and result.masquerade


def test_a_pod_reaching_another_pod_through_a_service_keeps_its_address() -> None:
    s = state_of((service(), [ep(CLIENT, is_local=True)]))
    result = tracer(s).trace("10.244.1.7", "10.96.0.10", 80)
    assert result.endpoint == (CLIENT, 8080) and not result.masquerade


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_a_service_without_endpoints_rejects_new_connections(protocol: model.Protocol) -> None:
    s = state_of((service(protocol=protocol, node_port=30080), []))
    t = tracer(s)
    assert t.trace(CLIENT, "10.96.0.10", 80, protocol).verdict == "reject"
    assert t.trace(OUTSIDE, NODE, 30080, protocol).verdict == "reject"


def test_endpoints_that_are_neither_ready_nor_terminating_count_as_none() -> None:
    s = state_of((service(), [ep("10.244.1.3", ready=False, serving=False)]))
    assert tracer(s).trace(CLIENT, "10.96.0.10", 80).verdict == "reject"


def test_tcp_and_udp_on_the_same_port_number_reach_their_own_endpoints() -> None:
    s = state_of(
        (service(protocol="TCP"), [ep("10.244.1.3", 8080)]),
        (service(protocol="UDP"), [ep("10.244.1.4", 8081)]),
    )
    t = tracer(s)
    assert t.trace(CLIENT, "10.96.0.10", 80, "TCP").endpoint == ("10.244.1.3", 8080)
    assert t.trace(CLIENT, "10.96.0.10", 80, "UDP").endpoint == ("10.244.1.4", 8081)


def test_a_service_with_several_ports_sends_each_to_its_target_port() -> None:
    http = model.ServicePortInfo(model.ServicePortName("default", "web", "http"), "10.96.0.10", 80)
    admin = model.ServicePortInfo(
        model.ServicePortName("default", "web", "admin"), "10.96.0.10", 9000
    )
    s = state_of((http, [ep("10.244.1.3", 8080)]), (admin, [ep("10.244.1.3", 9090)]))
    t = tracer(s)
    assert t.trace(CLIENT, "10.96.0.10", 80).endpoint == ("10.244.1.3", 8080)
    assert t.trace(CLIENT, "10.96.0.10", 9000).endpoint == ("10.244.1.3", 9090)


def test_endpoints_of_one_service_on_different_ports_are_each_reached_on_their_own() -> None:
    s = state_of((service(node_port=30080), [ep("10.244.1.3", 8080), ep("10.244.1.4", 9090)]))
    t = tracer(s)
    expected = {("10.244.1.3", 8080), ("10.244.1.4", 9090)}
    assert set(t.trace(CLIENT, "10.96.0.10", 80).candidates) == expected
    assert set(t.trace(OUTSIDE, NODE, 30080).candidates) == expected


def test_a_service_whose_endpoints_agree_on_a_port_keeps_it_in_the_chain() -> None:
    s = state_of((service(), [ep("10.244.1.3", 8080), ep("10.244.1.4", 8080)]))
    assert [d.chain for d in s.dispatches()] == ["ip-tcp-n2-to8080"]
    assert tracer(s).trace(CLIENT, "10.96.0.10", 80).endpoint in {
        ("10.244.1.3", 8080),
        ("10.244.1.4", 8080),
    }
    mixed = s.update({port_name(): (service(), [ep("10.244.1.3", 8080), ep("10.244.1.4", 9090)])})
    assert [d.chain for d in mixed.dispatches()] == ["ip-tcp-n2"]
    assert applied(s, ruleset.diff(s, mixed)) == table_of(mixed)


def test_sctp_service_ports_are_dispatched_like_the_others() -> None:
    s = state_of((service(protocol="SCTP", port=3868), [ep("10.244.1.3", 3868)]))
    assert tracer(s).trace(CLIENT, "10.96.0.10", 3868, "SCTP").endpoint == ("10.244.1.3", 3868)


def test_terminating_endpoints_that_still_serve_are_used_when_none_is_ready() -> None:
    s = state_of(
        (
            service(),
            [
                ep("10.244.1.3", ready=False, serving=True, terminating=True),
                ep("10.244.1.4", ready=False, serving=False, terminating=True),
            ],
        )
    )
    assert reached(tracer(s), CLIENT, "10.96.0.10", 80) == {"10.244.1.3"}


def test_terminating_endpoints_are_not_used_while_one_is_ready() -> None:
    s = state_of(
        (
            service(),
            [ep("10.244.1.3", ready=False, terminating=True), ep("10.244.1.4")],
        )
    )
    assert reached(tracer(s), CLIENT, "10.96.0.10", 80) == {"10.244.1.4"}


def test_a_headless_port_has_no_cluster_ip_frontend_but_keeps_its_external_ones() -> None:
    s = state_of((service(cluster_ip=None, external_ips=("198.51.100.7",)), [ep("10.244.1.3")]))
    t = tracer(s)
    assert t.trace(OUTSIDE, "198.51.100.7", 80).endpoint == ("10.244.1.3", 8080)


# -- internal traffic policy -------------------------------------------------------


def test_internal_traffic_policy_local_reaches_only_local_endpoints() -> None:
    s = state_of(
        (
            service(internal_policy_local=True),
            [ep("10.244.1.3", is_local=True), ep("10.244.2.3")],
        )
    )
    assert reached(tracer(s), CLIENT, "10.96.0.10", 80) == {"10.244.1.3"}


def test_internal_traffic_policy_local_without_local_endpoints_drops() -> None:
    s = state_of((service(internal_policy_local=True), [ep("10.244.2.3")]))
    assert tracer(s).trace(CLIENT, "10.96.0.10", 80).verdict == "drop"


# -- NodePort and external IPs --------------------------------------------------------


def test_a_node_port_answers_on_node_addresses_and_masquerades() -> None:
    s = state_of((service(node_port=30080), [ep("10.244.1.3"), ep("10.244.2.3")]))
    t = tracer(s)
    result = t.trace(OUTSIDE, NODE, 30080)
    assert result.verdict == "dnat" and result.masquerade
    assert reached(t, OUTSIDE, NODE, 30080) == {"10.244.1.3", "10.244.2.3"}


def test_a_node_port_is_not_opened_on_loopback_or_on_addresses_of_other_hosts() -> None:
    t = tracer(state_of((service(node_port=30080), [ep("10.244.1.3")])))
    assert t.trace("127.0.0.1", "127.0.0.1", 30080, from_node=True).verdict == "accept"
    assert t.trace(OUTSIDE, "198.18.0.77", 30080).verdict == "accept"


def test_node_ports_open_on_loopback_only_when_configured() -> None:
    config = ruleset.ProxyConfig(nodeport_addresses=("127.0.0.0/8", "198.18.0.0/24"))
    t = tracer(state_of((service(node_port=30080), [ep("10.244.1.3")]), config=config))
    assert t.trace("127.0.0.1", "127.0.0.1", 30080, from_node=True).masquerade
    assert t.trace(OUTSIDE, NODE, 30080).verdict == "dnat"


def test_node_ports_open_only_on_configured_addresses() -> None:
    config = ruleset.ProxyConfig(nodeport_addresses=("192.0.2.0/24",))
    t = trace.Tracer(
        state_of((service(node_port=30080), [ep("10.244.1.3")]), config=config),
        node_addresses=[NODE, "192.0.2.1"],
    )
    assert t.trace(OUTSIDE, NODE, 30080).verdict == "accept"
    assert t.trace(OUTSIDE, "192.0.2.1", 30080).verdict == "dnat"


def test_external_ips_reach_the_service_and_are_masqueraded_under_the_cluster_policy() -> None:
    s = state_of((service(external_ips=("198.51.100.7",)), [ep("10.244.2.3")]))
    result = tracer(s).trace(OUTSIDE, "198.51.100.7", 80)
    assert result.endpoint == ("10.244.2.3", 8080) and result.masquerade


def test_load_balancer_ips_are_frontends_like_external_ips() -> None:
    s = state_of((service(load_balancer_ips=("203.0.113.5",)), [ep("10.244.2.3")]))
    assert tracer(s).trace(OUTSIDE, "203.0.113.5", 80).endpoint == ("10.244.2.3", 8080)


# -- external traffic policy Local ------------------------------------------------------


def local_policy_state(*endpoints: model.Endpoint) -> ruleset.ProxyState:
    info = service(node_port=30080, external_ips=("198.51.100.7",), external_policy_local=True)
    return state_of((info, list(endpoints)))


def test_external_policy_local_sends_outside_clients_only_to_local_endpoints_unmasqueraded() -> (
    None
):
    t = tracer(local_policy_state(ep("10.244.1.3", is_local=True), ep("10.244.2.3")))
    for dst, port in ((NODE, 30080), ("198.51.100.7", 80)):
        assert reached(t, OUTSIDE, dst, port) == {"10.244.1.3"}
        assert not t.trace(OUTSIDE, dst, port).masquerade


def test_external_policy_local_without_local_endpoints_drops_outside_clients() -> None:
    t = tracer(local_policy_state(ep("10.244.2.3")))
    assert t.trace(OUTSIDE, NODE, 30080).verdict == "drop"
    assert t.trace(OUTSIDE, "198.51.100.7", 80).verdict == "drop"


def test_external_policy_local_still_lets_pods_and_the_node_reach_every_endpoint() -> None:
    t = tracer(local_policy_state(ep("10.244.2.3")))
    from_pod = t.trace(CLIENT, "198.51.100.7", 80)
    assert from_pod.endpoint == ("10.244.2.3", 8080) and not from_pod.masquerade
    from_node = t.trace(NODE, NODE, 30080, from_node=True)
    assert from_node.endpoint == ("10.244.2.3", 8080) and from_node.masquerade


def test_external_policy_local_leaves_the_cluster_ip_to_every_endpoint() -> None:
    t = tracer(local_policy_state(ep("10.244.1.3", is_local=True), ep("10.244.2.3")))
    assert reached(t, CLIENT, "10.96.0.10", 80) == {"10.244.1.3", "10.244.2.3"}


# -- every endpoint on its own port, whatever the policy and the fallback ---------------------

TERMINATING = {"ready": False, "serving": True, "terminating": True}


@pytest.mark.parametrize("policy", ["external", "internal"])
def test_a_local_terminating_endpoint_on_another_port_than_the_ready_ones_is_reached_on_its_own(
    policy: str,
) -> None:
    info = service(
        node_port=30080,
        external_policy_local=policy == "external",
        internal_policy_local=policy == "internal",
    )
    # No local endpoint is ready: the local terminating one stands in for Local traffic,
    # while the remote ready one serves Cluster traffic.
    s = state_of(
        (info, [ep("10.244.2.3", 8080), ep("10.244.1.3", 9090, is_local=True, **TERMINATING)])
    )
    t = tracer(s)
    local_only, everyone = {("10.244.1.3", 9090)}, {("10.244.2.3", 8080)}
    if policy == "external":
        assert set(t.trace(OUTSIDE, NODE, 30080).candidates) == local_only
        assert set(t.trace(CLIENT, NODE, 30080).candidates) == everyone
        assert set(t.trace(CLIENT, "10.96.0.10", 80).candidates) == everyone
    else:
        assert set(t.trace(CLIENT, "10.96.0.10", 80).candidates) == local_only
        assert set(t.trace(OUTSIDE, NODE, 30080).candidates) == everyone


def test_local_endpoints_on_another_port_than_remote_ones_keep_their_port_under_both_policies() -> (
    None
):
    info = service(
        node_port=30080,
        external_ips=("198.51.100.7",),
        external_policy_local=True,
        internal_policy_local=True,
        affinity_timeout=60,
    )
    s = state_of((info, [ep("10.244.1.3", 9090, is_local=True), ep("10.244.2.3", 8080)]))
    t = tracer(s)
    assert t.trace(CLIENT, "10.96.0.10", 80).endpoint == ("10.244.1.3", 9090)
    assert t.trace(OUTSIDE, "198.51.100.7", 80).endpoint == ("10.244.1.3", 9090)
    assert set(t.trace(OTHER_POD, NODE, 30080).candidates) == {
        ("10.244.1.3", 9090),
        ("10.244.2.3", 8080),
    }


def categorized(
    info: model.ServicePortInfo, endpoints: Sequence[model.Endpoint]
) -> tuple[set[ruleset.Target], set[ruleset.Target]]:
    """kube-proxy's CategorizeEndpoints, written plainly: (cluster, local) targets."""
    ready = {e.target for e in endpoints if e.ready}
    cluster = ready or {e.target for e in endpoints if e.serving and e.terminating}
    local_ready = {e.target for e in endpoints if e.is_local and e.ready}
    local = local_ready or {
        e.target for e in endpoints if e.is_local and e.serving and e.terminating
    }
    return cluster, local


# The conditions an EndpointSlice gives in practice, so that each shows up often.
CONDITIONS = [
    {"ready": True},
    {"ready": True, "terminating": True},  # publishNotReadyAddresses
    TERMINATING,
    {"ready": False, "serving": False, "terminating": True},
    {"ready": False, "serving": False},
]
varied_endpoints = st.lists(
    st.builds(
        lambda ip, port, conditions, is_local: model.Endpoint(
            ip, port, is_local=is_local, **conditions
        ),
        ip=st.sampled_from(["10.244.1.3", "10.244.1.4", "10.244.2.3", "10.244.2.4"]),
        port=st.sampled_from([8080, 9090]),
        conditions=st.sampled_from(CONDITIONS),
        is_local=st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    varied_endpoints,
    st.booleans(),
    st.booleans(),
    st.sampled_from([0, 60]),
)
def test_every_client_reaches_exactly_the_endpoints_its_policy_allows_each_on_its_own_port(
    endpoints: list[model.Endpoint], external_local: bool, internal_local: bool, affinity: int
) -> None:
    info = service(
        node_port=30080,
        external_ips=("198.51.100.7",),
        external_policy_local=external_local,
        internal_policy_local=internal_local,
        affinity_timeout=affinity,
    )
    t = tracer(state_of((info, endpoints)))
    cluster, local = categorized(info, endpoints)

    def expect(targets: set[ruleset.Target]) -> tuple[str, set[ruleset.Target]]:
        if not cluster:
            return ("reject", set())
        return ("dnat", targets) if targets else ("drop", set())

    cases = [
        # (source, destination, port, sent by the node, endpoints allowed)
        (CLIENT, "10.96.0.10", 80, False, local if internal_local else cluster),
        (NODE, "10.96.0.10", 80, True, local if internal_local else cluster),
        (OUTSIDE, NODE, 30080, False, local if external_local else cluster),
        (OUTSIDE, "198.51.100.7", 80, False, local if external_local else cluster),
        # Pods and the node itself are not external clients: any endpoint.
        (OTHER_POD, "198.51.100.7", 80, False, cluster),
        (NODE, NODE, 30080, True, cluster),
    ]
    for src, dst, dport, from_node, allowed in cases:
        result = t.trace(src, dst, dport, from_node=from_node)
        assert (result.verdict, set(result.candidates)) == expect(allowed), (src, dst, dport)


# -- session affinity --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def affinity_state(*ips: str, timeout: int = 60) -> ruleset.ProxyState:
    return state_of((service(affinity_timeout=timeout, node_port=30080), [ep(ip) for ip in ips]))


def test_client_ip_affinity_keeps_a_client_on_its_first_endpoint() -> None:
    t = tracer(affinity_state("10.244.1.3", "10.244.1.4", "10.244.1.5"), rng=random.Random(1))
    first = t.trace(CLIENT, "10.96.0.10", 80).endpoint
    assert all(t.trace(CLIENT, "10.96.0.10", 80).endpoint == first for _ in range(50))
    assert len(reached(t, "10.244.1.99", "10.96.0.10", 80)) == 1
    assert len(reached(t, OUTSIDE, NODE, 30080)) == 1


def test_different_clients_are_spread_under_affinity() -> None:
    t = tracer(affinity_state("10.244.1.3", "10.244.1.4", "10.244.1.5"))
    seen = {t.trace(f"10.244.3.{i}", "10.96.0.10", 80).endpoint for i in range(1, 60)}
    assert len(seen) == 3


def test_affinity_expires_after_its_timeout_without_new_connections() -> None:
    clock = FakeClock()
    t = tracer(affinity_state("10.244.1.3", "10.244.1.4", timeout=10), clock=clock)
    first = t.trace(CLIENT, "10.96.0.10", 80).endpoint
    clock.now += 9
    assert t.trace(CLIENT, "10.96.0.10", 80).endpoint == first  # and refreshed
    clock.now += 11
    seen = set()
    for _ in range(40):
        clock.now += 11
        seen.add(t.trace(CLIENT, "10.96.0.10", 80).endpoint)
    assert len(seen) == 2


def test_affinity_survives_the_removal_of_another_endpoint() -> None:
    s = affinity_state("10.244.1.3", "10.244.1.4", "10.244.1.5")
    clients = [f"10.244.3.{i}" for i in range(1, 40)]
    before = tracer(s)
    stuck = {c: before.trace(c, "10.96.0.10", 80).endpoint for c in clients}
    info = service(affinity_timeout=60, node_port=30080)
    after_state = s.update({info.name: (info, [ep("10.244.1.3"), ep("10.244.1.5")])})
    after = tracer(after_state)
    after._sticky = before._sticky  # the kernel's dynamic sets outlive the update
    for client, endpoint in stuck.items():
        now = after.trace(client, "10.96.0.10", 80).endpoint
        if endpoint == ("10.244.1.4", 8080):
            assert now in {("10.244.1.3", 8080), ("10.244.1.5", 8080)}
        elif endpoint == ("10.244.1.3", 8080):
            assert now == endpoint  # index 0 is untouched
        else:
            assert now in {("10.244.1.3", 8080), ("10.244.1.5", 8080)}


def test_a_removed_endpoint_is_never_reached_through_affinity() -> None:
    s = affinity_state("10.244.1.3", "10.244.1.4")
    before = tracer(s)
    for i in range(1, 30):
        before.trace(f"10.244.3.{i}", "10.96.0.10", 80)
    info = service(affinity_timeout=60, node_port=30080)
    after = tracer(s.update({info.name: (info, [ep("10.244.1.3")])}))
    after._sticky = before._sticky
    for i in range(1, 30):
        assert after.trace(f"10.244.3.{i}", "10.96.0.10", 80).endpoint == ("10.244.1.3", 8080)


# -- families and conflicts --------------------------------------------------------------


def test_an_ipv6_state_serves_only_ipv6_addresses_of_dual_stack_input() -> None:
    info = model.ServicePortInfo(port_name(), "fd00:96::10", 80, external_ips=("192.0.2.7",))
    s = state_of(
        (info, [ep("fd00:244::3"), ep("10.244.1.3")]), config=ruleset.ProxyConfig(family="ipv6")
    )
    t = trace.Tracer(s)
    assert reached(t, "fd00:244::9", "fd00:96::10", 80) == {"fd00:244::3"}
    assert t.trace("fd00:244::9", "fd00:96::10", 81).verdict == "reject"
    assert t.trace("192.0.2.9", "192.0.2.7", 80).verdict == "accept"
    assert "ip6 switchboard" in str(ruleset.full(s))


def test_a_frontend_claimed_twice_goes_to_the_first_name_until_it_lets_go() -> None:
    a = service("a", cluster_ip="10.96.0.10", external_ips=("198.51.100.7",))
    b = service("b", cluster_ip="10.96.0.11", external_ips=("198.51.100.7",))
    both = state_of((a, [ep("10.244.1.3")]), (b, [ep("10.244.1.4")]))
    assert tracer(both).trace(OUTSIDE, "198.51.100.7", 80).endpoint == ("10.244.1.3", 8080)
    only_b = both.update({a.name: None})
    assert tracer(only_b).trace(OUTSIDE, "198.51.100.7", 80).endpoint == ("10.244.1.4", 8080)
    assert applied(both, ruleset.diff(both, only_b)) == table_of(only_b)


# -- the ruleset and its diffs ------------------------------------------------------------


class Table:
    """A model of the kernel's table: what a script leaves behind."""

    def __init__(self) -> None:
        self.elements: dict[ruleset.ElementKey, ruleset.Value] = {}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.sets: set[str] = set()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Table) and (self.elements, self.chains, self.sets) == (
            other.elements,
            other.chains,
            other.sets,
        )

    def apply(self, script: ruleset.Script) -> None:
        if script.replace_table:
            self.__init__()  # type: ignore[misc]
        for command in script.commands:
            if isinstance(command, ruleset.AddElements):
                for key, value in command.items:
                    assert (command.target, key) not in self.elements, (command.target, key)
                    self.elements[(command.target, key)] = value
            elif isinstance(command, ruleset.DeleteElements):
                for key in command.keys:
                    del self.elements[(command.target, key)]
            elif isinstance(command, ruleset.AddChain):
                assert command.name not in self.chains, command.name
                self.chains[command.name] = command.rules
            elif isinstance(command, ruleset.DeleteChain):
                del self.chains[command.name]
            elif isinstance(command, ruleset.AddSet):
                assert command.name not in self.sets
                self.sets.add(command.name)
            elif isinstance(command, ruleset.DeleteSet):
                self.sets.remove(command.name)
        for rules in self.chains.values():
            for rule in rules:
                for word in rule.split():
                    if word.startswith("@"):
                        assert word[1:] in self.sets, f"{rule} uses a missing set"
        for (_, _), value in self.elements.items():
            if value is not None and value.startswith("goto "):
                assert value[5:] in self.chains, f"{value} names a missing chain"


def table_of(state: ruleset.ProxyState) -> Table:
    table = Table()
    table.apply(ruleset.full(state))
    return table


def applied(state: ruleset.ProxyState, script: ruleset.Script) -> Table:
    table = table_of(state)
    table.apply(script)
    return table


def test_a_full_sync_replaces_the_table_in_one_transaction() -> None:
    text = str(ruleset.full(state_of((service(), [ep("10.244.1.3")]))))
    assert text.splitlines()[:3] == [
        "add table ip switchboard",
        "delete table ip switchboard",
        "add table ip switchboard",
    ]
    assert "flush" not in text


def test_services_of_the_same_shape_share_one_dispatch_chain() -> None:
    ports = [
        (service(f"s{i}", cluster_ip=f"10.96.1.{i}"), [ep(f"10.244.1.{i}"), ep(f"10.244.2.{i}")])
        for i in range(1, 50)
    ]
    s = state_of(*ports)
    assert [d.chain for d in s.dispatches()] == ["ip-tcp-n2-to8080"]


def test_one_endpoint_change_is_a_few_element_updates() -> None:
    ports = {
        f"s{i}": (
            service(f"s{i}", cluster_ip=f"10.96.1.{i}"),
            [ep(f"10.244.1.{i}"), ep(f"10.244.2.{i}")],
        )
        for i in range(1, 100)
    }
    s = state_of(*ports.values())
    info, _ = ports["s7"]
    changed = s.update({info.name: (info, [ep("10.244.1.7"), ep("10.244.3.7")])})
    script = ruleset.diff(s, changed)
    assert [type(c).__name__ for c in script.commands] == ["DeleteElements", "AddElements"]
    table = "ip switchboard service-endpoints-tcp-addresses"  # all listen on 8080
    assert str(script).splitlines() == [
        f"delete element {table} {{ 10.96.1.7 . 80 . 1 }}",
        f"add element {table} {{ 10.96.1.7 . 80 . 1 : 10.244.3.7 }}",
    ]
    assert applied(s, script) == table_of(changed)


def test_an_unchanged_update_diffs_to_nothing() -> None:
    info = service()
    s = state_of((info, [ep("10.244.1.3")]))
    same = s.update({info.name: (info, [ep("10.244.1.3")]), port_name("gone"): None})
    assert not ruleset.diff(s, same)
    assert str(ruleset.diff(s, same)) == ""


def test_diffs_between_unrelated_states_compare_every_port() -> None:
    a = state_of((service(), [ep("10.244.1.3")]))
    b = state_of((service(), [ep("10.244.1.4")]), (service("x", cluster_ip="10.96.0.99"), []))
    assert applied(a, ruleset.diff(a, b)) == table_of(b)


def test_endpoints_keep_their_index_when_another_one_leaves() -> None:
    eps = [ep(f"10.244.1.{i}") for i in range(1, 6)]
    s = state_of((service(), eps))
    before = {v: k for (m, k), v in s.elements().items() if m == ENDPOINTS_TCP}
    after_state = s.update({port_name(): (service(), [e for e in eps if e.ip != "10.244.1.2"])})
    after = {v: k for (m, k), v in after_state.elements().items() if m == ENDPOINTS_TCP}
    moved = {v for v in after if after[v] != before[v]}
    assert moved == {"10.244.1.5"}  # the last one filled the hole; the rest stayed


def test_affinity_objects_come_and_go_with_the_shapes_that_use_them() -> None:
    plain = state_of((service(), [ep("10.244.1.3")]))
    sticky_info = service(affinity_timeout=30)
    sticky = plain.update({sticky_info.name: (sticky_info, [ep("10.244.1.3"), ep("10.244.1.4")])})
    table = applied(plain, ruleset.diff(plain, sticky))
    assert table == table_of(sticky)
    assert {
        names.affinity_set("ip", "tcp", 30, 0),
        names.affinity_set("ip", "tcp", 30, 1),
    } <= table.sets
    back = sticky.update({sticky_info.name: (service(), [ep("10.244.1.3")])})
    table.apply(ruleset.diff(sticky, back))
    assert table == table_of(back)
    assert not any(name.startswith("affinity") for name in table.sets | set(table.chains))


ADDRESSES = [f"10.244.{n}.{h}" for n in (1, 2) for h in (3, 4, 5)]
endpoint_lists = st.lists(
    st.builds(
        model.Endpoint,
        ip=st.sampled_from(ADDRESSES),
        port=st.sampled_from([8080, 8081]),
        ready=st.booleans(),
        serving=st.booleans(),
        terminating=st.booleans(),
        is_local=st.booleans(),
    ),
    max_size=4,
)
infos = st.builds(
    lambda name, proto, node_port, external, affinity, ext_local, int_local: model.ServicePortInfo(
        model.ServicePortName("default", name, "", proto),
        f"10.96.0.{ord(name)}",
        80,
        node_port=node_port,
        external_ips=external,
        affinity_timeout=affinity,
        external_policy_local=ext_local,
        internal_policy_local=int_local,
    ),
    name=st.sampled_from("abcd"),
    proto=st.sampled_from(["TCP", "UDP"]),
    node_port=st.sampled_from([0, 30001, 30002]),
    external=st.sampled_from([(), ("198.51.100.7",), ("198.51.100.7", "198.51.100.8")]),
    affinity=st.sampled_from([0, 0, 30, 10800]),
    ext_local=st.booleans(),
    int_local=st.booleans(),
)
steps = st.lists(
    st.lists(st.one_of(st.tuples(infos, endpoint_lists), st.sampled_from("abcd")), max_size=3),
    min_size=1,
    max_size=6,
)


Step = list[tuple[model.ServicePortInfo, list[model.Endpoint]] | str]


def changes_of(step: Step) -> dict[model.ServicePortName, ruleset.Desired | None]:
    """Each item sets a port (info, endpoints) or removes both ports of a name."""
    changes: dict[model.ServicePortName, ruleset.Desired | None] = {}
    for item in step:
        if isinstance(item, str):
            protocols: tuple[model.Protocol, ...] = ("TCP", "UDP")
            for protocol in protocols:
                changes[model.ServicePortName("default", item, "", protocol)] = None
        else:
            info, endpoints = item
            changes[info.name] = (info, endpoints)
    return changes


@settings(max_examples=150, deadline=None)
@given(steps)
def test_applying_each_diff_leaves_the_table_a_full_sync_would_make(
    sequence: list[Step],
) -> None:
    state = ruleset.ProxyState(CONFIG)
    table = table_of(state)
    for step in sequence:
        following = state.update(changes_of(step))
        table.apply(ruleset.diff(state, following))  # asserts every reference resolves
        assert table == table_of(following)
        state = following


@settings(max_examples=60, deadline=None)
@given(steps)
def test_a_state_built_afresh_traces_like_the_one_updated_step_by_step(
    sequence: list[Step],
) -> None:
    state = ruleset.ProxyState(CONFIG)
    for step in sequence:
        state = state.update(changes_of(step))
    fresh = ruleset.ProxyState.build(CONFIG, state.services())
    for key in {k for (m, k) in state.elements() if m == names.SERVICE_IPS}:
        address, protocol, port = key.split(" . ")
        for source in (CLIENT, OTHER_POD, OUTSIDE):
            a = tracer(state).trace(source, address, int(port), protocol.upper())  # type: ignore[arg-type]
            b = tracer(fresh).trace(source, address, int(port), protocol.upper())  # type: ignore[arg-type]
            assert (a.verdict, set(a.candidates), a.masquerade) == (
                b.verdict,
                set(b.candidates),
                b.masquerade,
            )


def test_elements_are_written_in_bulk_and_read_back_as_pairs() -> None:
    command = ruleset.AddElements.of("m", [("10.96.0.1 . 80 . 0", "10.244.1.2 . 8080")])
    assert command.body == "10.96.0.1 . 80 . 0 : 10.244.1.2 . 8080"
    assert command.items == (("10.96.0.1 . 80 . 0", "10.244.1.2 . 8080"),)
    assert ruleset.AddElements.of("s", [("a", None), ("b", None)]).items == (
        ("a", None),
        ("b", None),
    )


def applied_in_pieces(sync: ruleset.FullSync) -> Table:
    table = Table()
    for piece in sync.scripts():
        table.apply(piece)  # asserts every reference resolves after each piece
    return table


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(infos, endpoint_lists), max_size=8), st.integers(1, 3))
def test_a_full_sync_made_in_pieces_leaves_the_table_and_state_of_one_made_whole(
    ports: list[tuple[model.ServicePortInfo, list[model.Endpoint]]], batch: int
) -> None:
    services = {info.name: (info, endpoints) for info, endpoints in ports}
    whole = ruleset.ProxyState.build(CONFIG, services)
    sync = ruleset.FullSync(CONFIG, services, batch=batch)
    assert applied_in_pieces(sync) == table_of(whole)
    assert sync.state.elements() == whole.elements()
    assert sync.state.dispatches() == whole.dispatches()
    assert not ruleset.diff(whole, sync.state)


def test_a_frontend_won_by_a_later_port_replaces_the_elements_written_first() -> None:
    b = service("b", cluster_ip="10.96.0.11", external_ips=("198.51.100.7",))
    a = service("a", cluster_ip="10.96.0.10", external_ips=("198.51.100.7",))
    services = {b.name: (b, [ep("10.244.1.4")]), a.name: (a, [ep("10.244.1.3"), ep("10.244.1.5")])}
    sync = ruleset.FullSync(CONFIG, services, batch=1)
    pieces = [str(piece) for piece in sync.scripts()]
    assert "delete element ip switchboard service-ips { 198.51.100.7 . tcp . 80 }" in pieces[-1]
    assert applied_in_pieces(sync) == table_of(ruleset.ProxyState.build(CONFIG, services))
    assert tracer(sync.state).trace(OUTSIDE, "198.51.100.7", 80).endpoint in {
        ("10.244.1.3", 8080),
        ("10.244.1.5", 8080),
    }


def test_a_full_sync_in_pieces_starts_by_replacing_the_table() -> None:
    first = next(iter(ruleset.FullSync(CONFIG, {port_name(): (service(), [ep("10.244.1.3")])})))
    assert first.splitlines()[:3] == [
        "add table ip switchboard",
        "delete table ip switchboard",
        "add table ip switchboard",
    ]


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        ruleset.ProxyConfig(service_cidrs=("10.96.0.0/12",), nodeport_addresses=("198.18.0.0/24",)),
        ruleset.ProxyConfig(family="ipv6", pod_cidrs=("fd00:10::/64",)),
    ],
)
def test_a_full_sync_in_pieces_writes_the_skeleton_byte_for_byte_as_one_made_whole(
    config: ruleset.ProxyConfig,
) -> None:
    # With ports the pieces order chains and elements by batch, so only the tables compare
    # equal (above); without any, nothing but the skeleton and the configured sets is left.
    assert "".join(ruleset.FullSync(config, {})) == str(ruleset.full(ruleset.ProxyState(config)))


# -- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: model.Endpoint("10.0.0.300", 80), "is not an IP address"),
        (lambda: model.Endpoint("10.0.0.3", 0), "out of range"),
        (lambda: service(cluster_ip="nope"), "cluster IP"),
        (lambda: service(node_port=70000), "nodePort"),
        (lambda: service(affinity_timeout=86401), "affinity timeout"),
        (lambda: service(external_ips="198.51.100.7"), "tuple"),
        (lambda: model.ServicePortName("d", "n", "", "ICMP"), "TCP, UDP or SCTP"),  # type: ignore[arg-type]
        (lambda: ruleset.ProxyConfig(pod_cidrs=("10.0.0.0/33",)), "not a CIDR"),
    ],
)
def test_malformed_input_is_refused_with_the_field_named(build: object, message: str) -> None:
    with pytest.raises(model.InvalidInput, match=message):
        build()  # type: ignore[operator]


def test_addresses_are_normalised_to_the_form_nft_prints() -> None:
    assert model.Endpoint("FD00:0:0::3", 80).ip == "fd00::3"
    assert service(external_ips=("198.51.100.7", "198.51.100.7")).external_ips == ("198.51.100.7",)


# -- the data plane, over a fake backend ------------------------------------------------------


class FakeBackend:
    netns: str | None = None

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.fail_next = 0

    def apply(self, script: str) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise nft.NftError("nft rejected the script: boom")
        self.scripts.append(script)

    def close(self) -> None:
        pass


class StreamingFakeBackend(FakeBackend):
    """Takes a full sync in pieces, as `nft.LibNftables` does."""

    def apply_stream(self, pieces: Iterable[str]) -> None:
        self.apply("".join(pieces))


def desired(
    *ports: tuple[model.ServicePortInfo, list[model.Endpoint]],
) -> Mapping[model.ServicePortName, ruleset.Desired]:
    return {info.name: (info, eps) for info, eps in ports}


def test_the_data_plane_syncs_in_full_then_applies_only_diffs() -> None:
    backend = FakeBackend()
    plane = dataplane.DataPlane(backend, CONFIG)
    plane.sync(desired((service(), [ep("10.244.1.3")])))
    plane.update({port_name(): (service(), [ep("10.244.1.4")])})
    plane.update({port_name(): (service(), [ep("10.244.1.4")])})  # no change: nothing applied
    assert len(backend.scripts) == 2
    assert backend.scripts[0].startswith("add table ip switchboard\ndelete table")
    assert backend.scripts[1].startswith(
        "delete element ip switchboard service-endpoints-tcp-addresses"
    )


def test_a_failed_incremental_sync_falls_back_to_a_full_one() -> None:
    backend = FakeBackend()
    plane = dataplane.DataPlane(backend, CONFIG)
    plane.sync(desired((service(), [ep("10.244.1.3")])))
    backend.fail_next = 1
    state = plane.update({port_name(): (service(), [ep("10.244.1.4")])})
    assert backend.scripts[-1].startswith("add table ip switchboard\ndelete table")
    assert plane.state is state


def test_when_the_full_fallback_fails_too_the_error_is_raised_and_the_state_forgotten() -> None:
    backend = FakeBackend()
    plane = dataplane.DataPlane(backend, CONFIG)
    plane.sync(desired((service(), [ep("10.244.1.3")])))
    backend.fail_next = 2
    with pytest.raises(nft.NftError, match="boom"):
        plane.update({port_name(): (service(), [ep("10.244.1.4")])})
    assert plane.state is None
    with pytest.raises(RuntimeError, match="sync"):
        plane.update({})


def test_a_backend_that_reads_pieces_gets_the_full_sync_the_others_get_whole() -> None:
    ports = desired((service(), [ep("10.244.1.3")]), (service("x", "10.96.0.99"), []))
    streaming, whole = StreamingFakeBackend(), FakeBackend()
    assert isinstance(streaming, nft.StreamingBackend)
    assert not isinstance(whole, nft.StreamingBackend)
    state = dataplane.DataPlane(streaming, CONFIG).sync(ports)
    dataplane.DataPlane(whole, CONFIG).sync(ports)
    assert streaming.scripts == whole.scripts
    assert not ruleset.diff(state, ruleset.ProxyState.build(CONFIG, ports))


def test_a_failed_full_sync_leaves_no_state_behind() -> None:
    backend = StreamingFakeBackend()
    plane = dataplane.DataPlane(backend, CONFIG)
    plane.sync(desired((service(), [ep("10.244.1.3")])))
    backend.fail_next = 1
    with pytest.raises(nft.NftError, match="boom"):
        plane.sync(desired((service(), [ep("10.244.1.4")])))
    assert plane.state is None


@pytest.mark.parametrize("backend", [FakeBackend, StreamingFakeBackend])
def test_a_sync_given_input_it_refuses_changes_nothing(backend: type[FakeBackend]) -> None:
    fake = backend()
    plane = dataplane.DataPlane(fake, CONFIG)
    before = plane.sync(desired((service(), [ep("10.244.1.3")])))
    with pytest.raises(model.InvalidInput, match="under the name"):
        plane.sync({port_name("other"): (service(), [ep("10.244.1.4")])})
    assert plane.state is before
    assert len(fake.scripts) == 1
