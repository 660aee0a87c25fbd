"""Starting a node agent: Node, pod network, runtime, Agent, and the kubelet API hook.

`run()` brings the parts up in the order each needs the last:

1. the Node is registered (NotReady) and its heartbeats start, so the
   controller-manager sees the node and can give it a podCIDR;
2. the podCIDR: the one given, else the one the controller-manager writes
   into `spec.podCIDR` (the agent waits for it);
3. the node's pod network (`podnet.PodNetwork`: bridge, forwarding) in the
   node's network namespace (`netns`; None is the agent's own);
4. the container runtime over `<data_dir>/pods`, and with it the kubelet
   API server if one is given (`kubelet_api`, a coroutine function taking
   the `runtime.Runtime`: it serves logs through `Runtime.log_path` and exec
   through `Runtime.exec_argv`);
5. the node turns Ready and the `Agent` runs the pods bound to it.

When `run()` ends (cancelled, or one part failed) the node is marked
NotReady; the pods keep running, for the next agent on this data dir to
adopt. `serve()` is the synchronous entry the command line calls: it runs
`run()` until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from switchboard.agent import agent as agent_module
from switchboard.agent import launch, node, podnet, runtime
from switchboard.agent import tasks as agent_tasks
from switchboard.client import errors, rest
from switchboard.client.events import EventRecorder

log = logging.getLogger(__name__)

KubeletApi = Callable[[runtime.Runtime], Awaitable[None]]
Companion = Callable[[str], Awaitable[None]]  # called with the node's pod CIDR
DEFAULT_BRIDGE = "sbr0"
DEFAULT_POD_NETNS_PREFIX = "sbpod-"
DEFAULT_API_PORT = 10250
_INHERITED = ("PYTHONPATH",)  # what built-in images need from the agent's environment
_SHUTDOWN_TIMEOUT = 5.0


async def run(
    kubeconfig: str | Path,
    node_name: str,
    *,
    node_ip: str,
    data_dir: str | Path,
    netns: str | None = None,
    pod_cidr: str | None = None,
    api_port: int = DEFAULT_API_PORT,
    bridge: str = DEFAULT_BRIDGE,
    veth_prefix: str = podnet.DEFAULT_VETH_PREFIX,
    pod_netns_prefix: str = DEFAULT_POD_NETNS_PREFIX,
    cluster_dns: Sequence[str] = (),
    cluster_domain: str = "cluster.local",
    restart_backoff: float = runtime.BACKOFF_BASE,
    heartbeat_interval: float = node.RENEW_INTERVAL,
    kubelet_api: KubeletApi | None = None,
    companions: Sequence[Companion] = (),
) -> None:
    """Run the agent of node `node_name` until cancelled."""
    data = Path(data_dir)
    client = rest.Client.from_kubeconfig(kubeconfig)
    events = EventRecorder(client, "kubelet", host=node_name)
    reporter = node.NodeReporter(
        client,
        node_name,
        node_ip=node_ip,
        api_port=api_port,
        data_dir=data,
        pod_cidr=pod_cidr,
        renew_interval=heartbeat_interval,
    )
    tasks: list[asyncio.Task[None]] = []
    registered = False
    try:
        await _register(reporter)
        registered = True
        tasks.append(asyncio.create_task(reporter.run(), name="node heartbeat"))
        cidr = pod_cidr or await reporter.wait_pod_cidr()
        network = podnet.PodNetwork(netns, bridge, cidr, data / "network", veth_prefix=veth_prefix)
        await asyncio.to_thread(network.setup_node)
        pods = runtime.Runtime(data, backoff_base=restart_backoff)
        facts = launch.NodeFacts(
            name=node_name,
            ip=node_ip,
            cpu=int(reporter.capacity["cpu"]),
            memory_bytes=int(reporter.capacity["memory"].removesuffix("Ki")) * 1024,
        )
        the_agent = agent_module.Agent(
            client,
            facts,
            network=network,
            runtime=pods,
            node_netns=netns,
            pod_netns_prefix=pod_netns_prefix,
            events=events,
            cluster_dns=cluster_dns,
            cluster_domain=cluster_domain,
            inherit_env={k: os.environ[k] for k in _INHERITED if k in os.environ},
        )
        tasks.append(asyncio.create_task(the_agent.run(), name="agent"))
        if kubelet_api is not None:
            tasks.append(asyncio.create_task(_as_task(kubelet_api(pods)), name="kubelet api"))
        # What runs beside the agent on this node (the Service proxy, cluster DNS) starts
        # once the node has its pod CIDR; the agent itself does not know what they are.
        tasks += [
            asyncio.create_task(_as_task(companion(cidr)), name=f"companion {i}")
            for i, companion in enumerate(companions)
        ]
        reporter.set_ready(True)
        log.info("node %s is ready: podCIDR %s, pods under %s", node_name, cidr, data / "pods")
        await agent_tasks.until_first_failure(tasks)
    finally:
        await agent_tasks.cancel_all(tasks)
        if registered:
            with contextlib.suppress(errors.ClientError, TimeoutError):
                await asyncio.wait_for(reporter.shutdown(), _SHUTDOWN_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(events.close(), _SHUTDOWN_TIMEOUT)
        await client.close()


async def _register(reporter: node.NodeReporter) -> None:
    """Register the Node, waiting for an API server that is not answering yet."""
    delay = 0.5
    while True:
        try:
            await reporter.register()
            return
        except errors.TransportError as exc:
            log.warning("cannot reach the API server (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _as_task(awaitable: Awaitable[None]) -> None:
    await awaitable


def serve(kubeconfig: str | Path, node_name: str, **options: Any) -> int:
    """Run the agent until SIGTERM or SIGINT; the process's exit code.

    `options` are `run()`'s keyword arguments (node_ip and data_dir at least).
    """
    agent_tasks.run_until_signalled(lambda: run(kubeconfig, node_name, **options))
    return 0
