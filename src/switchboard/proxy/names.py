"""Every nftables name the proxy uses, in one place; generated names are derived here.

The table holds a fixed skeleton (base chains, the frontend verdict maps, the
endpoint maps, the hairpin and ClusterIP sets, the check after DNAT) plus
shared objects made on demand and named after what they do, never after a
Service:

- a dispatch chain per distinct *shape* of frontend -- its protocol, how many
  endpoints it picks from, whether it marks for masquerade, its affinity
  timeout, whether it follows externalTrafficPolicy Local, the one port its
  endpoints listen on if they agree -- e.g. ``ip-tcp-n3-to8080``,
  ``port-udp-n3-masq``, ``ip-tcp-local1-cluster3-to80-affinity10800``;
- for ClientIP affinity, per (kind, protocol, timeout, endpoint index) a
  dynamic set of clients stuck to that index and a chain that records a new
  pick into it.

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
# Filter hooks that run after DNAT (kube-proxy's names): a packet that still has a ClusterIP
# as its destination there matched no Service port, so it is turned away.
FILTER_FORWARD: Final = "filter-forward"
FILTER_OUTPUT_POST_DNAT: Final = "filter-output-post-dnat"

# Regular chains of the skeleton.
SERVICES: Final = "services"  # frontend lookup, jumped to from both DNAT hooks
# A Service without endpoints: TCP reset, else ICMP port unreachable ("reject" is a keyword).
REJECT: Final = "reject-chain"
# New connections still addressed to a ClusterIP after DNAT (a port the Service does not
# have) are rejected; to an unallocated address of the service CIDRs, dropped.
CLUSTER_IPS_CHECK: Final = "cluster-ips-check"

# Verdict maps: frontend → goto dispatch chain | goto reject | drop.
SERVICE_IPS: Final = "service-ips"  # address . protocol . port (ClusterIP, external IP, LB IP)
SERVICE_NODEPORTS: Final = "service-nodeports"  # protocol . nodePort

# Endpoint maps, one per protocol: frontend . index → endpoint address . port. Per protocol
# because a map's data type names one (``ip daddr . tcp dport``), which makes nft match
# that protocol in every rule using the map; ``th dport`` would fit all, but nft 1.0.6
# cannot add rules for such a map once it is in the kernel.
# Values are address . port, or the address alone when all of a frontend's endpoints
# listen on one port: that port then sits in the dispatch chain's rule (a quarter
# cheaper for nft to load per element), and the map's name ends in "-addresses".
SERVICE_ENDPOINTS: Final = "service-endpoints"  # + "-tcp" …: address . port . index
NODEPORT_ENDPOINTS: Final = "nodeport-endpoints"  # + "-tcp" …: nodePort . index

# Sets.
HAIRPIN: Final = "hairpin"  # endpoint . endpoint: a pod that reached itself, masqueraded
POD_CIDRS: Final = "pod-cidrs"  # the cluster's pod CIDRs (Local policy short-circuit)
NODEPORT_ADDRESSES: Final = "nodeport-addresses"  # CIDRs NodePorts open on, when configured
CLUSTER_IPS: Final = "cluster-ips"  # the ClusterIPs of every Service port served
SERVICE_CIDRS: Final = "service-cidrs"  # the cluster's service CIDRs, when configured

# The packet mark bit that asks postrouting to masquerade (kube-proxy's bit).
MASQUERADE_MARK: Final = 0x4000
# Capacity of each dynamic affinity set (clients per endpoint index and timeout).
AFFINITY_SET_SIZE: Final = 262144

# Hook priorities: the nat hooks' standard ones (the output hook takes no "dstnat" keyword).
PRIORITY_DSTNAT: Final = "-100"
PRIORITY_SRCNAT: Final = "100"
# kube-proxy's: the output filter must come after nat-output's DNAT; in the forward hook
# every DNAT is already done, so any priority would do there.
PRIORITY_FILTER_POST_DNAT: Final = "-90"
PRIORITY_FILTER_FORWARD: Final = "-110"

Kind = Literal["ip", "port"]
"""How a frontend is keyed: by destination address . protocol . port, or protocol . nodePort."""

KINDS: Final[tuple[Kind, ...]] = ("ip", "port")

Proto = Literal["tcp", "udp", "sctp"]
"""A protocol as nft writes it."""

PROTOS: Final[tuple[Proto, ...]] = ("tcp", "udp", "sctp")


def endpoint_map(kind: Kind, proto: Proto, port: int = 0) -> str:
    """The endpoint map of this kind and protocol; `port` set: the one holding addresses only."""
    base = f"{SERVICE_ENDPOINTS if kind == 'ip' else NODEPORT_ENDPOINTS}-{proto}"
    return f"{base}-addresses" if port else base


def dispatch_chain(
    kind: Kind,
    proto: Proto,
    count: int,
    *,
    port: int = 0,
    masquerade: bool = False,
    affinity: int = 0,
    local: bool = False,
    cluster: int = 0,
) -> str:
    """The chain that picks one of `count` endpoints for frontends of this shape."""
    name = f"{kind}-{proto}-local{count}-cluster{cluster}" if local else f"{kind}-{proto}-n{count}"
    if port:
        name += f"-to{port}"
    if masquerade:
        name += "-masq"
    if affinity:
        name += f"-affinity{affinity}"
    return name


def affinity_set(kind: Kind, proto: Proto, timeout: int, index: int) -> str:
    """Clients (with their frontend) stuck to endpoint `index` for `timeout` seconds."""
    return f"affinity-{kind}-{proto}-{timeout}-{index}"


def affinity_pick_chain(kind: Kind, proto: Proto, timeout: int, index: int, port: int) -> str:
    """Records a fresh pick of endpoint `index` into its affinity set, then DNATs."""
    return f"affinity-pick-{kind}-{proto}-{timeout}-{index}" + (f"-to{port}" if port else "")
