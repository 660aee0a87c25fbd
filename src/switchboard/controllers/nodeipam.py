"""Node IPAM: give every Node a podCIDR out of the cluster's pod CIDR.

Kubernetes' range allocator (pkg/controller/nodeipam, `--allocate-node-cidrs
--cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24`) in two layers:

- `CidrSet` is the pure part: the cluster CIDR cut into equal subnets (a
  /16 into 256 /24s), each free or taken; `allocate()` hands out the next
  free one after the last it handed out (wrapping round, as Kubernetes'
  cidrset does, so a freed subnet is not given to the next node at once
  while routes to it may linger), `occupy()` marks one found on a Node,
  `release()` frees one. No I/O, so it is unit-tested alone.
- `NodeIpamController` is the API client around it. Node events only
  enqueue the node's name; `sync(name)` patches `spec.podCIDR` and
  `spec.podCIDRs` of a node that has none, and releases the subnet of a
  node that is gone.

The allocation lives only in memory and is rebuilt from the Nodes on every
start: once the node informer has listed, every podCIDR already written is
occupied *before* the first node is synced, so a restarted controller never
hands out a subnet that some node holds. A podCIDR is never changed once
written (the agent has wired pods into it); one outside the cluster CIDR
(set by hand) is left alone and not counted.

The informer lags behind this controller's own writes, so a subnet handed
to a node stays reserved for that node by name until the cache shows it on
the node (or the node is deleted): a sync that reads a stale copy writes the
same subnet again instead of a second one. The patch carries the cached
resourceVersion; on Conflict the node is read afresh and the decision made
again, so a podCIDR someone else wrote meanwhile is adopted, not overwritten.

When the cluster CIDR is used up the node gets a Warning event
`CIDRNotAvailable` and is retried with backoff; deleting a node frees its
subnet, and nodes still waiting for one are synced again at once.

Only one address family per controller: a dual-stack cluster would run a
second CidrSet, which nothing here needs yet.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest, workqueue
from switchboard.client.events import EventRecorder
from switchboard.client.informer import Informer
from switchboard.controllers.workers import run_workers

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"  # --cluster-cidr (flannel's and kubeadm docs' default)
DEFAULT_NODE_MASK_SIZE = 24  # --node-cidr-mask-size for IPv4
MAX_SUBNET_BITS = 16  # Kubernetes refuses cluster/mask combinations of more than 2^16 subnets

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CidrSetExhausted(Exception):
    """Every subnet of the cluster CIDR is taken."""


@dataclass(slots=True)
class CidrSet:
    """The cluster CIDR cut into subnets of `mask_size` bits, each free or taken."""

    cluster_cidr: Network
    mask_size: int
    _taken: set[int] = field(default_factory=set)
    _next: int = 0  # where the search for a free subnet starts

    @classmethod
    def parse(cls, cluster_cidr: str, mask_size: int) -> CidrSet:
        """A CidrSet from text such as ("10.244.0.0/16", 24); ValueError says what is wrong."""
        try:
            network = ipaddress.ip_network(cluster_cidr, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"cluster CIDR {cluster_cidr!r} is not a network address with a prefix, "
                "such as 10.244.0.0/16"
            ) from exc
        if not network.prefixlen <= mask_size <= network.max_prefixlen:
            raise ValueError(
                f"node CIDR mask size {mask_size} must lie between the cluster CIDR's prefix "
                f"length {network.prefixlen} and {network.max_prefixlen}"
            )
        if mask_size - network.prefixlen > MAX_SUBNET_BITS:
            raise ValueError(
                f"cluster CIDR {network} cut into /{mask_size}s makes more than "
                f"2^{MAX_SUBNET_BITS} subnets; use a node CIDR mask size of at most "
                f"{network.prefixlen + MAX_SUBNET_BITS}"
            )
        return cls(network, mask_size)

    @property
    def capacity(self) -> int:
        """How many subnets (and so nodes) the cluster CIDR holds."""
        return 1 << (self.mask_size - self.cluster_cidr.prefixlen)

    @property
    def used(self) -> int:
        return len(self._taken)

    def allocate(self) -> Network:
        """The first free subnet after the last one handed out (wrapping), now taken."""
        for step in range(self.capacity):
            index = (self._next + step) % self.capacity
            if index not in self._taken:
                self._taken.add(index)
                self._next = (index + 1) % self.capacity
                return self._subnet(index)
        raise CidrSetExhausted(
            f"all {self.capacity} /{self.mask_size} subnets of the cluster CIDR "
            f"{self.cluster_cidr} are in use; delete a node or give the controller-manager "
            "a larger --cluster-cidr"
        )

    def occupy(self, cidr: str | Network) -> bool:
        """Mark `cidr` taken; False if it is not one of this set's subnets or already taken."""
        index = self._index(cidr)
        if index is None or index in self._taken:
            return False
        self._taken.add(index)
        return True

    def release(self, cidr: str | Network) -> None:
        """Mark `cidr` free again; no error for a subnet that is not this set's or is free."""
        index = self._index(cidr)
        if index is not None:
            self._taken.discard(index)

    def contains(self, cidr: str | Network) -> bool:
        """Whether `cidr` is exactly one of this set's subnets."""
        return self._index(cidr) is not None

    def is_taken(self, cidr: str | Network) -> bool:
        index = self._index(cidr)
        return index is not None and index in self._taken

    def _subnet(self, index: int) -> Network:
        size = 1 << (self.cluster_cidr.max_prefixlen - self.mask_size)
        first = self.cluster_cidr.network_address + index * size
        return ipaddress.ip_network(f"{first}/{self.mask_size}")

    def _index(self, cidr: str | Network) -> int | None:
        try:
            network = ipaddress.ip_network(cidr, strict=True) if isinstance(cidr, str) else cidr
        except ValueError:
            return None
        if (
            network.version != self.cluster_cidr.version
            or network.prefixlen != self.mask_size
            or not network.subnet_of(self.cluster_cidr)  # type: ignore[arg-type]
        ):
            return None
        offset = int(network.network_address) - int(self.cluster_cidr.network_address)
        return offset >> (self.cluster_cidr.max_prefixlen - self.mask_size)


