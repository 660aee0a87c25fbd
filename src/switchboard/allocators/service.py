"""What a Service write allocates and releases (pkg/registry/core/service/storage/alloc.go).

`ServiceAllocations` holds the cluster-IP allocators (one per family,
primary first) and the NodePort allocator, and applies Kubernetes' rules:

    create    ipFamilyPolicy/ipFamilies settled (families.py); cluster IPs for
              every Service but headless and ExternalName; nodePorts for
              NodePort and LoadBalancer (a LoadBalancer with
              allocateLoadBalancerNodePorts=false only gets those it asks for),
              ports with the same port number sharing one nodePort;
              healthCheckNodePort for LoadBalancer with externalTrafficPolicy Local
    update    the same for whatever the new type needs and the old one lacked
              (ExternalName → anything: allocate IPs; → ExternalName: release
              them; NodePort/LoadBalancer → ClusterIP/ExternalName: release every
              nodePort; changed nodePorts: allocate new, release dropped; health
              check port allocated or released as Local comes and goes;
              dual-stack upgrade/downgrade of the secondary IP)
    delete    `release(svc)`: everything the Service holds, at once

Allocation writes the values into the Service dict and returns a
`Transaction`: new values are taken from the bitmaps immediately, values the
update no longer needs stay taken until `commit()`, so a failed store write
can `rollback()` to exactly the state before. Failures come back as field
errors with Kubernetes' paths and wording, e.g.

    spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP
        10.96.0.5: provided IP is already allocated
    spec.ports[0].nodePort: Invalid value: 30000: provided port is already allocated

Kubernetes answers an exhausted range with a 500, not a 422: such errors have
reason "InternalError" (`is_internal`), and the apiserver should reply
`Internal error occurred: <internal_detail(error)>`, e.g. `failed to allocate
a serviceIP: range is full`. With `dry_run=True` everything is computed and
written into the object as usual, and `commit()` gives it all back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

from switchboard.allocators import errors, families, repair
from switchboard.allocators.ipallocator import IPAllocator
from switchboard.allocators.portallocator import PortAllocator
from switchboard.api import fielderrors as fe
from switchboard.api import validation as v
from switchboard.api.fielderrors import FieldError
from switchboard.api.kinds import Obj
from switchboard.api.servicerules import (
    CLUSTER_IP_NONE,
    cluster_ips_of,
    family_of,
    int_of,
    needs_health_check,
    needs_node_ports,
    node_ports_of,
    ports_of,
    should_allocate_node_ports,
    spec_of,
    str_of,
    strings_of,
    type_of,
)

INTERNAL = "InternalError"
_INTERNAL_PREFIX = "Internal error: "


def is_internal(error: FieldError) -> bool:
    """True for failures Kubernetes reports as 500 InternalError rather than 422 Invalid."""
    return error.reason == INTERNAL


def internal_detail(error: FieldError) -> str:
    """The text after Kubernetes' `Internal error occurred: ` for an internal error."""
    return error.body.removeprefix(_INTERNAL_PREFIX)


class Transaction:
    """The allocations of one Service write: `commit()` after the store write succeeded,
    `rollback()` when anything failed. Either may be called once; later calls do nothing."""

    def __init__(self, *, dry_run: bool = False) -> None:
        self._undo: list[Callable[[], None]] = []
        self._deferred: list[Callable[[], None]] = []
        self._dry_run = dry_run
        self._open = True

    def took(self, undo: Callable[[], None]) -> None:
        """Record a value just taken; `undo` gives it back on rollback."""
        self._undo.append(undo)

    def release_on_commit(self, release: Callable[[], None]) -> None:
        """Record a value to give back once the write is stored."""
        self._deferred.append(release)

    def commit(self) -> None:
        if not self._open:
            return
        if self._dry_run:
            self.rollback()
            return
        self._open = False
        for release in self._deferred:
            release()

    def rollback(self) -> None:
        if not self._open:
            return
        self._open = False
        for undo in reversed(self._undo):
            undo()


def _internal(detail: str) -> FieldError:
    return fe.internal("", detail)


