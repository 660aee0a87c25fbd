"""Node IPAM against the real apiserver process: every Node gets a podCIDR of its own.

Each test runs the controller in its own event loop over a Node informer
and creates Nodes the way an agent registers them (no podCIDR). Nodes are
cluster-scoped and the server is shared by the module, so each test cuts
its own cluster CIDR and deletes its nodes when it ends; nodes of other
tests hold podCIDRs outside it, which the controller leaves alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest
from switchboard.controllers.nodeipam import NodeIpamController
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{check.__doc__ or check} did not hold within {within}s")
        await asyncio.sleep(0.05)


@dataclass
class Nodes:
    client: rest.Client
    created: list[str] = field(default_factory=list)
    _controller: tuple[asyncio.Task[None], asyncio.Task[None]] | None = None

    async def create(self, name: str, pod_cidr: str | None = None) -> None:
        spec: Obj = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
        await self.client.create(kinds.NODES, None, {"metadata": {"name": name}, "spec": spec})
        self.created.append(name)

    async def delete(self, name: str) -> None:
        await self.client.delete(kinds.NODES, None, name)

    async def pod_cidrs(self, *names: str) -> dict[str, Obj]:
        found = {}
        for name in names:
            spec = (await self.client.get(kinds.NODES, None, name)).get("spec") or {}
            found[name] = {"podCIDR": spec.get("podCIDR"), "podCIDRs": spec.get("podCIDRs")}
        return found

    async def wait_for_cidrs(self, *names: str) -> dict[str, str]:
        """Each node's podCIDR, once every one of them has one."""

        async def assigned() -> bool:
            """every node got a podCIDR"""
            return all(c["podCIDR"] for c in (await self.pod_cidrs(*names)).values())

        await eventually(assigned)
        return {name: str(c["podCIDR"]) for name, c in (await self.pod_cidrs(*names)).items()}

    async def start(self, cluster_cidr: str, mask: int = 24) -> None:
        await self.stop()
        nodes = informer.Informer(self.client, kinds.NODES)
        controller = NodeIpamController(
            self.client, nodes, cluster_cidr=cluster_cidr, node_cidr_mask_size=mask
        )
        self._controller = (
            asyncio.create_task(nodes.run()),
            asyncio.create_task(controller.run(workers=2)),
        )

    async def stop(self) -> None:
        if self._controller is not None:
            for task in self._controller:
                task.cancel()
            await asyncio.gather(*self._controller, return_exceptions=True)
            self._controller = None


@pytest.fixture
async def nodes(server: Server) -> AsyncIterator[Nodes]:
    async with rest.Client.from_kubeconfig(server.kubeconfig) as client:
        cluster = Nodes(client)
        try:
            yield cluster
        finally:
            await cluster.stop()
            for name in cluster.created:
                with contextlib.suppress(errors.NotFound):
                    await client.delete(kinds.NODES, None, name)


async def test_every_new_node_gets_its_own_slash_24_written_to_both_fields(
    nodes: Nodes,
) -> None:
    await nodes.start("10.244.0.0/16")
    for i in range(3):
        await nodes.create(f"ipam-a-{i}")
    cidrs = await nodes.wait_for_cidrs("ipam-a-0", "ipam-a-1", "ipam-a-2")
    assert sorted(cidrs.values()) == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    for name, spec in (await nodes.pod_cidrs(*cidrs)).items():
        assert spec["podCIDRs"] == [cidrs[name]]


async def test_a_restarted_controller_keeps_what_nodes_hold_and_hands_out_the_rest(
    nodes: Nodes,
) -> None:
    await nodes.start("10.250.0.0/22")  # four subnets
    await nodes.create("ipam-b-0")
    first = await nodes.wait_for_cidrs("ipam-b-0")
    await nodes.stop()
    await nodes.create("ipam-b-1", pod_cidr="10.250.1.0/24")  # written by hand meanwhile

    await nodes.start("10.250.0.0/22")
    await nodes.create("ipam-b-2")
    await nodes.create("ipam-b-3")
    cidrs = await nodes.wait_for_cidrs("ipam-b-0", "ipam-b-1", "ipam-b-2", "ipam-b-3")
    assert cidrs["ipam-b-0"] == first["ipam-b-0"] == "10.250.0.0/24"
    assert cidrs["ipam-b-1"] == "10.250.1.0/24"
    assert sorted(cidrs.values()) == [f"10.250.{i}.0/24" for i in range(4)]


async def test_a_deleted_nodes_subnet_goes_to_a_node_that_was_waiting(nodes: Nodes) -> None:
    await nodes.start("10.251.0.0/23")  # room for two nodes
    await nodes.create("ipam-c-0")
    await nodes.create("ipam-c-1")
    held = await nodes.wait_for_cidrs("ipam-c-0", "ipam-c-1")
    await nodes.create("ipam-c-2")
    await asyncio.sleep(0.5)
    assert (await nodes.pod_cidrs("ipam-c-2"))["ipam-c-2"]["podCIDR"] is None

    await nodes.delete("ipam-c-0")
    got = await nodes.wait_for_cidrs("ipam-c-2")
    assert got["ipam-c-2"] == held["ipam-c-0"]


async def test_a_pod_cidr_outside_the_cluster_cidr_is_left_as_it_is(nodes: Nodes) -> None:
    await nodes.create("ipam-d-0", pod_cidr="192.168.77.0/24")
    await nodes.start("10.252.0.0/16")
    await nodes.create("ipam-d-1")
    cidrs = await nodes.wait_for_cidrs("ipam-d-0", "ipam-d-1")
    assert cidrs == {"ipam-d-0": "192.168.77.0/24", "ipam-d-1": "10.252.0.0/24"}
