"""Node lifecycle: notice nodes whose agent went silent, and move their pods away.

Every `monitor_period` the controller looks at each node in its caches
(pkg/controller/nodelifecycle's monitorNodeHealth and taint-based eviction):

- **Heartbeats.** A node's agent renews the Lease `kube-node-lease/<node>`
  and posts its Ready condition. Whenever either changes, the controller
  notes the time *on its own monotonic clock* — never the timestamps
  written in them, since clocks of two machines need not agree. A node not
  heard from for `grace_period` gets every condition set to Unknown
  (`NodeStatusUnknown`, "Kubelet stopped posting node status.") and a
  NodeNotReady event. A fresh controller gives every node a full grace
  period before judging it.
- **Taints.** A node that is not Ready is tainted `node.kubernetes.io/
  not-ready` (Ready=False) or `node.kubernetes.io/unreachable` (Unknown),
  both NoSchedule and NoExecute, so the scheduler places nothing new there;
  the taints go when the node is Ready again. The NoExecute taint's
  `timeAdded` records since when the node has been unavailable, so a
  restart does not restart eviction clocks.
- **Pods not ready.** Pods on a node that is not Ready get `Ready=False`, so
  endpoint controllers stop sending them traffic.
- **Eviction.** A pod on an unavailable node is deleted once the node has
  been unavailable longer than the pod tolerates the NoExecute taint: its
  own toleration's `tolerationSeconds` if it has one, else
  `eviction_timeout` (Kubernetes' default 300 s toleration). Its ReplicaSet
  replaces it at once on a node that works, since a terminating pod is no
  longer active. On an *unreachable* node no agent is left to confirm that
  the pod stopped, so once its grace period is over it is removed outright
  (Kubernetes leaves it Terminating until the node is deleted or declared
  out of service; here an agent that comes back finds its pod gone and
  stops it). When *every* node is unavailable nothing is evicted: the fault
  is more likely this controller's view, and there is nowhere to go anyway
  (Kubernetes' full-disruption mode).
- **Orphans.** Pods bound to a node that no longer exists are deleted after
  `orphan_grace` (pod GC's quarantine).

Every pass derives its writes from the caches and writes only differences,
so passes are idempotent and a restart resumes where the last one stopped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest
from switchboard.client.events import EventRecorder, EventType
from switchboard.client.informer import Informer
from switchboard.controllers import pods, scheduling
from switchboard.controllers.workers import ensure_index

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
GRACE_PERIOD = 50.0  # --node-monitor-grace-period
MONITOR_PERIOD = 5.0  # --node-monitor-period
EVICTION_TIMEOUT = 300.0  # DefaultTolerationSeconds for not-ready/unreachable
ORPHAN_GRACE = 40.0  # pod GC's quarantine for pods of vanished nodes

TAINT_NOT_READY = scheduling.TAINT_NOT_READY
TAINT_UNREACHABLE = scheduling.TAINT_UNREACHABLE
_OUR_TAINTS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
_PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")


# ---- pure decisions ----------------------------------------------------------------------------


def conditions_unknown(node: Obj, now: float) -> list[Obj] | None:
    """The node's conditions with Ready (and pressures) Unknown; None if already so."""
    stamp = pods.format_time(now)
    current = [
        copy.deepcopy(c)
        for c in (node.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    ]
    changed = False
    types = {c.get("type") for c in current}
    if "Ready" not in types:
        current.append(
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        )
        changed = True
    for c in current:
        if c.get("type") in ("Ready", *_PRESSURE_CONDITIONS) and c.get("status") != "Unknown":
            c.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
                lastTransitionTime=stamp,
            )
            changed = True
    return current if changed else None


