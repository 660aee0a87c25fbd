"""The scheduler: bind each pod without a node to a node that fits it.

One pod at a time (kube-scheduler's scheduling cycle is sequential too): the
worker takes a pod key, builds a view of every node with the pods bound to
it, asks `scheduling.schedule` where the pod should go and POSTs a Binding
to `pods/<name>/binding`.

- Pods bound by this scheduler but not yet seen bound in the pod cache are
  *assumed* on their node, so the next decision already counts them:
  without that, a burst of replicas would all pick the same emptiest node.
  An assumption ends when the cache shows the pod bound or gone (or after
  `ASSUME_TTL`, should that event never come).
- A pod that fits nowhere gets a FailedScheduling event and the condition
  `PodScheduled=False, reason Unschedulable` with the same message, stays
  Pending, and is retried with backoff (1 s doubling to 10 s, as
  kube-scheduler's pod backoff) — and at once whenever a node is added or
  changes, or a bound pod goes away and frees room.
- Only pods whose `spec.schedulerName` is this scheduler's (by default
  `default-scheduler`) are considered; a pod with `nodeName` already set is
  left alone.

A restart loses only the assumptions: pods bound before it are in the pod
cache as bound, and the binding subresource refuses a second binding with
Conflict, so no pod is ever bound twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder, EventType
from switchboard.client.informer import Informer
from switchboard.controllers import pods, scheduling
from switchboard.controllers.workers import ensure_index, run_workers, split_key

DEFAULT_SCHEDULER = "default-scheduler"
ASSUME_TTL = 30.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 10.0


def needs_scheduling(pod: Obj, scheduler_name: str = DEFAULT_SCHEDULER) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == scheduler_name
        and pods.is_active(pod)
    )


class Scheduler:
    def __init__(
        self,
        client: rest.Client,
        pod_informer: Informer,
        nodes: Informer,
        *,
        events: EventRecorder | None = None,
        scheduler_name: str = DEFAULT_SCHEDULER,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.pods = pod_informer
        self.nodes = nodes
        self.events = events
        self.scheduler_name = scheduler_name
        self.backoff = backoff
        self.clock = clock
        self.wall_clock = wall_clock
        self.queue = workqueue.WorkQueue(name="scheduler")
        # pod key → (node, pod as bound, when)
        self._assumed: dict[str, tuple[str, Obj, float]] = {}
        self._unschedulable: set[str] = set()
        self._attempts: dict[str, int] = {}
        ensure_index(pod_informer, informer.NODE, informer.node_index)
        pod_informer.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        nodes.add_handlers(self._node_added, self._node_updated, None)

    async def run(self, workers: int = 1) -> None:
        # One worker: decisions must see the previous decision's assumption.
        await run_workers(self.queue, self.sync, (self.pods, self.nodes), 1)

    # ---- event handlers ------------------------------------------------------------------

    def _pod_added(self, obj: Obj) -> None:
        key = informer.key_of(obj)
        if needs_scheduling(obj, self.scheduler_name):
            self.queue.add(key)
        else:
            self._forget(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._pod_added(new)
        if pods.node_name(new) and not pods.is_active(new) and pods.is_active(old):
            self._retry_unschedulable()  # a pod that stopped running frees its node's room

    def _pod_deleted(self, obj: Obj) -> None:
        self._forget(informer.key_of(obj))
        if pods.node_name(obj):
            self._retry_unschedulable()

    def _node_added(self, obj: Obj) -> None:
        self._retry_unschedulable()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        def shape(n: Obj) -> tuple[object, ...]:
            return (
                (n.get("metadata") or {}).get("labels"),
                (n.get("spec") or {}).get("taints"),
                (n.get("spec") or {}).get("unschedulable"),
                scheduling.ready_status(n),
                (n.get("status") or {}).get("allocatable"),
            )

        if shape(old) != shape(new):
            self._retry_unschedulable()

    def _forget(self, key: str) -> None:
        self._assumed.pop(key, None)
        self._unschedulable.discard(key)
        self._attempts.pop(key, None)

    def _retry_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self.queue.add(key)

    # ---- scheduling ----------------------------------------------------------------------

    def node_infos(self) -> list[scheduling.NodeInfo]:
        """Every node with the pods that hold room on it, assumed ones included."""
        now = self.clock()
        for key, (_, _, since) in list(self._assumed.items()):
            if now - since > ASSUME_TTL:
                del self._assumed[key]
        infos = []
        for node in self.nodes.list():
            name = str(node["metadata"]["name"])
            bound = [p for p in self.pods.by_index(informer.NODE, name) if not pods.is_terminal(p)]
            infos.append(scheduling.NodeInfo(node, bound))
        by_name = {info.name: info for info in infos}
        for key, (node_name, pod, _) in self._assumed.items():
            info = by_name.get(node_name)
            cached = self.pods.get(key)
            if info is not None and (cached is None or not pods.node_name(cached)):
                info.pods.append(pod)
        return infos

    async def sync(self, key: str) -> None:
        cached = self.pods.get(key)
        if cached is None or not needs_scheduling(cached, self.scheduler_name):
            self._forget(key)
            return
        if key in self._assumed:
            return  # bound already; the cache has not caught up
        decision = scheduling.schedule(cached, self.node_infos())
        if decision.node is None:
            await self._unschedulable_pod(key, cached, decision.message())
            return
        await self._bind(key, cached, decision.node)

    async def _bind(self, key: str, pod: Obj, node: str) -> None:
        ns, name = split_key(key)
        bound = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}
        self._assumed[key] = (node, bound, self.clock())
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod["metadata"].get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            await self.client.create(kinds.PODS, ns, binding, subresource="binding", name=name)
        except (errors.NotFound, errors.Conflict):
            self._forget(key)  # deleted, or bound by someone else meanwhile
            return
        except BaseException:
            self._assumed.pop(key, None)
            raise
        self._unschedulable.discard(key)
        self._attempts.pop(key, None)
        self._event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")

    async def _unschedulable_pod(self, key: str, pod: Obj, message: str) -> None:
        self._unschedulable.add(key)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        self._event(pod, "Warning", "FailedScheduling", message)
        current = pods.condition(pod, "PodScheduled")
        if not (
            current is not None
            and current.get("status") == "False"
            and current.get("reason") == "Unschedulable"
            and current.get("message") == message
        ):
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": pods.format_time(self.wall_clock()),
            }
            ns, name = split_key(key)
            try:
                await self.client.patch(
                    kinds.PODS,
                    ns,
                    name,
                    {"status": {"conditions": [condition]}},
                    patch_type="strategic",
                    subresource="status",
                )
            except errors.NotFound:
                self._forget(key)
                return
        initial, cap = self.backoff
        self.queue.add_after(key, min(initial * 2 ** (attempts - 1), cap))

    def _event(self, obj: Obj, type_: EventType, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(obj, type_, reason, message)
