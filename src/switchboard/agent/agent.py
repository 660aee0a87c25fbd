"""The Agent: runs the pods bound to this node and reports how they are doing.

The kubelet's pod workers, in asyncio::

    Pod informer (fieldSelector spec.nodeName=<node>)
        │ handlers only hand over the newest object and wake the pod's worker
        ▼
    one worker task per pod uid ── sync() converges, then sleeps until woken:
        network   podnet.PodNetwork.add_pod (in a thread: netlink blocks)
        processes runtime.Runtime.run_pod (supervises and restarts containers)
        probes    probes.ContainerProbes per running container instance
        status    podstatus.pod_status → PATCH pods/<name>/status when it changed
        deletion  stop (SIGTERM, grace, SIGKILL) → final status → network down
                  → DELETE with gracePeriodSeconds=0 and the pod's uid as precondition

The runtime and the probes wake the worker whenever something it reports
changes; a failed sync is retried with back-off (1 s doubling to 30 s).

**Status writes** go out only when the computed status differs from the
newest status this worker knows the API holds (from its own write's answer
or a newer event), so a quiet pod causes no writes and a status someone
else changed (the node lifecycle controller marking the pod not ready) is
put right.

**Restart and adoption.** The runtime's records are read before the first
list; once the informer has listed, each pod in it takes over its record
(its processes keep running, with the same pids and restart counts), and
records of pods that are no longer bound here are stopped and removed with
their network. A pod that has already finished (Succeeded or Failed) and
has no record is never run again.

**Routes.** Pods on other nodes are reached through routes to their
podCIDRs via those nodes' InternalIPs, kept in step with the Node objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from switchboard.agent import (
    containerstate,
    launch,
    podnet,
    podstatus,
    probes,
    runningpod,
    runtime,
)
from switchboard.agent import tasks as agent_tasks
from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest
from switchboard.client.events import EventRecorder, EventType
from switchboard.client.informer import Informer

log = logging.getLogger(__name__)

FORCE_DELETE_GRACE = 2.0  # the kubelet's minimum grace when a pod vanishes from the API
ORPHAN_GRACE = 30.0
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
ROUTE_RESYNC = 30.0
DEFAULT_GRACE = 30


class Agent:
    """Runs this node's pods; `run()` until cancelled."""

    def __init__(
        self,
        client: rest.Client,
        node: launch.NodeFacts,
        *,
        network: podnet.PodNetwork,
        runtime: runtime.Runtime,
        node_netns: str | None,
        pod_netns_prefix: str,
        events: EventRecorder | None = None,
        cluster_dns: Sequence[str] = (),
        cluster_domain: str = "cluster.local",
        inherit_env: Mapping[str, str] | None = None,
        routes: bool = True,
    ) -> None:
        self.client = client
        self.node = node
        self.network = network
        self.runtime = runtime
        self.node_netns = node_netns
        self.pod_netns_prefix = pod_netns_prefix
        self.events = events
        self.cluster_dns = tuple(cluster_dns)
        self.cluster_domain = cluster_domain
        self.inherit_env = dict(inherit_env or {})
        self.routes = routes
        self.pods = Informer(client, kinds.PODS, field_selector=f"spec.nodeName={node.name}")
        self.nodes = Informer(client, kinds.NODES) if routes else None
        self._workers: dict[str, _PodWorker] = {}
        self._finished: set[str] = set()
        self._recovered: dict[str, containerstate.PodRecord] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._routes_wake = asyncio.Event()

    def netns_name(self, uid: str) -> str:
        return f"{self.pod_netns_prefix}{uid}"

    async def run(self) -> None:
        self._recovered = self.runtime.recover()
        self.pods.add_handlers(self._on_pod, self._on_pod_update, self._on_pod_deleted)
        tasks = [asyncio.create_task(self.pods.run(), name="pod informer")]
        if self.nodes is not None:
            self.nodes.add_handlers(
                lambda _: self._routes_wake.set(),
                lambda _, __: self._routes_wake.set(),
                lambda _: self._routes_wake.set(),
            )
            tasks.append(asyncio.create_task(self.nodes.run(), name="node informer"))
            tasks.append(asyncio.create_task(self._keep_routes(), name="routes"))
        try:
            await self.pods.wait_synced()
            await self._clean_up_leftovers()
            await agent_tasks.until_first_failure(tasks)
        finally:
            await agent_tasks.cancel_all(tasks)
            await self.close()

    async def close(self) -> None:
        """Stop watching; pods keep running for the next agent to adopt."""
        workers = list(self._workers.values())
        for worker in workers:
            worker.task.cancel()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*(w.task for w in workers), *self._background, return_exceptions=True)
        for worker in workers:
            await worker.stop_probes()
        await self.runtime.close()

    # -- informer handlers (cheap: hand over and wake) ---------------------------------

    def _on_pod(self, pod: Obj) -> None:
        uid = str(pod["metadata"].get("uid", ""))
        worker = self._workers.get(uid)
        if worker is not None:
            worker.update(pod)
        elif uid not in self._finished:
            self._workers[uid] = _PodWorker(self, pod, self._recovered.pop(uid, None))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("uid") != new["metadata"].get("uid"):
            self._on_pod_deleted(old)  # deleted and made again while the watch was down
        self._on_pod(new)

    def _on_pod_deleted(self, pod: Obj) -> None:
        uid = str(pod["metadata"].get("uid", ""))
        self._finished.discard(uid)
        worker = self._workers.get(uid)
        if worker is not None:
            worker.removed(pod)

    def worker_finished(self, worker: _PodWorker) -> None:
        self._workers.pop(worker.uid, None)
        self._finished.add(worker.uid)

    def record(self, pod: Obj, type_: EventType, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(pod, type_, reason, message)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` in the background, cancelled when the agent closes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what an earlier agent left ----------------------------------------------------

    async def _clean_up_leftovers(self) -> None:
        orphans = set(self._recovered)
        for uid, record in list(self._recovered.items()):
            del self._recovered[uid]
            log.info(
                "stopping pod %s/%s (%s): it is no longer bound to this node",
                record.namespace,
                record.name,
                uid,
            )
            self.spawn(self._stop_orphan(record))
        held = await asyncio.to_thread(self.network.pods)
        for uid in held:
            if uid not in self._workers and uid not in orphans:
                log.info("removing the network of pod %s: no pod of that uid is here", uid)
                await asyncio.to_thread(self.network.remove_pod, uid)

    async def _stop_orphan(self, record: containerstate.PodRecord) -> None:
        await self.runtime.stop_recorded(record, ORPHAN_GRACE)
        await asyncio.to_thread(self.network.remove_pod, record.uid)

    # -- routes to other nodes' pods ---------------------------------------------------

    async def _keep_routes(self) -> None:
        assert self.nodes is not None
        await self.nodes.wait_synced()
        while True:
            self._routes_wake.clear()
            try:
                await self._sync_routes()
            except podnet.PodNetworkError as exc:
                log.warning("routes to other nodes' pods: %s; retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routes_wake.wait(), ROUTE_RESYNC)

    async def _sync_routes(self) -> None:
        assert self.nodes is not None
        wanted: dict[str, str] = {}
        for other in self.nodes.list():
            if other["metadata"]["name"] == self.node.name:
                continue
            cidr = (other.get("spec") or {}).get("podCIDR")
            address = next(
                (
                    a.get("address")
                    for a in (other.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"
                ),
                None,
            )
            if cidr and address:
                wanted[str(cidr)] = str(address)
        current = await asyncio.to_thread(self.network.routes)
        for cidr, via in wanted.items():
            if current.get(cidr) != via:
                try:
                    await asyncio.to_thread(self.network.add_route, cidr, via)
                except ValueError as exc:
                    log.warning("not routing %s via %s: %s", cidr, via, exc)
        for cidr in set(current) - set(wanted):
            await asyncio.to_thread(self.network.remove_route, cidr)


class _PodWorker:
    """Converges one pod (by uid) on its spec; ends when the pod is gone."""

    def __init__(self, agent: Agent, pod: Obj, record: containerstate.PodRecord | None) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid = str(meta["uid"])
        self.namespace = str(meta.get("namespace", ""))
        self.name = str(meta["name"])
        self.record = record
        self.gone = False
        self.running: runningpod.RunningPod | None = None
        self.pod_ip: str | None = None
        self.netns: str | None = None
        self.sandbox_ready = False
        self.probes: dict[str, probes.ContainerProbes] = {}
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self._api_status: Obj = pod.get("status") or {}
        self._api_version = _version(pod)
        self._last_sent: Obj | None = None
        self._last_answer: Obj | None = None
        self._wake = asyncio.Event()
        self._wake.set()
        self.task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"pod worker {self.namespace}/{self.name}"
        )

    # -- from the agent -------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if _version(pod) >= self._api_version:
            self._api_version = _version(pod)
            self._api_status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") and self.running is not None:
            self.running.request_stop(_grace(pod))
        self.poke()

    def removed(self, pod: Obj) -> None:
        self.pod = pod
        self.gone = True
        if self.running is not None:
            self.running.request_stop(FORCE_DELETE_GRACE)
        self.poke()

    def poke(self) -> None:
        self._wake.set()

    async def stop_probes(self) -> None:
        for prober in self.probes.values():
            await prober.stop()
        self.probes.clear()

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        delay = RETRY_INITIAL
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                finished = await self._sync()
            except (errors.ClientError, podnet.PodNetworkError, OSError) as exc:
                log.warning(
                    "pod %s/%s: %s; retrying in %.0fs", self.namespace, self.name, exc, delay
                )
                loop.call_later(delay, self._wake.set)
                delay = min(delay * 2, RETRY_MAX)
                continue
            except Exception:
                log.exception(
                    "pod %s/%s: sync failed; retrying in %.0fs", self.namespace, self.name, delay
                )
                loop.call_later(delay, self._wake.set)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_INITIAL
            if finished:
                break
        self.agent.worker_finished(self)

    async def _sync(self) -> bool:
        """Converge once; True when the pod is gone and this worker is done."""
        if self.gone or self.pod["metadata"].get("deletionTimestamp"):
            await self._terminate()
            return True
        if self.running is None:
            phase = (self.pod.get("status") or {}).get("phase")
            if self.record is None and phase in ("Succeeded", "Failed"):
                return False  # it ended before this agent knew it: never run it again
            await self._admit()
        assert self.running is not None
        snapshot = self.running.snapshot()
        await self._sync_probes(snapshot)
        if snapshot.finished and self.sandbox_ready:
            await self._teardown_network()
        await self._write_status(snapshot)
        return False

    async def _admit(self) -> None:
        spec = self.pod.get("spec") or {}
        if spec.get("hostNetwork"):
            self.netns, self.pod_ip = self.agent.node_netns, self.agent.node.ip
        else:
            name = self.agent.netns_name(self.uid)
            try:
                self.pod_ip = await asyncio.to_thread(self.agent.network.add_pod, self.uid, name)
            except podnet.PodNetworkError as exc:
                self._event(
                    "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}"
                )
                await self._write_status(None)
                raise
            self.netns = name
        self.sandbox_ready = True
        self.start_time = self.start_time or podstatus.format_time(time.time())

        def launches(key: str) -> list[launch.Launch]:
            return [
                launch.container_launch(
                    self.pod,
                    c,
                    pod_ip=self.pod_ip or "",
                    node=self.agent.node,
                    inherit=self.agent.inherit_env,
                )
                for c in spec.get(key) or []
            ]

        sandbox = runningpod.Sandbox(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            netns=self.netns,
            hostname=launch.hostname(self.pod),
            restart_policy=str(spec.get("restartPolicy") or "Always"),
            resolv_conf=launch.resolv_conf(
                self.pod,
                cluster_dns=self.agent.cluster_dns,
                cluster_domain=self.agent.cluster_domain,
            ),
        )
        self.running = self.agent.runtime.run_pod(
            sandbox,
            launches("initContainers"),
            launches("containers"),
            on_change=self.poke,
            on_event=self._event,
            record=self.record,
        )

    async def _sync_probes(self, snapshot: containerstate.PodSnapshot) -> None:
        specs = {str(c["name"]): c for c in (self.pod.get("spec") or {}).get("containers") or []}
        # What the API holds: after an agent restart, the readiness the last agent reported.
        reported = {
            (str(c.get("name")), str(c.get("containerID"))): c.get("ready") is True
            for c in (self.pod.get("status") or {}).get("containerStatuses") or []
        }
        for status in snapshot.containers:
            current = self.probes.get(status.name)
            running = isinstance(status.state, containerstate.Running) and not snapshot.stopping
            if current is not None and (not running or current.container_id != status.container_id):
                await current.stop()
                del self.probes[status.name]
                current = None
            if running and current is None and status.name in specs:
                assert isinstance(status.state, containerstate.Running)
                prober = probes.ContainerProbes(
                    specs[status.name],
                    probes.Target(
                        pod_ip=self.pod_ip or "",
                        netns=self.netns,
                        exec_argv=functools.partial(
                            self.agent.runtime.exec_argv, self.namespace, self.name, status.name
                        ),
                    ),
                    container_id=status.container_id,
                    started_at=status.state.started_at,
                    on_change=self.poke,
                    on_failed=functools.partial(
                        self._probe_failed, status.name, status.container_id
                    ),
                    on_unhealthy=self._unhealthy,
                    reported_ready=reported.get((status.name, status.container_id), False),
                )
                prober.start()
                self.probes[status.name] = prober

    def _probe_failed(self, container: str, container_id: str, probe: probes.Probe, _: str) -> None:
        self._event(
            "Normal",
            "Killing",
            f"Container {container} failed {probe.kind} probe, will be restarted",
        )
        grace = probe.termination_grace
        if grace is None:
            grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if self.running is not None:
            self.agent.spawn(self.running.kill_container(container, container_id, grace))

    def _unhealthy(self, probe: probes.Probe, message: str) -> None:
        self._event("Warning", "Unhealthy", f"{probe.kind.capitalize()} probe failed: {message}")

    def _event(self, type_: EventType, reason: str, message: str) -> None:
        self.agent.record(self.pod, type_, reason, message)

    # -- status ------------------------------------------------------------------------

    async def _write_status(
        self, snapshot: containerstate.PodSnapshot | None, terminal: bool = False
    ) -> None:
        probed = {
            name: podstatus.Probed(ready=p.ready, started=p.started)
            for name, p in self.probes.items()
        }
        view = {**self.pod, "status": self._api_status}
        status = podstatus.pod_status(
            view,
            snapshot,
            probed,
            pod_ip=self.pod_ip,
            host_ip=self.agent.node.ip,
            start_time=self.start_time or podstatus.format_time(time.time()),
            now=time.time(),
            sandbox_ready=self.sandbox_ready,
            terminal=terminal,
        )
        if status == self._api_status:
            return
        if status == self._last_sent and self._api_status == self._last_answer:
            return  # the server keeps it in another form: writing again changes nothing
        try:
            answer = await self.agent.client.patch(
                kinds.PODS,
                self.namespace,
                self.name,
                {"status": status},
                subresource="status",
            )
        except errors.NotFound:
            return  # gone meanwhile; the informer says so next
        self._last_sent = status
        self._api_status = self._last_answer = answer.get("status") or {}
        self._api_version = max(self._api_version, _version(answer))

    # -- deletion ----------------------------------------------------------------------

    async def _terminate(self) -> None:
        await self.stop_probes()
        grace = FORCE_DELETE_GRACE if self.gone else _grace(self.pod)
        if self.running is not None:
            self.running.request_stop(grace)
            if not self.gone:
                await self._write_status(self.running.snapshot())
            await self.running.wait_stopped()
            if not self.gone:
                await self._write_status(self.running.snapshot(), terminal=True)
        elif self.record is not None:
            await self.agent.runtime.stop_recorded(self.record, grace)
        await self._teardown_network()
        if not self.gone:
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.agent.client.delete(
                    kinds.PODS,
                    self.namespace,
                    self.name,
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
        self.agent.runtime.forget(self.uid)

    async def _teardown_network(self) -> None:
        if not (self.pod.get("spec") or {}).get("hostNetwork"):
            await asyncio.to_thread(self.agent.network.remove_pod, self.uid)
        self.sandbox_ready = False


def _grace(pod: Obj) -> float:
    meta = pod.get("metadata") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE)
    return float(grace)


def _version(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
