"""Which conntrack entries the proxy deletes after a sync, and that it runs them in order."""

from __future__ import annotations

import threading

from switchboard.proxy import conntrack, model


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
