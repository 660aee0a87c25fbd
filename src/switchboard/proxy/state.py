"""The desired state of the Service data plane: what each Service port puts into the table.

Pure and immutable. `ProxyState` holds every Service port the proxy serves
with its elements already rendered as the text nft reads, plus reference
counts of what ports share (dispatch chains, hairpin elements) and which
port owns each frontend. `update` derives the next state by re-rendering
only the ports that changed, so the delta between a state and the one
derived from it (`delta`) is found without looking at the other ports.
`Builder` makes a state from nothing a batch of ports at a time and says
what each batch adds to the table, so that a full sync can hand nft the
start of the table while the rest is still being built; its state is
private until `finish` hands it out. `ruleset` turns states, deltas and
batches into nft transactions.

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
  else the local serving-and-terminating ones. The dispatch chain holds the
  target port only when all of these, local and cluster, agree on one.
- Masquerade: external traffic under the Cluster policy is marked for it; a
  pod that reached itself (hairpin) is found by the ``@hairpin`` set of local
  endpoints; nothing else is SNATed.
- externalTrafficPolicy Local: a frontend's endpoints are its local ones
  (indices 0..L-1) followed by all of them (L..L+C-1). The node itself
  (masqueraded) and pod CIDRs reach any endpoint, other clients keep their
  address and reach only local ones.
- Every Service port holds its ClusterIP in ``@cluster-ips`` (counted, as
  the Service's ports share it), which the check after DNAT rejects: a
  connection still addressed there matched no port of the Service.
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
    `service_cidrs`: the cluster's service CIDRs (service-cluster-ip-range);
    new connections to an address in them that no Service port holds are
    dropped. Empty: such traffic is left to routing.
    """

    family: model.Family = "ipv4"
    nodeport_addresses: tuple[str, ...] | None = None
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.family not in ("ipv4", "ipv6"):
            raise model.InvalidInput(f"family {self.family!r} is not ipv4 or ipv6")
        if self.nodeport_addresses is not None:
            object.__setattr__(
                self, "nodeport_addresses", self._cidrs("nodeport address", self.nodeport_addresses)
            )
        object.__setattr__(self, "pod_cidrs", self._cidrs("pod CIDR", self.pod_cidrs))
        object.__setattr__(self, "service_cidrs", self._cidrs("service CIDR", self.service_cidrs))

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
        return f"goto {self.chain}"

    def affinity_objects(self) -> Iterator[AffinityObject]:
        """(kind, proto, timeout, index, port) of every pick chain (and set) this chain uses."""
        if self.affinity:
            for index in range(self.count):
                yield (self.kind, self.proto, self.affinity, index, self.port)


DROP: Final = "drop"
REJECT: Final = f"goto {names.REJECT}"


# -- per Service port --------------------------------------------------------


# _Frontend and _Port are NamedTuples made 10,000s of times per full sync, through
# `_new` (tuple.__new__): the generated __new__ is a Python call that costs more than
# the rest of making one.


class _Frontend(NamedTuple):
    """What one frontend puts in the table: its verdict element and endpoint elements.

    The endpoint elements are kept as their parts, not as (map, key) pairs: a
    full sync writes them straight into nft text (`endpoint_text`), and only
    the few frontends a diff looks at are ever spelled out as a dict
    (`elements`).
    """

    key: ElementKey  # (verdict map, frontend key)
    verdict: str
    endpoint_map: str
    prefix: str  # the frontend as the endpoint keys begin: "10.96.0.1 . 80", "30080"
    values: tuple[str, ...]  # endpoint element values, by index

    def elements(self) -> dict[ElementKey, Value]:
        found: dict[ElementKey, Value] = {self.key: self.verdict}
        endpoint_map, prefix = self.endpoint_map, self.prefix
        for index, value in enumerate(self.values):
            found[(endpoint_map, f"{prefix} . {index}")] = value
        return found

    def endpoint_text(self) -> str:
        """The endpoint elements as nft text: ``key : value, …``."""
        prefix = self.prefix
        return ", ".join([f"{prefix} . {i} : {value}" for i, value in enumerate(self.values)])


