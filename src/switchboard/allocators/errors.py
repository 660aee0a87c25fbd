"""Allocation errors, with the messages Kubernetes' allocators use.

    AllocatorError
     ├── AlreadyAllocated   "provided IP is already allocated"
     │                      "provided port is already allocated"
     ├── NotInRange         "the provided IP (10.0.0.1) is not in the valid range.
     │                       The range of valid IPs is 10.96.0.0/16"
     │                      "provided port is not in the valid range.
     │                       The range of valid ports is 30000-32767"
     └── RangeFull          "range is full"

`str(error)` is exactly the Go error text (pkg/registry/core/service/
ipallocator and portallocator), because the registry embeds it in field
errors such as `spec.ports[0].nodePort: Invalid value: 30000: provided port
is already allocated`.
"""

from __future__ import annotations


class AllocatorError(Exception):
    """Base of every allocation failure; `str()` is the Kubernetes message."""


class AlreadyAllocated(AllocatorError):
    """The requested value is held by someone else."""


class NotInRange(AllocatorError):
    """The requested value lies outside the allocator's range."""


class RangeFull(AllocatorError):
    """No free value is left."""

    def __init__(self) -> None:
        super().__init__("range is full")


IP_ALREADY_ALLOCATED = "provided IP is already allocated"
PORT_ALREADY_ALLOCATED = "provided port is already allocated"


def ip_not_in_range(ip: str, cidr: str) -> NotInRange:
    return NotInRange(
        f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
    )


def port_not_in_range(port_range: str) -> NotInRange:
    return NotInRange(
        "provided port is not in the valid range. The range of valid ports is " + port_range
    )
