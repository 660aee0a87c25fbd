"""The desired state of the Service data plane: what each Service port puts into the table.

Pure and immutable. `ProxyState` holds every Service port the proxy serves
with its elements already rendered as the text nft reads, plus reference
counts of what ports share (dispatch chains, hairpin elements) and which
port owns each frontend. `update` derives the next state by re-rendering
only the ports that changed, so the delta between a state and the one
derived from it (`delta`) is found without looking at the other ports.
`ruleset` turns states and deltas into nft transactions.

Dispatch goes through elements, not per-Service rules: a frontend's
verdict-map element names a dispatch chain shared by every frontend of the
same *shape* (`Dispatch`: protocol, endpoint count, target port when the
endpoints agree on one, masquerade, affinity timeout, Local policy), and
the endpoints are elements ``frontend . index : address`` (``: address .
port`` when their ports differ) of one map per protocol.

- No endpoints at all: the frontend's element is ``goto reject-chain`` (TCP
  reset, else ICMP port unreachable). A Local policy without local
  endpoints: ``drop``.
- Endpoint choice (kube-proxy's CategorizeEndpoints): the ready ones, else
  the serving-and-terminating ones; for a Local policy the local ready ones,
  else the local serving-and-terminating ones.
- Masquerade: external traffic under the Cluster policy is marked for it; a
  pod that reached itself (hairpin) is found by the ``@hairpin`` set of local
  endpoints; nothing else is SNATed.
- externalTrafficPolicy Local: a frontend's endpoints are its local ones
  (indices 0..L-1) followed by all of them (L..L+C-1). The node itself
  (masqueraded) and pod CIDRs reach any endpoint, other clients keep their
  address and reach only local ones.
- ClientIP affinity remembers an endpoint *index* per client and frontend,
  so a removed endpoint can never be stuck to: an index past the new count
  misses in the endpoint map and the packet falls through to a new pick.
  Endpoints keep their index across updates where they can (`_stable` fills
  holes instead of renumbering), so surviving endpoints keep their clients.

Frontends two Service ports both claim (the same external IP and port) go
to the port whose name sorts first; the other's element returns when the
first one lets go.
"""

from __future__ import annotations

import gc
import ipaddress
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeVar

from switchboard.proxy import model, names
from switchboard.proxy.names import Kind, Proto

