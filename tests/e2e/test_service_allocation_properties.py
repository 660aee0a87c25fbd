"""ClusterIPs and NodePorts are never leaked or handed out twice: checked against a model.

A hypothesis state machine drives a real `switchboard apiserver` process,
with ranges small enough to run out (a /26: 61 addresses besides
default/kubernetes; node ports 30000-30040), through random sequences of
creates (some asking for a specific address or port), type changes in every
direction and deletes, and now and then a kill -9 of the process and a
restart on the same data directory. A model of what each Service should
hold predicts every answer: which request is refused as already allocated,
which one finds its range full (500), and which address or port a success
may have. After every step the Services the server lists must match the
model, no two sharing an address or a node port; after each run everything
is deleted and every address and port must be allocatable again.

Three more tests: many concurrent creates get distinct addresses and stop at
exactly the size of the range; a kill -9 in the middle of concurrent creates
loses no acknowledged Service and leaks no address; and a store changed
behind the apiserver's back (two Services on one address and one port, one
out of range) is repaired at start, with a Warning Event on each Service at
fault and the orphaned address free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from switchboard.api import kinds
from switchboard.store.sqlite import SQLiteStore
from tests.e2e.apiserver_process import ApiServer, Reply, running_apiserver

pytestmark = pytest.mark.e2e

JSON = "application/json"
MERGE = "application/merge-patch+json"
CIDR = "10.98.0.0/26"
KUBERNETES_IP = "10.98.0.1"
USABLE_IPS = [str(ip) for ip in ipaddress.ip_network(CIDR).hosts()][1:]  # 10.98.0.2-.62
NODE_PORTS = list(range(30000, 30041))
SERVER_ARGS = ("--service-cluster-ip-range", CIDR, "--service-node-port-range", "30000-30040")
TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
PORTS = [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]
IP_FULL = "Internal error occurred: failed to allocate a serviceIP: range is full"
PORT_FULL = "Internal error occurred: failed to allocate a nodePort: range is full"


# ---- a server that can be killed and restarted ----------------------------------------------


class Cluster:
    """One apiserver on one data directory, restartable; always ended by its own pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stack = contextlib.ExitStack()
        self.srv = self._start()

    def _start(self) -> ApiServer:
        # The previous run's kubeconfig names its port; wait for the new one instead.
        (self.data_dir / "kubeconfig").unlink(missing_ok=True)
        return self._stack.enter_context(running_apiserver(self.data_dir, *SERVER_ARGS))

    def crash(self) -> None:
        """kill -9, as a power cut would end it."""
        self.srv.process.kill()
        self.srv.process.wait()

    def restart(self) -> None:
        self.srv = self._start()

    def crash_and_restart(self) -> None:
        self.crash()
        self.restart()

    def close(self) -> None:
        self._stack.close()

    def request(self, method: str, path: str, body: Any = None, content_type: str = JSON) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        return self.srv.request(method, path, data, {"Content-Type": content_type})

    def new_namespace(self) -> str:
        name = "alloc-" + uuid.uuid4().hex[:10]
        reply = self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        assert reply.status == 201, reply.body
        return name

    def services(self, namespace: str) -> list[dict[str, Any]]:
        reply = self.request("GET", f"/api/v1/namespaces/{namespace}/services")
        assert reply.status == 200, reply.body
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    def delete_all(self, namespace: str) -> None:
        reply = self.request("DELETE", f"/api/v1/namespaces/{namespace}/services")
        assert reply.status == 200, reply.body
        assert self.services(namespace) == []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("apiserver"))
    try:
        yield c
    finally:
        c.close()


def service(name: str, kind: str, ports: int, ip: str | None, node_port: int | None) -> Any:
    spec: dict[str, Any] = {"type": kind, "ports": [dict(p) for p in PORTS[:ports]]}
    if kind == "ExternalName":
        spec["externalName"] = "db.example.com"
    if ip is not None:
        spec["clusterIP"] = ip
    if node_port is not None:
        spec["ports"][0]["nodePort"] = node_port
    return {"metadata": {"name": name}, "spec": spec}


