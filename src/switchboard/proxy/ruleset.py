"""The nftables text of the data plane: the whole table, and the diff between two states.

Pure: nothing here touches the kernel. `full(state)` is the whole table
as one transaction that replaces whatever table of ours is there;
`diff(old, new)` the few commands that turn one state's table into the
next's, computed from the states in memory -- the kernel's table is never
listed. Both are `Script`s of typed commands; `str(script)` is the text for
``nft -f``. `FullSync` is `full` made in pieces while the state is built,
for a backend that lets nft read the start of the table meanwhile. What
goes into the table is decided in `state`; this module only writes it down.

How a packet finds an endpoint (README.md draws it)::

    nat-prerouting / nat-output ─ jump services
    services:  ip daddr . l4proto . dport      vmap @service-ips
               fib daddr local, l4proto . dport vmap @service-nodeports
                    │ goto <dispatch chain>  |  goto reject-chain  |  drop
    ip-tcp-n3-to8080:  dnat to ip daddr . tcp dport . numgen random mod 3
                       map @service-endpoints-tcp-addresses : 8080
    nat-postrouting: mark → masquerade; ct status dnat + @hairpin → masquerade
    filter-forward / filter-output-post-dnat (after DNAT), new connections only:
        cluster-ips-check:  ip daddr @cluster-ips goto reject-chain   (no such port)
                            ip daddr @service-cidrs drop              (no such ClusterIP)

Order inside one diff transaction: new affinity sets, pick chains and
dispatch chains (each before its users), then element deletes, element
adds, then the chains and sets no element or rule uses any more.

ClientIP affinity in rules: per (kind, protocol, timeout, index i) a
dynamic set of ``client . frontend`` with the Service's timeout; a dispatch
chain first tries each set and DNATs to index i of a hit (refreshing it),
else picks at random through a pick chain that records the client in the
set of the index it picked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from switchboard.proxy import model, names
from switchboard.proxy.names import Kind, Proto

# The state's names too, for callers that speak only to this module.
from switchboard.proxy.state import (
    DROP,
    REJECT,
    AffinityObject,
    Builder,
    Desired,
    Dispatch,
    ElementKey,
    Growth,
    ProxyConfig,
    ProxyState,
    Target,
    Value,
    delta,
    gc_paused,
)

__all__ = [
    "DROP",
    "REJECT",
    "AddChain",
    "AddElements",
    "AddSet",
    "Command",
    "DeleteChain",
    "DeleteElements",
    "DeleteSet",
    "Desired",
    "Dispatch",
    "ElementKey",
    "FullSync",
    "ProxyConfig",
    "ProxyState",
    "Script",
    "Statement",
    "Target",
    "Value",
    "diff",
    "full",
    "render",
]


@dataclass(frozen=True, slots=True)
class _Terms:
    """The words that differ between the ip and ip6 tables."""

    table_family: str
    address_type: str
    match: str  # ip / ip6 as a match prefix
    loopback: str


_TERMS = {
    "ipv4": _Terms("ip", "ipv4_addr", "ip", "127.0.0.0/8"),
    "ipv6": _Terms("ip6", "ipv6_addr", "ip6", "::1"),
}


# -- commands ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddElements:
    """Add elements to a map or set, given as the text between nft's braces.

    `body` is ``key : value, …`` for a map, ``key, …`` for a set: a full sync
    writes tens of thousands of elements straight into it (`ProxyState.element_text`).
    `of` makes one from (key, value) pairs; `items` reads them back.
    """

    target: str
    body: str

    @classmethod
    def of(cls, target: str, items: Iterable[tuple[str, Value]]) -> AddElements:
        return cls(target, ", ".join(k if v is None else f"{k} : {v}" for k, v in items))

    @property
    def items(self) -> tuple[tuple[str, Value], ...]:
        """(key, value) of each element, value None in a set."""
        if not self.body:
            return ()
        found: list[tuple[str, Value]] = []
        for element in self.body.split(", "):  # neither keys nor values hold ", " or " : "
            key, colon, value = element.partition(" : ")
            found.append((key, value if colon else None))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class DeleteElements:
    target: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddChain:
    """Add a regular chain with its rules (rule text as nft takes it)."""

    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteChain:
    name: str


@dataclass(frozen=True, slots=True)
class AddSet:
    """Add a set or map; `spec` is the body between braces."""

    name: str
    spec: str
    map: bool = False


@dataclass(frozen=True, slots=True)
class DeleteSet:
    name: str
    map: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    """A skeleton statement, as nft text after the table (``add rule …``, ``add chain …``)."""

    text: str


Command = AddElements | DeleteElements | AddChain | DeleteChain | AddSet | DeleteSet | Statement


@dataclass(frozen=True, slots=True)
class Script:
    """Commands for one table, rendered as one `nft -f` transaction by `str()`."""

    family: model.Family
    commands: tuple[Command, ...]
    replace_table: bool = False

    def __bool__(self) -> bool:
        return bool(self.commands) or self.replace_table

    def __str__(self) -> str:
        return render(self)


def render(script: Script) -> str:
    """`script` as `nft -f` text: one transaction."""
    table = f"{_TERMS[script.family].table_family} {names.TABLE}"
    lines: list[str] = []
    add = lines.append
    if script.replace_table:
        # Add first so the delete never fails, then build anew: one atomic swap.
        add(f"add table {table}")
        add(f"delete table {table}")
        add(f"add table {table}")
    for command in script.commands:
        if isinstance(command, AddElements):
            if command.body:
                add(f"add element {table} {command.target} {{ {command.body} }}")
        elif isinstance(command, DeleteElements):
            if command.keys:
                body = ", ".join(command.keys)
                add(f"delete element {table} {command.target} {{ {body} }}")
        elif isinstance(command, AddChain):
            add(f"add chain {table} {command.name}")
            for rule in command.rules:
                add(f"add rule {table} {command.name} {rule}")
        elif isinstance(command, DeleteChain):
            add(f"flush chain {table} {command.name}")
            add(f"delete chain {table} {command.name}")
        elif isinstance(command, AddSet):
            kind = "map" if command.map else "set"
            add(f"add {kind} {table} {command.name} {{ {command.spec} }}")
        elif isinstance(command, DeleteSet):
            add(f"delete {'map' if command.map else 'set'} {table} {command.name}")
        else:
            add(command.text.replace("{table}", table))
    return "\n".join(lines) + "\n" if lines else ""


# -- the ruleset -------------------------------------------------------------


def _endpoint_key_expr(terms: _Terms, kind: Kind, proto: Proto) -> str:
    """The packet's frontend as the endpoint maps and affinity sets key it."""
    if kind == "ip":
        return f"{terms.match} daddr . {proto} dport"
    return f"{proto} dport"


