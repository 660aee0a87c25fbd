"""A node's pod network: bridge, veth pairs, pod addresses and routes to other nodes.

The shape is the classic one of kubenet and CNI's bridge plugin::

     node network namespace                      pod network namespace
    ┌──────────────────────────────────────┐    ┌──────────────────────┐
    │ bridge (gateway 10.244.1.1/24)       │    │ eth0 10.244.1.7/24   │
    │   └─ sbv<hash of pod uid> (hairpin) ─┼────┼─ default via .1      │
    │ 10.244.2.0/24 via <other node>       │    │ lo up                │
    │ net.ipv4.ip_forward = 1              │    └──────────────────────┘
    └──────────────────────────────────────┘

One `PodNetwork` owns one node. The node's network namespace is a
constructor argument (None means the namespace this process runs in, the
hosts mode; a name means a namespace under /var/run/netns, the lab mode),
so the same code serves both and tests run it inside namespaces they made.

Every method converges on the desired state instead of assuming a clean
start, so each is idempotent and a retry repairs what a crash or an error
half-way left behind: `setup_node` accepts an existing bridge, `add_pod`
returns the address a pod already holds and re-creates whatever of its
wiring is missing, `remove_pod` of an unknown pod does nothing.

Addresses come from `ipam.PodAddresses`, persisted per node, and are
allocated before the kernel is touched and released only after the pod's
interfaces and namespace are gone; a new `PodNetwork` over the same state
directory therefore adopts the pods the last one wired (`pods()`).

Host ends of veth pairs are named from a hash of the pod uid, so the agent
finds them again after a restart without storing them. The pod end is
created directly inside the pod's namespace as eth0 (one netlink request),
so it never appears in the node namespace under a temporary name.

Routes to other nodes' podCIDRs carry their own routing protocol number,
which marks them as this module's: `routes()` lists exactly those, and
`teardown_node` removes them without touching anyone else's routes.

All methods block on netlink; call them from a worker thread
(`asyncio.to_thread`) in async code. pyroute2's synchronous `IPRoute`
runs its own event loop and must not be created on a thread whose loop
is running.

Errors::

    PodNetworkError          a netlink or state operation failed
     ├── NamespaceMissing    the node's network namespace does not exist
     └── AddressesExhausted  the node's podCIDR has no free pod address
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from switchboard.agent import ipam

POD_INTERFACE = "eth0"
DEFAULT_VETH_PREFIX = "sbv"
# Unassigned in iproute2's rt_protos; tags the inter-node routes this module owns.
ROUTE_PROTOCOL = 83
_IFNAMSIZ = 15  # longest interface name Linux accepts
_BRPORT_MODE_HAIRPIN = 1  # IFLA_BRPORT_MODE: send frames back out the port they came in on
_T = TypeVar("_T")


class PodNetworkError(Exception):
    """A change to the node's pod network failed; the message says which and why."""


class NamespaceMissing(PodNetworkError):
    """The node's network namespace does not exist."""


class AddressesExhausted(PodNetworkError):
    """The node's podCIDR has no free pod address."""


def veth_name(pod_uid: str, prefix: str = DEFAULT_VETH_PREFIX) -> str:
    """The node-side name of the pod's veth: the prefix, then a hash of the uid (15 chars)."""
    if not 1 <= len(prefix) <= 4:
        raise ValueError(f"veth prefix {prefix!r} must be 1 to 4 characters")
    digest = hashlib.sha256(pod_uid.encode("utf-8")).hexdigest()
    return prefix + digest[: _IFNAMSIZ - len(prefix)]


def _bridge_mac(bridge: str, pod_cidr: ipaddress.IPv4Network) -> str:
    # A bridge without its own MAC takes the lowest of its ports' MACs, so
    # removing one pod could change the gateway's MAC under every other pod.
    digest = hashlib.sha256(f"{bridge}/{pod_cidr}".encode()).digest()
    octets = [(digest[0] & 0xFC) | 0x02, *digest[1:6]]  # unicast, locally administered
    return ":".join(f"{octet:02x}" for octet in octets)