class _Port(NamedTuple):
    """One Service port, rendered."""

    info: model.ServicePortInfo
    endpoints: tuple[model.Endpoint, ...]
    cluster: tuple[Target, ...]  # endpoint order, kept stable across updates
    local: tuple[Target, ...]
    frontends: tuple[_Frontend, ...]
    dispatches: tuple[Dispatch, ...]  # distinct
    hairpins: frozenset[str]
    cluster_ip: str | None  # of this state's family: an element of @cluster-ips


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


_new = tuple.__new__
_NO_HAIRPINS: Final[frozenset[str]] = frozenset()
_PROTOS: dict[model.Protocol, Proto] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_Shape = tuple[Kind, Proto, int, int, bool, int, bool, int]
_dispatches: dict[_Shape, tuple[Dispatch, str]] = {}
# (kind, protocol, one port or not) → endpoint map name: asked twice per Service port.
_ENDPOINT_MAPS: dict[tuple[Kind, Proto, bool], str] = {
    (kind, proto, single): names.endpoint_map(kind, proto, int(single))
    for kind in names.KINDS
    for proto in names.PROTOS
    for single in (False, True)
}


def _dispatch(shape: _Shape) -> tuple[Dispatch, str]:
    """The Dispatch of this shape and its verdict, made once: few shapes exist."""
    found = _dispatches.get(shape)
    if found is None:
        dispatch = Dispatch(*shape)
        found = _dispatches.setdefault(shape, (dispatch, dispatch.verdict))
    return found


def _render(
    config: ProxyConfig,
    info: model.ServicePortInfo,
    endpoints: Sequence[model.Endpoint],
    previous: _Port | None,
) -> _Port:
    # One pass over the endpoints and no per-element objects: a full sync renders
    # every Service port, so this loop is most of the Python side of its cost.
    v6 = config.family == "ipv6"
    with_local = info.internal_policy_local or info.external_policy_local
    ready: list[Target] = []
    fallback: list[Target] = []  # serving and terminating: used only when none is ready
    local_ready: list[Target] = []
    local_fallback: list[Target] = []
    local_ips: set[str] = set()
    for e in endpoints:
        ip = e.ip
        if (":" in ip) != v6:  # another family's (model.family_of)
            continue
        if e.ready:
            target = (ip, e.port)
            ready.append(target)
        elif e.serving and e.terminating:
            target = (ip, e.port)
            fallback.append(target)
        else:
            target = None
        if e.is_local:
            local_ips.add(ip)
            if with_local and target is not None:
                (local_ready if e.ready else local_fallback).append(target)
    cluster_now = ready or fallback
    cluster = (
        _stable(previous.cluster, cluster_now) if previous else tuple(sorted(set(cluster_now)))
    )
    local_now = local_ready or local_fallback
    local = _stable(previous.local if previous else (), local_now) if local_now else ()
    internal = local if info.internal_policy_local else cluster
    hairpins = (
        frozenset(ip for ip, _ in (*cluster, *local) if ip in local_ips)
        if local_ips
        else _NO_HAIRPINS
    )
    ports = {p for _, p in cluster}
    if local:
        # Local terminating endpoints stand in when no local one is ready, while remote
        # ready ones serve the rest: they need not listen on the ready ones' port.
        ports.update([p for _, p in local])
    # One port for all: it goes into the chain's rule and the elements hold addresses only.
    port = ports.pop() if len(ports) == 1 else 0
    protocol = _PROTOS[info.name.protocol]
    affinity = info.affinity_timeout
    frontends: list[_Frontend] = []
    dispatches: list[Dispatch] = []
    ip_frontends: list[tuple[str, bool]] = []
    cluster_ip = info.cluster_ip
    if cluster_ip is not None and (":" in cluster_ip) == v6:
        ip_frontends.append((cluster_ip, False))
        own_cluster_ip: str | None = cluster_ip
    else:
        own_cluster_ip = None
    if info.external_ips or info.load_balancer_ips:
        for address in dict.fromkeys((*info.external_ips, *info.load_balancer_ips)):
            if (":" in address) == v6 and address != cluster_ip:
                ip_frontends.append((address, True))
    port_frontends = [(str(info.node_port), True)] if info.node_port else []
    cluster_values = _values(cluster, port)
    single = port != 0
    kinds: tuple[tuple[Kind, list[tuple[str, bool]]], ...] = (
        ("ip", ip_frontends),
        ("port", port_frontends),
    )
    for kind, keys in kinds:
        if not keys:
            continue
        endpoint_map = _ENDPOINT_MAPS[(kind, protocol, single)]
        verdict_map = names.SERVICE_IPS if kind == "ip" else names.SERVICE_NODEPORTS
        for address, external in keys:
            if kind == "ip":
                prefix = f"{address} . {info.port}"
                key = f"{address} . {protocol} . {info.port}"
            else:
                prefix = address
                key = f"{protocol} . {address}"
            values: tuple[str, ...] = ()
            if not cluster:
                verdict = REJECT
            else:
                if external and info.external_policy_local:
                    values = _values(local, port) + cluster_values
                    shape: _Shape = (
                        kind,
                        protocol,
                        len(local),
                        port,
                        False,
                        affinity,
                        True,
                        len(cluster),
                    )
                elif external:
                    values = cluster_values
                    shape = (kind, protocol, len(cluster), port, True, affinity, False, 0)
                else:
                    values = cluster_values if internal is cluster else _values(internal, port)
                    shape = (kind, protocol, len(internal), port, False, affinity, False, 0)
                if values:
                    dispatch, verdict = _dispatch(shape)
                    if dispatch not in dispatches:
                        dispatches.append(dispatch)
                else:
                    verdict = DROP
            frontends.append(
                _new(_Frontend, ((verdict_map, key), verdict, endpoint_map, prefix, values))
            )
    # Only a pod on this node can send a packet that this node DNATs back to it.
    return _new(
        _Port,
        (
            info,
            tuple(endpoints),
            cluster,
            local,
            tuple(frontends),
            tuple(dispatches),
            hairpins,
            own_cluster_ip,
        ),
    )


