"""Service allocation inside the apiserver: ClusterIPs and NodePorts, repair, `default/kubernetes`.

The bitmaps live in memory (`allocators.service.ServiceAllocations`) and are
rebuilt from the stored Services at start, so the Services themselves are the
record of what is allocated: nothing can be handed out twice across a
restart. Every write holds what it took in a transaction until the store
acknowledges it; a failed write gives it back.

The repair loop rebuilds the bitmaps periodically and records what it finds
wrong as Warning Events on the Services at fault, as Kubernetes' repair
controllers do. `default/kubernetes` takes the first address of the service
CIDR and points (with its Endpoints and EndpointSlice) at this apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time

from switchboard.allocators import repair
from switchboard.allocators import service as alloc
from switchboard.allocators.ipallocator import IPAllocator
from switchboard.allocators.portallocator import PortAllocator
from switchboard.api import fielderrors as fe
from switchboard.api import kinds
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, status
from switchboard.apiserver.reads import ListOptions
from switchboard.apiserver.registry import NO_TRANSACTION, Registry, Transaction, WriteHooks

log = logging.getLogger(__name__)

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
REPAIR_INTERVAL = 180.0


def _raise_internal(errs: list[fe.FieldError]) -> None:
    for err in errs:
        if alloc.is_internal(err):
            # As Kubernetes' NewInternalError: the bare error is also the one cause.
            detail = alloc.internal_detail(err)
            error = status.internal(detail)
            error.details = {"causes": [{"message": detail}]}
            raise error


class ServiceHooks(WriteHooks):
    def __init__(
        self,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        node_port_range: str = DEFAULT_NODE_PORT_RANGE,
    ) -> None:
        self.service_cidr = service_cidr
        self.allocations = alloc.ServiceAllocations(
            IPAllocator(service_cidr), PortAllocator(node_port_range)
        )

    async def before_create(
        self, kind: ResourceKind, obj: Obj, *, dry_run: bool
    ) -> tuple[Transaction, list[fe.FieldError]]:
        if kind.kind != "Service":
            return NO_TRANSACTION, []
        txn, errs = self.allocations.allocate_create(obj, dry_run=dry_run)
        _raise_internal(errs)
        return txn, errs

    async def before_update(
        self, kind: ResourceKind, new: Obj, old: Obj, *, dry_run: bool
    ) -> tuple[Transaction, list[fe.FieldError]]:
        if kind.kind != "Service":
            return NO_TRANSACTION, []
        txn, errs = self.allocations.allocate_update(new, old, dry_run=dry_run)
        _raise_internal(errs)
        return txn, errs

    async def after_delete(self, kind: ResourceKind, obj: Obj) -> None:
        if kind.kind == "Service":
            self.allocations.release(obj)

    async def repair(self, registry: Registry) -> int:
        """Rebuild the bitmaps from every Service; record an Event per problem found."""
        listed = await registry.list(kinds.SERVICES, None, ListOptions())
        found = self.allocations.rebuild(listed["items"])
        for event in found:
            await _record(registry, event)
        return len(found)

    def first_address(self) -> str:
        network = ipaddress.ip_network(self.service_cidr)
        return str(network.network_address + 1)


async def _record(registry: Registry, event: repair.RepairEvent) -> None:
    namespace = event.namespace or "default"
    stamp = codec.now()
    # Kubernetes runs one repair controller per allocator, each recording as itself.
    port = event.action == "PortAllocation"
    component = f"{'portallocator' if port else 'ipallocator'}-repair-controller"
    obj: Obj = {
        # Named as client-go's recorder names events: <involved object>.<time in ns, hex>.
        # (A generateName ending in "." is not a valid name prefix.)
        "metadata": {
            "name": f"{event.name or 'service'}.{time.time_ns():x}",
            "namespace": namespace,
        },
        "involvedObject": {
            "kind": "Service",
            "apiVersion": "v1",
            "namespace": namespace,
            "name": event.name,
            "uid": event.uid,
        },
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "action": event.action,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    with contextlib.suppress(status.APIError):
        await registry.create(kinds.EVENTS, namespace, obj)


async def ensure_kubernetes_service(
    registry: Registry, hooks: ServiceHooks, address: str, port: int
) -> None:
    """Keep `default/kubernetes` and its endpoints pointing at this apiserver."""
    want_spec = {
        "type": "ClusterIP",
        "clusterIP": hooks.first_address(),
        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        "sessionAffinity": "None",
    }
    labels = {"component": "apiserver", "provider": "kubernetes"}
    try:
        current = await registry.get(kinds.SERVICES, "default", "kubernetes")
    except status.APIError as exc:
        if exc.code != 404:
            raise
        await registry.create(
            kinds.SERVICES,
            "default",
            {"metadata": {"name": "kubernetes", "labels": labels}, "spec": want_spec},
        )
    else:
        if current["spec"]["ports"] != want_spec["ports"]:

            def fix_ports(svc: Obj) -> Obj:
                svc["spec"]["ports"] = want_spec["ports"]
                return svc

            await registry.update(kinds.SERVICES, "default", "kubernetes", fix_ports)
    endpoints: Obj = {
        "metadata": {
            "name": "kubernetes",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ],
    }
    slice_: Obj = {
        "metadata": {
            "name": "kubernetes",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4" if ":" not in address else "IPv6",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    for kind, obj, field in (
        (kinds.ENDPOINTS, endpoints, "subsets"),
        (kinds.ENDPOINTSLICES, slice_, "endpoints"),
    ):
        try:
            existing = await registry.get(kind, "default", "kubernetes")
        except status.APIError as exc:
            if exc.code != 404:
                raise
            await registry.create(kind, "default", obj)
            continue
        if existing.get(field) != obj[field] or existing.get("ports") != obj.get("ports"):

            def replace(current: Obj, obj: Obj = obj) -> Obj:
                current.update({k: v for k, v in obj.items() if k != "metadata"})
                return current

            await registry.update(kind, "default", "kubernetes", replace)


async def repair_loop(registry: Registry, hooks: ServiceHooks) -> None:
    while True:
        await asyncio.sleep(REPAIR_INTERVAL)
        try:
            await hooks.repair(registry)
        except Exception:  # the next pass retries
            log.exception("service allocation repair failed")
