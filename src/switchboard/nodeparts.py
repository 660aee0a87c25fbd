"""What runs beside the agent on a node, wired here because components never import each other.

The agent (`agent.main`) runs pods; the Service proxy (`proxy.proxier`), the
node's cluster DNS (`dns`) and the kubelet-style API for logs and exec are
started beside it with the node's facts. The node's DNS listens on the
node's address inside the node's namespace and publishes itself as an
endpoint of `kube-system/kube-dns` (an EndpointSlice per node), so pods that
ask the kube-dns ClusterIP reach a node's DNS through the proxy.

Two parts can also run alone: `switchboard agent --proxy-only` runs the
proxy against any Kubernetes API, as a replacement for kube-proxy, and
`switchboard dns --node-name N --netns NS` runs a node's DNS as a process
of its own (`serve_dns`), as the lab does, so that the node's DNS keeps
answering while its agent restarts; the agent then runs with `--no-dns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from switchboard.agent import kubeletapi, runtime
from switchboard.agent import tasks as agent_tasks
from switchboard.api import kinds
from switchboard.client import errors, rest
from switchboard.dns import main as dns_main
from switchboard.dns import records as dns_records
from switchboard.dns import server as dns_server
from switchboard.proxy import conntrack as ct
from switchboard.proxy import dataplane, nft, proxier, ruleset

log = logging.getLogger(__name__)

DNS_SERVICE = ("kube-system", "kube-dns")
# Seconds a node's DNS keeps answering after it withdrew its endpoint on a clean stop:
# the time every node's proxy needs to stop sending it queries (CoreDNS's lameduck).
DNS_DRAIN = 2.0


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    kubeconfig: Path
    node_name: str
    netns: str | None
    cluster_cidr: str = "10.244.0.0/16"
    nodeport_addresses: tuple[str, ...] | None = None
    service_cidrs: tuple[str, ...] = ()


async def run_proxy(options: ProxyOptions) -> None:
    """The Service proxy for one node, until cancelled."""
    backend = nft.open_backend(options.netns)
    plane = dataplane.DataPlane(
        backend,
        ruleset.ProxyConfig(
            nodeport_addresses=options.nodeport_addresses,
            pod_cidrs=(options.cluster_cidr,) if options.cluster_cidr else (),
            service_cidrs=options.service_cidrs,
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
    """A cluster DNS server; with a `node_name`, that node's endpoint of kube-system/kube-dns."""

    kubeconfig: Path
    listen: tuple[tuple[str, int], ...]
    netns: str | None = None  # where the listening sockets live; None: this process's own
    node_name: str = ""  # publishes listen[0] as this node's kube-dns endpoint; "": nothing
    allowed_cidrs: tuple[str, ...] = dns_server.DEFAULT_ALLOWED
    upstreams: tuple[tuple[str, int], ...] = ()
    service_ip: str = "10.96.0.10"  # kube-dns's ClusterIP; "" leaves the Service alone
    zone: str = dns_records.DEFAULT_ZONE
    rate: float = dns_server.DEFAULT_RATE
    burst: float = dns_server.DEFAULT_BURST


def node_dns_clients(cluster_cidr: str, node_ip: str, extra: Sequence[str]) -> tuple[str, ...]:
    """Who a node's DNS answers: the cluster's pods, the node itself, loopback, and `extra`."""
    return tuple(c for c in (cluster_cidr, f"{node_ip}/32", "127.0.0.0/8", *extra) if c)


def _dns_slice_name(node_name: str) -> str:
    return f"{DNS_SERVICE[1]}-{node_name}"


def _dns_slice(node_name: str, address: tuple[str, int]) -> dict[str, object]:
    namespace, service = DNS_SERVICE
    host, port = address
    return {
        "metadata": {
            "name": _dns_slice_name(node_name),
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "switchboard-dns",
            },
        },
        "addressType": "IPv6" if ":" in host else "IPv4",
        "endpoints": [
            {
                "addresses": [host],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": node_name,
            }
        ],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
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
    body = _dns_slice(options.node_name, options.listen[0])
    namespace = DNS_SERVICE[0]
    try:
        await client.create(kinds.ENDPOINTSLICES, namespace, body)
    except errors.AlreadyExists:
        current = await client.get(kinds.ENDPOINTSLICES, namespace, body["metadata"]["name"])  # type: ignore[index]
        current.update({k: v for k, v in body.items() if k != "metadata"})
        await client.update(kinds.ENDPOINTSLICES, current)


async def _publish_until_done(client: rest.Client, options: DnsOptions) -> None:
    """Create kube-dns if asked and publish this node's endpoint, waiting out an API away."""
    delay = 0.5
    while True:
        try:
            if options.service_ip:
                await _ensure_dns_service(client, options.service_ip)
            await _publish_dns_endpoint(client, options)
            return
        except (errors.TransportError, errors.Conflict) as exc:
            log.warning("dns: cannot publish the endpoint yet (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def run_dns(options: DnsOptions) -> None:
    """A cluster DNS server until cancelled; a node's endpoint is published while it serves.

    The endpoint goes up once the server listens and its zone holds the
    API's Services, so it never answers SERVFAIL for one. On a clean stop it
    is withdrawn first and the server answers for `DNS_DRAIN` seconds more,
    while every node's proxy lets go of it; a killed server leaves it ready.
    """
    ready = asyncio.Event()
    server = asyncio.ensure_future(
        dns_main.run(
            options.kubeconfig,
            options.listen,
            options.zone,
            options.upstreams,
            options.allowed_cidrs,
            rate=options.rate,
            burst=options.burst,
            on_synced=ready.set,
            make_socket=netns_socket_factory(options.netns) if options.netns else None,
        )
    )
    client = rest.Client.from_kubeconfig(options.kubeconfig) if options.node_name else None
    published = False
    waiter = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if client is not None and not server.done():
            await _publish_until_done(client, options)
            published = True
        # Waited on, not awaited: a cancellation here must leave the server answering
        # until its endpoint is withdrawn.
        await asyncio.wait({server})
        server.result()
    finally:
        waiter.cancel()
        if client is not None:
            with contextlib.suppress(errors.ClientError, TimeoutError):
                await asyncio.wait_for(
                    client.delete(
                        kinds.ENDPOINTSLICES, DNS_SERVICE[0], _dns_slice_name(options.node_name)
                    ),
                    5,
                )
            await client.close()
            if published and not server.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(DNS_DRAIN)
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await server


def dns_companion(options: DnsOptions) -> Callable[[str], Awaitable[None]]:
    async def companion(_pod_cidr: str) -> None:
        await run_dns(options)

    return companion


def serve_dns(options: DnsOptions) -> int:
    """Run `run_dns` until SIGTERM or SIGINT (`switchboard dns`); the process's exit code."""
    try:
        agent_tasks.run_until_signalled(lambda: run_dns(options))
    except OSError as exc:
        where = ", ".join(f"{host}:{port}" for host, port in options.listen)
        inside = f" in network namespace {options.netns}" if options.netns else ""
        log.error("dns: cannot serve on %s%s: %s", where, inside, exc)
        return 1
    return 0