Target = tuple[str, int]
Desired = tuple[model.ServicePortInfo, Sequence[model.Endpoint]]
# Elements are kept as the text nft reads -- the key ("10.96.0.1 . 80 . 0"), the
# value ("10.244.1.2 . 8080", "goto ip-tcp-n3", "drop"; None in a set) -- so a full
# sync formats nothing twice and the tracer reads exactly what the kernel gets.
ElementKey = tuple[str, str]  # (map or set name, key text)
Value = str | None
# (kind, proto, timeout, index, port): a pick chain; its first four name its affinity set.
AffinityObject = tuple[Kind, Proto, int, int, int]
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What the node tells the proxy, fixed for the life of a table.

    `nodeport_addresses`: CIDRs whose local addresses NodePorts open on; None
    means every local address outside loopback (include 127.0.0.0/8 here to
    open them on loopback, with net.ipv4.conf.all.route_localnet=1).
    `pod_cidrs`: the cluster's pod CIDRs, for the Local-policy short-circuit.
    """

    family: model.Family = "ipv4"
    nodeport_addresses: tuple[str, ...] | None = None
    pod_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.family not in ("ipv4", "ipv6"):
            raise model.InvalidInput(f"family {self.family!r} is not ipv4 or ipv6")
        if self.nodeport_addresses is not None:
            object.__setattr__(
                self, "nodeport_addresses", self._cidrs("nodeport address", self.nodeport_addresses)
            )
        object.__setattr__(self, "pod_cidrs", self._cidrs("pod CIDR", self.pod_cidrs))

    def _cidrs(self, what: str, cidrs: Iterable[str]) -> tuple[str, ...]:
        found = []
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise model.InvalidInput(f"{what} {cidr!r} is not a CIDR") from exc
            if model.family_of(str(network.network_address)) == self.family:
                found.append(str(network))
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True, order=True)
class Dispatch:
    """The shape of a frontend, which names the chain that picks its endpoint.

    `count` endpoints sit at indices 0..count-1 of the frontend in the
    endpoint map. With `local` (externalTrafficPolicy Local) they are the
    local ones and `cluster` more follow at count..count+cluster-1.
    """

    kind: Kind
    proto: Proto
    count: int
    port: int = 0  # the one port every endpoint listens on; 0 when they differ
    masquerade: bool = False
    affinity: int = 0
    local: bool = False
    cluster: int = 0

    @property
    def chain(self) -> str:
        return names.dispatch_chain(
            self.kind,
            self.proto,
            self.count,
            port=self.port,
            masquerade=self.masquerade,
            affinity=self.affinity,
            local=self.local,
            cluster=self.cluster,
        )

    @property
    def verdict(self) -> str:
        """The verdict-map value that sends a frontend here."""
        return _verdicts.get(self) or f"goto {self.chain}"

    def affinity_objects(self) -> Iterator[AffinityObject]:
        """(kind, proto, timeout, index, port) of every pick chain (and set) this chain uses."""
        if self.affinity:
            for index in range(self.count):
                yield (self.kind, self.proto, self.affinity, index, self.port)


DROP: Final = "drop"
REJECT: Final = f"goto {names.REJECT}"


# -- per Service port --------------------------------------------------------


class _Frontend(NamedTuple):  # (a NamedTuple: made 10,000s of times per full sync)
    """What one frontend puts in the table: its verdict element and endpoint elements."""

    key: ElementKey  # (verdict map, frontend key)
    elements: dict[ElementKey, Value]


class _Port(NamedTuple):
    """One Service port, rendered."""

    info: model.ServicePortInfo
    endpoints: tuple[model.Endpoint, ...]
    cluster: tuple[Target, ...]  # endpoint order, kept stable across updates
    local: tuple[Target, ...]
    frontends: tuple[_Frontend, ...]
    dispatches: frozenset[Dispatch]
    hairpins: frozenset[str]


def _stable(previous: Sequence[Target], current: Iterable[Target]) -> tuple[Target, ...]:
    """`current` ordered so that targets also in `previous` keep their index where possible.

    Newcomers fill the holes departed targets left, then go at the end; holes
    still left are filled by moving targets from the end, so only those move.
    """
    wanted = set(current)
    if not previous:
        return tuple(sorted(wanted))
    slots: list[Target | None] = [t if t in wanted else None for t in previous]
    newcomers = sorted(wanted.difference(previous), reverse=True)
    for index, slot in enumerate(slots):
        if slot is None and newcomers:
            slots[index] = newcomers.pop()
    slots.extend(reversed(newcomers))
    hole = 0
    while True:
        while slots and slots[-1] is None:
            slots.pop()
        while hole < len(slots) and slots[hole] is not None:
            hole += 1
        if hole >= len(slots):
            break
        slots[hole] = slots.pop()
    return tuple(t for t in slots if t is not None)


_PROTOS: dict[model.Protocol, Proto] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_dispatches: dict[tuple[Kind, Proto, int, int, bool, int, bool, int], Dispatch] = {}
_verdicts: dict[Dispatch, str] = {}


def _dispatch(
    kind: Kind,
    proto: Proto,
    count: int,
    port: int,
    masquerade: bool,
    affinity: int,
    local: bool,
    cluster: int,
) -> Dispatch:
    """The Dispatch of this shape, made once: few shapes exist, and they are hashed often."""
    shape = (kind, proto, count, port, masquerade, affinity, local, cluster)
    found = _dispatches.get(shape)
    if found is None:
        found = _dispatches.setdefault(shape, Dispatch(*shape))
        _verdicts[found] = f"goto {found.chain}"
    return found


def _render(
    config: ProxyConfig,
    info: model.ServicePortInfo,
    endpoints: Sequence[model.Endpoint],
    previous: _Port | None,
) -> _Port:
    family = config.family
    v6 = family == "ipv6"
    usable = [e for e in endpoints if (":" in e.ip) == v6]  # this family's (model.family_of)
    ready = [(e.ip, e.port) for e in usable if e.ready]
    cluster_now = ready or [(e.ip, e.port) for e in usable if e.serving and e.terminating]
    local_now: list[Target] = []
    if info.internal_policy_local or info.external_policy_local:
        local_now = [e.target for e in usable if e.is_local and e.ready] or [
            e.target for e in usable if e.is_local and e.serving and e.terminating
        ]
    cluster = _stable(previous.cluster if previous else (), cluster_now)
    local = _stable(previous.local if previous else (), local_now)
    internal = local if info.internal_policy_local else cluster
    local_ips = {e.ip for e in usable if e.is_local}
    hairpins = (
        frozenset(ip for ip, _ in (*cluster, *local) if ip in local_ips)
        if local_ips
        else frozenset()
    )
    ports = {p for _, p in cluster}
    # One port for all: it goes into the chain's rule and the elements hold addresses only.
    port = ports.pop() if len(ports) == 1 else 0
    protocol = _PROTOS[info.protocol]
    affinity = info.affinity_timeout
    frontends: list[_Frontend] = []
    dispatches: set[Dispatch] = set()
    ip_frontends: list[tuple[str, bool]] = []
    if info.cluster_ip is not None and model.family_of(info.cluster_ip) == family:
        ip_frontends.append((info.cluster_ip, False))
    for address in dict.fromkeys((*info.external_ips, *info.load_balancer_ips)):
        if model.family_of(address) == family and address != info.cluster_ip:
            ip_frontends.append((address, True))
    port_frontends = [(str(info.node_port), True)] if info.node_port else []
    kinds: tuple[tuple[Kind, list[tuple[str, bool]]], ...] = (
        ("ip", ip_frontends),
        ("port", port_frontends),
    )
    for kind, keys in kinds:
        for address, external in keys:
            key = (
                f"{address} . {protocol} . {info.port}"
                if kind == "ip"
                else f"{protocol} . {address}"
            )
            targets: tuple[Target, ...] = ()
            if not cluster:
                verdict = REJECT
            else:
                if external and info.external_policy_local:
                    targets = local + cluster
                    dispatch = _dispatch(
                        kind, protocol, len(local), port, False, affinity, True, len(cluster)
                    )
                elif external:
                    targets = cluster
                    dispatch = _dispatch(
                        kind, protocol, len(cluster), port, True, affinity, False, 0
                    )
                else:
                    targets = internal
                    dispatch = _dispatch(
                        kind, protocol, len(internal), port, False, affinity, False, 0
                    )
                if targets:
                    dispatches.add(dispatch)
                    verdict = dispatch.verdict
                else:
                    verdict = DROP
            verdict_key = (names.frontend_map(kind), key)
            elements: dict[ElementKey, Value] = {verdict_key: verdict}
            endpoint_map = names.endpoint_map(kind, protocol, port)
            prefix = f"{address} . {info.port}" if kind == "ip" else address
            if port:
                for index, (ip, _) in enumerate(targets):
                    elements[(endpoint_map, f"{prefix} . {index}")] = ip
            else:
                for index, (ip, target_port) in enumerate(targets):
                    elements[(endpoint_map, f"{prefix} . {index}")] = f"{ip} . {target_port}"
            frontends.append(_Frontend(verdict_key, elements))
    return _Port(
        info=info,
        endpoints=tuple(endpoints),
        cluster=cluster,
        local=local,
        frontends=tuple(frontends),
        dispatches=frozenset(dispatches),
        # Only a pod on this node can send a packet that this node DNATs back to it.
        hairpins=hairpins,
    )


# -- the state ---------------------------------------------------------------


class ProxyState:
    """Every Service port the proxy serves, and what each puts into the table. Immutable.

    Make one with `ProxyState.build`, derive the next with `update` (cheap:
    it re-renders only the ports that changed), and turn the pair into
    commands with `diff`.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_changed",
        "_dispatch_refs",
        "_hairpin_refs",
        "_owners",
        "_ports",
        "config",
    )

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self._ports: dict[model.ServicePortName, _Port] = {}
        # Frontend → the ports claiming it, sorted; the first one wins.
        self._owners: dict[ElementKey, tuple[model.ServicePortName, ...]] = {}
        # Reference counts of what ports share: dispatch chains, hairpin elements.
        self._dispatch_refs: dict[Dispatch, int] = {}
        self._hairpin_refs: dict[str, int] = {}
        # The state this one was derived from, and the ports that differ from it.
        self._base: weakref.ref[ProxyState] | None = None
        self._changed: frozenset[model.ServicePortName] = frozenset()

    @classmethod
    def build(
        cls, config: ProxyConfig, services: Mapping[model.ServicePortName, Desired]
    ) -> ProxyState:
        """The state serving exactly `services` (name → (info, endpoints))."""
        return cls(config).update(services)

    def update(self, changes: Mapping[model.ServicePortName, Desired | None]) -> ProxyState:
        """A new state with `changes` applied: name → (info, endpoints), or None to remove."""
        with gc_paused():
            return self._update(changes)

    def _update(self, changes: Mapping[model.ServicePortName, Desired | None]) -> ProxyState:
        new = ProxyState(self.config)
        new._ports = dict(self._ports)
        new._owners = dict(self._owners)
        new._dispatch_refs = self._dispatch_refs.copy()
        new._hairpin_refs = self._hairpin_refs.copy()
        new._base = weakref.ref(self)
        changed = set()
        for name, desired in changes.items():
            previous = new._ports.get(name)
            if desired is not None:
                info, endpoints = desired
                if info.name != name:
                    raise model.InvalidInput(f"{info.name} is given under the name {name}")
                if (
                    previous is not None
                    and previous.info == info
                    and previous.endpoints == tuple(endpoints)
                ):
                    continue
            elif previous is None:
                continue
            changed.add(name)
            if previous is not None:
                new._forget(name, previous)
            if desired is not None:
                port = _render(self.config, desired[0], desired[1], previous)
                new._remember(name, port)
        new._changed = frozenset(changed)
        return new

    def _forget(self, name: model.ServicePortName, port: _Port) -> None:
        del self._ports[name]
        _release(self._dispatch_refs, port.dispatches)
        _release(self._hairpin_refs, port.hairpins)
        for frontend in port.frontends:
            owners = tuple(n for n in self._owners[frontend.key] if n != name)
            if owners:
                self._owners[frontend.key] = owners
            else:
                del self._owners[frontend.key]

    def _remember(self, name: model.ServicePortName, port: _Port) -> None:
        self._ports[name] = port
        _hold(self._dispatch_refs, port.dispatches)
        _hold(self._hairpin_refs, port.hairpins)
        for frontend in port.frontends:
            owners = self._owners.get(frontend.key)
            self._owners[frontend.key] = (
                (name,) if owners is None else tuple(sorted((*owners, name)))
            )

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ports)

    def services(self) -> dict[model.ServicePortName, Desired]:
        """Name → (info, endpoints) of every Service port in this state."""
        return {name: (port.info, port.endpoints) for name, port in self._ports.items()}

    def frontend_elements(self, key: ElementKey) -> dict[ElementKey, Value]:
        """The elements frontend `key` puts in the table (none if nobody claims it)."""
        owners = self._owners.get(key)
        if not owners:
            return {}
        for frontend in self._ports[owners[0]].frontends:
            if frontend.key == key:
                return frontend.elements
        raise AssertionError(f"{owners[0]} owns {key} but has no such frontend")

    def elements(self) -> dict[ElementKey, Value]:
        """Every element of every map and set the state fills, keyed by (map, key)."""
        found: dict[ElementKey, Value] = {}
        for key in self._owners:
            found.update(self.frontend_elements(key))
        for address in self._hairpin_refs:
            found[(names.HAIRPIN, f"{address} . {address}")] = None
        for cidr in self.config.pod_cidrs:
            found[(names.POD_CIDRS, cidr)] = None
        for cidr in self.config.nodeport_addresses or ():
            found[(names.NODEPORT_ADDRESSES, cidr)] = None
        return found

    def holds_dispatch(self, dispatch: Dispatch) -> bool:
        return dispatch in self._dispatch_refs

    def holds_hairpin(self, address: str) -> bool:
        return address in self._hairpin_refs

    def dispatches(self) -> frozenset[Dispatch]:
        """The shapes in use: one dispatch chain each."""
        return frozenset(self._dispatch_refs)

    def affinity_objects(self) -> frozenset[AffinityObject]:
        """(kind, proto, timeout, index) of every affinity set and pick chain in use."""
        return _affinity_objects(self._dispatch_refs)


