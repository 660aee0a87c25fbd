"""The EndpointSlice and Endpoints controllers against the real apiserver process.

Each test runs both controllers in its own event loop, on informers scoped
to a fresh namespace, and plays the node agent itself: it creates pods bound
to a Node and sets their IP and Ready condition with a status patch. It then
asserts what the API returns — the EndpointSlices and Endpoints any client
would read.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import errors, informer, rest
from switchboard.controllers.endpoints import EndpointsController
from switchboard.controllers.endpointslice import EndpointSliceController
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
ZONE = "topology.kubernetes.io/zone"


@dataclass
class Cluster:
    client: rest.Client
    namespace: str
    node: str

    async def service(
        self,
        name: str,
        selector: dict[str, str] | None,
        *,
        ports: list[Obj] | None = None,
        labels: dict[str, str] | None = None,
        **spec: Any,
    ) -> Obj:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}], **spec},
        }
        if selector is not None:
            body["spec"]["selector"] = selector
        return await self.client.create(kinds.SERVICES, self.namespace, body)

    async def pod(
        self,
        name: str,
        ip: str | None,
        *,
        labels: dict[str, str] | None = None,
        ready: bool = True,
        container_ports: list[Obj] | None = None,
        **spec: Any,
    ) -> Obj:
        """A pod bound to the test's Node, with the status a node agent would report."""
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"} if labels is None else labels},
            "spec": {
                "nodeName": self.node,
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.k8s.io/pause:3.9",
                        "ports": container_ports or [],
                    }
                ],
                **spec,
            },
        }
        await self.client.create(kinds.PODS, self.namespace, body)
        return await self.set_status(name, ip, ready=ready)

    async def set_status(self, name: str, ip: str | None, *, ready: bool) -> Obj:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status: Obj = {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}
            ],
        }
        if ip is not None:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        return await self.client.patch(
            kinds.PODS, self.namespace, name, {"status": status}, subresource="status"
        )

    async def pods(self, count: int, prefix: str = "p") -> None:
        """`count` ready pods labelled app=web, created a few at a time."""
        limit = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with limit:
                await self.pod(
                    f"{prefix}{i:04d}", f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
                )

        await asyncio.gather(*(one(i) for i in range(count)))

    async def slices(self, service: str) -> list[Obj]:
        listed = await self.client.list(
            kinds.ENDPOINTSLICES, self.namespace, label_selector=f"{SERVICE_NAME}={service}"
        )
        return sorted(listed["items"], key=lambda s: s["metadata"]["name"])

    async def endpoints(self, service: str) -> Obj | None:
        try:
            return await self.client.get(kinds.ENDPOINTS, self.namespace, service)
        except errors.NotFound:
            return None

    async def endpoint_conditions(self, service: str) -> dict[str, Obj]:
        """Pod name → conditions, across all slices of `service`."""
        return {
            ep["targetRef"]["name"]: ep["conditions"]
            for s in await self.slices(service)
            for ep in s.get("endpoints") or []
        }


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition did not become true in time")
        await asyncio.sleep(0.05)


async def settled(cluster: Cluster, service: str, want: Callable[[list[Obj]], bool]) -> list[Obj]:
    """Wait until the slices of `service` satisfy `want`; return them."""
    found: list[Obj] = []

    async def check() -> bool:
        nonlocal found
        found = await cluster.slices(service)
        return want(found)

    try:
        await eventually(check)
    except AssertionError:
        raise AssertionError(f"slices of {service} never satisfied the check: {found}") from None
    return found


def names(slices: list[Obj]) -> list[str]:
    return sorted(ep["targetRef"]["name"] for s in slices for ep in s.get("endpoints") or [])


