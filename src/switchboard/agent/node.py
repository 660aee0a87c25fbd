"""This agent's Node: registration, status, the Lease heartbeat, NotReady on shutdown.

What the kubelet's node status manager does, in one class:

- **Registration.** `register()` creates the Node (labels
  kubernetes.io/hostname, /os, /arch; spec.podCIDR when the agent was given
  one) or takes over an existing one, merging its labels and filling in a
  missing podCIDR. Without a podCIDR of its own the agent waits
  (`wait_pod_cidr`) for the controller-manager's node IPAM to write one.
- **Status.** Addresses (InternalIP, Hostname), capacity and allocatable
  (cpu, memory, ephemeral-storage, pods 110), nodeInfo, the kubelet API
  port in daemonEndpoints, and the conditions Ready, MemoryPressure,
  DiskPressure and PIDPressure. Ready stays False ("pod network not
  ready") until `set_ready(True)`: the agent calls it once the node's pod
  network is up. A condition whose status is unchanged keeps its
  lastTransitionTime; conditions of other owners are kept.
- **Heartbeats.** Every `renew_interval` (10 s) the Lease
  `kube-node-lease/<node>` (owned by the Node, so it goes with it) gets a
  new renewTime, and the Node is read back: its status is written again
  when it differs from this agent's view (say the node lifecycle
  controller marked it Unknown while the agent was away) or every
  `status_interval`. The node lifecycle controller judges health by
  either, on its own clock.
- **Shutdown.** `shutdown()` writes Ready=False ("agent stopped"), so
  nothing waits for the node's lease to expire to see it gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import platform
import shutil
import time
from pathlib import Path

from switchboard.agent import podstatus
from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest
from switchboard.client.leaderelection import micro_time

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40  # the kubelet's nodeLeaseDurationSeconds
RENEW_INTERVAL = 10.0  # a quarter of the lease duration, as the kubelet renews
STATUS_INTERVAL = 60.0
MAX_PODS = 110
KUBELET_VERSION = "v1.33.0-switchboard"  # the version the apiserver reports, too
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PRESSURES = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)
_OWN_CONDITIONS = ("Ready", *(p[0] for p in _PRESSURES))


def architecture() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def capacity(data_dir: str | Path, max_pods: int = MAX_PODS) -> dict[str, str]:
    """The node's capacity as the kubelet reports it (cpu cores, memory and disk in Ki, pods)."""
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    disk_kib = shutil.disk_usage(data_dir).total // 1024
    return {
        "cpu": str(len(os.sched_getaffinity(0))),
        "memory": f"{memory_kib}Ki",
        "ephemeral-storage": f"{disk_kib}Ki",
        "pods": str(max_pods),
    }


def node_info() -> dict[str, str]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    os_image = "Linux"
    for line in read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.split("=", 1)[1].strip().strip('"')
    from switchboard import __version__

    return {
        "machineID": read("/etc/machine-id"),
        "systemUUID": read("/sys/class/dmi/id/product_uuid"),
        "bootID": read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": os_image,
        "containerRuntimeVersion": f"switchboard://{__version__}",
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": architecture(),
    }