def _dispatch_chain(config: ProxyConfig, dispatch: Dispatch) -> AddChain:
    terms = _TERMS[config.family]
    kind, proto = dispatch.kind, dispatch.proto
    key = _endpoint_key_expr(terms, kind, proto)
    client_key = f"{terms.match} saddr . {key}"
    endpoints = names.endpoint_map(kind, proto, dispatch.port) + _port_suffix(dispatch.port)
    mark = f"meta mark set meta mark | {names.MASQUERADE_MARK:#x}"
    rules: list[str] = []
    if dispatch.local and dispatch.cluster:
        anywhere = (
            f"dnat to {key} . numgen random mod {dispatch.cluster} offset {dispatch.count} "
            f"map @{endpoints}"
        )
        # The node itself and the cluster's pods are not external clients: any endpoint.
        rules.append(f"fib saddr type local {mark} {anywhere}")
        rules.append(f"{terms.match} saddr @{names.POD_CIDRS} {anywhere}")
    if dispatch.masquerade:
        rules.append(mark)
    for obj in dispatch.affinity_objects():
        sticky = names.affinity_set(*obj[:4])
        rules.append(
            f"{client_key} @{sticky} update @{sticky} {{ {client_key} }} "
            f"dnat to {key} . {_constant(obj[3])} map @{endpoints}"
        )
    if dispatch.count == 0:
        rules.append("drop")
    elif dispatch.affinity:
        picks = ", ".join(
            f"{i} : goto "
            f"{names.affinity_pick_chain(kind, proto, dispatch.affinity, i, dispatch.port)}"
            for i in range(dispatch.count)
        )
        rules.append(f"numgen random mod {dispatch.count} vmap {{ {picks} }}")
    else:
        rules.append(f"dnat to {key} . numgen random mod {dispatch.count} map @{endpoints}")
    return AddChain(dispatch.chain, tuple(rules))


def _port_suffix(port: int) -> str:
    """After a map lookup that yields an address only: the port to DNAT to."""
    return f" : {port}" if port else ""


def _constant(index: int) -> str:
    # A concatenation takes expressions, not literals; `numgen inc mod 1` is always 0.
    return f"numgen inc mod 1 offset {index}"