def desired_taints(node: Obj, ready: str, now: float) -> list[Obj]:
    """The node's taints with the not-ready/unreachable ones matching its Ready status."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    want = None if ready == "True" else TAINT_NOT_READY if ready == "False" else TAINT_UNREACHABLE
    kept = [t for t in taints if t.get("key") not in _OUR_TAINTS or t.get("key") == want]
    if want is None:
        return kept
    if not any(t.get("key") == want and t.get("effect") == "NoSchedule" for t in kept):
        kept.append({"key": want, "effect": "NoSchedule"})
    if not any(t.get("key") == want and t.get("effect") == "NoExecute" for t in kept):
        kept.append({"key": want, "effect": "NoExecute", "timeAdded": pods.format_time(now)})
    return kept


def tolerated_for(pod: Obj, taint: Obj, default: float) -> float | None:
    """Seconds `pod` stays on a node with this NoExecute taint; None means for ever."""
    spec = pod.get("spec") or {}
    tolerations = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    matching = [t for t in tolerations if scheduling.tolerates([t], taint)]
    if not matching:
        return default
    limits = [t.get("tolerationSeconds") for t in matching]
    if any(limit is None for limit in limits):
        return None
    return float(max(0, min(int(x) for x in limits if x is not None)))


@dataclass(slots=True)
class _Health:
    token: tuple[object, ...]
    probed: float


# ---- the controller ----------------------------------------------------------------------------


class NodeLifecycleController:
    def __init__(
        self,
        client: rest.Client,
        nodes: Informer,
        leases: Informer,
        pod_informer: Informer,
        *,
        events: EventRecorder | None = None,
        grace_period: float = GRACE_PERIOD,
        eviction_timeout: float = EVICTION_TIMEOUT,
        monitor_period: float = MONITOR_PERIOD,
        orphan_grace: float = ORPHAN_GRACE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.nodes = nodes
        self.leases = leases
        self.pods = pod_informer
        self.events = events
        self.grace_period = grace_period
        self.eviction_timeout = eviction_timeout
        self.monitor_period = monitor_period
        self.orphan_grace = orphan_grace
        self.clock = clock
        self.wall_clock = wall_clock
        self._health: dict[str, _Health] = {}
        self._missing_since: dict[str, float] = {}
        self._full_disruption = False
        ensure_index(pod_informer, informer.NODE, informer.node_index)

    async def run(self, workers: int = 1) -> None:
        await informer.wait_for_sync(self.nodes, self.leases, self.pods)
        while True:
            try:
                await self.monitor_once()
            except errors.ClientError as exc:
                log.warning("node health pass failed, will retry: %s", exc)
            await asyncio.sleep(self.monitor_period)

    # ---- one pass ------------------------------------------------------------------------

    async def monitor_once(self) -> None:
        now, wall = self.clock(), self.wall_clock()
        nodes = self.nodes.list()
        statuses: dict[str, str] = {}
        for node in nodes:
            name = str(node["metadata"]["name"])
            statuses[name] = await self._check_health(node, now, wall)
        for gone in set(self._health) - set(statuses):
            del self._health[gone]
        unavailable = [n for n, s in statuses.items() if s != "True"]
        full = bool(statuses) and len(unavailable) == len(statuses)
        if full != self._full_disruption:
            self._full_disruption = full
            if full:
                log.warning("every node is unavailable: not evicting pods until one is back")
        for node in nodes:
            name = str(node["metadata"]["name"])
            await self._sync_taints(node, statuses[name], wall)
            if statuses[name] != "True":
                await self._pods_not_ready(name)
                if not full:
                    await self._evict(node, statuses[name], wall)
        await self._delete_orphans(set(statuses), now)

    def _heartbeat(self, node: Obj) -> tuple[object, ...]:
        name = str(node["metadata"]["name"])
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        lease_spec = (lease or {}).get("spec") or {}
        ready = pods.condition(node, "Ready") or {}
        return (
            lease_spec.get("renewTime"),
            (lease or {}).get("metadata", {}).get("resourceVersion"),
            ready.get("lastHeartbeatTime"),
            ready.get("status"),
        )

    async def _check_health(self, node: Obj, now: float, wall: float) -> str:
        name = str(node["metadata"]["name"])
        token = self._heartbeat(node)
        health = self._health.get(name)
        if health is None or health.token != token:
            self._health[name] = health = _Health(token, now)
        ready = scheduling.ready_status(node)
        if now - health.probed <= self.grace_period:
            return ready
        conditions = conditions_unknown(node, wall)
        if conditions is None:
            return "Unknown"
        changed = copy.deepcopy(node)
        changed.setdefault("status", {})["conditions"] = conditions
        try:
            written = await self.client.update(kinds.NODES, changed, subresource="status")
        except errors.NotFound:
            return "Unknown"
        except errors.Conflict:
            return ready  # the node changed meanwhile (perhaps a heartbeat): judge it next pass
        # Our own write changes the token; it is not a heartbeat.
        health.token = self._heartbeat(written)
        if ready == "True":
            self._event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        return "Unknown"

    async def _sync_taints(self, node: Obj, ready: str, wall: float) -> None:
        current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
        wanted = desired_taints(node, ready, wall)
        if wanted == current:
            return
        meta = node["metadata"]
        body = {
            "spec": {"taints": wanted or None},
            "metadata": {"resourceVersion": meta["resourceVersion"]},
        }
        try:
            await self.client.patch(kinds.NODES, None, meta["name"], body)
        except (errors.NotFound, errors.Conflict) as exc:
            log.debug("tainting node %s: %s; next pass retries", meta["name"], exc)

    async def _pods_not_ready(self, node_name: str) -> None:
        stamp = pods.format_time(self.wall_clock())
        for pod in self.pods.by_index(informer.NODE, node_name):
            if not pods.is_ready(pod) or pods.is_terminal(pod):
                continue
            meta = pod["metadata"]
            condition = {"type": "Ready", "status": "False", "lastTransitionTime": stamp}
            try:
                await self.client.patch(
                    kinds.PODS,
                    meta.get("namespace"),
                    meta["name"],
                    {"status": {"conditions": [condition]}},
                    patch_type="strategic",
                    subresource="status",
                )
            except errors.NotFound:
                continue
            self._event(pod, "Warning", "NodeNotReady", "Node is not ready")

    def _unavailable_since(self, node: Obj, ready: str, wall: float) -> tuple[Obj, float]:
        key = TAINT_NOT_READY if ready == "False" else TAINT_UNREACHABLE
        for t in (node.get("spec") or {}).get("taints") or []:
            if isinstance(t, dict) and t.get("key") == key and t.get("effect") == "NoExecute":
                since = pods.parse_time(t.get("timeAdded"))
                return t, since if since is not None else wall
        return {"key": key, "effect": "NoExecute"}, wall

    async def _evict(self, node: Obj, ready: str, wall: float) -> None:
        taint, since = self._unavailable_since(node, ready, wall)
        for pod in self.pods.by_index(informer.NODE, str(node["metadata"]["name"])):
            meta = pod["metadata"]
            if pods.is_being_deleted(pod):
                deadline = pods.parse_time(meta.get("deletionTimestamp"))
                if ready == "Unknown" and deadline is not None and wall > deadline:
                    await self._delete(pod, grace=0)  # nobody is left to confirm it stopped
                continue
            if pods.is_terminal(pod):
                continue
            tolerated = tolerated_for(pod, taint, self.eviction_timeout)
            if tolerated is None or wall < since + tolerated:
                continue
            ns_name = f"{meta.get('namespace')}/{meta['name']}"
            self._event(
                pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns_name}"
            )
            await self._delete(pod)

    async def _delete(self, pod: Obj, *, grace: int | None = None) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(
                kinds.PODS,
                meta.get("namespace"),
                meta["name"],
                grace_period_seconds=grace,
                preconditions={"uid": str(meta["uid"])},
            )
        except (errors.NotFound, errors.Conflict):
            return

    async def _delete_orphans(self, existing: set[str], now: float) -> None:
        referenced = set(self.pods.index_values(informer.NODE))
        for name in list(self._missing_since):
            if name in existing or name not in referenced:
                del self._missing_since[name]
        for name in referenced - existing:
            since = self._missing_since.setdefault(name, now)
            if now - since < self.orphan_grace:
                continue
            try:
                await self.client.get(kinds.NODES, None, name)
                continue  # it exists after all; the cache is behind
            except errors.NotFound:
                pass
            for pod in self.pods.by_index(informer.NODE, name):
                log.info("deleting pod %s: its node %s is gone", informer.key_of(pod), name)
                await self._delete(pod, grace=0)

    def _event(self, obj: Obj, type_: EventType, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(obj, type_, reason, message)
