"""The proxy's input: what a Service port offers and which endpoints back it.

These value objects are independent of API objects. The agent's change
tracker builds them from Services and EndpointSlices (after dropping what the
proxy ignores: headless Services, ExternalName, other proxies' Services) and
hands them to `ruleset.ProxyState`. Addresses are checked and normalised
here, once, when the tracker makes an object, so a sync only formats them.

One `ServicePortInfo` is one port of one Service (kube-proxy's ServicePort);
it is identified by its `ServicePortName`. Endpoints carry their
EndpointSlice conditions; choosing among them (ready first, else serving and
terminating; local ones for a Local policy) is the ruleset's job, so the same
input gives the same choice everywhere.

Addresses of both families may appear: a `ProxyState` of one family ignores
the other family's cluster IP, external IPs and endpoints, so one list of
objects feeds an ``ip`` and an ``ip6`` table alike.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["TCP", "UDP", "SCTP"]
Family = Literal["ipv4", "ipv6"]

PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")
MAX_AFFINITY_TIMEOUT = 86400  # seconds, as Service validation allows


class InvalidInput(ValueError):
    """A ServicePortInfo or Endpoint field is out of range; the message names it."""


def family_of(address: str) -> Family:
    """The family of a normalised address string."""
    return "ipv6" if ":" in address else "ipv4"


def _address(field: str, value: str) -> str:
    # inet_pton is strict (no leading zeros, no short forms) and ten times faster than
    # ipaddress; ntop gives the canonical text, the form nft prints and matches.
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, value))
    except (OSError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{field} {value!r} is not an IP address") from exc


def _port(field: str, value: int, *, allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise InvalidInput(f"{field} {value} is out of range 1-65535")


@dataclass(frozen=True, slots=True, order=True)
class ServicePortName:
    """Which port of which Service: namespace/name, the port's name and its protocol."""

    namespace: str
    name: str
    port: str = ""
    protocol: Protocol = "TCP"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInput(f"protocol {self.protocol!r} is not TCP, UDP or SCTP")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.namespace}/{self.name}{port}/{self.protocol.lower()}"


@dataclass(frozen=True, slots=True)
class ServicePortInfo:
    """One Service port as the proxy serves it.

    `cluster_ip` None leaves out the ClusterIP frontend (external IPs and the
    NodePort still work). `affinity_timeout` is
    sessionAffinityConfig.clientIP.timeoutSeconds for ClientIP affinity, 0 for
    None. The two policies are True for Local.
    """

    name: ServicePortName
    cluster_ip: str | None
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_timeout: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False

    def __post_init__(self) -> None:
        if self.cluster_ip is not None:
            object.__setattr__(self, "cluster_ip", _address("cluster IP", self.cluster_ip))
        _port("port", self.port)
        _port("nodePort", self.node_port, allow_zero=True)
        for field in ("external_ips", "load_balancer_ips"):
            addresses = getattr(self, field)
            if isinstance(addresses, str):
                raise InvalidInput(f"{field} must be a tuple of addresses, not a string")
            normalised = tuple(dict.fromkeys(_address(field, a) for a in addresses))
            object.__setattr__(self, field, normalised)
        if not 0 <= self.affinity_timeout <= MAX_AFFINITY_TIMEOUT:
            raise InvalidInput(
                f"affinity timeout {self.affinity_timeout} is out of range "
                f"0-{MAX_AFFINITY_TIMEOUT} seconds"
            )

    @property
    def protocol(self) -> Protocol:
        return self.name.protocol


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """One endpoint address and target port, with its EndpointSlice conditions.

    `ready`, `serving` and `terminating` are the slice's conditions (ready
    already folds in publishNotReadyAddresses); `is_local` says the pod runs
    on this node: Local policies pick from those, and only those can hairpin.
    """

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    is_local: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", _address("endpoint", self.ip))
        _port("endpoint port", self.port)

    @property
    def target(self) -> tuple[str, int]:
        """Where a packet is sent: (address, port)."""
        return (self.ip, self.port)