def _affinity_set(
    config: ProxyConfig, kind: Kind, proto: Proto, timeout: int, index: int
) -> AddSet:
    terms = _TERMS[config.family]
    client_key = f"{terms.match} saddr . {_endpoint_key_expr(terms, kind, proto)}"
    return AddSet(
        names.affinity_set(kind, proto, timeout, index),
        f"typeof {client_key} ; size {names.AFFINITY_SET_SIZE} ; flags dynamic,timeout ; "
        f"timeout {timeout}s ;",
    )


def _affinity_pick_chain(config: ProxyConfig, obj: AffinityObject) -> AddChain:
    terms = _TERMS[config.family]
    kind, proto, _, index, port = obj
    key = _endpoint_key_expr(terms, kind, proto)
    sticky = names.affinity_set(*obj[:4])
    endpoints = names.endpoint_map(kind, proto, port) + _port_suffix(port)
    return AddChain(
        names.affinity_pick_chain(*obj),
        (
            f"update @{sticky} {{ {terms.match} saddr . {key} }} dnat to {key} . "
            f"{_constant(index)} map @{endpoints}",
        ),
    )


def _skeleton(config: ProxyConfig) -> list[Command]:
    t = _TERMS[config.family]
    ip = t.match
    table = "{table}"
    s: list[Command] = [
        Statement(
            f"add chain {table} {names.NAT_PREROUTING} "
            f"{{ type nat hook prerouting priority {names.PRIORITY_DSTNAT} ; }}"
        ),
        Statement(
            f"add chain {table} {names.NAT_OUTPUT} "
            f"{{ type nat hook output priority {names.PRIORITY_DSTNAT} ; }}"
        ),
        Statement(
            f"add chain {table} {names.NAT_POSTROUTING} "
            f"{{ type nat hook postrouting priority {names.PRIORITY_SRCNAT} ; }}"
        ),
        Statement(
            f"add chain {table} {names.FILTER_FORWARD} "
            f"{{ type filter hook forward priority {names.PRIORITY_FILTER_FORWARD} ; }}"
        ),
        Statement(
            f"add chain {table} {names.FILTER_OUTPUT_POST_DNAT} "
            f"{{ type filter hook output priority {names.PRIORITY_FILTER_POST_DNAT} ; }}"
        ),
        AddSet(
            names.SERVICE_IPS,
            f"type {t.address_type} . inet_proto . inet_service : verdict ;",
            map=True,
        ),
        AddSet(names.SERVICE_NODEPORTS, "type inet_proto . inet_service : verdict ;", map=True),
        *(
            AddSet(
                names.endpoint_map(kind, proto, addresses_only),
                f"typeof {_endpoint_key_expr(t, kind, proto)} . numgen random mod 1 : "
                + (f"{ip} daddr ;" if addresses_only else f"{ip} daddr . {proto} dport ;"),
                map=True,
            )
            for kind in names.KINDS
            for proto in names.PROTOS
            for addresses_only in (0, 1)
        ),
        AddSet(names.HAIRPIN, f"type {t.address_type} . {t.address_type} ;"),
        AddSet(names.POD_CIDRS, f"type {t.address_type} ; flags interval ;"),
        AddSet(names.CLUSTER_IPS, f"type {t.address_type} ;"),
        AddChain(
            names.REJECT,
            ("meta l4proto tcp reject with tcp reset", "reject"),
        ),
    ]
    # Runs after DNAT: a new connection still addressed to a ClusterIP matched no port of
    # its Service. Turned away at once, as kube-proxy does, instead of being routed on
    # towards an address nobody holds until the client gives up.
    check = [f"{ip} daddr @{names.CLUSTER_IPS} goto {names.REJECT}"]
    if config.service_cidrs:
        s.append(AddSet(names.SERVICE_CIDRS, f"type {t.address_type} ; flags interval ;"))
        check.append(f"{ip} daddr @{names.SERVICE_CIDRS} drop")
    s.append(AddChain(names.CLUSTER_IPS_CHECK, tuple(check)))
    if config.nodeport_addresses is not None:
        s.append(AddSet(names.NODEPORT_ADDRESSES, f"type {t.address_type} ; flags interval ;"))
        nodeport_match = f"fib daddr type local {ip} daddr @{names.NODEPORT_ADDRESSES}"
    else:
        nodeport_match = f"fib daddr type local {ip} daddr != {t.loopback}"
    s.append(
        AddChain(
            names.SERVICES,
            (
                f"{ip} daddr . meta l4proto . th dport vmap @{names.SERVICE_IPS}",
                f"{nodeport_match} meta l4proto . th dport vmap @{names.SERVICE_NODEPORTS}",
            ),
        )
    )
    return s