class PodNetwork:
    """The pod network of one node, living in network namespace `netns` (None: this one)."""

    def __init__(
        self,
        netns: str | None,
        bridge: str,
        pod_cidr: str | ipaddress.IPv4Network,
        state_dir: str | Path,
        *,
        veth_prefix: str = DEFAULT_VETH_PREFIX,
    ) -> None:
        if not bridge or len(bridge) > _IFNAMSIZ or "/" in bridge or bridge.strip() != bridge:
            raise ValueError(f"bridge name {bridge!r} is not a valid interface name")
        veth_name("", veth_prefix)  # validates the prefix
        self.netns = netns
        self.bridge = bridge
        self.veth_prefix = veth_prefix
        try:
            self._addresses = ipam.PodAddresses(pod_cidr, state_dir)
        except ipam.IpamError as exc:
            raise PodNetworkError(str(exc)) from exc
        self.pod_cidr = self._addresses.pod_cidr
        self.gateway = self._addresses.gateway
        self._lock = threading.RLock()

    # -- node --------------------------------------------------------------

    def setup_node(self) -> None:
        """Bridge up with the gateway address, and forwarding on in the node namespace."""
        with self._lock, self._node() as ipr:
            bridge = self._ensure_bridge(ipr)
            _tolerate(
                errno.EEXIST,
                lambda: ipr.addr(
                    "add", index=bridge, address=str(self.gateway), prefixlen=self._prefixlen
                ),
            )
            ipr.link("set", index=bridge, state="up")
        self._set_sysctl("net/ipv4/ip_forward", "1")

    def teardown_node(self) -> None:
        """Remove every pod, this module's routes and the bridge; forget all addresses.

        ip_forward is left as it is: other software on a host may rely on it.
        """
        with self._lock:
            for pod_uid in self._addresses.allocations():
                self.remove_pod(pod_uid)
            for cidr in self.routes():
                self.remove_route(cidr)
            with self._node() as ipr:
                bridge = _link_index(ipr, self.bridge)
                if bridge is not None:
                    _tolerate(errno.ENODEV, lambda: ipr.link("del", index=bridge))
            self._addresses.forget_all()

    # -- pods --------------------------------------------------------------

    def add_pod(self, pod_uid: str, netns_name: str) -> str:
        """Wire pod `pod_uid` into namespace `netns_name` (created if missing); its IP.

        Re-adding a pod returns the address it holds and repairs its wiring.
        """
        with self._lock:
            held = self._addresses.get(pod_uid)
            if held is not None and held.netns != netns_name:
                raise PodNetworkError(
                    f"pod {pod_uid} is already wired into network namespace {held.netns}, "
                    f"not {netns_name}; remove the pod before adding it again"
                )
            try:
                allocation = self._addresses.allocate(pod_uid, netns_name)
            except ipam.AddressesExhausted as exc:
                raise AddressesExhausted(str(exc)) from exc
            except ipam.IpamError as exc:
                raise PodNetworkError(str(exc)) from exc
            created_netns = netns_name not in netns.listnetns()
            try:
                with _netlink_errors(f"wiring pod {pod_uid} into {netns_name}"):
                    if created_netns:
                        netns.create(netns_name)
                    self._wire_pod(pod_uid, allocation)
            except BaseException:
                if held is None:
                    # Roll back so the address is free again; the original error is the one
                    # to report, not a failure of the cleanup.
                    with suppress(PodNetworkError, ipam.IpamError):
                        self._unwire_pod(pod_uid, netns_name if created_netns else None)
                        self._addresses.release(pod_uid)
                raise
            return str(allocation.ip)

    def remove_pod(self, pod_uid: str) -> None:
        """Delete the pod's veth and network namespace, then free its address.

        Processes still running in the namespace keep it alive unnamed;
        stop them first.
        """
        with self._lock:
            held = self._addresses.get(pod_uid)
            self._unwire_pod(pod_uid, held.netns if held is not None else None)
            if held is not None:
                try:
                    self._addresses.release(pod_uid)
                except ipam.IpamError as exc:
                    raise PodNetworkError(str(exc)) from exc

    def pods(self) -> dict[str, str]:
        """Pod uid → IP of every pod this node's network holds, as persisted."""
        return {uid: str(a.ip) for uid, a in self._addresses.allocations().items()}

    def pod_netns(self, pod_uid: str) -> str | None:
        """The network namespace pod `pod_uid` was wired into, if it holds an address."""
        held = self._addresses.get(pod_uid)
        return held.netns if held is not None else None

    # -- routes to other nodes ----------------------------------------------

    def add_route(self, cidr: str, via: str) -> None:
        """Route another node's podCIDR `cidr` via that node's address `via` (replaces)."""
        destination = ipaddress.ip_network(cidr, strict=True)
        if destination.overlaps(self.pod_cidr):
            raise ValueError(f"route {cidr} overlaps this node's own podCIDR {self.pod_cidr}")
        with self._lock, self._node() as ipr, _netlink_errors(f"routing {cidr} via {via}"):
            ipr.route(
                "replace",
                dst=str(destination),
                gateway=str(ipaddress.ip_address(via)),
                proto=ROUTE_PROTOCOL,
            )

    def remove_route(self, cidr: str) -> None:
        """Remove the route to `cidr` that `add_route` made; no error if there is none."""
        destination = ipaddress.ip_network(cidr, strict=True)
        with self._lock, self._node() as ipr, _netlink_errors(f"removing route {cidr}"):
            _tolerate(
                errno.ESRCH,
                lambda: ipr.route("del", dst=str(destination), proto=ROUTE_PROTOCOL),
            )

    def routes(self) -> dict[str, str]:
        """podCIDR → next hop of every route `add_route` made in the node namespace."""
        found: dict[str, str] = {}
        with self._lock, self._node() as ipr, _netlink_errors("listing routes"):
            for route in ipr.route("dump", family=socket.AF_INET, proto=ROUTE_PROTOCOL):
                dst = route.get("dst") or "0.0.0.0"
                gateway = route.get("gateway")
                if gateway is not None:
                    found[f"{dst}/{route['dst_len']}"] = str(gateway)
        return found

    # -- internals ---------------------------------------------------------

    @property
    def _prefixlen(self) -> int:
        return self.pod_cidr.prefixlen

    @contextmanager
    def _node(self) -> Iterator[Any]:
        # Checked first: IPRoute leaks its event loop when the namespace is missing.
        missing = NamespaceMissing(
            f"node network namespace {self.netns} does not exist; create it first"
        )
        if self.netns and self.netns not in netns.listnetns():
            raise missing
        try:
            ipr = IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()
        except FileNotFoundError as exc:
            raise missing from exc
        with ipr, _netlink_errors(f"node network of bridge {self.bridge}"):
            yield ipr

    def _ensure_bridge(self, ipr: Any) -> int:
        index = _link_index(ipr, self.bridge)
        if index is None:
            _tolerate(
                errno.EEXIST,
                lambda: ipr.link(
                    "add",
                    ifname=self.bridge,
                    kind="bridge",
                    address=_bridge_mac(self.bridge, self.pod_cidr),
                ),
            )
            index = _link_index(ipr, self.bridge)
        if index is None:
            raise PodNetworkError(f"bridge {self.bridge} vanished right after it was created")
        link = ipr.link("get", index=index)[0]
        kind = link.get(("linkinfo", "kind"))
        if kind != "bridge":
            raise PodNetworkError(
                f"interface {self.bridge} exists but is a {kind or 'plain device'}, not a "
                "bridge; pick another bridge name or remove it"
            )
        return index

    def _wire_pod(self, pod_uid: str, allocation: ipam.Allocation) -> None:
        host_end = veth_name(pod_uid, self.veth_prefix)
        with self._node() as ipr:
            bridge = _link_index(ipr, self.bridge)
            if bridge is None:
                raise PodNetworkError(
                    f"bridge {self.bridge} does not exist; call setup_node() before adding pods"
                )
            index = _link_index(ipr, host_end)
            if index is None:
                ipr.link(
                    "add",
                    ifname=host_end,
                    kind="veth",
                    peer={"ifname": POD_INTERFACE, "net_ns_fd": allocation.netns},
                )
                index = _link_index(ipr, host_end)
            ipr.link("set", index=index, master=bridge, state="up")
            ipr.brport("set", index=index, mode=_BRPORT_MODE_HAIRPIN)
        with IPRoute(netns=allocation.netns, flags=0) as pod:
            loopback = _link_index(pod, "lo")
            pod.link("set", index=loopback, state="up")
            eth0 = _link_index(pod, POD_INTERFACE)
            if eth0 is None:
                raise PodNetworkError(
                    f"{host_end} exists but its peer is not {POD_INTERFACE} in {allocation.netns}"
                )
            address = str(allocation.ip)
            _tolerate(
                errno.EEXIST,
                lambda: pod.addr("add", index=eth0, address=address, prefixlen=self._prefixlen),
            )
            pod.link("set", index=eth0, state="up")
            pod.route("replace", dst="0.0.0.0/0", gateway=str(self.gateway), oif=eth0)

    def _unwire_pod(self, pod_uid: str, pod_netns: str | None) -> None:
        host_end = veth_name(pod_uid, self.veth_prefix)
        with self._node() as ipr:
            # Deleting one end of a veth pair deletes the other, eth0 in the pod.
            _tolerate(errno.ENODEV, lambda: ipr.link("del", ifname=host_end))
        if pod_netns is not None and pod_netns in netns.listnetns():
            # Whoever else removes pods (a test's cleanup, a second agent) may win the race
            # between the check and the removal: a namespace already gone is what we want.
            with (
                _netlink_errors(f"removing network namespace {pod_netns}"),
                contextlib.suppress(FileNotFoundError),
            ):
                netns.remove(pod_netns)

    def _set_sysctl(self, key: str, value: str) -> None:
        # /proc/sys/net shows the network namespace of the thread that reads it,
        # and netlink has no sysctl message, so a short-lived thread enters the
        # node namespace to write it; this process's other threads stay put.
        path = f"/proc/sys/{key}"
        failure: list[BaseException] = []

        def write() -> None:
            try:
                if self.netns:
                    netns.setns(self.netns, flags=0)
                with open(path, "w", encoding="ascii") as stream:
                    stream.write(value)
            except BaseException as exc:
                failure.append(exc)

        if not self.netns:
            write()
        else:
            thread = threading.Thread(target=write, name=f"sysctl-{self.netns}")
            thread.start()
            thread.join()
        if failure:
            raise PodNetworkError(
                f"cannot set {key.replace('/', '.')}={value} in the node network namespace: "
                f"{failure[0]}"
            ) from failure[0]


def _link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _tolerate(code: int, operation: Callable[[], _T]) -> _T | None:
    """Run a netlink operation, treating error `code` (exists, no such device...) as done."""
    try:
        return operation()
    except NetlinkError as exc:
        if exc.code == code:
            return None
        raise


@contextmanager
def _netlink_errors(action: str) -> Iterator[None]:
    try:
        yield
    except PodNetworkError:
        raise
    except (NetlinkError, OSError) as exc:
        raise PodNetworkError(f"{action} failed: {exc}") from exc