class ServiceAllocations:
    """Kubernetes' allocation for Service writes, over in-memory allocators.

    `ServiceAllocations(IPAllocator("10.96.0.0/16"), PortAllocator("30000-32767"))`;
    dual-stack passes `[IPAllocator(primary), IPAllocator(secondary)]`. Not thread-safe:
    call it from the apiserver's event loop. Writes may interleave between allocating
    and committing: every value a write holds stays taken until it commits or rolls back.
    """

    def __init__(
        self, cluster_ips: IPAllocator | Sequence[IPAllocator], node_ports: PortAllocator
    ) -> None:
        allocators = [cluster_ips] if isinstance(cluster_ips, IPAllocator) else list(cluster_ips)
        if not allocators or len({a.family for a in allocators}) != len(allocators):
            raise ValueError("need one cluster IP allocator per family, primary first")
        self._ips = {a.family: a for a in allocators}
        self._ports = node_ports
        self._leaks: dict[tuple[str, str], int] = {}
        self._rebuilt = False

    @property
    def families(self) -> list[str]:
        """The IP families served, primary first."""
        return list(self._ips)

    def cluster_ips(self, family: str) -> IPAllocator:
        return self._ips[family]

    @property
    def node_ports(self) -> PortAllocator:
        return self._ports

    # ---- create --------------------------------------------------------------------------

    def allocate_create(
        self, svc: Obj, *, dry_run: bool = False
    ) -> tuple[Transaction, list[FieldError]]:
        """Allocate what a new Service needs, writing the values into `svc`.

        Call after `service.default` and `service.prepare_create`. On errors nothing
        stays allocated and the transaction is already closed.
        """
        txn = Transaction(dry_run=dry_run)
        errs = families.init_ip_family_fields(svc, None, families=self.families)
        if not errs:
            errs = self._allocate_cluster_ips(svc, txn)
        if not errs and needs_node_ports(svc):
            errs = self._init_node_ports(svc, txn)
        if not errs and needs_health_check(svc):
            errs = self._allocate_health_check(svc, txn)
        if errs:
            txn.rollback()
        return txn, errs

    def _allocate_cluster_ips(self, svc: Obj, txn: Transaction) -> list[FieldError]:
        spec = spec_of(svc)
        if type_of(svc) == "ExternalName":
            return []
        ips = cluster_ips_of(svc)
        if ips and ips[0] == CLUSTER_IP_NONE:
            return []
        fams = strings_of(spec.get("ipFamilies")) or []
        ips += [""] * (len(fams) - len(ips))  # "" marks a family still to allocate
        shown = v.go_strings(ips)  # Kubernetes reports the list with its markers
        for i, family in enumerate(fams):
            allocator = self._ips[family]
            if ips[i]:
                try:
                    allocator.allocate(ips[i])
                except errors.AllocatorError as exc:
                    detail = f"failed to allocate IP {ips[i]}: {exc}"
                    return [fe.invalid_go("spec.clusterIPs", shown, detail)]
            else:
                try:
                    ips[i] = allocator.allocate_next()
                except errors.RangeFull as exc:
                    return [_internal(f"failed to allocate a serviceIP: {exc}")]
            txn.took(partial(allocator.release, ips[i]))
        if ips:
            spec["clusterIPs"] = ips
            spec["clusterIP"] = ips[0]
        return []

    def _init_node_ports(self, svc: Obj, txn: Transaction) -> list[FieldError]:
        by_port: dict[int, int] = {}  # service port number → the nodePort it got
        ports = ports_of(svc)
        for i, port in enumerate(ports):
            node_port, number = int_of(port.get("nodePort")), int_of(port.get("port"))
            if not node_port and not should_allocate_node_ports(svc):
                continue  # respect explicit requests, allocate nothing new
            path = f"spec.ports[{i}].nodePort"
            shared = by_port.get(number, 0)
            if not shared:
                # The first port with this number and an explicit nodePort decides it.
                wanted = next(
                    (int_of(p.get("nodePort")) for p in ports
                     if int_of(p.get("port")) == number and int_of(p.get("nodePort"))),
                    0,
                )  # fmt: skip
                got, errs = self._take_port(wanted, path, txn)
                if errs:
                    return errs
                port["nodePort"] = by_port[number] = got
            elif not node_port:
                port["nodePort"] = shared
            elif node_port != shared:
                _, errs = self._take_port(node_port, path, txn)
                if errs:
                    return errs
        return []

    def _take_port(self, wanted: int, path: str, txn: Transaction) -> tuple[int, list[FieldError]]:
        """Take port `wanted`, or any port when 0; the port taken, or field errors."""
        try:
            if wanted:
                self._ports.allocate(wanted)
                got = wanted
            else:
                got = self._ports.allocate_next()
        except errors.RangeFull as exc:
            return 0, [_internal(f"failed to allocate a nodePort: {exc}")]
        except errors.AllocatorError as exc:
            return 0, [fe.invalid(path, wanted, str(exc))]
        txn.took(partial(self._ports.release, got))
        return got, []

    def _allocate_health_check(self, svc: Obj, txn: Transaction) -> list[FieldError]:
        spec = spec_of(svc)
        wanted = int_of(spec.get("healthCheckNodePort"))
        try:
            if wanted:
                self._ports.allocate(wanted)
            got = wanted or self._ports.allocate_next()
        except errors.AllocatorError as exc:
            if wanted:
                detail = f"failed to allocate requested HealthCheck NodePort {wanted}: {exc}"
                return [_internal(detail)]
            # Kubernetes prints the port it failed to get, which is always 0 here.
            return [_internal(f"failed to allocate a HealthCheck NodePort 0: {exc}")]
        spec["healthCheckNodePort"] = got
        txn.took(partial(self._ports.release, got))
        return []

    # ---- update --------------------------------------------------------------------------

    def allocate_update(
        self, new: Obj, old: Obj, *, dry_run: bool = False
    ) -> tuple[Transaction, list[FieldError]]:
        """Allocate what `new` needs beyond `old` and schedule the release of what it no
        longer needs. Call after `service.default(new)` and `service.prepare_update`."""
        txn = Transaction(dry_run=dry_run)
        errs = families.init_ip_family_fields(new, old, families=self.families)
        if not errs:
            errs = self._update_cluster_ips(new, old, txn)
        if not errs:
            errs = self._update_node_ports(new, old, txn)
        if errs:
            txn.rollback()
        return txn, errs

    def _update_cluster_ips(self, new: Obj, old: Obj, txn: Transaction) -> list[FieldError]:
        if families.prefer_dual_stack_unchanged(new, old):
            return []
        old_type, new_type = type_of(old), type_of(new)
        if old_type == "ExternalName" and new_type != "ExternalName":
            return self._allocate_cluster_ips(new, txn)
        old_ips = cluster_ips_of(old)
        if old_ips[:1] == [CLUSTER_IP_NONE]:
            return []
        if new_type == "ExternalName":
            self._release_ips_on_commit(old_ips, txn)
            return []
        old_fams = strings_of(spec_of(old).get("ipFamilies")) or []
        new_fams = strings_of(spec_of(new).get("ipFamilies")) or []
        if len(old_fams) == 1 and len(new_fams) == 2:
            return self._upgrade_to_dual_stack(new, txn)
        if len(old_fams) == 2 and len(new_fams) == 1:  # the secondary IP goes
            self._release_ips_on_commit(old_ips[1:2], txn)
        return []

    def _upgrade_to_dual_stack(self, new: Obj, txn: Transaction) -> list[FieldError]:
        spec = spec_of(new)
        ips = cluster_ips_of(new)
        if len(ips) < 2:
            ips.append("")
        spec["clusterIPs"] = ips
        allocator = self._ips[(strings_of(spec.get("ipFamilies")) or [])[1]]
        try:
            if ips[1]:
                allocator.allocate(ips[1])
            else:
                ips[1] = allocator.allocate_next()
        except errors.RangeFull as exc:
            return [_internal(f"failed to allocate a serviceIP: {exc}")]
        except errors.AllocatorError as exc:
            detail = f"failed to allocate IP {ips[1]}: {exc}"
            return [fe.invalid_go("spec.clusterIPs", v.go_strings(ips), detail)]
        txn.took(partial(allocator.release, ips[1]))
        return []

    def _release_ips_on_commit(self, ips: Iterable[str], txn: Transaction) -> None:
        for ip in ips:
            allocator = self._ips.get(family_of(ip))
            if allocator is not None:  # a family no longer served has nothing to release
                txn.release_on_commit(partial(allocator.release, ip))

    def _update_node_ports(self, new: Obj, old: Obj, txn: Transaction) -> list[FieldError]:
        if needs_node_ports(old) and type_of(new) in ("ClusterIP", "ExternalName"):
            for port in node_ports_of(old):
                txn.release_on_commit(partial(self._ports.release, port))
        if needs_node_ports(new):
            errs = self._update_service_node_ports(new, old, txn)
            if errs:
                return errs
        if not needs_health_check(old) and needs_health_check(new):
            return self._allocate_health_check(new, txn)
        old_health = int_of(spec_of(old).get("healthCheckNodePort"))
        if needs_health_check(old) and not needs_health_check(new) and old_health:
            txn.release_on_commit(partial(self._ports.release, old_health))
        return []

    def _update_service_node_ports(self, new: Obj, old: Obj, txn: Transaction) -> list[FieldError]:
        # Only NodePort and LoadBalancer Services hold node ports; a nodePort left on an
        # ExternalName Service (validation allows it) was never allocated.
        old_ports = node_ports_of(old) if needs_node_ports(old) else []
        taken: set[int] = set()
        seen: set[tuple[str, int]] = set()
        for i, port in enumerate(ports_of(new)):
            node_port = int_of(port.get("nodePort"))
            if not node_port and not should_allocate_node_ports(new):
                continue
            if not node_port:
                node_port, errs = self._take_port(0, f"spec.ports[{i}].nodePort", txn)
                if errs:
                    return errs
                port["nodePort"] = node_port
            elif node_port not in old_ports and node_port not in taken:
                _, errs = self._take_port(node_port, f"spec.ports[{i}].nodePort", txn)
                if errs:
                    return errs
                taken.add(node_port)
            key = (str_of(port.get("protocol")), node_port)
            if key in seen:
                return [_internal(f"duplicate nodePort: {{{key[0]} {key[1]}}}")]
            seen.add(key)
        kept = set(node_ports_of(new))
        for dropped in old_ports:
            if dropped not in kept:
                txn.release_on_commit(partial(self._ports.release, dropped))
        return []

    # ---- delete and repair -------------------------------------------------------------------

    def release(self, svc: Obj) -> None:
        """Give back everything a deleted Service held."""
        if type_of(svc) != "ExternalName":
            ips = cluster_ips_of(svc) or [str_of(spec_of(svc).get("clusterIP"))]
            for ip in ips:
                allocator = self._ips.get(family_of(ip))
                if ip and ip != CLUSTER_IP_NONE and allocator is not None:
                    allocator.release(ip)
        if needs_node_ports(svc):  # see _update_service_node_ports
            for port in node_ports_of(svc):
                self._ports.release(port)
        health = int_of(spec_of(svc).get("healthCheckNodePort"))
        if needs_health_check(svc) and health > 0:
            self._ports.release(health)

    def rebuild(self, services: Iterable[Obj]) -> list[repair.RepairEvent]:
        """Rebuild the bitmaps from every stored Service (the repair loop).

        Call at start with all Services (in the store's list order), then periodically.
        Returns what was wrong, as the Warning Events Kubernetes' repair controllers
        record on the Service. Values held by no Service are freed only after the
        third consecutive rebuild that finds them unused, so a write in flight (taken,
        not yet stored) is not freed under it.
        """
        events = repair.rebuild(
            self._ips,
            self._ports,
            services,
            leaks=self._leaks,
            report_unallocated=self._rebuilt,
        )
        self._rebuilt = True
        return events