def _base_rules(config: ProxyConfig) -> list[Command]:
    """The rules of the skeleton's base chains, hairpin rule last; they use only `_skeleton`'s."""
    table = "{table}"
    ip = _TERMS[config.family].match
    check = names.CLUSTER_IPS_CHECK
    mark = names.MASQUERADE_MARK
    unmark = 0xFFFFFFFF ^ mark
    return [
        Statement(f"add rule {table} {names.NAT_PREROUTING} jump {names.SERVICES}"),
        Statement(f"add rule {table} {names.NAT_OUTPUT} jump {names.SERVICES}"),
        # A connection's first packet only: the rest follow conntrack, which never lets a
        # refused connection in, so checking them would cost a lookup per packet for nothing.
        Statement(f"add rule {table} {names.FILTER_FORWARD} ct state new jump {check}"),
        Statement(f"add rule {table} {names.FILTER_OUTPUT_POST_DNAT} ct state new jump {check}"),
        Statement(
            f"add rule {table} {names.NAT_POSTROUTING} meta mark & {mark:#x} == {mark:#x} "
            f"meta mark set meta mark & {unmark:#x} masquerade fully-random"
        ),
        Statement(
            f"add rule {table} {names.NAT_POSTROUTING} ct status dnat "
            f"{ip} saddr . {ip} daddr @{names.HAIRPIN} masquerade"
        ),
    ]


def _shared_objects(
    config: ProxyConfig,
    dispatches: Iterable[Dispatch],
    affinity: Iterable[AffinityObject],
) -> list[Command]:
    """Affinity sets, then pick chains, then dispatch chains: each before its users."""
    ordered_affinity = sorted(affinity)
    sets = sorted({obj[:4] for obj in ordered_affinity})
    commands: list[Command] = [_affinity_set(config, *obj) for obj in sets]
    commands += [_affinity_pick_chain(config, obj) for obj in ordered_affinity]
    commands += [_dispatch_chain(config, d) for d in sorted(dispatches)]
    return commands


def _grouped_adds(elements: Iterable[tuple[ElementKey, Value]]) -> list[Command]:
    by_target: dict[str, list[tuple[str, Value]]] = {}
    for (target, key), value in elements:
        by_target.setdefault(target, []).append((key, value))
    return [AddElements.of(target, items) for target, items in by_target.items()]


def full(state: ProxyState) -> Script:
    """The whole table for `state`, replacing whatever table of ours is there, atomically.

    Run at start and after any failure: a table left by an earlier run is
    reconciled in the same transaction (its stale chains, sets and elements
    vanish), with no moment in which the kernel has no rules. Dynamic
    affinity entries start afresh; conntrack entries, and so established
    connections, are untouched.
    """
    with gc_paused():
        return _full(state)


def _full(state: ProxyState) -> Script:
    config = state.config
    commands = _skeleton(config)
    commands += _shared_objects(config, state.dispatches(), state.affinity_objects())
    commands += _base_rules(config)
    commands += [
        AddElements(target, ", ".join(chunks)) for target, chunks in state.element_text().items()
    ]
    return Script(config.family, tuple(commands), replace_table=True)


class FullSync:
    """`full(ProxyState.build(config, services))`, made in pieces while the state is built.

    Iterating gives the text of one transaction in pieces: the skeleton first,
    then for each batch of Service ports the chains of shapes not seen before
    and the batch's elements, then what only the whole can say (a frontend a
    later port won, the configured sets). A backend that feeds nft while
    the pieces are made (`nft.LibNftables.apply_stream`) lets nft read the
    table while Python is still building it. After the last piece, `state`
    is the state the table serves.

    A piece refers only to what it or an earlier piece makes, but only the
    whole is the table: a backend must apply all of it or nothing.
    """

    def __init__(
        self,
        config: ProxyConfig,
        services: Mapping[model.ServicePortName, Desired],
        *,
        # nft has its first piece within milliseconds, and 20 pieces for 10,000 ports
        # cost nothing more than one; 250 to 1,000 measured alike.
        batch: int = 500,
    ) -> None:
        self.config = config
        self._services = services
        self._batch = batch
        self._state: ProxyState | None = None

    @property
    def state(self) -> ProxyState:
        if self._state is None:
            raise RuntimeError("the full sync has not been made to the end yet")
        return self._state

    def __iter__(self) -> Iterator[str]:
        for script in self.scripts():
            yield render(script)

    def scripts(self) -> Iterator[Script]:
        config = self.config
        yield Script(config.family, (*_skeleton(config), *_base_rules(config)), replace_table=True)
        builder = Builder(config)
        affinity_sets: set[tuple[Kind, Proto, int, int]] = set()
        pick_chains: set[AffinityObject] = set()
        # The Services as they are now: the caller's mapping may change while nft reads.
        items = list(self._services.items())
        for start in range(0, len(items), self._batch):
            growth = builder.add(items[start : start + self._batch])
            # Chains of new shapes, each after the affinity sets and pick chains it uses.
            picks = {obj for d in growth.dispatches for obj in d.affinity_objects()} - pick_chains
            sets = {obj[:4] for obj in picks} - affinity_sets
            pick_chains |= picks
            affinity_sets |= sets
            commands: list[Command] = [_affinity_set(config, *obj) for obj in sorted(sets)]
            commands += [_affinity_pick_chain(config, obj) for obj in sorted(picks)]
            commands += [_dispatch_chain(config, d) for d in sorted(growth.dispatches)]
            yield Script(config.family, (*commands, *_element_commands(growth)))
        growth, self._state = builder.finish()
        yield Script(config.family, tuple(_element_commands(growth)))