def held_by(svc: dict[str, Any]) -> tuple[str | None, tuple[int, ...]]:
    """The address and the node ports (in port order) a listed Service holds."""
    spec = svc["spec"]
    ips = spec.get("clusterIPs") or []
    assert ips == ([spec["clusterIP"]] if "clusterIP" in spec else []), spec
    node_ports = tuple(p["nodePort"] for p in spec["ports"] if "nodePort" in p)
    return (ips[0] if ips else None), node_ports


def assert_status(reply: Reply, code: int, message: str) -> None:
    assert reply.status == code, reply.body
    assert reply.json()["message"] == message


def assert_no_sharing(listed: list[dict[str, Any]]) -> None:
    """No address and no node port is held by two Services."""
    ips: list[str] = []
    node_ports: list[int] = []
    for svc in listed:
        ip, ports = held_by(svc)
        if ip is not None:
            ips.append(ip)
        node_ports += sorted(set(ports))  # TCP and UDP of one port number share one
    assert len(ips) == len(set(ips)), sorted(ips)
    assert len(node_ports) == len(set(node_ports)), sorted(node_ports)
    assert set(ips) <= set(USABLE_IPS)
    assert set(node_ports) <= set(NODE_PORTS)


def assert_everything_allocatable(cluster: Cluster, namespace: str) -> None:
    """Every address and node port can be asked for by number, then all is deleted again."""
    path = f"/api/v1/namespaces/{namespace}/services"
    for i, ip in enumerate(USABLE_IPS):
        node_port = NODE_PORTS[i] if i < len(NODE_PORTS) else None
        kind = "NodePort" if node_port else "ClusterIP"
        reply = cluster.request("POST", path, service(f"all-{i}", kind, 1, ip, node_port))
        assert reply.status == 201, (ip, node_port, reply.body)
    cluster.delete_all(namespace)


# ---- the model and the machine -----------------------------------------------------------


@dataclass(frozen=True)
class Held:
    kind: str
    ports: int  # how many service ports: 1 (http) or 2 (http, dns/UDP)
    ip: str | None
    node_ports: tuple[int, ...]