class NodeReporter:
    """Registers this agent's Node and keeps its status and Lease current."""

    def __init__(
        self,
        client: rest.Client,
        name: str,
        *,
        node_ip: str,
        api_port: int,
        data_dir: str | Path,
        pod_cidr: str | None = None,
        hostname: str | None = None,
        renew_interval: float = RENEW_INTERVAL,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.client = client
        self.name = name
        self.node_ip = node_ip
        self.api_port = api_port
        self.pod_cidr = pod_cidr
        self.hostname = hostname or name
        self.renew_interval = renew_interval
        self.status_interval = status_interval
        self.capacity = capacity(data_dir)
        self.info = node_info()
        self._ready = False
        self._not_ready_message = "pod network not ready: waiting for the node's podCIDR"
        self._uid = ""
        self._lease: Obj | None = None
        self._last_report = 0.0
        self._wake = asyncio.Event()

    # -- registration --------------------------------------------------------------

    def labels(self) -> dict[str, str]:
        arch = architecture()
        return {
            "kubernetes.io/hostname": self.hostname,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
        }

    async def register(self) -> Obj:
        """Create or take over the Node, write its status and the first heartbeat."""
        spec: Obj = {}
        if self.pod_cidr:
            spec = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels()},
            "spec": spec,
        }
        try:
            node = await self.client.create(kinds.NODES, None, body)
            log.info("registered node %s", self.name)
        except errors.AlreadyExists:
            node = await self.client.get(kinds.NODES, None, self.name)
            node = await self._adopt(node)
        self._uid = str(node["metadata"].get("uid", ""))
        await self._write_status(node)
        await self._renew_lease()
        return node

    async def _adopt(self, node: Obj) -> Obj:
        patch: Obj = {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in self.labels().items()):
            patch["metadata"] = {"labels": self.labels()}
        current = (node.get("spec") or {}).get("podCIDR")
        if self.pod_cidr and not current:
            patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        elif self.pod_cidr and current != self.pod_cidr:
            log.warning(
                "node %s has podCIDR %s but this agent was given %s; pods here use %s, which "
                "other nodes will not route to",
                self.name,
                current,
                self.pod_cidr,
                self.pod_cidr,
            )
        if patch:
            node = await self.client.patch(kinds.NODES, None, self.name, patch)
        log.info("took over existing node %s", self.name)
        return node

    async def wait_pod_cidr(self, poll: float = 0.5) -> str:
        """The node's podCIDR, once the controller-manager has written one."""
        told = False
        while True:
            node = await self.client.get(kinds.NODES, None, self.name)
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                return str(cidr)
            if not told:
                log.info("waiting for the controller-manager to give node %s a podCIDR", self.name)
                told = True
            await asyncio.sleep(poll)

    # -- status ----------------------------------------------------------------------

    def set_ready(self, ready: bool, message: str = "") -> None:
        """Say whether the node can run pods; written at the next heartbeat, which is now."""
        self._ready = ready
        if message:
            self._not_ready_message = message
        self._wake.set()

    def desired_status(self, node: Obj, now: float) -> Obj:
        stamp = podstatus.format_time(now)
        existing = {
            c.get("type"): c
            for c in (node.get("status") or {}).get("conditions") or []
            if isinstance(c, dict)
        }

        def condition(kind: str, status: str, reason: str, message: str) -> Obj:
            before = existing.get(kind) or {}
            since = before.get("lastTransitionTime") if before.get("status") == status else None
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": since or stamp,
            }

        conditions = [condition(kind, "False", reason, text) for kind, reason, text in _PRESSURES]
        if self._ready:
            ready = condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        else:
            ready = condition("Ready", "False", "KubeletNotReady", self._not_ready_message)
        conditions.append(ready)
        conditions += [c for k, c in existing.items() if k not in _OWN_CONDITIONS]
        return {
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.hostname},
            ],
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "nodeInfo": dict(self.info),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.api_port}},
        }

    async def _write_status(self, node: Obj) -> Obj:
        status = self.desired_status(node, time.time())
        written = await self.client.patch(
            kinds.NODES, None, self.name, {"status": status}, subresource="status"
        )
        self._last_report = time.monotonic()
        return written

    async def _sync_status(self) -> None:
        try:
            node = await self.client.get(kinds.NODES, None, self.name)
        except errors.NotFound:
            log.warning("node %s was deleted; registering it again", self.name)
            await self.register()
            return
        current = (node.get("status") or {}).get("conditions") or []
        wanted = self.desired_status(node, time.time())
        if (
            _condition_states(current) != _condition_states(wanted["conditions"])
            or time.monotonic() - self._last_report >= self.status_interval
            or any(
                (node.get("status") or {}).get(k) != v
                for k, v in wanted.items()
                if k != "conditions"
            )
        ):
            await self._write_status(node)

    # -- heartbeats --------------------------------------------------------------------

    async def run(self) -> None:
        """Renew the Lease and keep the status current until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self._renew_lease()
                await self._sync_status()
            except errors.ClientError as exc:
                log.warning("node %s heartbeat failed, retrying: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.renew_interval)

    async def _renew_lease(self) -> None:
        for _ in range(2):  # once more after a conflict, with the Lease read afresh
            lease = self._lease or await self._read_or_create_lease()
            renewed = copy.deepcopy(lease)
            renewed["spec"].update(
                holderIdentity=self.name,
                leaseDurationSeconds=LEASE_DURATION,
                renewTime=micro_time(),
            )
            try:
                self._lease = await self.client.update(kinds.LEASES, renewed)
                return
            except (errors.Conflict, errors.NotFound):
                self._lease = None

    async def _read_or_create_lease(self) -> Obj:
        try:
            return await self.client.get(kinds.LEASES, NODE_LEASE_NAMESPACE, self.name)
        except errors.NotFound:
            pass
        owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._uid}]
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": NODE_LEASE_NAMESPACE,
                **({"ownerReferences": owner} if self._uid else {}),
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_DURATION,
                "renewTime": micro_time(),
            },
        }
        try:
            return await self.client.create(kinds.LEASES, NODE_LEASE_NAMESPACE, body)
        except errors.AlreadyExists:
            return await self.client.get(kinds.LEASES, NODE_LEASE_NAMESPACE, self.name)

    async def shutdown(self, message: str = "agent stopped") -> None:
        """Mark the node NotReady: the agent is going away (its pods keep running)."""
        self._ready = False
        self._not_ready_message = message
        node = await self.client.get(kinds.NODES, None, self.name)
        await self._write_status(node)


def _condition_states(conditions: list[Obj]) -> dict[str, tuple[str, str]]:
    return {
        str(c.get("type")): (str(c.get("status")), str(c.get("message", "")))
        for c in conditions
        if isinstance(c, dict)
    }
