"""The lab's network: node namespaces on a private bridge, and one veth from the host.

::

    host namespace      <prefix>-host  172.31.255.1/24   the lab's only link here,
          │                                             its connected route the only route
    ┌─────┼──────────── <prefix>-underlay ─────────────────────────────┐
    │   host ── br0 ── n1 ── n2 …          (no address, no route)      │
    └────────────────────┼─────┼───────────────────────────────────────┘
          <prefix>-node-1│     │<prefix>-node-2
          eth0 172.31.255.11/24  eth0 172.31.255.12/24
          10.244.1.0/24 via .12  10.244.0.0/24 via .11   (routes to the other nodes' pods)

Network safety (docs/lab.md, DESIGN.md) shapes every choice here:

- The host namespace gets exactly one link, `<prefix>-host`, and through
  its address exactly one route: the lab subnet, connected. IPv6 is off on
  that link (no link-local address, no fe80::/64 route), forwarding is off
  on it (a packet arriving from the lab is never routed on by the host, even
  where `net.ipv4.ip_forward` is on) and it answers ARP only for its own
  address. No other host interface, address or route is touched.
- No lab namespace has a default route: the underlay has no address at
  all, a node knows its subnet and the other nodes' podCIDRs, nothing else.
  A packet for anywhere outside the lab has no route and is dropped where
  it was made.
- The lab subnet is chosen so that it overlaps no route and no address of
  the host (`choose_subnet`), nor any /16 in which the host has an address
  (a cloud VPC is larger than the host's own connected route). Choosing and
  creating happen under an exclusive lock on the netns directory, so two
  labs started at once cannot take the same subnet.

Every name carries the lab's prefix, derived from its data directory
(`prefix_for`), so `destroy(prefix)` finds all of it again after a crash
without any record: the host link `<prefix>-host` and every namespace whose
name starts with `<prefix>-` — node namespaces, the underlay, and the pod
namespaces the agents name after their node's namespace.

Routes between nodes carry their own routing protocol number
(`ROUTE_PROTOCOL`), so `set_pod_routes` replaces exactly those and leaves
any route an agent made alone.

All functions block on netlink; call them from a worker thread in async
code (pyroute2's `IPRoute` must not be created on a thread whose event loop
is running).

Errors::

    LabNetworkError       a netlink or namespace operation failed
     └── NoFreeSubnet     every candidate subnet collides with the host's networks
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

NETNS_DIR = Path("/var/run/netns")
HOST_SUFFIX = "-host"
UNDERLAY_SUFFIX = "-underlay"
NODE_INTERFACE = "eth0"  # a node's link to the underlay, inside its namespace
BRIDGE = "br0"  # the underlay's bridge, inside the underlay namespace
UNDERLAY_HOST_PORT = "host"  # the underlay end of the host's veth
HOST_OCTET = 1  # the host's address in the lab subnet: .1
FIRST_NODE_OCTET = 10  # node-i is .10+i
MAX_NODES = 200
# Unassigned in iproute2's rt_protos, and not the agent's (83): tags routes this module owns.
ROUTE_PROTOCOL = 84
SERVICE_CIDR = "10.96.0.0/16"  # the lab apiserver's service-cluster-ip-range
# Lab subnets, tried in order: little-used corners of the private ranges.
CANDIDATE_POOLS = (
    ("172.31.{}.0/24", range(255, 239, -1)),
    ("172.30.{}.0/24", range(255, 239, -1)),
    ("192.168.{}.0/24", range(255, 239, -1)),
    ("10.255.{}.0/24", range(255, 239, -1)),
)
_IFNAMSIZ = 15
_PREFIX_MAX = _IFNAMSIZ - len(HOST_SUFFIX)


class LabNetworkError(Exception):
    """Making or removing the lab's network failed; the message says what and why."""


class NoFreeSubnet(LabNetworkError):
    """Every candidate lab subnet collides with a route or an address of the host."""


