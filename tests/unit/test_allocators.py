"""ClusterIP and NodePort allocation: bitmaps, allocators, Service writes and repair."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from switchboard.allocators import errors
from switchboard.allocators.bitmap import Bitmap
from switchboard.allocators.ipallocator import IPAllocator, range_offset
from switchboard.allocators.portallocator import PortAllocator, parse_range
from switchboard.allocators.repair import collect_node_ports
from switchboard.allocators.service import ServiceAllocations, internal_detail, is_internal
from switchboard.api import service, servicerules

# ---- bitmap --------------------------------------------------------------------------------


def test_dynamic_allocation_uses_the_upper_band_until_it_is_full() -> None:
    bitmap = Bitmap(100, 20, rng=random.Random(1))
    upper = [bitmap.allocate_next() for _ in range(80)]
    assert sorted(upper) == list(range(20, 100))
    lower = [bitmap.allocate_next() for _ in range(20)]
    assert sorted(lower) == list(range(20))
    with pytest.raises(errors.RangeFull, match=r"^range is full$"):
        bitmap.allocate_next()


def test_static_allocation_may_take_any_free_value() -> None:
    bitmap = Bitmap(10, 4)
    assert bitmap.allocate(0) is True
    assert bitmap.allocate(0) is False
    assert bitmap.has(0) and not bitmap.has(1)
    assert (bitmap.used(), bitmap.free()) == (1, 9)
    bitmap.release(0)
    bitmap.release(0)  # releasing a free value does nothing
    bitmap.release(99)  # nor does an out-of-range one
    assert bitmap.used() == 0
    with pytest.raises(ValueError):
        bitmap.allocate(10)


def test_the_scan_wraps_around_inside_the_band() -> None:
    bitmap = Bitmap(64 * 70, 0, rng=random.Random(7))
    for n in range(100, bitmap.size):
        bitmap.allocate(n)
    got = {bitmap.allocate_next() for _ in range(100)}
    assert got == set(range(100))


def test_no_split_when_the_offset_leaves_no_upper_band() -> None:
    assert Bitmap(16, 16).offset == 0
    assert Bitmap(16, 0).offset == 0


def test_iteration_lists_used_values_in_order_and_load_copies_state() -> None:
    bitmap = Bitmap(5000, 16)
    for n in (4999, 3, 64, 4096):
        bitmap.allocate(n)
    assert list(bitmap) == [3, 64, 4096, 4999]
    copy_of = bitmap.empty_like()
    assert list(copy_of) == []
    copy_of.load(bitmap)
    assert list(copy_of) == [3, 64, 4096, 4999] and copy_of.used() == 4


def test_a_nearly_full_bitmap_still_finds_the_last_free_values() -> None:
    bitmap = Bitmap(65534, 256, rng=random.Random(3))
    for _ in range(65534 - 3):
        bitmap.allocate_next()
    assert bitmap.free() == 3
    last = {bitmap.allocate_next() for _ in range(3)}
    assert len(last) == 3 and bitmap.free() == 0


# ---- IP allocator ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "offset"), [(16, 0), (32, 16), (256, 16), (1024, 64), (65536, 256), (2**20, 256)]
)
def test_ip_static_band_size(size: int, offset: int) -> None:
    assert range_offset(size) == offset


def test_ip_range_excludes_network_and_broadcast() -> None:
    ips = IPAllocator("10.96.0.0/16")
    assert (ips.size, ips.static_band, ips.cidr, ips.family) == (65534, 256, "10.96.0.0/16", "IPv4")
    ips.allocate("10.96.0.1")
    ips.allocate("10.96.255.254")
    for edge in ("10.96.0.0", "10.96.255.255", "10.97.0.1", "fd00::1"):
        with pytest.raises(errors.NotInRange) as exc:
            ips.allocate(edge)
        assert str(exc.value) == (
            f"the provided IP ({edge}) is not in the valid range. "
            "The range of valid IPs is 10.96.0.0/16"
        )


def test_ip_already_allocated_message() -> None:
    ips = IPAllocator("10.96.0.0/24")
    ips.allocate("10.96.0.5")
    with pytest.raises(errors.AlreadyAllocated, match=r"^provided IP is already allocated$"):
        ips.allocate("10.96.0.5")


def test_dynamic_ips_avoid_the_static_band() -> None:
    ips = IPAllocator("10.96.0.0/24", rng=random.Random(5))
    got = [ips.allocate_next() for _ in range(100)]
    assert all(int(ip.rsplit(".", 1)[1]) > 16 for ip in got)
    assert len(set(got)) == 100


def test_ips_are_parsed_sloppily_and_returned_canonically() -> None:
    ips = IPAllocator("10.96.0.0/16")
    ips.allocate("010.096.000.005")
    assert ips.has("10.96.0.5")
    assert list(ips) == ["10.96.0.5"]
    ips.release("10.96.0.5")
    assert ips.used() == 0


def test_ipv6_ranges_are_capped() -> None:
    ips = IPAllocator("fd00:10:96::/64")
    assert (ips.family, ips.size, ips.static_band) == ("IPv6", 65535, 256)
    ip = ips.allocate_next()
    assert ip.startswith("fd00:10:96::") and ips.has(ip)


def test_a_tiny_range_fills_up() -> None:
    ips = IPAllocator("10.0.0.0/30")
    assert {ips.allocate_next(), ips.allocate_next()} == {"10.0.0.1", "10.0.0.2"}
    with pytest.raises(errors.RangeFull):
        ips.allocate_next()
    assert IPAllocator("10.0.0.1/32").size == 0


# ---- port allocator ---------------------------------------------------------------------------


def test_default_node_port_range() -> None:
    ports = PortAllocator()
    assert (ports.port_range, ports.size, ports.static_band) == ("30000-32767", 2768, 86)
    assert parse_range("30000+2767") == (30000, 2768)
    assert parse_range("30100") == (30100, 1)
    with pytest.raises(ValueError):
        parse_range("32767-30000")


def test_node_port_errors() -> None:
    ports = PortAllocator()
    ports.allocate(30000)
    with pytest.raises(errors.AlreadyAllocated, match=r"^provided port is already allocated$"):
        ports.allocate(30000)
    with pytest.raises(errors.NotInRange) as exc:
        ports.allocate(80)
    assert str(exc.value) == (
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    )


def test_dynamic_node_ports_avoid_the_static_band() -> None:
    ports = PortAllocator(rng=random.Random(2))
    assert all(ports.allocate_next() >= 30086 for _ in range(500))


# ---- Service allocation ---------------------------------------------------------------------


def make(name: str = "web", **spec: Any) -> dict[str, Any]:
    base = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    return {"metadata": meta, "spec": {**base, **spec}}


def allocations(cidr: str = "10.96.0.0/16", ports: str = "30000-32767") -> ServiceAllocations:
    return ServiceAllocations(IPAllocator(cidr), PortAllocator(ports))


def create(alloc: ServiceAllocations, svc: dict[str, Any]) -> list[str]:
    service.default(svc)
    service.prepare_create(svc)
    txn, errs = alloc.allocate_create(svc)
    errs += service.validate(svc)
    if errs:
        txn.rollback()
    else:
        txn.commit()
    return [str(e) for e in errs]


def update(alloc: ServiceAllocations, new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    service.default(new)
    service.prepare_update(new, old)
    txn, errs = alloc.allocate_update(new, old)
    errs += service.validate_update(new, old)
    if errs:
        txn.rollback()
    else:
        txn.commit()
    return [str(e) for e in errs]


def test_a_cluster_ip_service_gets_an_ip_and_families() -> None:
    alloc = allocations()
    svc = make()
    assert create(alloc, svc) == []
    spec = svc["spec"]
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert alloc.cluster_ips("IPv4").has(spec["clusterIP"])
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"])


def test_a_requested_ip_that_is_taken_is_refused_as_kubernetes_words_it() -> None:
    alloc = allocations()
    assert create(alloc, make("a", clusterIP="10.96.0.5")) == []
    assert create(alloc, make("b", clusterIP="10.96.0.5")) == [
        'spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP '
        "10.96.0.5: provided IP is already allocated"
    ]
    assert create(alloc, make("c", clusterIP="10.97.0.5")) == [
        'spec.clusterIPs: Invalid value: []string{"10.97.0.5"}: failed to allocate IP 10.97.0.5: '
        "the provided IP (10.97.0.5) is not in the valid range. The range of valid IPs is "
        "10.96.0.0/16"
    ]


def test_headless_and_external_name_services_get_no_ip() -> None:
    alloc = allocations()
    assert create(alloc, make("h", clusterIP="None")) == []
    assert create(alloc, make("e", type="ExternalName", externalName="db.example.com")) == []
    assert alloc.cluster_ips("IPv4").used() == 0


def test_node_port_services_share_one_node_port_per_port_number_on_create() -> None:
    alloc = allocations()
    svc = make(
        type="NodePort",
        ports=[{"name": "dns", "port": 53}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}],
    )
    assert create(alloc, svc) == []
    first, second = svc["spec"]["ports"]
    assert first["nodePort"] == second["nodePort"]
    assert alloc.node_ports.used() == 1


def test_a_requested_node_port_is_shared_by_the_other_protocol() -> None:
    alloc = allocations()
    svc = make(
        type="NodePort",
        ports=[
            {"name": "a", "port": 53},
            {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053},
        ],
    )
    assert create(alloc, svc) == []
    assert [p["nodePort"] for p in svc["spec"]["ports"]] == [30053, 30053]


def test_a_taken_node_port_is_refused_and_nothing_stays_allocated() -> None:
    alloc = allocations()
    assert create(alloc, make("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == []
    before = (alloc.cluster_ips("IPv4").used(), alloc.node_ports.used())
    assert create(alloc, make("b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    ]
    assert create(alloc, make("c", type="NodePort", ports=[{"port": 80, "nodePort": 80}])) == [
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    ]
    assert (alloc.cluster_ips("IPv4").used(), alloc.node_ports.used()) == before


def test_load_balancer_without_node_port_allocation_keeps_only_requested_ports() -> None:
    alloc = allocations()
    svc = make(
        type="LoadBalancer",
        allocateLoadBalancerNodePorts=False,
        ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30081}],
    )
    assert create(alloc, svc) == []
    assert [p.get("nodePort") for p in svc["spec"]["ports"]] == [None, 30081]


def test_local_load_balancer_gets_a_health_check_node_port() -> None:
    alloc = allocations()
    svc = make(type="LoadBalancer", externalTrafficPolicy="Local")
    assert create(alloc, svc) == []
    health = svc["spec"]["healthCheckNodePort"]
    assert alloc.node_ports.has(health) and alloc.node_ports.used() == 2


def test_a_full_range_is_an_internal_error() -> None:
    alloc = allocations(cidr="10.0.0.0/30")
    assert create(alloc, make("a")) == [] and create(alloc, make("b")) == []
    svc = make("c")
    service.default(svc)
    service.prepare_create(svc)
    _, [err] = alloc.allocate_create(svc)
    assert is_internal(err)
    assert internal_detail(err) == "failed to allocate a serviceIP: range is full"


def test_family_errors_on_a_single_stack_cluster() -> None:
    alloc = allocations()
    assert create(alloc, make("a", ipFamilyPolicy="RequireDualStack")) == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured '
        "for dual-stack services"
    ]
    assert create(alloc, make("b", clusterIP="fd00::1")) == [
        'spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: IPv6 is not configured on this '
        "cluster"
    ]
    assert create(alloc, make("c", ipFamilies=["IPv6"])) == [
        'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'
    ]
    svc = make("d", ipFamilyPolicy="PreferDualStack")
    assert create(alloc, svc) == [] and svc["spec"]["ipFamilies"] == ["IPv4"]


def test_dual_stack_cluster_upgrade_and_downgrade() -> None:
    alloc = ServiceAllocations(
        [IPAllocator("10.96.0.0/16"), IPAllocator("fd00:96::/108")], PortAllocator()
    )
    dual = make("d", ipFamilyPolicy="RequireDualStack")
    assert create(alloc, dual) == []
    assert dual["spec"]["ipFamilies"] == ["IPv4", "IPv6"] and len(dual["spec"]["clusterIPs"]) == 2
    single = make("s")
    assert create(alloc, single) == []
    up = copy.deepcopy(single)
    up["spec"]["ipFamilyPolicy"] = "PreferDualStack"
    assert update(alloc, up, single) == []
    assert up["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert alloc.cluster_ips("IPv6").has(up["spec"]["clusterIPs"][1])
    down = copy.deepcopy(up)
    down["spec"]["ipFamilyPolicy"] = "SingleStack"
    assert update(alloc, down, up) == []
    assert len(down["spec"]["clusterIPs"]) == 1
    assert not alloc.cluster_ips("IPv6").has(up["spec"]["clusterIPs"][1])


def test_type_change_to_cluster_ip_releases_node_ports_only_on_commit() -> None:
    alloc = allocations()
    old = make(type="NodePort")
    assert create(alloc, old) == []
    node_port = old["spec"]["ports"][0]["nodePort"]
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    service.default(new)
    service.prepare_update(new, old)
    txn, errs = alloc.allocate_update(new, old)
    assert errs == [] and service.validate_update(new, old) == []
    assert alloc.node_ports.has(node_port)  # still held until the write is stored
    txn.commit()
    assert not alloc.node_ports.has(node_port)


def test_a_failed_update_gives_back_what_it_took_and_keeps_what_it_would_release() -> None:
    alloc = allocations()
    old = make(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert create(alloc, old) == []
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["nodePort"] = 30081
    new["spec"]["externalTrafficPolicy"] = "Local"
    new["spec"]["type"] = "LoadBalancer"
    service.default(new)
    service.prepare_update(new, old)
    txn, errs = alloc.allocate_update(new, old)
    assert errs == []
    assert alloc.node_ports.has(30081) and alloc.node_ports.has(30080)
    txn.rollback()
    assert list(alloc.node_ports) == [30080]


@pytest.mark.parametrize(
    ("before", "after", "ips", "ports"),
    [
        ({"type": "ClusterIP"}, {"type": "ExternalName", "externalName": "db"}, 0, 0),
        ({"type": "ExternalName", "externalName": "db"}, {"type": "ClusterIP"}, 1, 0),
        ({"type": "ExternalName", "externalName": "db"}, {"type": "NodePort"}, 1, 1),
        ({"type": "ClusterIP"}, {"type": "NodePort"}, 1, 1),
        ({"type": "NodePort"}, {"type": "ExternalName", "externalName": "db"}, 0, 0),
        ({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}, {"type": "NodePort"}, 1, 1),
        (
            {"type": "LoadBalancer"},
            {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            1,
            2,
        ),
        ({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}, {"type": "ClusterIP"}, 1, 0),
    ],
)
def test_type_changes_allocate_and_release(
    before: dict[str, Any], after: dict[str, Any], ips: int, ports: int
) -> None:
    alloc = allocations()
    old = make(**before)
    assert create(alloc, old) == []
    new = make(**after)  # re-applying a manifest, as kubectl apply does
    assert update(alloc, new, old) == []
    assert (alloc.cluster_ips("IPv4").used(), alloc.node_ports.used()) == (ips, ports)


def test_dry_run_gives_everything_back_on_commit() -> None:
    alloc = allocations()
    svc = make(type="NodePort")
    service.default(svc)
    service.prepare_create(svc)
    txn, errs = alloc.allocate_create(svc, dry_run=True)
    assert errs == [] and svc["spec"]["clusterIP"]
    txn.commit()
    txn.rollback()  # a second close does nothing
    assert (alloc.cluster_ips("IPv4").used(), alloc.node_ports.used()) == (0, 0)


def test_delete_releases_everything() -> None:
    alloc = allocations()
    svc = make(type="LoadBalancer", externalTrafficPolicy="Local")
    assert create(alloc, svc) == []
    alloc.release(svc)
    assert (alloc.cluster_ips("IPv4").used(), alloc.node_ports.used()) == (0, 0)


# ---- repair ------------------------------------------------------------------------------


def stored(name: str, **spec: Any) -> dict[str, Any]:
    svc = make(name, **spec)
    service.default(svc)
    service.prepare_create(svc)
    return svc


def test_collect_node_ports_counts_a_shared_node_port_once() -> None:
    svc = stored(
        "a",
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        healthCheckNodePort=30999,
        ports=[
            {"name": "a", "port": 53, "nodePort": 30053},
            {"name": "b", "port": 53, "protocol": "UDP", "nodePort": 30053},
            {"name": "c", "port": 54, "nodePort": 30053},
        ],
    )
    assert collect_node_ports(svc) == [30053, 30053, 30999]


def test_rebuild_restores_state_and_reports_conflicts() -> None:
    alloc = allocations(cidr="10.96.0.0/24")
    services = [
        stored(
            "a", clusterIP="10.96.0.10", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]
        ),
        stored(
            "b", clusterIP="10.96.0.10", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]
        ),
        stored("c", clusterIP="10.97.0.1", type="NodePort", ports=[{"port": 80, "nodePort": 80}]),
        stored("d", clusterIP="bogus"),
        stored("h", clusterIP="None"),
    ]
    events = alloc.rebuild(services)
    assert [(e.reason, e.name, e.message) for e in events] == [
        ("ClusterIPAlreadyAllocated", "b",
         "Cluster IP [IPv4]:10.96.0.10 was assigned to multiple services; please recreate service"),
        ("PortAlreadyAllocated", "b",
         "Port 30080 was assigned to multiple services; please recreate service"),
        ("ClusterIPOutOfRange", "c",
         "Cluster IP [IPv4]:10.97.0.1 is not within the service CIDR 10.96.0.0/24; please "
         "recreate service"),
        ("PortOutOfRange", "c",
         "Port 80 is not within the port range 30000-32767; please recreate service"),
        ("ClusterIPNotValid", "d", "Cluster IP bogus is not a valid IP; please recreate service"),
    ]  # fmt: skip
    assert all(e.type == "Warning" and e.namespace == "default" for e in events)
    assert list(alloc.cluster_ips("IPv4")) == ["10.96.0.10"]
    assert list(alloc.node_ports) == [30080]


def test_later_rebuilds_report_unallocated_values_and_free_leaks_on_the_third_run() -> None:
    alloc = allocations()
    a = stored("a", clusterIP="10.96.0.10")
    assert alloc.rebuild([a]) == []  # at start the empty bitmaps are expected
    alloc.cluster_ips("IPv4").release("10.96.0.10")
    alloc.cluster_ips("IPv4").allocate("10.96.0.99")  # held by no Service: a leak, or in flight
    [event] = alloc.rebuild([a])
    assert (event.reason, event.message) == (
        "ClusterIPNotAllocated",
        "Cluster IP [IPv4]:10.96.0.10 is not allocated; repairing",
    )
    assert alloc.cluster_ips("IPv4").has("10.96.0.99")
    alloc.rebuild([a])
    assert alloc.cluster_ips("IPv4").has("10.96.0.99")
    alloc.rebuild([a])
    assert not alloc.cluster_ips("IPv4").has("10.96.0.99")
    assert list(alloc.cluster_ips("IPv4")) == ["10.96.0.10"]


def test_a_value_given_back_between_rebuilds_restarts_its_leak_count() -> None:
    alloc = allocations()
    alloc.rebuild([])
    ips = alloc.cluster_ips("IPv4")
    ips.allocate("10.96.0.99")
    alloc.rebuild([])  # first sighting
    ips.release("10.96.0.99")  # the write in flight failed and rolled back
    alloc.rebuild([])
    ips.allocate("10.96.0.99")  # taken again by a new write in flight
    alloc.rebuild([])
    alloc.rebuild([])
    assert ips.has("10.96.0.99")  # seen twice since it came back: not freed yet


def test_a_stray_node_port_on_an_external_name_service_is_not_released() -> None:
    alloc = allocations()
    holder = make("a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    assert create(alloc, holder) == []
    stray = make(
        "b", type="ExternalName", externalName="db", ports=[{"port": 80, "nodePort": 30080}]
    )
    assert create(alloc, stray) == []  # Kubernetes' validation lets it through, unallocated
    alloc.release(stray)
    assert alloc.node_ports.has(30080)
    assert alloc.rebuild([holder, stray]) == []


# ---- state machine: random writes never double-allocate or leak ----------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
TYPES = st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Headless"])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(TYPES)
    spec: dict[str, Any] = {"type": "ClusterIP" if kind == "Headless" else kind}
    if kind == "Headless":
        spec["clusterIP"] = "None"
    elif kind == "ExternalName":
        spec["externalName"] = "db.example.com"
    elif draw(st.booleans()):
        spec["clusterIP"] = f"10.96.0.{draw(st.integers(1, 32))}"  # .31 is broadcast, .32 outside
    ports = []
    port_keys = st.tuples(st.sampled_from([80, 81]), st.sampled_from(["TCP", "UDP"]))
    for i, (number, protocol) in enumerate(
        draw(st.lists(port_keys, min_size=1, max_size=3, unique=True))
    ):
        port: dict[str, Any] = {"name": f"p{i}", "port": number, "protocol": protocol}
        if kind != "ClusterIP" and draw(st.booleans()):
            port["nodePort"] = draw(st.integers(30000, 30034))  # 30032+ is outside the range
        ports.append(port)
    spec["ports"] = ports
    if kind == "LoadBalancer":
        if draw(st.booleans()):
            spec["externalTrafficPolicy"] = "Local"
            if draw(st.booleans()):
                spec["healthCheckNodePort"] = draw(st.integers(30000, 30034))
        if draw(st.booleans()):
            spec["allocateLoadBalancerNodePorts"] = False
    return spec


class ServiceWrites(RuleBasedStateMachine):
    """Create, update (re-apply or edit the type), delete and failed writes, as the
    apiserver drives them, against a model of what the store holds."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = ServiceAllocations(
            IPAllocator("10.96.0.0/27", rng=random.Random(0)),
            PortAllocator("30000-30031", rng=random.Random(0)),
        )
        self.stored: dict[str, dict[str, Any]] = {}

    def snapshot(self) -> tuple[list[str], list[int]]:
        return list(self.alloc.cluster_ips("IPv4")), list(self.alloc.node_ports)

    def finish(self, txn: Any, errs: list[Any], store_ok: bool, before: Any) -> bool:
        if errs or not store_ok:
            txn.rollback()
            assert self.snapshot() == before, "a refused write changed the allocations"
            return False
        txn.commit()
        return True

    @rule(name=NAMES, spec=specs(), store_ok=st.booleans(), dry_run=st.booleans())
    def create(self, name: str, spec: dict[str, Any], store_ok: bool, dry_run: bool) -> None:
        if name in self.stored:
            return
        before = self.snapshot()
        svc = make(name, **copy.deepcopy(spec))
        service.default(svc)
        service.prepare_create(svc)
        txn, errs = self.alloc.allocate_create(svc, dry_run=dry_run)
        errs = errs or service.validate(svc)
        if self.finish(txn, errs, store_ok, before) and not dry_run:
            self.stored[name] = svc
        if dry_run:
            assert self.snapshot() == before

    @precondition(lambda self: bool(self.stored))
    @rule(data=st.data(), spec=specs(), edit=st.booleans(), store_ok=st.booleans())
    def update(self, data: st.DataObject, spec: dict[str, Any], edit: bool, store_ok: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.stored)))
        old = self.stored[name]
        if edit:  # kubectl edit: the stored object with another type
            new = copy.deepcopy(old)
            new["spec"]["type"] = spec["type"]
            new["spec"].setdefault("externalName", "db.example.com")
        else:  # kubectl apply of a manifest: no allocated values
            new = make(name, **copy.deepcopy(spec))
        before = self.snapshot()
        service.default(new)
        service.prepare_update(new, old)
        txn, errs = self.alloc.allocate_update(new, old)
        errs = errs or service.validate_update(new, old)
        if self.finish(txn, errs, store_ok, before):
            self.stored[name] = new

    @precondition(lambda self: bool(self.stored))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.stored)))
        self.alloc.release(self.stored.pop(name))

    @rule()
    def repair_finds_nothing_wrong(self) -> None:
        before = self.snapshot()
        assert self.alloc.rebuild(list(self.stored.values())) == []
        assert self.snapshot() == before

    @invariant()
    def allocations_match_the_stored_services(self) -> None:
        ips: list[str] = []
        ports: list[int] = []
        for svc in self.stored.values():
            if servicerules.type_of(svc) != "ExternalName" and not servicerules.is_headless(svc):
                ips += svc["spec"]["clusterIPs"]
            if servicerules.needs_node_ports(svc):
                ports += sorted(set(servicerules.node_ports_of(svc)))
            if servicerules.needs_health_check(svc):
                ports.append(svc["spec"]["healthCheckNodePort"])
        assert len(ips) == len(set(ips)), "an IP is held by two Services"
        assert len(ports) == len(set(ports)), "a node port is held by two Services"
        assert sorted(ips) == sorted(self.alloc.cluster_ips("IPv4")), "leaked or lost IP"
        assert sorted(ports) == sorted(self.alloc.node_ports), "leaked or lost node port"


ServiceWrites.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_service_writes_never_double_allocate_or_leak = ServiceWrites.TestCase
