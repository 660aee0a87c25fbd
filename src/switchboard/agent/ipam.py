"""Pod address management for one node: which pod holds which address of the node's podCIDR.

The node's podCIDR (say 10.244.1.0/24) is split the way every bridge-based
pod network splits it: the network and broadcast addresses are never used,
the first host address (.1) is the gateway that sits on the node's bridge,
and every other address can be handed to a pod.

Allocations are kept in a small JSON file per podCIDR inside the agent's
state directory, written atomically (temporary file, fsync, rename) before
the kernel is touched. That ordering is what makes an agent restart safe:
a new `PodAddresses` reads the file and adopts every pod it lists, so an
address can never be handed out twice, and a crash half-way through wiring
a pod leaves an allocation that the next attempt reuses or releases.

Addresses are handed out round-robin, continuing after the last one given
(as CNI's host-local IPAM does), not lowest-free-first: a just-released
address is then the last to be reused, which gives conntrack entries,
EndpointSlices and client caches that still name the old pod time to
expire before a new pod answers on it.

Errors::

    IpamError                 the state file or the request is unusable
     ├── AddressesExhausted   every pod address of the podCIDR is taken
     └── CorruptState         the state file cannot be read as allocations

Only IPv4 podCIDRs are supported so far.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FORMAT_VERSION = 1


class IpamError(Exception):
    """The pod address state cannot satisfy a request."""


class AddressesExhausted(IpamError):
    """Every pod address of the node's podCIDR is allocated."""


class CorruptState(IpamError):
    """The state file exists but does not hold allocations this code wrote."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """One pod's address and the network namespace it was wired into."""

    ip: ipaddress.IPv4Address
    netns: str


def parse_pod_cidr(pod_cidr: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The podCIDR as a network, rejecting what cannot hold a gateway and a pod."""
    try:
        network = ipaddress.ip_network(pod_cidr, strict=True)
    except ValueError as exc:
        raise ValueError(f"podCIDR {pod_cidr!r} is not a network address with a prefix") from exc
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"podCIDR {pod_cidr} is IPv6; only IPv4 podCIDRs are supported")
    if network.prefixlen > 30:
        raise ValueError(
            f"podCIDR {pod_cidr} is too small for a gateway and a pod; use a /30 or larger"
        )
    return network


def state_file_name(pod_cidr: ipaddress.IPv4Network) -> str:
    """The file, inside the state directory, that holds this podCIDR's allocations."""
    return f"ipam-{pod_cidr.network_address}_{pod_cidr.prefixlen}.json"


class PodAddresses:
    """Allocations of one node's podCIDR, persisted in `state_dir`.

    Thread-safe; every change is on disk before the method returns.
    """

    def __init__(self, pod_cidr: str | ipaddress.IPv4Network, state_dir: str | Path) -> None:
        self.pod_cidr = parse_pod_cidr(pod_cidr)
        self.gateway = self.pod_cidr.network_address + 1
        self.path = Path(state_dir) / state_file_name(self.pod_cidr)
        self._lock = threading.Lock()
        self._pods: dict[str, Allocation] = {}
        self._last = self.gateway
        self._load()

    # -- queries -----------------------------------------------------------

    def get(self, pod_uid: str) -> Allocation | None:
        with self._lock:
            return self._pods.get(pod_uid)

    def allocations(self) -> dict[str, Allocation]:
        with self._lock:
            return dict(self._pods)

    @property
    def capacity(self) -> int:
        """How many pods the podCIDR can hold at once."""
        return self.pod_cidr.num_addresses - 3

    # -- changes -----------------------------------------------------------

    def allocate(self, pod_uid: str, netns: str) -> Allocation:
        """The pod's address: the one it already holds, else the next free one.

        A pod that holds an address keeps it whatever `netns` says; the
        caller decides whether a different namespace name is an error.
        """
        with self._lock:
            existing = self._pods.get(pod_uid)
            if existing is not None:
                return existing
            ip = self._next_free()
            allocation = Allocation(ip=ip, netns=netns)
            self._pods[pod_uid] = allocation
            previous_last, self._last = self._last, ip
            try:
                self._save()
            except BaseException:
                del self._pods[pod_uid]
                self._last = previous_last
                raise
            return allocation

    def release(self, pod_uid: str) -> Allocation | None:
        """Free the pod's address; the allocation it held, or None if it held none."""
        with self._lock:
            allocation = self._pods.pop(pod_uid, None)
            if allocation is None:
                return None
            try:
                self._save()
            except BaseException:
                self._pods[pod_uid] = allocation
                raise
            return allocation

    def forget_all(self) -> None:
        """Drop every allocation and the state file (the node's pod network is gone)."""
        with self._lock:
            self._pods.clear()
            self._last = self.gateway
            self.path.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------

    def _next_free(self) -> ipaddress.IPv4Address:
        first = int(self.gateway) + 1
        last = int(self.pod_cidr.broadcast_address) - 1
        taken = {int(a.ip) for a in self._pods.values()}
        span = last - first + 1
        start = int(self._last) + 1
        for step in range(span):
            candidate = first + (start - first + step) % span
            if candidate not in taken:
                return ipaddress.IPv4Address(candidate)
        raise AddressesExhausted(
            f"every one of the {self.capacity} pod addresses of podCIDR {self.pod_cidr} is in "
            "use; delete pods on this node or give it a larger podCIDR"
        )

    def _load(self) -> None:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise IpamError(f"cannot read pod address state {self.path}: {exc}") from exc
        try:
            document = json.loads(raw)
            self._pods, self._last = self._decode(document)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptState(
                f"pod address state {self.path} is unreadable ({exc}); fix or remove it only "
                "after removing this node's pods, or addresses may be handed out twice"
            ) from exc

    def _decode(self, document: Any) -> tuple[dict[str, Allocation], ipaddress.IPv4Address]:
        if document.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unknown format version {document.get('version')!r}")
        if ipaddress.ip_network(document["podCIDR"]) != self.pod_cidr:
            raise ValueError(f"it was written for podCIDR {document['podCIDR']}")
        pods: dict[str, Allocation] = {}
        seen: set[ipaddress.IPv4Address] = set()
        for uid, entry in document["pods"].items():
            ip = ipaddress.IPv4Address(entry["ip"])
            if not self._is_pod_address(ip) or ip in seen:
                raise ValueError(f"pod {uid} holds {ip}, which is not a free pod address")
            seen.add(ip)
            pods[str(uid)] = Allocation(ip=ip, netns=str(entry["netns"]))
        last = ipaddress.IPv4Address(document.get("last", str(self.gateway)))
        return pods, last

    def _is_pod_address(self, ip: ipaddress.IPv4Address) -> bool:
        return ip in self.pod_cidr and self.gateway < ip < self.pod_cidr.broadcast_address

    def _save(self) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "podCIDR": str(self.pod_cidr),
            "last": str(self._last),
            "pods": {
                uid: {"ip": str(a.ip), "netns": a.netns} for uid, a in sorted(self._pods.items())
            },
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        # The rename is only durable once the directory entry is.
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