def _values(targets: Sequence[Target], port: int) -> tuple[str, ...]:
    """Endpoint element values: the address alone when the chain's rule holds the port."""
    if port:
        return tuple([ip for ip, _ in targets])
    return tuple([f"{ip} . {target_port}" for ip, target_port in targets])


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
        "_cluster_ip_refs",
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
        # Reference counts of what ports share: dispatch chains, hairpin elements, and
        # ClusterIPs (every port of a Service holds its ClusterIP in @cluster-ips).
        self._dispatch_refs: dict[Dispatch, int] = {}
        self._hairpin_refs: dict[str, int] = {}
        self._cluster_ip_refs: dict[str, int] = {}
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
        new._cluster_ip_refs = self._cluster_ip_refs.copy()
        new._base = weakref.ref(self)
        changed = set()
        for name, desired in changes.items():
            previous = new._ports.get(name)
            if desired is not None:
                info, endpoints = desired
                _check_name(name, info)
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
        if port.hairpins:
            _release(self._hairpin_refs, port.hairpins)
        if port.cluster_ip is not None:
            _release(self._cluster_ip_refs, (port.cluster_ip,))
        for frontend in port.frontends:
            owners = tuple(n for n in self._owners[frontend.key] if n != name)
            if owners:
                self._owners[frontend.key] = owners
            else:
                del self._owners[frontend.key]

    def _remember(self, name: model.ServicePortName, port: _Port) -> None:
        self._ports[name] = port
        _hold(self._dispatch_refs, port.dispatches)
        if port.hairpins:
            _hold(self._hairpin_refs, port.hairpins)
        if port.cluster_ip is not None:
            _hold(self._cluster_ip_refs, (port.cluster_ip,))
        all_owners = self._owners
        for frontend in port.frontends:
            owners = all_owners.get(frontend.key)
            all_owners[frontend.key] = (name,) if owners is None else tuple(sorted((*owners, name)))

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
        return _frontend_of(self, owners[0], key).elements()

    def elements(self) -> dict[ElementKey, Value]:
        """Every element of every map and set the state fills, keyed by (map, key)."""
        found: dict[ElementKey, Value] = {}
        for frontend in self._owners:
            found.update(self.frontend_elements(frontend))
        for element in self._set_elements():
            found[element] = None
        return found

    def element_text(self) -> dict[str, list[str]]:
        """Map or set name → its elements as nft text, in comma-joined chunks.

        The same elements as `elements`, written for a full sync without making
        a key or a pair per element: an element is formatted once, here.
        """
        chunks: dict[str, list[str]] = {}
        owners = self._owners
        for name, port in self._ports.items():
            for frontend in port.frontends:
                claim = owners[frontend.key]
                if len(claim) == 1 or claim[0] == name:  # else another port won it
                    _write(chunks, frontend)
        for target, element in self._set_elements():
            chunks.setdefault(target, []).append(element)
        return chunks

    def _set_elements(self) -> Iterator[ElementKey]:
        for address in self._hairpin_refs:
            yield (names.HAIRPIN, f"{address} . {address}")
        for address in self._cluster_ip_refs:
            yield (names.CLUSTER_IPS, address)
        yield from _config_elements(self.config)

    def holds_dispatch(self, dispatch: Dispatch) -> bool:
        return dispatch in self._dispatch_refs

    def holds_hairpin(self, address: str) -> bool:
        return address in self._hairpin_refs

    def holds_cluster_ip(self, address: str) -> bool:
        return address in self._cluster_ip_refs

    def dispatches(self) -> frozenset[Dispatch]:
        """The shapes in use: one dispatch chain each."""
        return frozenset(self._dispatch_refs)

    def affinity_objects(self) -> frozenset[AffinityObject]:
        """(kind, proto, timeout, index) of every affinity set and pick chain in use."""
        return _affinity_objects(self._dispatch_refs)