def pod_cidr_of(node: Obj) -> str | None:
    """The node's podCIDR as written (`spec.podCIDRs[0]`, else `spec.podCIDR`), if any."""
    spec = node.get("spec") or {}
    cidrs = spec.get("podCIDRs") or []
    first = cidrs[0] if cidrs and isinstance(cidrs[0], str) else spec.get("podCIDR")
    return first if isinstance(first, str) and first else None


class NodeIpamController:
    """Writes `spec.podCIDR`/`spec.podCIDRs` of every Node that has none.

    `nodes` is the shared informer over all Nodes; run it alongside
    `run()`. `cluster_cidr` and `node_cidr_mask_size` are the
    controller-manager's `--cluster-cidr` and `--node-cidr-mask-size`; a
    ValueError at construction says what is wrong with them.
    """

    def __init__(
        self,
        client: rest.Client,
        nodes: Informer,
        *,
        cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
        node_cidr_mask_size: int = DEFAULT_NODE_MASK_SIZE,
        events: EventRecorder | None = None,
    ) -> None:
        self.client = client
        self.nodes = nodes
        self.events = events
        self.cidrs = CidrSet.parse(cluster_cidr, node_cidr_mask_size)
        self.queue = workqueue.WorkQueue(name="nodeipam")
        # node name → the subnet this controller holds for it (written or about to be)
        self._held: dict[str, str] = {}
        nodes.add_handlers(self._on_node, self._on_node_update, self._on_node)

    async def run(self, workers: int = 1) -> None:
        """Once the node cache has listed, occupy what nodes hold, then sync until cancelled."""
        await self.nodes.wait_synced()
        self.rebuild()
        await run_workers(self.queue, self.sync, (self.nodes,), workers)

    def rebuild(self) -> None:
        """Occupy every podCIDR the cached nodes already hold (call once, before syncing)."""
        for node in sorted(self.nodes.list(), key=_name):
            self._adopt(node)

    # ---- event handlers: enqueue only ---------------------------------------------------

    def _on_node(self, obj: Obj) -> None:
        self.queue.add(_name(obj))

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        if pod_cidr_of(old) != pod_cidr_of(new) or pod_cidr_of(new) is None:
            self.queue.add(_name(new))

    # ---- one node ------------------------------------------------------------------------

    async def sync(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            self._forget(name)
            return
        if self._adopt(node):
            return
        try:
            await self._assign(node)
        except errors.Conflict:
            try:
                fresh = await self.client.get(kinds.NODES, None, name)
            except errors.NotFound:
                self._forget(name)
                return
            if not self._adopt(fresh):
                await self._assign(fresh)

    def _adopt(self, node: Obj) -> bool:
        """Take note of a podCIDR the node already has; True if it has one."""
        name = _name(node)
        cidr = pod_cidr_of(node)
        if cidr is None:
            return False
        held = self._held.get(name)
        if held == cidr:
            return True
        if held is not None:
            # Someone else wrote another subnet first; ours goes back to the pool.
            self.cidrs.release(held)
            del self._held[name]
        if not self.cidrs.contains(cidr):
            log.info(
                "node %s has podCIDR %s outside %s; leaving it",
                name,
                cidr,
                self.cidrs.cluster_cidr,
            )
            return True
        if self.cidrs.occupy(cidr):
            self._held[name] = cidr
            return True
        # Taken, so held for another node: two nodes claim one subnet (written by hand?).
        owner = next((n for n, c in self._held.items() if c == cidr), "another node")
        log.warning("nodes %s and %s both have podCIDR %s", owner, name, cidr)
        self._event(node, "CIDRAssignmentFailed", f"podCIDR {cidr} is also held by {owner}")
        return True

    async def _assign(self, node: Obj) -> None:
        name = _name(node)
        cidr = self._held.get(name)
        if cidr is None:
            try:
                cidr = str(self.cidrs.allocate())
            except CidrSetExhausted as exc:
                self._event(node, "CIDRNotAvailable", f"Node {name} status is now: {exc}")
                raise
            self._held[name] = cidr
        meta = node.get("metadata") or {}
        body: Obj = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        if meta.get("resourceVersion"):
            body["metadata"] = {"resourceVersion": meta["resourceVersion"]}
        try:
            await self.client.patch(kinds.NODES, None, name, body)
        except errors.NotFound:
            self._forget(name)
            return
        log.info("node %s: podCIDR %s", name, cidr)

    def _forget(self, name: str) -> None:
        cidr = self._held.pop(name, None)
        if cidr is None:
            return
        self.cidrs.release(cidr)
        # A node that shared the subnet (see `_adopt`) keeps it; else nodes still
        # waiting for one (backing off after CIDRNotAvailable) try again now.
        others = [n for n in self.nodes.list() if _name(n) != name]
        for other in others:
            if pod_cidr_of(other) == cidr:
                self._adopt(other)
                return
        for other in others:
            if pod_cidr_of(other) is None and _name(other) not in self._held:
                self.queue.add(_name(other))

    def _event(self, node: Obj, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(node, "Warning", reason, message)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))
