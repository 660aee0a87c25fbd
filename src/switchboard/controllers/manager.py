"""The controller-manager: shared informers, every controller, one leader at a time.

Informers are built once per kind and shared: each controller reads the same
caches and registers its own handlers before they start. Controllers act
only while this process holds the `kube-system/switchboard-controller-manager`
Lease, so two controller-managers can run side by side and only one writes;
losing the lease stops the controllers (and the process exits, as Kubernetes'
does, so a supervisor restarts it with fresh caches).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from switchboard.api import kinds
from switchboard.client import rest
from switchboard.client.events import EventRecorder
from switchboard.client.informer import Informer
from switchboard.client.leaderelection import LeaderElector
from switchboard.controllers.deployment import DeploymentController
from switchboard.controllers.endpoints import EndpointsController
from switchboard.controllers.endpointslice import EndpointSliceController
from switchboard.controllers.garbagecollector import GarbageCollector
from switchboard.controllers.nodeipam import NodeIpamController
from switchboard.controllers.nodelifecycle import NodeLifecycleController
from switchboard.controllers.replicaset import ReplicaSetController
from switchboard.controllers.scheduler import Scheduler

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "switchboard-controller-manager"


@dataclass(frozen=True, slots=True)
class Options:
    kubeconfig: Path
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    max_endpoints_per_slice: int = 100
    leader_elect: bool = True
    node_monitor_grace_period: float = 50.0
    pod_eviction_timeout: float = 300.0
    workers: int = 5


async def run_controllers(client: rest.Client, options: Options) -> None:
    """Start the shared informers and every controller; return when one of them fails."""
    informers = {
        kind.gvk: Informer(client, kind)
        for kind in (
            kinds.PODS,
            kinds.SERVICES,
            kinds.NODES,
            kinds.ENDPOINTS,
            kinds.ENDPOINTSLICES,
            kinds.REPLICASETS,
            kinds.DEPLOYMENTS,
        )
    }

    def inf(kind: kinds.ResourceKind) -> Informer:
        return informers[kind.gvk]

    leases = Informer(client, kinds.LEASES, "kube-node-lease")
    recorder = EventRecorder(client, "controller-manager")
    w = options.workers
    controllers = [
        EndpointSliceController(
            client,
            inf(kinds.PODS),
            inf(kinds.SERVICES),
            inf(kinds.NODES),
            inf(kinds.ENDPOINTSLICES),
            max_endpoints_per_slice=options.max_endpoints_per_slice,
            events=recorder,
        ).run(workers=w),
        EndpointsController(
            client, inf(kinds.PODS), inf(kinds.SERVICES), inf(kinds.ENDPOINTS), events=recorder
        ).run(workers=w),
        ReplicaSetController(client, inf(kinds.REPLICASETS), inf(kinds.PODS), events=recorder).run(
            workers=w
        ),
        DeploymentController(
            client, inf(kinds.DEPLOYMENTS), inf(kinds.REPLICASETS), inf(kinds.PODS), events=recorder
        ).run(workers=w),
        Scheduler(client, inf(kinds.PODS), inf(kinds.NODES), events=recorder).run(),
        GarbageCollector(
            client,
            [
                inf(k)
                for k in (
                    kinds.PODS,
                    kinds.SERVICES,
                    kinds.ENDPOINTS,
                    kinds.ENDPOINTSLICES,
                    kinds.REPLICASETS,
                    kinds.DEPLOYMENTS,
                )
            ],
            events=recorder,
        ).run(workers=w),
        NodeLifecycleController(
            client,
            inf(kinds.NODES),
            leases,
            inf(kinds.PODS),
            events=recorder,
            grace_period=options.node_monitor_grace_period,
            eviction_timeout=options.pod_eviction_timeout,
        ).run(),
        NodeIpamController(
            client,
            inf(kinds.NODES),
            cluster_cidr=options.cluster_cidr,
            node_cidr_mask_size=options.node_cidr_mask_size,
            events=recorder,
        ).run(),
    ]
    tasks = [asyncio.create_task(i.run()) for i in [*informers.values(), leases]]
    tasks += [asyncio.create_task(c) for c in controllers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # re-raise what ended it
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(options: Options) -> None:
    client = rest.Client.from_kubeconfig(options.kubeconfig)
    try:
        if not options.leader_elect:
            await run_controllers(client, options)
            return
        identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity)
        await elector.run(lambda: run_controllers(client, options))
        log.error("lost the %s/%s lease; exiting", LEASE_NAMESPACE, LEASE_NAME)
    finally:
        await client.close()
