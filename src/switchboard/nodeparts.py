"""What runs beside the agent on a node, wired here because components never import each other.

The agent (`agent.main`) runs pods; the Service proxy (`proxy.proxier`) and
the kubelet-style API for logs and exec are started beside it with the
node's facts. `switchboard agent --proxy-only` runs the proxy alone against
any Kubernetes API, as a replacement for kube-proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from switchboard.agent import kubeletapi, runtime
from switchboard.client import rest
from switchboard.proxy import dataplane, nft, proxier, ruleset


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    kubeconfig: Path
    node_name: str
    netns: str | None
    cluster_cidr: str = "10.244.0.0/16"
    nodeport_addresses: tuple[str, ...] | None = None


async def run_proxy(options: ProxyOptions) -> None:
    """The Service proxy for one node, until cancelled."""
    backend = nft.open_backend(options.netns)
    plane = dataplane.DataPlane(
        backend,
        ruleset.ProxyConfig(
            nodeport_addresses=options.nodeport_addresses,
            pod_cidrs=(options.cluster_cidr,) if options.cluster_cidr else (),
        ),
    )
    client = rest.Client.from_kubeconfig(options.kubeconfig)
    try:
        await proxier.Proxier(
            client,
            plane,
            node_name=options.node_name,
            conntrack=proxier.Conntrack(options.netns),
        ).run()
    finally:
        await client.close()
        backend.close()


def proxy_companion(options: ProxyOptions) -> Callable[[str], Awaitable[None]]:
    async def companion(_pod_cidr: str) -> None:
        await run_proxy(options)

    return companion


def kubelet_api(
    node_ip: str, port: int, netns: str | None
) -> Callable[[runtime.Runtime], Awaitable[None]]:
    """Serve logs and exec for the agent's pods on the node's address until cancelled."""

    async def serve(pods: runtime.Runtime) -> None:
        if netns:
            runner = await kubeletapi.start_in_netns(pods, netns, node_ip, port)
        else:
            runner = await kubeletapi.start(pods, node_ip, port)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    return serve


def serve_proxy_only(options: ProxyOptions) -> int:
    """Run only the proxy until SIGTERM or SIGINT (the kube-proxy replacement mode)."""

    async def main() -> None:
        task = asyncio.ensure_future(run_proxy(options))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0
