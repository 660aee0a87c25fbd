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

Deleting is done by the `conntrack` command, one filter at a time (never the
whole table), on a worker thread in submission order: each call forks, and a
sync must not wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import threading
from collections.abc import Iterable

from switchboard.proxy import model, ruleset

log = logging.getLogger(__name__)

# The TCP states whose entries go with their endpoint (see above).
STALE_TCP_STATES = ("SYN_SENT", "CLOSE")

Filter = tuple[str, ...]


class Conntrack:
    """Runs `conntrack -D` with one filter inside the node's network namespace."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    def delete(self, *filters: str) -> None:
        argv = ["conntrack", "-D", *filters]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        # Exit status 1 means no entry matched: the usual case, not an error.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(argv, capture_output=True, timeout=5, check=False)


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


class Cleaner:
    """Deletes conntrack entries on one worker thread, in the order submitted."""

    def __init__(self, conntrack: Conntrack) -> None:
        self.conntrack = conntrack
        # A threading.Event in the queue marks a point `wait_idle` waits for; None stops.
        self._queue: queue.SimpleQueue[Filter | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, filters: Iterable[Filter]) -> None:
        items = list(filters)
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
                self.conntrack.delete(*item)
            except Exception:  # one failed deletion must not stop the rest
                log.exception("conntrack -D %s failed", " ".join(item))