@pytest.fixture
async def cluster(server: Server) -> AsyncIterator[Cluster]:
    async with rest.Client.from_kubeconfig(server.kubeconfig) as client:
        namespace = f"ep-{uuid.uuid4().hex[:10]}"
        node = f"node-{namespace}"
        await client.create(kinds.NAMESPACES, None, {"metadata": {"name": namespace}})
        await client.create(
            kinds.NODES, None, {"metadata": {"name": node, "labels": {ZONE: "zone-a"}}}
        )
        pods = informer.Informer(client, kinds.PODS, namespace)
        services = informer.Informer(client, kinds.SERVICES, namespace)
        slices = informer.Informer(client, kinds.ENDPOINTSLICES, namespace)
        endpoints = informer.Informer(client, kinds.ENDPOINTS, namespace)
        nodes = informer.Informer(client, kinds.NODES)
        slice_controller = EndpointSliceController(client, pods, services, nodes, slices)
        endpoints_controller = EndpointsController(client, pods, services, endpoints)
        tasks = [
            asyncio.create_task(i.run()) for i in (pods, services, slices, endpoints, nodes)
        ] + [
            asyncio.create_task(slice_controller.run(workers=4)),
            asyncio.create_task(endpoints_controller.run(workers=4)),
        ]
        try:
            yield Cluster(client, namespace, node)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(errors.ClientError):
                await client.delete(kinds.NAMESPACES, None, namespace)
            with contextlib.suppress(errors.ClientError):
                await client.delete(kinds.NODES, None, node)


# ---- one Service, a few pods -----------------------------------------------------------------


