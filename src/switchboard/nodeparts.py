"""What runs beside the agent on a node, wired here because components never import each other.

The agent (`agent.main`) runs pods; the Service proxy (`proxy.proxier`), the
node's cluster DNS (`dns`) and the kubelet-style API for logs and exec are
started beside it with the node's facts. The node's DNS listens on the
node's address inside the node's namespace and publishes itself as an
endpoint of `kube-system/kube-dns` (an EndpointSlice per node), so pods that
ask the kube-dns ClusterIP reach a node's DNS through the proxy.
`switchboard agent --proxy-only` runs the proxy alone against any
Kubernetes API, as a replacement for kube-proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from switchboard.agent import kubeletapi, runtime
from switchboard.api import kinds
from switchboard.client import errors, rest
from switchboard.dns import main as dns_main
from switchboard.proxy import conntrack as ct
from switchboard.proxy import dataplane, nft, proxier, ruleset

log = logging.getLogger(__name__)

DNS_SERVICE = ("kube-system", "kube-dns")


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
            conntrack=ct.Conntrack(options.netns),
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
            family = socket.AF_INET6 if ":" in node_ip else socket.AF_INET
            sock = await asyncio.to_thread(netns_socket_factory(netns), family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((node_ip, port))
            sock.listen(128)
            sock.setblocking(False)
            runner = await kubeletapi.start_on_socket(pods, sock)
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


def netns_socket_factory(netns: str) -> Callable[[int, int], socket.socket]:
    """Sockets born in `netns`: a short-lived thread enters it, so no other thread moves."""

    def make(family: int, type_: int) -> socket.socket:
        made: list[socket.socket | BaseException] = []

        def work() -> None:
            try:
                pyroute2_netns.setns(netns, flags=0)
                made.append(socket.socket(family, type_))
            except BaseException as exc:  # handed to the caller's thread
                made.append(exc)

        thread = threading.Thread(target=work, name=f"socket-in-{netns}")
        thread.start()
        thread.join()
        outcome = made[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return make


@dataclass(frozen=True, slots=True)
class DnsOptions:
    kubeconfig: Path
    node_name: str
    node_ip: str
    netns: str | None
    cluster_cidr: str = "10.244.0.0/16"
    upstreams: tuple[tuple[str, int], ...] = ()
    allowed_cidrs: tuple[str, ...] = ()  # besides the pods, this node and loopback
    service_ip: str = "10.96.0.10"  # kube-dns's ClusterIP; "" leaves the Service alone
    port: int = 53


def _dns_slice(options: DnsOptions) -> dict[str, object]:
    namespace, service = DNS_SERVICE
    return {
        "metadata": {
            "name": f"{service}-{options.node_name}",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "switchboard-agent",
            },
        },
        "addressType": "IPv6" if ":" in options.node_ip else "IPv4",
        "endpoints": [
            {
                "addresses": [options.node_ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": options.node_name,
            }
        ],
        "ports": [
            {"name": "dns", "port": options.port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": options.port, "protocol": "TCP"},
        ],
    }


async def _ensure_dns_service(client: rest.Client, address: str) -> None:
    """`kube-system/kube-dns` on `address`, so manifests that hard-code it work.

    It has no selector: each node's DNS publishes itself as an EndpointSlice
    of it. Whichever node comes first creates it; an address the cluster's
    service range does not hold is reported and the Service left out.
    """
    namespace, name = DNS_SERVICE
    body = {
        "metadata": {
            "name": name,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": address,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }
    try:
        await client.create(kinds.SERVICES, namespace, body)
    except errors.AlreadyExists:
        pass
    except errors.Invalid as exc:
        log.warning("cannot create %s/%s on %s: %s", namespace, name, address, exc.message)


async def _publish_dns_endpoint(client: rest.Client, options: DnsOptions) -> None:
    body = _dns_slice(options)
    namespace = DNS_SERVICE[0]
    try:
        await client.create(kinds.ENDPOINTSLICES, namespace, body)
    except errors.AlreadyExists:
        current = await client.get(kinds.ENDPOINTSLICES, namespace, body["metadata"]["name"])  # type: ignore[index]
        current.update({k: v for k, v in body.items() if k != "metadata"})
        await client.update(kinds.ENDPOINTSLICES, current)


async def run_dns(options: DnsOptions) -> None:
    """The node's cluster DNS, until cancelled; its endpoint is withdrawn when it stops."""
    client = rest.Client.from_kubeconfig(options.kubeconfig)
    published = asyncio.Event()

    def listening(_: list[tuple[str, int]]) -> None:
        published.set()

    allowed = tuple(
        c
        for c in (
            options.cluster_cidr,
            f"{options.node_ip}/32",
            "127.0.0.0/8",
            *options.allowed_cidrs,
        )
        if c
    )
    server = asyncio.ensure_future(
        dns_main.run(
            options.kubeconfig,
            [(options.node_ip, options.port)],
            upstreams=options.upstreams,
            allowed_cidrs=allowed,
            on_listening=listening,
            make_socket=netns_socket_factory(options.netns) if options.netns else None,
        )
    )
    try:
        waiter = asyncio.ensure_future(published.wait())
        await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if server.done():
            server.result()
        if options.service_ip:
            await _ensure_dns_service(client, options.service_ip)
        await _publish_dns_endpoint(client, options)
        await server
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await server
        with contextlib.suppress(errors.ClientError, TimeoutError):
            name = f"{DNS_SERVICE[1]}-{options.node_name}"
            await asyncio.wait_for(client.delete(kinds.ENDPOINTSLICES, DNS_SERVICE[0], name), 5)
        await client.close()


def dns_companion(options: DnsOptions) -> Callable[[str], Awaitable[None]]:
    async def companion(_pod_cidr: str) -> None:
        await run_dns(options)

    return companion
