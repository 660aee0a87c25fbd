"""`switchboard dns`: the cluster DNS server for one node's pods.

    switchboard dns --kubeconfig FILE --listen 127.0.0.1:1053 [--listen [::1]:1053]
                    [--zone cluster.local] [--upstream 192.0.2.53[:53] ...]
                    [--allow 10.244.1.0/24 ...] [--rate 1000 --burst 2000]

`run` wires the three parts together: a `records.Zone`, the `server.Server`
listening on every address (it starts answering at once, SERVFAIL for the
zone until the informers have synced), and the `watch.ZoneFeeder` that keeps
the zone current. A node's DNS is `run` with the node's DNS address, the pod
CIDR and node addresses as allowed clients, and the node's own resolvers as
upstreams, either inside the agent's process or as a process of its own.
`add_command` gives the server's options to the command line; the command
line adds a node's (its name, its network namespace), which the node wiring
above this package serves: it listens inside the namespace and publishes
the server as the node's endpoint of kube-system/kube-dns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from switchboard.client import rest
from switchboard.dns import records, resolvconf, server, watch

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 1053)


async def run(
    kubeconfig: str | Path,
    listen: Sequence[tuple[str, int]],
    zone: str = records.DEFAULT_ZONE,
    upstreams: Sequence[tuple[str, int]] = (),
    allowed_cidrs: Sequence[str] = server.DEFAULT_ALLOWED,
    *,
    rate: float = server.DEFAULT_RATE,
    burst: float = server.DEFAULT_BURST,
    on_listening: Callable[[list[tuple[str, int]]], None] | None = None,
    on_synced: Callable[[], None] | None = None,
    make_socket: server.SocketFactory | None = None,
) -> None:
    """Serve the cluster zone on `listen` until cancelled.

    `on_listening` is called with the bound addresses once the sockets are
    open, `on_synced` once the zone holds every Service (from then on the
    answers are the API's, not SERVFAIL).
    """
    client = rest.Client.from_kubeconfig(kubeconfig)
    index = records.Zone(zone)
    options = server.Options(
        upstreams=tuple(upstreams),
        allowed_cidrs=tuple(allowed_cidrs),
        rate=rate,
        burst=burst,
    )
    dns_server = (
        server.Server(index, options)
        if make_socket is None
        else server.Server(index, options, make_socket=make_socket)
    )
    try:
        bound = await dns_server.start(listen)
        log.info(
            "dns: serving %s on %s (upstreams: %s)",
            index.origin,
            ", ".join(f"{h}:{p}" for h, p in bound),
            ", ".join(f"{h}:{p}" for h, p in upstreams) or "none, other names REFUSED",
        )
        if on_listening is not None:
            on_listening(bound)
        await watch.ZoneFeeder(client, index, on_synced).run()
    finally:
        await dns_server.close()
        await client.close()


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6] or [V6]:PORT → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""  # a bare IPv6 address, or a host without port
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} names no address")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not a number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not in 0-65535")
    return host, number


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `dns` to the `switchboard` command line; its parser, for the node's options."""
    p = subparsers.add_parser("dns", help="run the cluster DNS server for a node's pods")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to watch")
    p.add_argument(
        "--listen",
        action="append",
        type=lambda t: parse_address(t, 53),
        help="HOST:PORT to answer on, UDP and TCP; repeat for more (default 127.0.0.1:1053)",
    )
    p.add_argument("--zone", default=records.DEFAULT_ZONE, help="the cluster domain")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        type=_upstream,
        help="resolver IP[:PORT] for names outside the zone; repeat for more",
    )
    p.add_argument(
        "--upstreams-from",
        metavar="RESOLV_CONF",
        help="also forward to the nameservers of this resolv.conf (e.g. the node's)",
    )
    p.add_argument(
        "--allow",
        action="append",
        metavar="CIDR",
        type=_cidr,
        help="clients that get answers (pod CIDR, node addresses); repeat for more "
        "(default: loopback only)",
    )
    p.add_argument(
        "--rate", type=float, default=server.DEFAULT_RATE, help="UDP answers/s per client"
    )
    p.add_argument("--burst", type=float, default=server.DEFAULT_BURST)
    p.set_defaults(func=command)
    return p


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR like 10.244.0.0/16") from None
    return text


def _upstream(text: str) -> tuple[str, int]:
    host, port = parse_address(text, 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"upstream {host!r} is not an IP address; give resolvers by address"
        ) from None
    return host, port


def listen_addresses(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The (address, port) pairs the command line asks to answer on."""
    listen: list[tuple[str, int]] = args.listen or [DEFAULT_LISTEN]
    return listen


def upstream_addresses(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The resolvers the command line names: --upstream, then --upstreams-from's, not our own."""
    upstreams: list[tuple[str, int]] = list(args.upstream)
    if args.upstreams_from:
        own = {host for host, _ in listen_addresses(args)}
        for address in resolvconf.nameservers(Path(args.upstreams_from).read_text()):
            if address not in own:
                upstreams.append((address, 53))
    return upstreams


def command(args: argparse.Namespace) -> int:
    """`switchboard dns` as this package alone serves it: until SIGINT, no endpoint published."""
    listen = listen_addresses(args)
    upstreams = upstream_addresses(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run(
                args.kubeconfig,
                listen,
                args.zone,
                upstreams,
                args.allow or server.DEFAULT_ALLOWED,
                rate=args.rate,
                burst=args.burst,
            )
        )
    return 0