async def test_ready_and_unready_pods_become_endpoints_with_their_conditions(
    cluster: Cluster,
) -> None:
    svc = await cluster.service("web", {"app": "web"}, labels={"team": "blue"})
    await cluster.pod("ready", "10.1.0.1")
    await cluster.pod("unready", "10.1.0.2", ready=False)
    await cluster.pod("no-ip", None)
    await cluster.pod("finished", "10.1.0.3")
    await cluster.client.patch(
        kinds.PODS,
        cluster.namespace,
        "finished",
        {"status": {"phase": "Succeeded"}},
        subresource="status",
    )

    (s,) = await settled(cluster, "web", lambda found: names(found) == ["ready", "unready"])
    meta = s["metadata"]
    assert meta["name"].startswith("web-") and meta["generateName"] == "web-"
    assert meta["labels"] == {
        "team": "blue",
        SERVICE_NAME: "web",
        MANAGED_BY: "endpointslice-controller.k8s.io",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    by_pod = {ep["targetRef"]["name"]: ep for ep in s["endpoints"]}
    ready = by_pod["ready"]
    assert ready["addresses"] == ["10.1.0.1"]
    assert ready["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert ready["nodeName"] == cluster.node
    assert ready["zone"] == "zone-a"
    assert ready["targetRef"]["kind"] == "Pod"
    assert ready["targetRef"]["namespace"] == cluster.namespace
    assert ready["targetRef"]["uid"]
    assert by_pod["unready"]["conditions"] == {
        "ready": False,
        "serving": False,
        "terminating": False,
    }

    async def legacy() -> bool:
        ep = await cluster.endpoints("web")
        if ep is None or len(ep.get("subsets") or []) != 1:
            return False
        subset = ep["subsets"][0]
        return [a["ip"] for a in subset.get("addresses") or []] == ["10.1.0.1"] and [
            a["ip"] for a in subset.get("notReadyAddresses") or []
        ] == ["10.1.0.2"]

    await eventually(legacy)
    ep = await cluster.endpoints("web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"team": "blue"}
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


async def test_a_pod_turning_ready_becomes_a_ready_endpoint(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pod("a", "10.1.0.1", ready=False)
    await settled(cluster, "web", lambda found: names(found) == ["a"])
    await cluster.set_status("a", "10.1.0.1", ready=True)
    await eventually(lambda: _conditions_are(cluster, "web", "a", ready=True, serving=True))


async def _conditions_are(cluster: Cluster, service: str, pod: str, **want: bool) -> bool:
    got = (await cluster.endpoint_conditions(service)).get(pod)
    return got is not None and all(got.get(k) == v for k, v in want.items())


async def test_a_headless_service_publishes_hostnames_of_pods_in_its_subdomain(
    cluster: Cluster,
) -> None:
    await cluster.service("db", {"app": "db"}, clusterIP="None")
    await cluster.pod("db-0", "10.1.0.1", labels={"app": "db"}, hostname="db-0", subdomain="db")
    (s,) = await settled(cluster, "db", lambda found: names(found) == ["db-0"])
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert s["endpoints"][0]["hostname"] == "db-0"


async def test_a_service_without_pods_gets_an_empty_placeholder_slice(cluster: Cluster) -> None:
    await cluster.service("empty", {"app": "nothing"})
    (s,) = await settled(cluster, "empty", lambda found: len(found) == 1)
    assert not s.get("endpoints") and not s.get("ports")
    await eventually(lambda: _endpoints_exist(cluster, "empty"))
    ep = await cluster.endpoints("empty")
    assert ep is not None and not ep.get("subsets")


async def _endpoints_exist(cluster: Cluster, service: str) -> bool:
    return await cluster.endpoints(service) is not None


# ---- ports -----------------------------------------------------------------------------------


async def test_named_target_ports_resolve_per_pod_into_separate_slices(cluster: Cluster) -> None:
    await cluster.service(
        "web", {"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "web"}]
    )
    await cluster.pod(
        "on-8080", "10.1.0.1", container_ports=[{"name": "web", "containerPort": 8080}]
    )
    await cluster.pod(
        "on-9090", "10.1.0.2", container_ports=[{"name": "web", "containerPort": 9090}]
    )
    await cluster.pod(
        "also-8080", "10.1.0.3", container_ports=[{"name": "web", "containerPort": 8080}]
    )
    await cluster.pod("without", "10.1.0.4")

    slices = await settled(cluster, "web", lambda found: len(names(found)) == 4)
    by_ports = {tuple(p["port"] for p in s.get("ports") or []): names([s]) for s in slices}
    assert by_ports == {
        (8080,): ["also-8080", "on-8080"],
        (9090,): ["on-9090"],
        (): ["without"],
    }

    async def legacy() -> bool:
        ep = await cluster.endpoints("web")
        subsets = (ep or {}).get("subsets") or []
        got = {
            s["ports"][0]["port"]: sorted(a["ip"] for a in s.get("addresses") or [])
            for s in subsets
        }
        return got == {8080: ["10.1.0.1", "10.1.0.3"], 9090: ["10.1.0.2"]}

    await eventually(legacy)


# ---- many pods, minimal churn ----------------------------------------------------------------


async def test_more_than_100_pods_are_spread_over_slices_of_at_most_100(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pods(230)
    slices = await settled(cluster, "web", lambda found: len(names(found)) == 230)
    # Pods arrive over many syncs, so the split depends on timing (as in Kubernetes);
    # only the limit and the count are fixed.
    assert all(len(s["endpoints"]) <= 100 for s in slices)
    assert len(slices) >= 3
    assert len(set(names(slices))) == 230

    async def legacy() -> bool:
        ep = await cluster.endpoints("web")
        subsets = (ep or {}).get("subsets") or []
        return sum(len(s.get("addresses") or []) for s in subsets) == 230

    await eventually(legacy)


async def test_one_pod_changing_rewrites_only_the_slice_that_holds_it(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pods(150)
    before = await settled(cluster, "web", lambda found: len(names(found)) == 150)
    await asyncio.sleep(0.5)  # let any straggling sync finish before taking the baseline
    before = await cluster.slices("web")
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in before}
    holder = next(s["metadata"]["name"] for s in before if "p0042" in names([s]))

    await cluster.set_status("p0042", "10.1.0.43", ready=False)
    await eventually(lambda: _conditions_are(cluster, "web", "p0042", ready=False))
    await asyncio.sleep(0.5)

    after = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await cluster.slices("web")
    }
    changed = sorted(name for name, rv in after.items() if versions.get(name) != rv)
    assert changed == [holder]
    assert after.keys() == versions.keys()


# ---- readiness policies and termination ------------------------------------------------------


async def test_publish_not_ready_addresses_makes_unready_pods_ready_endpoints(
    cluster: Cluster,
) -> None:
    await cluster.service("web", {"app": "web"}, publishNotReadyAddresses=True)
    await cluster.pod("unready", "10.1.0.1", ready=False)
    await eventually(lambda: _conditions_are(cluster, "web", "unready", ready=True, serving=False))

    async def legacy() -> bool:
        ep = await cluster.endpoints("web")
        subsets = (ep or {}).get("subsets") or []
        return [a["ip"] for s in subsets for a in s.get("addresses") or []] == ["10.1.0.1"]

    await eventually(legacy)


async def test_a_terminating_pod_stays_in_its_slice_marked_terminating(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pod("leaving", "10.1.0.1")
    await cluster.pod("staying", "10.1.0.2")
    await settled(cluster, "web", lambda found: names(found) == ["leaving", "staying"])
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.1", "10.1.0.2"]))

    await cluster.client.delete(kinds.PODS, cluster.namespace, "leaving", grace_period_seconds=300)
    still_there = await cluster.client.get(kinds.PODS, cluster.namespace, "leaving")
    assert still_there["metadata"]["deletionTimestamp"]

    await eventually(
        lambda: _conditions_are(
            cluster, "web", "leaving", ready=False, serving=True, terminating=True
        )
    )
    # The legacy Endpoints drop a terminating pod altogether.
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.2"]))
    ep = await cluster.endpoints("web")
    assert ep is not None
    assert not any(s.get("notReadyAddresses") for s in ep["subsets"])


async def _legacy_ips(cluster: Cluster, service: str, want: list[str]) -> bool:
    ep = await cluster.endpoints(service)
    subsets = (ep or {}).get("subsets") or []
    return sorted(a["ip"] for s in subsets for a in s.get("addresses") or []) == want


# ---- selectors and labels --------------------------------------------------------------------


async def test_changing_a_service_selector_moves_its_endpoints_to_the_newly_selected_pods(
    cluster: Cluster,
) -> None:
    await cluster.service("web", {"color": "blue"})
    await cluster.pod("blue", "10.1.0.1", labels={"color": "blue"})
    await cluster.pod("green", "10.1.0.2", labels={"color": "green"})
    await settled(cluster, "web", lambda found: names(found) == ["blue"])

    await cluster.client.patch(
        kinds.SERVICES, cluster.namespace, "web", {"spec": {"selector": {"color": "green"}}}
    )
    await settled(cluster, "web", lambda found: names(found) == ["green"])
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.2"]))


async def test_a_pod_whose_labels_change_leaves_and_rejoins_the_service(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pod("a", "10.1.0.1")
    await cluster.pod("b", "10.1.0.2")
    await settled(cluster, "web", lambda found: names(found) == ["a", "b"])

    await cluster.client.patch(
        kinds.PODS, cluster.namespace, "a", {"metadata": {"labels": {"app": "other"}}}
    )
    await settled(cluster, "web", lambda found: names(found) == ["b"])
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.2"]))

    await cluster.client.patch(
        kinds.PODS, cluster.namespace, "a", {"metadata": {"labels": {"app": "web"}}}
    )
    await settled(cluster, "web", lambda found: names(found) == ["a", "b"])
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.1", "10.1.0.2"]))


async def test_a_selectorless_service_keeps_the_slices_and_endpoints_its_user_wrote(
    cluster: Cluster,
) -> None:
    await cluster.service("external", None)
    user_slice = await cluster.client.create(
        kinds.ENDPOINTSLICES,
        cluster.namespace,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "external-manual",
                "labels": {SERVICE_NAME: "external", MANAGED_BY: "someone-else"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": 9999}],
            "endpoints": [{"addresses": ["192.0.2.10"]}],
        },
    )
    user_endpoints = await cluster.client.create(
        kinds.ENDPOINTS,
        cluster.namespace,
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "external"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 9999}]}],
        },
    )
    await cluster.pod("a", "10.1.0.1")
    # A Service with a selector, created afterwards, shows when the controllers have caught up.
    await cluster.service("web", {"app": "web"})
    await settled(cluster, "web", lambda found: names(found) == ["a"])
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.1"]))
    await asyncio.sleep(0.5)

    slices = await cluster.slices("external")
    assert [s["metadata"]["name"] for s in slices] == ["external-manual"]
    assert slices[0]["metadata"]["resourceVersion"] == user_slice["metadata"]["resourceVersion"]
    ep = await cluster.endpoints("external")
    assert ep is not None
    assert ep["metadata"]["resourceVersion"] == user_endpoints["metadata"]["resourceVersion"]


async def test_deleting_a_service_deletes_its_endpoints(cluster: Cluster) -> None:
    await cluster.service("web", {"app": "web"})
    await cluster.pod("a", "10.1.0.1")
    await eventually(lambda: _legacy_ips(cluster, "web", ["10.1.0.1"]))
    await cluster.client.delete(kinds.SERVICES, cluster.namespace, "web")

    async def gone() -> bool:
        return await cluster.endpoints("web") is None

    await eventually(gone)