def _check_name(name: model.ServicePortName, info: model.ServicePortInfo) -> None:
    """Refuse a Service port given under a name other than its own: states are keyed by it."""
    if info.name is not name and info.name != name:  # `is`: the common case, and cheap
        raise model.InvalidInput(f"{info.name} is given under the name {name}")


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


# -- building in batches ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Growth:
    """What a batch of Service ports brings into a table being built (`Builder`).

    `dispatches`: shapes no earlier batch used (their chains go first);
    `deletes`: elements an earlier batch wrote for a frontend that another
    port won after all; `elements`: the new elements as nft text, per map or
    set (comma-joined chunks, as `ProxyState.element_text`).
    """

    dispatches: tuple[Dispatch, ...]
    deletes: dict[str, list[str]]
    elements: dict[str, list[str]]


class Builder:
    """Builds a state from nothing, a batch of Service ports at a time.

    For a full sync that hands the table to nft while the rest of it is still
    being built: `add` says what each batch brings (`Growth`), and `finish`
    what is left, with the state -- the one `ProxyState.build` makes from
    all the batches together. The elements of a frontend go out with the
    first port that claims it; if a later port wins it (its name sorts
    first), `finish` replaces them.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self._state: ProxyState | None = ProxyState(config)
        # Contested frontend → the port whose elements went out for it.
        self._written: dict[ElementKey, model.ServicePortName] = {}

    def add(self, batch: Iterable[tuple[model.ServicePortName, Desired]]) -> Growth:
        state = self._building()
        with gc_paused():
            return self._add(state, batch)

    def _add(
        self, state: ProxyState, batch: Iterable[tuple[model.ServicePortName, Desired]]
    ) -> Growth:
        config = state.config
        owners, refs, hairpins = state._owners, state._dispatch_refs, state._hairpin_refs
        cluster_ips = state._cluster_ip_refs
        shapes: list[Dispatch] = []
        chunks: dict[str, list[str]] = {}
        new_cluster_ips: list[str] = []
        for name, (info, endpoints) in batch:
            _check_name(name, info)
            if name in state._ports:
                raise ValueError(f"{name} is in two batches")
            port = _render(config, info, endpoints, None)
            state._remember(name, port)
            for dispatch in port.dispatches:
                if refs[dispatch] == 1:
                    shapes.append(dispatch)
            for address in port.hairpins:
                if hairpins[address] == 1:
                    chunks.setdefault(names.HAIRPIN, []).append(f"{address} . {address}")
            if port.cluster_ip is not None and cluster_ips[port.cluster_ip] == 1:
                new_cluster_ips.append(port.cluster_ip)
            for frontend in port.frontends:
                claim = owners[frontend.key]
                if len(claim) == 1:
                    _write(chunks, frontend)
                elif frontend.key not in self._written:
                    # The port that held it alone until now wrote its elements.
                    self._written[frontend.key] = claim[1] if claim[0] == name else claim[0]
        if new_cluster_ips:
            chunks[names.CLUSTER_IPS] = [", ".join(new_cluster_ips)]
        return Growth(tuple(shapes), {}, chunks)

    def finish(self) -> tuple[Growth, ProxyState]:
        """The elements still to write (contested frontends, the configured sets), and the state."""
        state = self._building()
        self._state = None
        deletes: dict[str, list[str]] = {}
        chunks: dict[str, list[str]] = {}
        for key, written in self._written.items():
            winner = state._owners[key][0]
            if winner != written:
                for target, element in _frontend_of(state, written, key).elements():
                    deletes.setdefault(target, []).append(element)
                _write(chunks, _frontend_of(state, winner, key))
        # Hairpins and ClusterIPs went with their ports.
        for target, element in _config_elements(state.config):
            chunks.setdefault(target, []).append(element)
        return Growth((), deletes, chunks), state

    def _building(self) -> ProxyState:
        if self._state is None:
            raise RuntimeError("this builder has finished; its state is out")
        return self._state


def _config_elements(config: ProxyConfig) -> Iterator[ElementKey]:
    for cidr in config.pod_cidrs:
        yield (names.POD_CIDRS, cidr)
    for cidr in config.nodeport_addresses or ():
        yield (names.NODEPORT_ADDRESSES, cidr)
    for cidr in config.service_cidrs:
        yield (names.SERVICE_CIDRS, cidr)


def _write(chunks: dict[str, list[str]], frontend: _Frontend) -> None:
    target, key = frontend.key
    chunks.setdefault(target, []).append(f"{key} : {frontend.verdict}")
    if frontend.values:
        chunks.setdefault(frontend.endpoint_map, []).append(frontend.endpoint_text())


def _frontend_of(state: ProxyState, name: model.ServicePortName, key: ElementKey) -> _Frontend:
    for frontend in state._ports[name].frontends:
        if frontend.key == key:
            return frontend
    raise AssertionError(f"{name} claims {key} but has no such frontend")


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
    cluster_ips: frozenset[str]


def delta(old: ProxyState, new: ProxyState) -> Delta:
    """The frontends, shapes, hairpin addresses and ClusterIPs the ports that differ touch.

    Only the ports that changed are looked at when `new` was derived from
    `old` by `update` (directly); otherwise every port is compared.
    """
    frontends: set[ElementKey] = set()
    dispatches: set[Dispatch] = set()
    hairpins: set[str] = set()
    cluster_ips: set[str] = set()
    for name in _changed_ports(old, new):
        for state in (old, new):
            port = state._ports.get(name)
            if port is not None:
                frontends.update(f.key for f in port.frontends)
                dispatches.update(port.dispatches)
                hairpins |= port.hairpins
                if port.cluster_ip is not None:
                    cluster_ips.add(port.cluster_ip)
    return Delta(
        frozenset(frontends), frozenset(dispatches), frozenset(hairpins), frozenset(cluster_ips)
    )


def _changed_ports(old: ProxyState, new: ProxyState) -> set[model.ServicePortName]:
    if new._base is not None and new._base() is old:
        return set(new._changed)
    changed = {name for name, port in new._ports.items() if old._ports.get(name) is not port}
    changed.update(name for name in old._ports if name not in new._ports)
    return changed