def prefix_for(data_dir: Path) -> str:
    """The lab's name prefix: "sbl" and a short hash of its absolute data directory."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    return f"sbl{digest[:6]}"


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # the Kubernetes Node name
    netns: str  # its network namespace
    ip: str  # its InternalIP, on the underlay


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything of one lab is: names and addresses, decided before anything exists."""

    prefix: str
    subnet: ipaddress.IPv4Network
    nodes: tuple[Node, ...]

    @property
    def host_link(self) -> str:
        return self.prefix + HOST_SUFFIX

    @property
    def host_ip(self) -> str:
        return str(self.subnet.network_address + HOST_OCTET)

    @property
    def underlay(self) -> str:
        return self.prefix + UNDERLAY_SUFFIX

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.underlay, *(n.netns for n in self.nodes))

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "subnet": str(self.subnet),
            "host_link": self.host_link,
            "host_ip": self.host_ip,
            "underlay": self.underlay,
            "nodes": [{"name": n.name, "netns": n.netns, "ip": n.ip} for n in self.nodes],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Layout:
        nodes = tuple(Node(str(n["name"]), str(n["netns"]), str(n["ip"])) for n in doc["nodes"])
        return cls(str(doc["prefix"]), ipaddress.IPv4Network(doc["subnet"]), nodes)


def plan(prefix: str, node_count: int, subnet: ipaddress.IPv4Network) -> Layout:
    """The layout of a lab of `node_count` nodes named node-1… on `subnet` (a /24 or larger)."""
    if not (prefix.isascii() and prefix.isalnum() and 1 <= len(prefix) <= _PREFIX_MAX):
        raise ValueError(f"lab prefix {prefix!r} must be 1 to {_PREFIX_MAX} letters or digits")
    if not 1 <= node_count <= MAX_NODES:
        raise ValueError(f"a lab has 1 to {MAX_NODES} nodes, not {node_count}")
    if subnet.prefixlen > 24:
        raise ValueError(f"lab subnet {subnet} is too small; use a /24 or larger")
    base = subnet.network_address
    nodes = tuple(
        Node(f"node-{i}", f"{prefix}-node-{i}", str(base + FIRST_NODE_OCTET + i))
        for i in range(1, node_count + 1)
    )
    return Layout(prefix, subnet, nodes)


# ---- choosing the subnet ---------------------------------------------------------------------


def candidate_subnets() -> Iterator[ipaddress.IPv4Network]:
    for pattern, octets in CANDIDATE_POOLS:
        for octet in octets:
            yield ipaddress.IPv4Network(pattern.format(octet))


def choose_subnet(
    routes: Iterable[ipaddress.IPv4Network],
    addresses: Iterable[ipaddress.IPv4Interface],
    avoid: Iterable[ipaddress.IPv4Network] = (),
) -> ipaddress.IPv4Network:
    """The first candidate that overlaps no route, address or `avoid`, nor a host address's /16.

    The default route (0.0.0.0/0) is not counted: it overlaps everything.
    """
    taken = [r for r in routes if r.prefixlen > 0]
    taken += [a.network for a in addresses]
    taken += [a.network.supernet(new_prefix=16) for a in addresses if a.network.prefixlen > 16]
    taken += list(avoid)
    for candidate in candidate_subnets():
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise NoFreeSubnet(
        "every candidate lab subnet (172.31.240-255.0/24, 172.30.240-255.0/24, "
        "192.168.240-255.0/24, 10.255.240-255.0/24) overlaps a route or address of this "
        "machine; remove an old lab with `switchboard down`"
    )