def _element_commands(growth: Growth) -> list[Command]:
    commands: list[Command] = [
        DeleteElements(target, tuple(keys)) for target, keys in growth.deletes.items()
    ]
    commands += [
        AddElements(target, ", ".join(chunks)) for target, chunks in growth.elements.items()
    ]
    return commands


def diff(old: ProxyState, new: ProxyState) -> Script:
    """The commands that turn the table of `old` into the table of `new`, in one transaction.

    Only the Service ports that differ are looked at when `new` was derived
    from `old` by `ProxyState.update` (directly); otherwise every port is
    compared. Empty (false) when nothing changes.
    """
    if old.config != new.config:
        raise ValueError("states of different configurations cannot be diffed; use full()")
    candidates = delta(old, new)

    deletes: dict[str, list[str]] = {}
    adds: list[tuple[ElementKey, Value]] = []
    missing = object()
    for frontend in sorted(candidates.frontends):
        before = old.frontend_elements(frontend)
        after = new.frontend_elements(frontend)
        for element, value in before.items():
            if after.get(element, missing) != value:
                deletes.setdefault(element[0], []).append(element[1])
        for element, value in after.items():
            if before.get(element, missing) != value:
                adds.append((element, value))
    for address in sorted(candidates.hairpins):
        was, now = old.holds_hairpin(address), new.holds_hairpin(address)
        if was and not now:
            deletes.setdefault(names.HAIRPIN, []).append(f"{address} . {address}")
        elif now and not was:
            adds.append(((names.HAIRPIN, f"{address} . {address}"), None))
    for address in sorted(candidates.cluster_ips):
        was, now = old.holds_cluster_ip(address), new.holds_cluster_ip(address)
        if was and not now:
            deletes.setdefault(names.CLUSTER_IPS, []).append(address)
        elif now and not was:
            adds.append(((names.CLUSTER_IPS, address), None))

    gone_dispatches = {d for d in candidates.dispatches if not new.holds_dispatch(d)}
    new_dispatches = {d for d in candidates.dispatches if not old.holds_dispatch(d)}
    old_affinity: frozenset[AffinityObject] = frozenset()
    new_affinity: frozenset[AffinityObject] = frozenset()
    if any(d.affinity for d in (*gone_dispatches, *new_dispatches)):
        # Few shapes exist, so comparing all of them is cheap.
        old_affinity = old.affinity_objects()
        new_affinity = new.affinity_objects()

    config = new.config
    # Pick chains come and go with their dispatch chains; an affinity set is shared by
    # the pick chains of every port, so it comes with the first and goes with the last.
    old_sets = {obj[:4] for obj in old_affinity}
    new_sets = {obj[:4] for obj in new_affinity}
    commands: list[Command] = [_affinity_set(config, *obj) for obj in sorted(new_sets - old_sets)]
    commands += [_affinity_pick_chain(config, obj) for obj in sorted(new_affinity - old_affinity)]
    commands += [_dispatch_chain(config, d) for d in sorted(new_dispatches)]
    commands += [DeleteElements(target, tuple(keys)) for target, keys in deletes.items()]
    commands += _grouped_adds(adds)
    commands += [DeleteChain(d.chain) for d in sorted(gone_dispatches)]
    gone_affinity = sorted(old_affinity - new_affinity)
    commands += [DeleteChain(names.affinity_pick_chain(*obj)) for obj in gone_affinity]
    commands += [DeleteSet(names.affinity_set(*obj)) for obj in sorted(old_sets - new_sets)]
    return Script(config.family, tuple(commands))
