"""The proxy's sync loop against a real apiserver: Services and slices in, traced packets out.

The kernel is replaced at its one seam (`nft.Backend`) by a recorder; what
the loop programmed is checked by tracing packets through the data plane's
state, so these tests pin what changes in the data plane when the API
changes. The same rules with real packets are in tests/lab.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import rest
from switchboard.proxy import dataplane, proxier, ruleset, trace
from tests.e2e.apiserver_process import ApiServer, running_apiserver

NODE = "node-a"
NODE_IP = "172.31.255.11"
CLIENT = "10.244.9.9"


class RecordingBackend:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def apply(self, script: str) -> None:
        self.scripts.append(script)

    def close(self) -> None:
        return None


class FailingOnce(RecordingBackend):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def apply(self, script: str) -> None:
        # The first sync (full, at start) goes through; the next one fails once.
        if not self.failed and len(self.scripts) == 1:
            self.failed = True
            raise RuntimeError("the kernel said no")
        super().apply(script)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_apiserver(tmp_path_factory.mktemp("proxier")) as server:
        yield server


@contextlib.asynccontextmanager
async def running(
    server: ApiServer, backend: RecordingBackend | None = None
) -> AsyncIterator[tuple[rest.Client, proxier.Proxier]]:
    client = rest.Client.from_kubeconfig(server.kubeconfig)
    plane = dataplane.DataPlane(
        backend or RecordingBackend(), ruleset.ProxyConfig(pod_cidrs=("10.244.0.0/16",))
    )
    proxy = proxier.Proxier(client, plane, node_name=NODE, min_sync_period=0.005)
    task = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.synced.wait(), 10)
        yield client, proxy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition did not become true in time")
        await asyncio.sleep(0.02)


def reachable(proxy: proxier.Proxier, dst: str, port: int, protocol: str = "TCP") -> set[str]:
    """Endpoint addresses a new connection to dst:port may reach; empty when rejected."""
    state = proxy.plane.state
    if state is None:
        return set()
    result = trace.Tracer(state, node_addresses=[NODE_IP]).trace(
        CLIENT,
        dst,
        port,
        protocol,  # type: ignore[arg-type]
    )
    if result.verdict != "dnat":
        return set()
    return {c[0] for c in result.candidates}


def service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}], **spec},
    }
    return body


def endpoint_slice(name: str, service_name: str, *ips: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}, "nodeName": NODE} for ip in ips
        ],
    }


async def make_namespace(client: rest.Client, name: str) -> None:
    await client.create(kinds.NAMESPACES, None, {"metadata": {"name": name}})


async def test_a_service_reaches_the_endpoints_of_its_slices_and_follows_their_changes(
    apiserver: ApiServer,
) -> None:
    async with running(apiserver) as (client, proxy):
        await make_namespace(client, "follow")
        svc = await client.create(kinds.SERVICES, "follow", service("web", "follow"))
        ip = svc["spec"]["clusterIP"]
        await eventually(
            lambda: proxy.plane.state is not None and reachable(proxy, ip, 80) == set()
        )
        await client.create(
            kinds.ENDPOINTSLICES,
            "follow",
            endpoint_slice("web-1", "web", "10.244.1.5", "10.244.1.6"),
        )
        await eventually(lambda: reachable(proxy, ip, 80) == {"10.244.1.5", "10.244.1.6"})

        await client.patch(
            kinds.ENDPOINTSLICES,
            "follow",
            "web-1",
            {"endpoints": [{"addresses": ["10.244.1.6"], "conditions": {"ready": True}}]},
        )
        await eventually(lambda: reachable(proxy, ip, 80) == {"10.244.1.6"})

        await client.delete(kinds.ENDPOINTSLICES, "follow", "web-1")
        # No endpoints: new connections are rejected, not sent anywhere.
        await eventually(lambda: reachable(proxy, ip, 80) == set())
        state = proxy.plane.state
        assert state is not None
        verdict = trace.Tracer(state, node_addresses=[NODE_IP]).trace(CLIENT, ip, 80).verdict
        assert verdict == "reject"

        await client.delete(kinds.SERVICES, "follow", "web")
        await eventually(
            lambda: (
                trace.Tracer(proxy.plane.state, node_addresses=[NODE_IP])  # type: ignore[arg-type]
                .trace(CLIENT, ip, 80)
                .verdict
                == "accept"
            )
        )


async def test_a_node_port_opens_on_the_node_address(apiserver: ApiServer) -> None:
    async with running(apiserver) as (client, proxy):
        await make_namespace(client, "nodeport")
        svc = await client.create(
            kinds.SERVICES, "nodeport", service("np", "nodeport", type="NodePort")
        )
        node_port = svc["spec"]["ports"][0]["nodePort"]
        await client.create(
            kinds.ENDPOINTSLICES, "nodeport", endpoint_slice("np-1", "np", "10.244.1.7")
        )
        await eventually(lambda: reachable(proxy, NODE_IP, node_port) == {"10.244.1.7"})


async def test_headless_external_name_and_foreign_proxy_services_get_no_rules(
    apiserver: ApiServer,
) -> None:
    async with running(apiserver) as (client, proxy):
        await make_namespace(client, "ignored")
        await client.create(kinds.SERVICES, "ignored", service("hl", "ignored", clusterIP="None"))
        other = service("other", "ignored")
        other["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "someone-else"}
        svc = await client.create(kinds.SERVICES, "ignored", other)
        await client.create(
            kinds.SERVICES,
            "ignored",
            {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "a.b"}},
        )
        for name in ("hl", "other"):
            await client.create(
                kinds.ENDPOINTSLICES, "ignored", endpoint_slice(f"{name}-1", name, "10.244.1.8")
            )
        await asyncio.sleep(0.3)
        assert reachable(proxy, svc["spec"]["clusterIP"], 80) == set()
        assert not any(n.namespace == "ignored" for n in proxy._applied)


async def test_not_ready_endpoints_are_used_only_when_they_are_serving_and_terminating(
    apiserver: ApiServer,
) -> None:
    async with running(apiserver) as (client, proxy):
        await make_namespace(client, "fallback")
        svc = await client.create(kinds.SERVICES, "fallback", service("fb", "fallback"))
        ip = svc["spec"]["clusterIP"]
        slice_ = endpoint_slice("fb-1", "fb", "10.244.2.1", "10.244.2.2", ready=False)
        slice_["endpoints"][0]["conditions"] = {
            "ready": False,
            "serving": True,
            "terminating": True,
        }
        slice_["endpoints"][1]["conditions"] = {
            "ready": False,
            "serving": False,
            "terminating": False,
        }
        await client.create(kinds.ENDPOINTSLICES, "fallback", slice_)
        await eventually(lambda: reachable(proxy, ip, 80) == {"10.244.2.1"})


async def test_a_failed_sync_is_followed_by_a_full_one_that_catches_up(
    apiserver: ApiServer,
) -> None:
    backend = FailingOnce()
    async with running(apiserver, backend) as (client, proxy):
        await make_namespace(client, "retry")
        svc = await client.create(kinds.SERVICES, "retry", service("r", "retry"))
        await client.create(kinds.ENDPOINTSLICES, "retry", endpoint_slice("r-1", "r", "10.244.3.1"))
        await eventually(lambda: reachable(proxy, svc["spec"]["clusterIP"], 80) == {"10.244.3.1"})
        assert backend.failed
        samples = proxy.metrics.registry.get_sample_value("kubeproxy_sync_proxy_rules_errors_total")
        assert samples == 1.0