class ServiceAllocationMachine(RuleBasedStateMachine):
    names = Bundle("names")
    cluster: ClassVar[Cluster]  # set by the test that runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.namespace = self.cluster.new_namespace()
        self.model: dict[str, Held] = {}
        self.serial = 0
        self.restarted = False

    # What the model says is taken.

    def held_ips(self) -> set[str]:
        return {KUBERNETES_IP} | {h.ip for h in self.model.values() if h.ip is not None}

    def held_node_ports(self) -> set[int]:
        return {port for h in self.model.values() for port in h.node_ports}

    def free_ips(self) -> int:
        return len(USABLE_IPS) + 1 - len(self.held_ips())

    def free_node_ports(self) -> int:
        return len(NODE_PORTS) - len(self.held_node_ports())

    def path(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.namespace}/services" + (f"/{name}" if name else "")

    def check_new_values(self, got: dict[str, Any], kept: Held | None) -> Held:
        """What a successful write left the Service holding, checked against the others."""
        ip, node_ports = held_by(got)
        others = {n: h for n, h in self.model.items() if n != got["metadata"]["name"]}
        other_ips = {KUBERNETES_IP} | {h.ip for h in others.values() if h.ip}
        other_ports = {p for h in others.values() for p in h.node_ports}
        if ip is not None:
            assert ip in USABLE_IPS and ip not in other_ips, (ip, sorted(other_ips))
        assert not set(node_ports) & other_ports, (node_ports, sorted(other_ports))
        assert len(set(node_ports)) == len(node_ports)  # different port numbers, own nodePorts
        if kept is not None and kept.ip is not None and got["spec"]["type"] != "ExternalName":
            assert ip == kept.ip
        return Held(got["spec"]["type"], len(got["spec"]["ports"]), ip, node_ports)

    # Rules.

    @rule(
        target=names,
        kind=st.sampled_from(TYPES),
        ports=st.integers(1, 2),
        ask_ip=st.none() | st.sampled_from(USABLE_IPS),
        ask_node_port=st.none() | st.sampled_from(NODE_PORTS),
    )
    def create(self, kind: str, ports: int, ask_ip: str | None, ask_node_port: int | None) -> str:
        return self._create(kind, ports, ask_ip, ask_node_port)

    # Many at once, so that runs reach full ranges and the refusals and rollbacks there.
    @rule(
        target=names,
        kind=st.sampled_from(TYPES),
        ports=st.integers(1, 2),
        count=st.integers(5, 30),
    )
    def create_many(self, kind: str, ports: int, count: int) -> Any:
        return multiple(*(self._create(kind, ports, None, None) for _ in range(count)))

    def _create(self, kind: str, ports: int, ask_ip: str | None, ask_node_port: int | None) -> str:
        self.serial += 1
        name = f"s{self.serial}"
        if kind == "ExternalName":
            ask_ip = None
        if kind not in NODE_PORT_TYPES:
            ask_node_port = None
        reply = self.cluster.request(
            "POST", self.path(), service(name, kind, ports, ask_ip, ask_node_port)
        )
        dynamic_ports = ports - (ask_node_port is not None)
        if kind != "ExternalName" and ask_ip in self.held_ips():
            detail = f"failed to allocate IP {ask_ip}: provided IP is already allocated"
            invalid = f'spec.clusterIPs: Invalid value: []string{{"{ask_ip}"}}: {detail}'
            assert_status(reply, 422, f'Service "{name}" is invalid: {invalid}')
        elif kind != "ExternalName" and ask_ip is None and self.free_ips() == 0:
            assert_status(reply, 500, IP_FULL)
        elif ask_node_port is not None and ask_node_port in self.held_node_ports():
            invalid = (
                f"spec.ports[0].nodePort: Invalid value: {ask_node_port}: "
                "provided port is already allocated"
            )
            assert_status(reply, 422, f'Service "{name}" is invalid: {invalid}')
        elif kind in NODE_PORT_TYPES and dynamic_ports > self.free_node_ports() - (
            ask_node_port is not None
        ):
            assert_status(reply, 500, PORT_FULL)
        else:
            assert reply.status == 201, reply.body
            held = self.check_new_values(reply.json(), None)
            if ask_ip is not None:
                assert held.ip == ask_ip
            if ask_node_port is not None:
                assert held.node_ports[0] == ask_node_port
            assert (held.ip is None) == (kind == "ExternalName")
            assert len(held.node_ports) == (ports if kind in NODE_PORT_TYPES else 0)
            self.model[name] = held
        return name

    @rule(name=names, kind=st.sampled_from(TYPES))
    def change_type(self, name: str, kind: str) -> None:
        old = self.model.get(name)
        if old is None:
            return  # its create was refused
        spec: dict[str, Any] = {"type": kind}
        if kind == "ExternalName":
            spec["externalName"] = "db.example.com"
        elif old.kind == "ExternalName":
            spec["externalName"] = None
        reply = self.cluster.request("PATCH", self.path(name), {"spec": spec}, MERGE)
        needs_ip = old.kind == "ExternalName" and kind != "ExternalName"
        needs_ports = kind in NODE_PORT_TYPES and old.kind not in NODE_PORT_TYPES
        if needs_ip and self.free_ips() == 0:
            assert_status(reply, 500, IP_FULL)
        elif needs_ports and old.ports > self.free_node_ports():
            assert_status(reply, 500, PORT_FULL)
        else:
            assert reply.status == 200, reply.body
            held = self.check_new_values(reply.json(), old)
            assert held.kind == kind
            assert (held.ip is None) == (kind == "ExternalName")
            if kind in NODE_PORT_TYPES:
                assert len(held.node_ports) == old.ports
                if old.kind in NODE_PORT_TYPES:
                    assert held.node_ports == old.node_ports
            else:
                assert held.node_ports == ()
            self.model[name] = held

    @rule(name=consumes(names))
    def delete(self, name: str) -> None:
        reply = self.cluster.request("DELETE", self.path(name))
        if name in self.model:
            assert reply.status == 200, reply.body
            del self.model[name]
        else:
            assert reply.status == 404, reply.body

    # A restart costs a second or so: one per run, somewhere in its middle.
    @precondition(lambda self: self.serial > 0 and not self.restarted)
    @rule()
    def crash_and_restart(self) -> None:
        self.cluster.crash_and_restart()
        self.restarted = True

    @invariant()
    def listed_services_match_the_model_and_share_nothing(self) -> None:
        listed = self.cluster.services(self.namespace)
        assert_no_sharing(listed)
        got = {svc["metadata"]["name"]: svc for svc in listed}
        assert set(got) == set(self.model)
        for name, held in self.model.items():
            assert held_by(got[name]) == (held.ip, held.node_ports), name
            assert got[name]["spec"]["type"] == held.kind

    def teardown(self) -> None:
        self.cluster.delete_all(self.namespace)
        assert_everything_allocatable(self.cluster, self.namespace)


