"""A packet tracer over a `state.ProxyState`: where would the kernel send this packet?

For fast unit tests that pin behaviour down by tracing a packet, as
kube-proxy's tests do, instead of diffing rule text. The tracer reads the
very element text `ruleset.full` hands to nft (verdict maps, endpoint maps,
the hairpin set) and walks the chains in the order the README draws them;
each dispatch chain is interpreted from the `Dispatch` shape its rules are
rendered from. The lab tests send real packets through the same scenarios.

What it models, per first packet of a connection (nat chains see no other):
``services`` (ClusterIP, external IP, NodePort on a local address), the
dispatch chain (Local-policy short-circuit, masquerade mark, affinity sets
with their timeouts, the random pick), the filter check after DNAT (a
destination still in ``@cluster-ips`` → reject, in ``@service-cidrs`` →
drop), and postrouting (mark or hairpin → masquerade). The random pick
comes from `rng`, affinity time from `clock`; `Trace.candidates` lists
every endpoint the pick could have chosen.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from switchboard.proxy import model, names
from switchboard.proxy.state import DROP, REJECT, Dispatch, ProxyState, Target

TraceVerdict = Literal["dnat", "reject", "drop", "accept"]


@dataclass(frozen=True, slots=True)
class Trace:
    """What became of a packet: DNAT to `endpoint` (picked among `candidates`), or not."""

    verdict: TraceVerdict
    endpoint: Target | None = None
    candidates: tuple[Target, ...] = ()
    masquerade: bool = False


class Tracer:
    """Traces packets through one state, remembering affinity between traces like the kernel."""

    def __init__(
        self,
        state: ProxyState,
        *,
        node_addresses: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.node_addresses = frozenset(str(ipaddress.ip_address(a)) for a in node_addresses)
        self._clock = clock
        self._rng = rng or random.Random(0)
        self._elements = state.elements()
        self._chains = {d.chain: d for d in state.dispatches()}
        self._sticky: dict[tuple[str, str], float] = {}  # (affinity set, client key) → expiry
        config = state.config
        self._pod_cidrs = [ipaddress.ip_network(c) for c in config.pod_cidrs]
        self._nodeport_cidrs = (
            None
            if config.nodeport_addresses is None
            else [ipaddress.ip_network(c) for c in config.nodeport_addresses]
        )
        self._service_cidrs = [ipaddress.ip_network(c) for c in config.service_cidrs]

    def trace(
        self,
        src: str,
        dst: str,
        dport: int,
        protocol: model.Protocol = "TCP",
        *,
        from_node: bool = False,
    ) -> Trace:
        """Trace a new connection from `src` to `dst`:`dport`; `from_node`: sent by the node."""
        src = str(ipaddress.ip_address(src))
        dst = str(ipaddress.ip_address(dst))
        after_nat = self._nat(src, dst, dport, protocol, from_node)
        if after_nat.verdict not in ("dnat", "accept"):
            return after_nat
        # The filter hooks after DNAT: forward, or output for the node's own packets (a
        # packet from elsewhere to one of the node's addresses goes to input, unchecked).
        daddr = dst if after_nat.endpoint is None else after_nat.endpoint[0]
        if not from_node and self._is_local(daddr):
            return after_nat
        if (names.CLUSTER_IPS, daddr) in self._elements:
            return Trace("reject")
        address = ipaddress.ip_address(daddr)
        if any(address in cidr for cidr in self._service_cidrs):
            return Trace("drop")
        return after_nat

    def _nat(
        self, src: str, dst: str, dport: int, protocol: model.Protocol, from_node: bool
    ) -> Trace:
        proto = protocol.lower()
        kind: names.Kind = "ip"
        frontend = f"{dst} . {proto} . {dport}"
        verdict = self._elements.get((names.SERVICE_IPS, frontend))
        if verdict is None and self._opens_nodeports(dst):
            kind, frontend = "port", f"{proto} . {dport}"
            verdict = self._elements.get((names.SERVICE_NODEPORTS, frontend))
        if verdict is None:
            return Trace("accept")
        if verdict == DROP:
            return Trace("drop")
        if verdict == REJECT:
            return Trace("reject")
        dispatch = self._chains[verdict.removeprefix("goto ")]
        return self._dispatch(dispatch, kind, frontend, src, from_node)

    # -- chains ----------------------------------------------------------------

    def _dispatch(
        self, d: Dispatch, kind: names.Kind, frontend: str, src: str, from_node: bool
    ) -> Trace:
        mark = False
        if d.local and d.cluster:
            anywhere = range(d.count, d.count + d.cluster)
            if from_node or self._is_local(src):
                return self._dnat(d, frontend, src, anywhere, True)[0]
            if any(ipaddress.ip_address(src) in cidr for cidr in self._pod_cidrs):
                return self._dnat(d, frontend, src, anywhere, False)[0]
        if d.masquerade:
            mark = True
        client = f"{src} . {frontend}"  # the tracer's own key for a set entry
        now = self._clock()
        for obj in d.affinity_objects():
            sticky = (names.affinity_set(*obj[:4]), client)
            if self._sticky.get(sticky, float("-inf")) > now:
                self._sticky[sticky] = now + d.affinity  # the rule's update refreshes it
                index = obj[3]
                if self._endpoint(d, frontend, index) is not None:
                    return self._dnat(d, frontend, src, range(index, index + 1), mark)[0]
        if d.count == 0:
            return Trace("drop")
        trace, index = self._dnat(d, frontend, src, range(d.count), mark)
        if d.affinity and trace.endpoint is not None:
            sticky = (names.affinity_set(d.kind, d.proto, d.affinity, index), client)
            self._sticky[sticky] = now + d.affinity
        return trace

    def _dnat(
        self, d: Dispatch, frontend: str, src: str, indices: range, mark: bool
    ) -> tuple[Trace, int]:
        candidates = [self._endpoint(d, frontend, i) for i in indices]
        pick = self._rng.randrange(len(candidates))
        endpoint = candidates[pick]
        if endpoint is None:  # a map miss ends the rule: the packet goes on un-NATed
            return Trace("accept"), indices[pick]
        hairpin = endpoint[0] == src and (names.HAIRPIN, f"{src} . {src}") in self._elements
        found = tuple(c for c in candidates if c is not None)
        return Trace("dnat", endpoint, found, masquerade=mark or hairpin), indices[pick]

    # -- lookups ---------------------------------------------------------------

    def _endpoint(self, d: Dispatch, frontend: str, index: int) -> Target | None:
        # Endpoint maps are per protocol: their keys leave the protocol out of the frontend.
        prefix = " . ".join(part for part in frontend.split(" . ") if part != d.proto)
        endpoints = names.endpoint_map(d.kind, d.proto, d.port)
        value = self._elements.get((endpoints, f"{prefix} . {index}"))
        if value is None:
            return None
        if d.port:  # the map holds the address, the chain's rule the port
            return (value, d.port)
        address, port = value.split(" . ")
        return (address, int(port))

    def _is_local(self, address: str) -> bool:
        return address in self.node_addresses or ipaddress.ip_address(address).is_loopback

    def _opens_nodeports(self, dst: str) -> bool:
        if not self._is_local(dst):
            return False
        address = ipaddress.ip_address(dst)
        if self._nodeport_cidrs is None:
            return not address.is_loopback
        return any(address in cidr for cidr in self._nodeport_cidrs)
