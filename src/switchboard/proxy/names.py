"""Every nftables name the proxy uses, in one place; generated names are derived here.

The table holds a fixed skeleton (base chains, the frontend verdict maps, the
endpoint maps, the hairpin set) plus shared objects made on demand and named
after what they do, never after a Service:

- a dispatch chain per distinct *shape* of frontend -- how many endpoints it
  picks from, whether it marks for masquerade, its affinity timeout, whether
  it follows externalTrafficPolicy Local -- e.g. ``ip-n3``, ``port-n3-masq``,
  ``ip-local1-cluster3-affinity10800``;
- for ClientIP affinity, per (kind, timeout, endpoint index) a dynamic set of
  clients stuck to that index and a chain that records a new pick into it.

So 10,000 Services of 3 endpoints share one dispatch chain, and the names a
ruleset uses depend only on the shapes present, never on Service names.
"""

from __future__ import annotations

from typing import Final, Literal

TABLE: Final = "switchboard"

# Base chains, hooked into the kernel.
NAT_PREROUTING: Final = "nat-prerouting"
NAT_OUTPUT: Final = "nat-output"
NAT_POSTROUTING: Final = "nat-postrouting"

# Regular chains of the skeleton.
SERVICES: Final = "services"  # frontend lookup, jumped to from both DNAT hooks
REJECT: Final = "reject"  # a Service without endpoints: TCP reset, else ICMP port unreachable

# Verdict maps: frontend → goto dispatch chain | goto reject | drop.
SERVICE_IPS: Final = "service-ips"  # address . protocol . port (ClusterIP, external IP, LB IP)
SERVICE_NODEPORTS: Final = "service-nodeports"  # protocol . nodePort

# Endpoint maps: frontend . index → endpoint address . port.
SERVICE_ENDPOINTS: Final = "service-endpoints"
NODEPORT_ENDPOINTS: Final = "nodeport-endpoints"

# Sets.
HAIRPIN: Final = "hairpin"  # endpoint . endpoint: a pod that reached itself, masqueraded
POD_CIDRS: Final = "pod-cidrs"  # the cluster's pod CIDRs (Local policy short-circuit)
NODEPORT_ADDRESSES: Final = "nodeport-addresses"  # CIDRs NodePorts open on, when configured

# The packet mark bit that asks postrouting to masquerade (kube-proxy's bit).
MASQUERADE_MARK: Final = 0x4000
# Capacity of each dynamic affinity set (clients per endpoint index and timeout).
AFFINITY_SET_SIZE: Final = 262144

# Hook priorities. Output DNAT runs at the dstnat priority too, as kube-proxy's does.
PRIORITY_DSTNAT: Final = "dstnat"
PRIORITY_SRCNAT: Final = "srcnat"

Kind = Literal["ip", "port"]
"""How a frontend is keyed: by destination address . protocol . port, or protocol . nodePort."""

KINDS: Final[tuple[Kind, ...]] = ("ip", "port")


def endpoint_map(kind: Kind) -> str:
    return SERVICE_ENDPOINTS if kind == "ip" else NODEPORT_ENDPOINTS


def frontend_map(kind: Kind) -> str:
    return SERVICE_IPS if kind == "ip" else SERVICE_NODEPORTS


def dispatch_chain(
    kind: Kind,
    count: int,
    *,
    masquerade: bool = False,
    affinity: int = 0,
    local: bool = False,
    cluster: int = 0,
) -> str:
    """The chain that picks one of `count` endpoints for frontends of this shape."""
    name = f"{kind}-local{count}-cluster{cluster}" if local else f"{kind}-n{count}"
    if masquerade:
        name += "-masq"
    if affinity:
        name += f"-affinity{affinity}"
    return name


def affinity_set(kind: Kind, timeout: int, index: int) -> str:
    """Clients (with their frontend) stuck to endpoint `index` for `timeout` seconds."""
    return f"affinity-{kind}-{timeout}-{index}"


def affinity_pick_chain(kind: Kind, timeout: int, index: int) -> str:
    """Records a fresh pick of endpoint `index` into its affinity set, then DNATs."""
    return f"affinity-pick-{kind}-{timeout}-{index}"
