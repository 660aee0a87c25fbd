"""The controller-manager killed with SIGKILL in the middle of a scale-up, then restarted.

The apiserver and the controller-manager run as processes, as they would in a
cluster; the test plays the node's agent only as far as renewing its Lease,
so node lifecycle keeps the one Node Ready. The controller-manager is killed
by its own pid once some, but not all, of the new pods exist: requests it had
in flight may or may not have landed, and its successor starts with empty
caches. It must finish the scale-up without making a pod twice or leaving one
out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import errors, rest
from tests.e2e.apiserver_process import ApiServer, running_apiserver

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]

NAMESPACE = "restart"
NODE = "node-a"
NODE_LEASES = "kube-node-lease"
REPLICAS = 60


def _now(fraction: bool = False) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path / "apiserver") as srv:
        yield srv


@contextlib.contextmanager
def controller_manager(srv: ApiServer, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`switchboard controller-manager` as a process; ended by its own pid on the way out."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "controller-manager",
                "--kubeconfig",
                str(srv.kubeconfig),
                "--no-leader-elect",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def ready_node(client: rest.Client) -> AsyncIterator[None]:
    """One Ready Node whose Lease this test keeps renewing, as its agent would."""
    await client.create(kinds.NODES, None, {"metadata": {"name": NODE}})
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": _now(),
        "lastTransitionTime": _now(),
    }
    await client.patch(
        kinds.NODES,
        None,
        NODE,
        {"status": {"conditions": [ready], "allocatable": {"pods": "110"}}},
        subresource="status",
    )
    await client.create(
        kinds.LEASES,
        NODE_LEASES,
        {
            "metadata": {"name": NODE},
            "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": _now(True)},
        },
    )

    async def renew() -> None:
        while True:
            await asyncio.sleep(1)
            with contextlib.suppress(errors.ClientError):
                await client.patch(
                    kinds.LEASES, NODE_LEASES, NODE, {"spec": {"renewTime": _now(True)}}
                )

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)


def deployment(replicas: int) -> Obj:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            },
        },
    }


async def eventually(check: Any, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} within {within:.0f} s")
        await asyncio.sleep(0.1)


async def active_pods(client: rest.Client) -> list[Obj]:
    items, _ = await client.list_all(kinds.PODS, NAMESPACE)
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def current_replicaset(client: rest.Client) -> Obj:
    items, _ = await client.list_all(kinds.REPLICASETS, NAMESPACE)
    live = [r for r in items if not r["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, f"wanted one ReplicaSet, have {[r['metadata']['name'] for r in live]}"
    return live[0]


def owners(pods: list[Obj]) -> Counter[str]:
    return Counter(
        ref["uid"]
        for p in pods
        for ref in p["metadata"].get("ownerReferences") or []
        if ref.get("controller")
    )


async def test_a_controller_manager_killed_mid_scale_up_converges_with_no_duplicate_or_missing_pods(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    log = tmp_path / "controller-manager.log"
    async with rest.Client.from_kubeconfig(apiserver.kubeconfig) as client, ready_node(client):
        await client.create(kinds.NAMESPACES, None, {"metadata": {"name": NAMESPACE}})
        with controller_manager(apiserver, log) as first:
            await client.create(kinds.DEPLOYMENTS, NAMESPACE, deployment(1))

            async def one_pod() -> bool:
                return len(await active_pods(client)) == 1

            await eventually(one_pod, 30, "the Deployment of 1 made no pod")
            await client.patch(
                kinds.DEPLOYMENTS, NAMESPACE, "web", {"spec": {"replicas": REPLICAS}}
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not 1 < len(await active_pods(client)) < REPLICAS:
                assert loop.time() < deadline, "the scale-up made no new pod within 30 s"
                await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        at_kill = len(await active_pods(client))
        assert at_kill < REPLICAS, f"the scale-up finished ({at_kill} pods) before the kill"

        with controller_manager(apiserver, log):

            async def settled() -> bool:
                rs = await current_replicaset(client)
                pods = await active_pods(client)
                return (
                    len(pods) == REPLICAS
                    and owners(pods) == Counter({rs["metadata"]["uid"]: REPLICAS})
                    and (rs.get("status") or {}).get("replicas") == REPLICAS
                )

            await eventually(settled, 60, f"the cluster did not settle at {REPLICAS} pods")

            # Settled means it stays settled: no late duplicate, no late deletion.
            for _ in range(10):
                await asyncio.sleep(0.25)
                rs = await current_replicaset(client)
                everything, _ = await client.list_all(kinds.PODS, NAMESPACE)
                names = [p["metadata"]["name"] for p in everything]
                assert len(set(names)) == len(names)
                assert len(everything) == REPLICAS, f"{len(everything)} pods, killed at {at_kill}"
                assert owners(everything) == Counter({rs["metadata"]["uid"]: REPLICAS})
                assert rs["status"]["replicas"] == REPLICAS