def test_random_service_writes_and_crashes_never_leak_or_double_allocate(
    cluster: Cluster,
) -> None:
    ServiceAllocationMachine.cluster = cluster
    run_state_machine_as_test(
        ServiceAllocationMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# ---- concurrency and crashes ---------------------------------------------------------------


def _create(cluster: Cluster, namespace: str, body: Any) -> Reply:
    return cluster.request("POST", f"/api/v1/namespaces/{namespace}/services", body)


def test_concurrent_creates_get_distinct_addresses_and_ports_until_the_ranges_are_full(
    cluster: Cluster,
) -> None:
    namespace = cluster.new_namespace()
    try:
        with ThreadPoolExecutor(max_workers=70) as pool:
            replies = list(
                pool.map(
                    lambda i: _create(
                        cluster, namespace, service(f"np{i}", "NodePort", 1, None, None)
                    ),
                    range(70),
                )
            )
        made = [r.json() for r in replies if r.status == 201]
        assert len(made) == len(NODE_PORTS)
        for reply in replies:
            if reply.status != 201:
                assert_status(reply, 500, PORT_FULL)
        assert sorted(held_by(s)[1][0] for s in made) == NODE_PORTS
        assert len({held_by(s)[0] for s in made}) == len(made)

        left = len(USABLE_IPS) - len(made)  # the refused ones gave their address back
        with ThreadPoolExecutor(max_workers=left + 10) as pool:
            replies = list(
                pool.map(
                    lambda i: _create(
                        cluster, namespace, service(f"c{i}", "ClusterIP", 1, None, None)
                    ),
                    range(left + 10),
                )
            )
        made += [r.json() for r in replies if r.status == 201]
        for reply in replies:
            if reply.status != 201:
                assert_status(reply, 500, IP_FULL)
        assert sorted(held_by(s)[0] or "" for s in made) == sorted(USABLE_IPS)
        assert_no_sharing(cluster.services(namespace))
    finally:
        cluster.delete_all(namespace)


def test_a_crash_during_concurrent_creates_keeps_every_acknowledged_address_and_leaks_none(
    cluster: Cluster,
) -> None:
    namespace = cluster.new_namespace()
    acknowledged: dict[str, str] = {}
    enough = threading.Event()

    def create(i: int) -> None:
        try:
            reply = _create(cluster, namespace, service(f"c{i}", "ClusterIP", 1, None, None))
        except (OSError, http.client.HTTPException):
            return  # cut off by the crash: it may or may not have been stored
        if reply.status == 201:
            acknowledged[f"c{i}"] = reply.json()["spec"]["clusterIP"]
            if len(acknowledged) >= 10:
                enough.set()

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(create, i) for i in range(50)]
            assert enough.wait(30), "ten creates were not acknowledged within 30s"
            cluster.crash()
            for future in as_completed(futures):
                future.result()
        cluster.restart()

        stored = {s["metadata"]["name"]: held_by(s)[0] for s in cluster.services(namespace)}
        assert {name: stored.get(name) for name in acknowledged} == acknowledged
        assert_no_sharing(cluster.services(namespace))
        # Every address no stored Service holds is allocatable; none that one holds is.
        free = len(USABLE_IPS) - len(stored)
        fresh = [
            _create(cluster, namespace, service(f"after{i}", "ClusterIP", 1, None, None))
            for i in range(free + 1)
        ]
        assert [r.status for r in fresh] == [201] * free + [500]
        assert_status(fresh[-1], 500, IP_FULL)
        new_ips = {r.json()["spec"]["clusterIP"] for r in fresh[:-1]}
        assert new_ips == set(USABLE_IPS) - set(stored.values())
    finally:
        cluster.delete_all(namespace)


