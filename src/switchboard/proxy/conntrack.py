"""Conntrack entries that would send new packets to an endpoint that is gone.

Rules decide where the first packet of a flow goes; after that the kernel's
connection tracking remembers the DNAT and every later packet of the same
4-tuple follows it, whatever the rules now say. Three kinds of entry
outlive the endpoint they point at and so keep a client away from a live one:

- UDP: any entry. A client that keeps its source port (DNS resolvers do)
  keeps sending into the entry, so an entry pointing at an endpoint that
  left, or one made while the Service had no endpoints at all (it leads
  nowhere), is deleted as soon as the rules change.
- TCP in SYN_SENT: a SYN sent to an endpoint whose pod was already gone while
  the rules still listed it got no answer. Its entry lives 120 s, and the
  client's retransmitted SYN, or a later connection that happens to reuse
  the source port, follows it to the same dead address instead of being
  sent to a live endpoint.
- TCP in CLOSE after the endpoint reset the connection (a server process that
  ends with connections open, as a pod's does when it is deleted): a new SYN
  from the same source port within the entry's 10 s is not taken as a new
  connection but follows the old DNAT to the dead address, unanswered.

Entries of established connections are left alone: a pod that only stopped
being selected or ready still serves the connections it has, as with
kube-proxy. Entries in TIME_WAIT need nothing: a new SYN reopens them.

Two ways find those entries:

- `stale_filters`, after every sync: the difference between the previous
  and the new state of each Service port that changed says which endpoints
  stopped being targets. Nothing is listed.
- `Reconcile`, after every full sync: a diff needs a previous state, and a
  proxy that just started has none, so endpoints that went away while it
  was down would never be cleaned. The kernel's table is listed instead
  (UDP entries, TCP entries in the states above) and an entry is stale when
  its original destination is a Service frontend of this node (a ClusterIP,
  external or load-balancer IP at the Service port, or a NodePort on an
  address NodePorts open on) and its DNAT target -- the reply tuple's
  source -- is not a target endpoint of that Service port now. This is
  kube-proxy's conntrack reconciler (pkg/proxy/conntrack, CleanStaleEntries),
  which covers its own restarts the same way; kube-proxy does it for UDP
  only and by address, this by address and port and for the TCP states too.
  A Service deleted while the proxy was down is not a frontend any more and
  is not reconciled.

Deleting is done by the `conntrack` command, one filter at a time (never the
whole table), on a worker thread in submission order: each call forks, and a
sync must not wait for it. A reconcile lists (three `conntrack -L` calls and
one `ip addr`, the latter only when a Service has a NodePort) and deletes on
that thread too, one filter per frontend, stale target and TCP state.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import queue
import socket
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchboard.proxy import model, ruleset

log = logging.getLogger(__name__)

# The TCP states whose entries go with their endpoint (see above).
STALE_TCP_STATES = ("SYN_SENT", "CLOSE")
# What a reconcile lists: `conntrack -L` filters, one call each. Established TCP
# entries, the bulk of a busy table, are never read.
STALE_KINDS: tuple[tuple[str, ...], ...] = (
    ("-p", "udp"),
    *(("-p", "tcp", "--state", state) for state in STALE_TCP_STATES),
)
LIST_TIMEOUT = 30.0  # seconds; a table of a few hundred thousand entries lists in a few

Filter = tuple[str, ...]
Target = tuple[str, int]  # (address, port)


class Conntrack:
    """Runs `conntrack` (and `ip` for the node's addresses) inside the node's network namespace."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    def _in_netns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def delete(self, *filters: str) -> None:
        argv = self._in_netns(["conntrack", "-D", *filters])
        # Exit status 1 means no entry matched: the usual case, not an error.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(argv, capture_output=True, timeout=5, check=False)

    def list_entries(self, family: model.Family, *filters: str) -> str:
        """`conntrack -L` of one family with `filters`: its text, one entry a line."""
        argv = self._in_netns(["conntrack", "-L", "-f", family, *filters])
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=LIST_TIMEOUT, check=True
        )
        return done.stdout

    def local_addresses(self, family: model.Family) -> list[str]:
        """Every address of the namespace's interfaces in `family`, as `ip -j addr` lists them."""
        argv = self._in_netns(["ip", "-j", "-f", "inet" if family == "ipv4" else "inet6", "addr"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        return [
            address["local"]
            for link in json.loads(done.stdout or "[]")
            for address in link.get("addr_info", [])
            if "local" in address
        ]


def _targets(desired: ruleset.Desired | None) -> set[model.Endpoint]:
    """Endpoints new connections may be sent to."""
    if desired is None:
        return set()
    return {e for e in desired[1] if e.ready or (e.serving and e.terminating)}


def _listed(desired: ruleset.Desired | None) -> set[tuple[str, int]]:
    if desired is None:
        return set()
    return {(e.ip, e.port) for e in desired[1]}


def stale_filters(
    name: model.ServicePortName,
    previous: ruleset.Desired | None,
    current: ruleset.Desired | None,
) -> list[Filter]:
    """The `conntrack -D` filters for one Service port whose rules changed."""
    info = (current or previous or (None, None))[0]
    if info is None or previous == current:  # a full sync passes every port, changed or not
        return []
    before, after = _targets(previous), _targets(current)
    if name.protocol == "UDP":
        filters: list[Filter] = []
        if info.cluster_ip is not None:
            for gone in sorted({e.ip for e in before} - {e.ip for e in after}):
                filters.append(("-p", "udp", "--orig-dst", info.cluster_ip, "--reply-src", gone))
        if after and not before:
            if info.cluster_ip is not None:
                filters.append(
                    ("-p", "udp", "--orig-dst", info.cluster_ip, "--orig-port-dst", str(info.port))
                )
            if info.node_port:
                filters.append(("-p", "udp", "--orig-port-dst", str(info.node_port)))
        return filters
    if name.protocol == "TCP":
        # An endpoint that stopped being a target, or left the slices altogether: a pod that
        # is deleted first stops being a target (it is terminating), and SYNs that raced
        # that change may only get their entry after the first cleanup ran.
        left = {(e.ip, e.port) for e in before} - {(e.ip, e.port) for e in after}
        left |= _listed(previous) - _listed(current)
        return [
            ("-p", "tcp", "--state", state, "--reply-src", ip, "--reply-port-src", str(port))
            for ip, port in sorted(left)
            for state in STALE_TCP_STATES
        ]
    return []


# -- reconciling from the table -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One conntrack entry as far as a reconcile needs it.

    `protocol` is "tcp" or "udp", `state` the TCP state ("" for UDP),
    `destination` the original direction's destination (the frontend a client
    sent to) and `target` the reply direction's source (where the DNAT sends
    the flow; the destination itself when there was no DNAT).
    """

    protocol: str
    state: str
    destination: Target
    target: Target


def _canonical(address: str) -> str:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, address))


_TUPLE_KEYS = frozenset({"src", "dst", "sport", "dport"})


def parse_entries(text: str) -> list[Entry]:
    """The TCP and UDP entries in `conntrack -L` output; other and malformed lines are skipped.

    A line reads ``udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=C dst=D
    sport=R dport=S mark=0 use=1`` (TCP has its state after the timeout): the
    first src/dst/sport/dport are the original direction, the second the reply.
    """
    entries = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] not in ("tcp", "udp"):
            continue
        state = words[3] if words[0] == "tcp" and "=" not in words[3] else ""
        original: dict[str, str] = {}
        reply: dict[str, str] = {}
        side = original
        for word in words:
            key, eq, value = word.partition("=")
            if eq and key in _TUPLE_KEYS:
                if key in side:  # the second src= starts the reply tuple
                    side = reply
                side.setdefault(key, value)
        try:
            entries.append(
                Entry(
                    words[0],
                    state,
                    (_canonical(original["dst"]), int(original["dport"])),
                    (_canonical(reply["src"]), int(reply["sport"])),
                )
            )
        except (KeyError, ValueError, OSError):
            continue
    return entries


def nodeport_addresses(local: Iterable[str], cidrs: tuple[str, ...] | None) -> set[str]:
    """The local addresses NodePorts open on, as in the ruleset: in `cidrs`, else not loopback."""
    addresses = {_canonical(a): ipaddress.ip_address(a) for a in local}
    if cidrs is None:
        return {text for text, a in addresses.items() if not a.is_loopback}
    networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    return {text for text, a in addresses.items() if any(a in n for n in networks)}


def reconcile_filters(
    entries: Iterable[Entry],
    services: Mapping[model.ServicePortName, ruleset.Desired],
    node_addresses: Iterable[str] = (),
) -> list[Filter]:
    """The `conntrack -D` filters that delete the stale `entries` of `services` (see above).

    One filter per protocol, state, frontend and stale target, exact on each,
    so it can only delete entries this function would choose too.
    """
    # (protocol, address, port) and (protocol, NodePort) → the targets behind them.
    frontends: dict[tuple[str, str, int], set[Target]] = {}
    node_ports: dict[tuple[str, int], set[Target]] = {}
    for name, desired in services.items():
        if name.protocol not in ("TCP", "UDP"):
            continue
        info, protocol = desired[0], name.protocol.lower()
        targets = {e.target for e in _targets(desired)}
        for address in (info.cluster_ip, *info.external_ips, *info.load_balancer_ips):
            if address is not None:
                frontends.setdefault((protocol, address, info.port), set()).update(targets)
        if info.node_port:
            node_ports.setdefault((protocol, info.node_port), set()).update(targets)
    on_node = set(node_addresses)
    stale: set[Entry] = set()
    for entry in entries:
        if entry.protocol == "tcp" and entry.state not in STALE_TCP_STATES:
            continue
        address, port = entry.destination
        behind = frontends.get((entry.protocol, address, port))
        if behind is None and address in on_node:
            behind = node_ports.get((entry.protocol, port))
        if behind is not None and entry.target not in behind:
            stale.add(entry)
    return [_filter(entry) for entry in sorted(stale, key=_order)]


def _order(entry: Entry) -> tuple[str, str, str, int, str, int]:
    return (entry.protocol, entry.state, *entry.destination, *entry.target)


def _filter(entry: Entry) -> Filter:
    state = ("--state", entry.state) if entry.state else ()
    return (
        "-p",
        entry.protocol,
        *state,
        "--orig-dst",
        entry.destination[0],
        "--orig-port-dst",
        str(entry.destination[1]),
        "--reply-src",
        entry.target[0],
        "--reply-port-src",
        str(entry.target[1]),
    )


@dataclass(frozen=True, slots=True, eq=False)
class Reconcile:
    """Cleaner work: delete what the table holds for `services` that is stale (see above).

    `services` is the state the sync just applied (a snapshot: the caller
    keeps changing its own); `nodeport_addresses` the ruleset's setting.
    """

    services: Mapping[model.ServicePortName, ruleset.Desired]
    family: model.Family = "ipv4"
    nodeport_addresses: tuple[str, ...] | None = None


class Cleaner:
    """Deletes conntrack entries on one worker thread, in the order submitted."""

    def __init__(self, conntrack: Conntrack) -> None:
        self.conntrack = conntrack
        # A threading.Event in the queue marks a point `wait_idle` waits for; None stops.
        self._queue: queue.SimpleQueue[Filter | Reconcile | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Iterable[Filter | Reconcile]) -> None:
        items = list(work)
        if not items:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="conntrack-cleaner", daemon=True
                )
                self._thread.start()
            for item in items:
                self._queue.put(item)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Whether everything submitted so far has run, waiting up to `timeout` seconds."""
        done = threading.Event()
        with self._lock:
            if self._thread is None:
                return True
            self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=10)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                if isinstance(item, Reconcile):
                    self._reconcile(item)
                else:
                    self.conntrack.delete(*item)
            except Exception:  # one failure must not stop the rest
                if isinstance(item, Reconcile):
                    log.exception("conntrack reconcile failed; the next full sync tries again")
                else:
                    log.exception("conntrack -D %s failed", " ".join(item))

    def _reconcile(self, item: Reconcile) -> None:
        entries = [
            entry
            for kind in STALE_KINDS
            for entry in parse_entries(self.conntrack.list_entries(item.family, *kind))
        ]
        on_node: set[str] = set()
        if entries and any(desired[0].node_port for desired in item.services.values()):
            try:
                local = self.conntrack.local_addresses(item.family)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                log.warning("conntrack reconcile leaves NodePorts out: no node addresses: %s", exc)
            else:
                on_node = nodeport_addresses(local, item.nodeport_addresses)
        filters = reconcile_filters(entries, item.services, on_node)
        for f in filters:
            self.conntrack.delete(*f)
        if filters:
            log.info(
                "conntrack reconcile: %d filters for the stale ones of %d entries listed",
                len(filters),
                len(entries),
            )