def host_networks() -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Interface]]:
    """Every IPv4 route destination (all tables) and address of the host namespace."""
    routes: list[ipaddress.IPv4Network] = []
    addresses: list[ipaddress.IPv4Interface] = []
    with _netlink("reading the host's routes"), IPRoute() as ipr:
        for route in ipr.route("dump", family=socket.AF_INET):
            dst = route.get("dst") or "0.0.0.0"
            routes.append(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.addr("dump", family=socket.AF_INET):
            addresses.append(ipaddress.IPv4Interface(f"{addr.get('address')}/{addr['prefixlen']}"))
    return routes, addresses


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the machine-wide lock under which labs choose subnets and create their network."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(NETNS_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- creating --------------------------------------------------------------------------------


def create(layout: Layout) -> None:
    """Make the layout's namespaces, links and addresses; nothing with its prefix may exist.

    On failure what was made stays; the caller removes it with `destroy`.
    """
    present = leftovers(layout.prefix)
    if present:
        raise LabNetworkError(
            f"lab {layout.prefix} already has {', '.join(present)}; remove it first "
            "(switchboard down)"
        )
    with _netlink(f"creating namespace {layout.underlay}"):
        netns.create(layout.underlay)
    with _netlink("creating the underlay bridge"), IPRoute(netns=layout.underlay, flags=0) as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        ipr.link("set", index=_index(ipr, BRIDGE), state="up")
        ipr.link("set", index=_index(ipr, "lo"), state="up")
    for i, node in enumerate(layout.nodes, start=1):
        _create_node(layout, node, f"n{i}")
    _create_host_link(layout)


def _create_node(layout: Layout, node: Node, port: str) -> None:
    with _netlink(f"creating namespace {node.netns}"):
        netns.create(node.netns)
    with _netlink(f"wiring {node.netns}"), IPRoute(netns=node.netns, flags=0) as ipr:
        ipr.link(
            "add",
            ifname=NODE_INTERFACE,
            kind="veth",
            peer={"ifname": port, "net_ns_fd": layout.underlay},
        )
        index = _index(ipr, NODE_INTERFACE)
        ipr.addr("add", index=index, address=node.ip, prefixlen=layout.subnet.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        # A node has no default route (nothing may leave the lab), but a process on it must
        # reach ClusterIPs: the route only gets the packet to the nat hook, where the proxy
        # rewrites it; an address no Service holds goes onto the lab's own underlay and dies.
        ipr.route("add", dst=SERVICE_CIDR, oif=index)
    _attach(layout.underlay, port)


def _create_host_link(layout: Layout) -> None:
    link = layout.host_link
    with _netlink(f"creating {link}"), IPRoute() as ipr:
        ipr.link(
            "add",
            ifname=link,
            kind="veth",
            peer={"ifname": UNDERLAY_HOST_PORT, "net_ns_fd": layout.underlay},
        )
        index = _index(ipr, link)
        # Before the link is up, so it never gets an IPv6 address or route.
        _write_sysctl(f"net/ipv6/conf/{link}/disable_ipv6", "1", missing_ok=True)
        _write_sysctl(f"net/ipv4/conf/{link}/forwarding", "0")
        _write_sysctl(f"net/ipv4/conf/{link}/arp_ignore", "1")
        ipr.addr("add", index=index, address=layout.host_ip, prefixlen=layout.subnet.prefixlen)
        ipr.link("set", index=index, state="up")
    _attach(layout.underlay, UNDERLAY_HOST_PORT)


def _attach(underlay: str, port: str) -> None:
    with _netlink(f"attaching {port} to the underlay"), IPRoute(netns=underlay, flags=0) as ipr:
        ipr.link("set", index=_index(ipr, port), master=_index(ipr, BRIDGE), state="up")


def set_pod_routes(layout: Layout, pod_cidrs: Mapping[str, str]) -> None:
    """In each node namespace, route every other node's podCIDR via that node's address.

    `pod_cidrs` maps node name → podCIDR; nodes without one get no route.
    Routes of this module to podCIDRs no longer wanted are removed.
    """
    for node in layout.nodes:
        wanted = {
            str(ipaddress.ip_network(pod_cidrs[other.name])): other.ip
            for other in layout.nodes
            if other is not node and pod_cidrs.get(other.name)
        }
        with _netlink(f"routing pods in {node.netns}"), IPRoute(netns=node.netns, flags=0) as ipr:
            for dst, gateway in wanted.items():
                ipr.route("replace", dst=dst, gateway=gateway, proto=ROUTE_PROTOCOL)
            for dst in set(_our_routes(ipr)) - set(wanted):
                _tolerate(errno.ESRCH, lambda d=dst: ipr.route("del", dst=d, proto=ROUTE_PROTOCOL))


def pod_routes(netns_name: str) -> dict[str, str]:
    """podCIDR → next hop of every route `set_pod_routes` made in a node namespace."""
    with _netlink(f"reading routes of {netns_name}"), IPRoute(netns=netns_name, flags=0) as ipr:
        return _our_routes(ipr)


def _our_routes(ipr: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for route in ipr.route("dump", family=socket.AF_INET, proto=ROUTE_PROTOCOL):
        if route.get("gateway"):
            found[f"{route.get('dst')}/{route['dst_len']}"] = str(route.get("gateway"))
    return found


# ---- finding and removing --------------------------------------------------------------------


def namespaces_of(prefix: str) -> list[str]:
    """Every network namespace whose name carries the lab's prefix."""
    return sorted(n for n in netns.listnetns() if n.startswith(f"{prefix}-"))


def host_link_exists(prefix: str) -> bool:
    with _netlink("looking up the host link"), IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=prefix + HOST_SUFFIX))


def leftovers(prefix: str) -> list[str]:
    """What of lab `prefix` exists now, described for a person ("namespace x", "link y")."""
    found = [f"namespace {n}" for n in namespaces_of(prefix)]
    if host_link_exists(prefix):
        found.insert(0, f"link {prefix}{HOST_SUFFIX}")
    return found


NamespaceId = tuple[int, int]  # (st_dev, st_ino) of a network namespace


def netns_id(pid: int) -> NamespaceId | None:
    """The network namespace process `pid` is in, or None if it is gone."""
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def named_namespaces() -> dict[str, NamespaceId]:
    """Every named network namespace (under /var/run/netns) and which namespace it is."""
    found: dict[str, NamespaceId] = {}
    for name in netns.listnetns():
        with suppress(OSError):
            st = os.stat(NETNS_DIR / name)
            found[name] = (st.st_dev, st.st_ino)
    return found


def pids_inside(prefix: str) -> list[int]:
    """Processes whose network namespace is one of the lab's (pods, and anything run there)."""
    named = named_namespaces()
    inodes = {named[n] for n in namespaces_of(prefix) if n in named}
    found: list[int] = []
    if not inodes:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and netns_id(int(entry)) in inodes:
            found.append(int(entry))
    return sorted(found)


def destroy(prefix: str, also: Iterable[str] = ()) -> list[str]:
    """Remove the host link and every namespace of lab `prefix`; the problems met, if any.

    `also` names more namespaces to remove (pods of the lab named otherwise).
    Deleting the host link deletes its peer; deleting a namespace deletes its
    links and so their peers. Stop the processes inside first (`pids_inside`):
    a namespace with a process in it outlives its name.
    """
    if not (prefix.isascii() and prefix.isalnum()):
        raise ValueError(f"lab prefix {prefix!r} must be letters or digits")
    problems: list[str] = []
    for name in sorted(set(also) - set(namespaces_of(prefix))):
        if name in netns.listnetns():
            try:
                netns.remove(name)
            except OSError as exc:
                problems.append(f"namespace {name}: {exc}")
    link = prefix + HOST_SUFFIX
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=link)
            if index:
                _tolerate(errno.ENODEV, lambda: ipr.link("del", index=index[0]))
    except (NetlinkError, OSError) as exc:
        problems.append(f"link {link}: {exc}")
    for name in namespaces_of(prefix):
        try:
            netns.remove(name)
        except OSError as exc:
            problems.append(f"namespace {name}: {exc}")
    return problems


# ---- helpers ---------------------------------------------------------------------------------


def _index(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise LabNetworkError(f"interface {name} vanished right after it was made")
    return int(found[0])


def _tolerate(code: int, operation: Any) -> None:
    try:
        operation()
    except NetlinkError as exc:
        if exc.code != code:
            raise


def _write_sysctl(key: str, value: str, *, missing_ok: bool = False) -> None:
    """Set a sysctl of the namespace this thread is in (the host's, for the host link)."""
    try:
        (Path("/proc/sys") / key).write_text(value, encoding="ascii")
    except FileNotFoundError:
        if not missing_ok:
            raise LabNetworkError(f"cannot set {key.replace('/', '.')}: no such setting") from None
    except OSError as exc:
        raise LabNetworkError(f"cannot set {key.replace('/', '.')}={value}: {exc}") from exc


@contextmanager
def _netlink(action: str) -> Iterator[None]:
    try:
        yield
    except LabNetworkError:
        raise
    except (NetlinkError, OSError) as exc:
        raise LabNetworkError(f"{action} failed: {exc}") from exc
