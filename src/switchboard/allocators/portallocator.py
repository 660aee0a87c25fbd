"""NodePort allocation over a port range (pkg/registry/core/service/portallocator).

Port `base + i` is bit `i` of a `Bitmap` over the whole range, both ends
included. The static band is min(max(16, size/32), 128) ports, or none for a
range of 16 ports or fewer: for the default 30000-32767 (2768 ports) it is
86, so 30000-30085 is where users should pick ports by number and dynamic
allocation prefers 30086-32767.

Ranges are written as Kubernetes' `--service-node-port-range` accepts them:
`30000-32767`, `30000+2767` (base plus count of further ports) or a single
port; they print as `first-last`, the form that appears in the
`provided port is not in the valid range. The range of valid ports is
30000-32767` message.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from switchboard.allocators import errors
from switchboard.allocators.bitmap import Bitmap

DEFAULT_RANGE = "30000-32767"

_RANGE = re.compile(r"(\d{1,5})(?:([-+])(\d{1,5}))?")


def range_offset(size: int) -> int:
    """Size of the static band: min(max(16, size/32), 128), or 0 when size <= 16."""
    if size <= 16:
        return 0
    return min(max(16, size // 32), 128)


def parse_range(text: str) -> tuple[int, int]:
    """`"30000-32767"` → (30000, 2768): the first port and how many ports follow it."""
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a port range, e.g. 30000-32767")
    base = int(match.group(1))
    if match.group(2) is None:
        last = base
    elif match.group(2) == "-":
        last = int(match.group(3))
    else:
        last = base + int(match.group(3))
    if not 0 < base <= last <= 65535:
        raise ValueError(f"{text!r} is not a port range within 1-65535, e.g. 30000-32767")
    return base, last - base + 1


class PortAllocator:
    """The NodePorts of one range, e.g. `PortAllocator("30000-32767")`."""

    __slots__ = ("_base", "_bitmap")

    def __init__(self, port_range: str = DEFAULT_RANGE, *, rng: random.Random | None = None):
        self._base, size = parse_range(port_range)
        self._bitmap = Bitmap(size, range_offset(size), rng=rng)

    @property
    def port_range(self) -> str:
        """The range as Kubernetes prints it: `30000-32767`."""
        return f"{self._base}-{self._base + self._bitmap.size - 1}"

    @property
    def size(self) -> int:
        return self._bitmap.size

    @property
    def static_band(self) -> int:
        """How many ports at the bottom are kept for requested (static) node ports."""
        return self._bitmap.offset

    def free(self) -> int:
        return self._bitmap.free()

    def used(self) -> int:
        return self._bitmap.used()

    def contains(self, port: int) -> bool:
        return self._base <= port < self._base + self._bitmap.size

    def has(self, port: int) -> bool:
        """True when `port` is in range and already allocated."""
        return self.contains(port) and self._bitmap.has(port - self._base)

    def allocate(self, port: int) -> None:
        """Reserve a requested port; raise NotInRange or AlreadyAllocated."""
        if not self.contains(port):
            raise errors.port_not_in_range(self.port_range)
        if not self._bitmap.allocate(port - self._base):
            raise errors.AlreadyAllocated(errors.PORT_ALREADY_ALLOCATED)

    def allocate_next(self) -> int:
        """Reserve any free port, preferring the dynamic band; raise RangeFull."""
        return self._base + self._bitmap.allocate_next()

    def release(self, port: int) -> None:
        """Free a port; releasing a free or out-of-range port does nothing."""
        if self.contains(port):
            self._bitmap.release(port - self._base)

    def __iter__(self) -> Iterator[int]:
        """The allocated ports, lowest first."""
        for offset in self._bitmap:
            yield self._base + offset

    def empty_like(self) -> PortAllocator:
        """An allocator over the same range with nothing allocated."""
        fresh = object.__new__(PortAllocator)
        fresh._base = self._base
        fresh._bitmap = self._bitmap.empty_like()
        return fresh

    def load(self, other: PortAllocator) -> None:
        """Take over the allocations of `other`, an allocator over the same range."""
        if other.port_range != self.port_range:
            raise ValueError(f"cannot load ports of {other.port_range} into {self.port_range}")
        self._bitmap.load(other._bitmap)
