"""ClusterIP allocation over one service CIDR (pkg/registry/core/service/ipallocator).

The usable addresses of the CIDR map onto a `Bitmap`:

    CIDR 10.96.0.0/16          network 10.96.0.0, broadcast 10.96.255.255
    offset 0 of the bitmap  =  10.96.0.1 (network address + 1)
    bitmap size             =  65534 for IPv4 (neither network nor broadcast)
                               min(size, 65536) - 1 for IPv6 (no broadcast)

The network and broadcast addresses are left out of the bitmap rather than
allocated, so they can never be released by mistake. The static band is
min(max(16, size/16), 256) addresses, or none for a CIDR of 16 addresses or
fewer: dynamic allocation prefers the addresses above it.

An allocator serves one family; dual-stack clusters hold one per family
(`ServiceAllocations` takes them as a list, primary first). Addresses are
parsed the way Kubernetes' `ParseIPSloppy` does (IPv4 with leading zeros
accepted, IPv4-mapped IPv6 treated as IPv4) and always returned in
canonical form.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator

from switchboard.allocators import errors
from switchboard.allocators.bitmap import Bitmap
from switchboard.api import validation

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV6_MAX = 65536  # Kubernetes caps an IPv6 bitmap at this many bits


def range_offset(cidr_size: int) -> int:
    """Size of the static band: min(max(16, size/16), 256), or 0 when size <= 16."""
    if cidr_size <= 16:
        return 0
    return min(max(16, cidr_size // 16), 256)


class IPAllocator:
    """The ClusterIPs of one service CIDR, e.g. `IPAllocator("10.96.0.0/16")`."""

    __slots__ = ("_base", "_bitmap", "_network", "family")

    def __init__(self, cidr: str, *, rng: random.Random | None = None) -> None:
        network = validation.parse_cidr(cidr)
        if network is None:
            raise ValueError(f"{cidr!r} is not a valid service CIDR, e.g. 10.96.0.0/16")
        self._network = network
        self.family = "IPv6" if network.version == 6 else "IPv4"
        size = network.num_addresses
        usable = min(size, _IPV6_MAX) - 1 if network.version == 6 else size - 2
        self._base = int(network.network_address) + 1
        self._bitmap = Bitmap(max(0, usable), range_offset(size), rng=rng)

    @property
    def cidr(self) -> str:
        """The range in canonical form, as Kubernetes prints it: `10.96.0.0/16`."""
        return str(self._network)

    @property
    def size(self) -> int:
        """How many addresses the range can hand out."""
        return self._bitmap.size

    @property
    def static_band(self) -> int:
        """How many addresses at the bottom are kept for requested (static) IPs."""
        return self._bitmap.offset

    def free(self) -> int:
        return self._bitmap.free()

    def used(self) -> int:
        return self._bitmap.used()

    def contains(self, ip: str) -> bool:
        """True when `ip` is an address this allocator could hand out."""
        return self._offset_of(validation.parse_ip(ip)) is not None

    def has(self, ip: str) -> bool:
        """True when `ip` is in range and already allocated."""
        offset = self._offset_of(validation.parse_ip(ip))
        return offset is not None and self._bitmap.has(offset)

    def allocate(self, ip: str) -> None:
        """Reserve a requested address; raise NotInRange or AlreadyAllocated."""
        parsed = validation.parse_ip(ip)
        offset = self._offset_of(parsed)
        if offset is None:
            raise errors.ip_not_in_range("<nil>" if parsed is None else str(parsed), self.cidr)
        if not self._bitmap.allocate(offset):
            raise errors.AlreadyAllocated(errors.IP_ALREADY_ALLOCATED)

    def allocate_next(self) -> str:
        """Reserve any free address, preferring the dynamic band; raise RangeFull."""
        return self._address(self._bitmap.allocate_next())

    def release(self, ip: str) -> None:
        """Free an address; releasing a free or out-of-range address does nothing."""
        offset = self._offset_of(validation.parse_ip(ip))
        if offset is not None:
            self._bitmap.release(offset)

    def __iter__(self) -> Iterator[str]:
        """The allocated addresses, lowest first."""
        for offset in self._bitmap:
            yield self._address(offset)

    def empty_like(self) -> IPAllocator:
        """An allocator over the same CIDR with nothing allocated."""
        fresh = object.__new__(IPAllocator)
        fresh._network, fresh.family, fresh._base = self._network, self.family, self._base
        fresh._bitmap = self._bitmap.empty_like()
        return fresh

    def load(self, other: IPAllocator) -> None:
        """Take over the allocations of `other`, an allocator over the same CIDR."""
        if other._network != self._network:
            raise ValueError(f"cannot load allocations of {other.cidr} into {self.cidr}")
        self._bitmap.load(other._bitmap)

    def _offset_of(self, ip: IPAddress | None) -> int | None:
        if ip is None or ip.version != self._network.version or ip not in self._network:
            return None
        offset = int(ip) - self._base
        return offset if 0 <= offset < self._bitmap.size else None

    def _address(self, offset: int) -> str:
        value = self._base + offset
        if self.family == "IPv4":
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(value))