# ---- repair after the store changed behind the apiserver's back --------------------------


def _rewrite(data_dir: Path, namespace: str, name: str, change: Callable[[Any], None]) -> None:
    async def run() -> None:
        store = await SQLiteStore.open(data_dir / "state.db")
        try:
            key = kinds.SERVICES.key(namespace, name)
            kv = await store.get(key)
            assert kv is not None
            obj = json.loads(kv.value)
            change(obj)
            await store.update(key, json.dumps(obj).encode(), kv.mod_revision)
        finally:
            await store.close()

    asyncio.run(run())


def test_a_double_allocation_found_at_start_is_reported_as_events_and_leaks_are_freed(
    tmp_path: Path,
) -> None:
    first = Cluster(tmp_path)
    try:
        namespace = first.new_namespace()
        path = f"/api/v1/namespaces/{namespace}/services"
        for name, ip, node_port in (
            ("a", "10.98.0.10", 30010),
            ("b", "10.98.0.11", 30011),
            ("c", "10.98.0.12", 30012),
        ):
            reply = first.request("POST", path, service(name, "NodePort", 1, ip, node_port))
            assert reply.status == 201, reply.body
        first.crash()

        def claim_what_a_holds(svc: Any) -> None:
            svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"] = "10.98.0.10", ["10.98.0.10"]
            svc["spec"]["ports"][0]["nodePort"] = 30010

        def move_out_of_range(svc: Any) -> None:
            svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"] = "10.99.0.5", ["10.99.0.5"]

        _rewrite(tmp_path, namespace, "b", claim_what_a_holds)
        _rewrite(tmp_path, namespace, "c", move_out_of_range)
        first.crash_and_restart()

        events = first.request("GET", f"/api/v1/namespaces/{namespace}/events").json()["items"]
        found = sorted(
            (
                e["involvedObject"]["name"],
                e["source"]["component"],
                e["type"],
                e["reason"],
                e["message"],
            )
            for e in events
        )
        assert found == [
            (
                "b",
                "ipallocator-repair-controller",
                "Warning",
                "ClusterIPAlreadyAllocated",
                "Cluster IP [IPv4]:10.98.0.10 was assigned to multiple services; "
                "please recreate service",
            ),
            (
                "b",
                "portallocator-repair-controller",
                "Warning",
                "PortAlreadyAllocated",
                "Port 30010 was assigned to multiple services; please recreate service",
            ),
            (
                "c",
                "ipallocator-repair-controller",
                "Warning",
                "ClusterIPOutOfRange",
                "Cluster IP [IPv4]:10.99.0.5 is not within the service CIDR 10.98.0.0/26; "
                "please recreate service",
            ),
        ]
        # What b and c held before the change is held by nobody now and is free again;
        # what a holds, and c's node port, stay held.
        for i, (ip, freed_port) in enumerate([("10.98.0.11", 30011), ("10.98.0.12", None)]):
            kind = "NodePort" if freed_port else "ClusterIP"
            reply = first.request("POST", path, service(f"d{i}", kind, 1, ip, freed_port))
            assert reply.status == 201, reply.body
        for ip, taken_port in (("10.98.0.10", None), ("10.98.0.13", 30010), ("10.98.0.13", 30012)):
            kind = "NodePort" if taken_port else "ClusterIP"
            reply = first.request("POST", path, service("e", kind, 1, ip, taken_port))
            assert reply.status == 422, reply.body
            assert reply.json()["message"].endswith("is already allocated"), reply.body
    finally:
        first.close()