def _hold(counts: dict[_R, int], refs: Iterable[_R]) -> None:
    for ref in refs:
        counts[ref] = counts.get(ref, 0) + 1


def _release(counts: dict[_R, int], refs: Iterable[_R]) -> None:
    for ref in refs:
        left = counts[ref] - 1
        if left:
            counts[ref] = left
        else:
            del counts[ref]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while thousands of acyclic objects are made (~30% faster)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _affinity_objects(dispatches: Iterable[Dispatch]) -> frozenset[AffinityObject]:
    return frozenset(obj for d in dispatches for obj in d.affinity_objects())


@dataclass(frozen=True, slots=True)
class Delta:
    """What may differ between two states: candidates, each still to be compared."""

    frontends: frozenset[ElementKey]
    dispatches: frozenset[Dispatch]
    hairpins: frozenset[str]


def delta(old: ProxyState, new: ProxyState) -> Delta:
    """The frontends, shapes and hairpin addresses the ports that differ touch, old or new.

    Only the ports that changed are looked at when `new` was derived from
    `old` by `update` (directly); otherwise every port is compared.
    """
    frontends: set[ElementKey] = set()
    dispatches: set[Dispatch] = set()
    hairpins: set[str] = set()
    for name in _changed_ports(old, new):
        for state in (old, new):
            port = state._ports.get(name)
            if port is not None:
                frontends.update(f.key for f in port.frontends)
                dispatches |= port.dispatches
                hairpins |= port.hairpins
    return Delta(frozenset(frontends), frozenset(dispatches), frozenset(hairpins))


def _changed_ports(old: ProxyState, new: ProxyState) -> set[model.ServicePortName]:
    if new._base is not None and new._base() is old:
        return set(new._changed)
    changed = {name for name, port in new._ports.items() if old._ports.get(name) is not port}
    changed.update(name for name in old._ports if name not in new._ports)
    return changed
