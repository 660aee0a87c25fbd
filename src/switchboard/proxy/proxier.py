"""The proxy's sync loop: informer events in, one nftables transaction per sync out.

In kube-proxy's shape (see STYLE.md): informer handlers only record which
Services changed; the loop wakes, waits out a short minimum period so a burst
of changes becomes one transaction, turns the changed Services into
data-plane changes and applies them. Nothing is synced until both informers
have listed once; the first sync is a full one (which also reconciles what an
earlier run left in the kernel, in the same transaction), a full resync runs
periodically, and any failure forces the next sync to be full.

Per Service port the loop remembers what it last applied, so a change that
cancels out (an update that did not touch anything the data plane uses)
becomes no work at all. After each sync, conntrack entries that would keep
sending a client to an endpoint that is gone are deleted (see conntrack.py),
one filter at a time and never the whole table, on a worker thread: found
from what changed, and after a full sync also by listing the kernel's
table (which finds those of endpoints that went while the proxy was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import informer, rest
from switchboard.client.informer import Informer
from switchboard.proxy import changes, model, ruleset
from switchboard.proxy import conntrack as ct
from switchboard.proxy.dataplane import DataPlane

log = logging.getLogger(__name__)

SERVICE_INDEX = "service"


class Metrics:
    """kube-proxy's sync metrics, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "How long one sync of the data plane took.",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.programming = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "From an endpoint change (the slice's last-change-trigger-time) to its rules.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.errors = Counter(
            "kubeproxy_sync_proxy_rules_errors",
            "Syncs that failed.",
            registry=self.registry,
        )
        self.service_ports = Gauge(
            "kubeproxy_sync_proxy_rules_service_ports",
            "Service ports programmed.",
            registry=self.registry,
        )
        self.endpoints = Gauge(
            "kubeproxy_sync_proxy_rules_endpoints",
            "Endpoints programmed (over all service ports).",
            registry=self.registry,
        )


class Proxier:
    def __init__(
        self,
        client: rest.Client,
        plane: DataPlane,
        *,
        node_name: str = "",
        services: Informer | None = None,
        slices: Informer | None = None,
        min_sync_period: float = 0.01,
        full_sync_period: float = 300.0,
        conntrack: ct.Conntrack | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.plane = plane
        self.node_name = node_name
        self.services = services or Informer(client, kinds.SERVICES)
        self.slices = slices or Informer(client, kinds.ENDPOINTSLICES)
        self._owned_informers = services is None
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.cleaner = ct.Cleaner(conntrack) if conntrack is not None else None
        self.metrics = metrics or Metrics()
        self._dirty: set[str] = set()
        self._trigger_times: list[str] = []
        self._wake = asyncio.Event()
        self._applied: dict[model.ServicePortName, ruleset.Desired] = {}
        self._names: dict[str, set[model.ServicePortName]] = {}
        self._needs_full = True
        self.synced = asyncio.Event()  # set after the first successful full sync
        self.slices.add_index(SERVICE_INDEX, self._slice_index)
        self.services.add_handlers(
            on_add=lambda obj: self._touch(changes.service_key(obj)),
            on_update=lambda old, new: self._touch(changes.service_key(new)),
            on_delete=lambda obj: self._touch(changes.service_key(obj)),
        )
        self.slices.add_handlers(
            on_add=self._slice_changed,
            on_update=lambda old, new: self._slice_changed(new),
            on_delete=self._slice_changed,
        )

    @staticmethod
    def _slice_index(obj: Obj) -> Iterable[str]:
        key = changes.slice_service_key(obj)
        return (key,) if key else ()

    def _touch(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    def _slice_changed(self, obj: Obj) -> None:
        key = changes.slice_service_key(obj)
        if key is None:
            return
        stamp = changes.trigger_time(obj)
        if stamp:
            self._trigger_times.append(stamp)
        self._touch(key)

    # ---- desired state ----------------------------------------------------------------

    def _desired_for(self, key: str) -> dict[model.ServicePortName, ruleset.Desired]:
        svc = self.services.get(key)
        if svc is None or not changes.proxied(svc):
            return {}
        return changes.desired_ports(
            svc,
            self.slices.by_index(SERVICE_INDEX, key),
            node_name=self.node_name,
            family=self.plane.config.family,
        )

    def _all_desired(self) -> dict[str, dict[model.ServicePortName, ruleset.Desired]]:
        return {
            changes.service_key(svc): self._desired_for(changes.service_key(svc))
            for svc in self.services.list()
        }

    # ---- syncing ----------------------------------------------------------------------

    async def _full_sync(self) -> None:
        self._dirty.clear()
        per_service = self._all_desired()
        desired = {name: d for ports in per_service.values() for name, d in ports.items()}
        started = time.perf_counter()
        await asyncio.to_thread(self.plane.sync, desired)
        self.metrics.sync_duration.labels("full").observe(time.perf_counter() - started)
        previous = self._applied
        self._applied = desired
        self._names = {k: set(v) for k, v in per_service.items() if v}
        self._needs_full = False
        # The diff only for the ports applied before, which covers those that went away;
        # what the table holds for the current ports is reconciled from the table itself,
        # which also covers endpoints that went while no proxy ran (and after a start the
        # diff against nothing would drop every UDP entry, live endpoints' too).
        self._after_apply({n: desired.get(n) for n in previous}, previous)
        if self.cleaner is not None:
            config = self.plane.config
            self.cleaner.submit(
                [ct.Reconcile(dict(desired), config.family, config.nodeport_addresses)]
            )

    async def _partial_sync(self) -> None:
        dirty, self._dirty = self._dirty, set()
        updates: dict[model.ServicePortName, ruleset.Desired | None] = {}
        names: dict[str, set[model.ServicePortName]] = {}
        for key in dirty:
            wanted = self._desired_for(key)
            names[key] = set(wanted)
            for gone in self._names.get(key, set()) - set(wanted):
                updates[gone] = None
            for name, entry in wanted.items():
                applied = self._applied.get(name)
                if applied is None or applied[0] != entry[0] or list(applied[1]) != list(entry[1]):
                    updates[name] = entry
        if not updates:
            return
        started = time.perf_counter()
        await asyncio.to_thread(self.plane.update, updates)
        self.metrics.sync_duration.labels("partial").observe(time.perf_counter() - started)
        before = {n: self._applied[n] for n in updates if n in self._applied}
        for name, update in updates.items():
            if update is None:
                self._applied.pop(name, None)
            else:
                self._applied[name] = update
        for key, port_names in names.items():
            if port_names:
                self._names[key] = port_names
            else:
                self._names.pop(key, None)
        self._after_apply(updates, before)

    def _after_apply(
        self,
        updates: dict[model.ServicePortName, ruleset.Desired | None],
        previous: dict[model.ServicePortName, ruleset.Desired],
    ) -> None:
        now = datetime.now(UTC)
        for stamp in self._trigger_times:
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                self.metrics.programming.observe(max(0.0, (now - at).total_seconds()))
        self._trigger_times.clear()
        self.metrics.service_ports.set(len(self._applied))
        self.metrics.endpoints.set(sum(len(d[1]) for d in self._applied.values()))
        if self.cleaner is not None:
            self.cleaner.submit(
                f
                for name, desired in updates.items()
                for f in ct.stale_filters(name, previous.get(name), desired)
            )

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        if self._owned_informers:
            tasks = [asyncio.create_task(i.run()) for i in (self.services, self.slices)]
        try:
            await informer.wait_for_sync(self.services, self.slices)
            loop = asyncio.get_running_loop()
            next_full = loop.time()
            while True:
                try:
                    if self._needs_full or loop.time() >= next_full:
                        await self._full_sync()
                        next_full = loop.time() + self.full_sync_period
                        self.synced.set()
                    elif self._dirty:
                        await self._partial_sync()
                except Exception:  # the kernel kept its old table: resync fully next
                    log.exception("proxy sync failed; the next sync is a full one")
                    self.metrics.errors.inc()
                    self._needs_full = True
                    await asyncio.sleep(1.0)
                    continue
                self._wake.clear()
                if not self._dirty:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, next_full - loop.time())):
                            await self._wake.wait()
                await asyncio.sleep(self.min_sync_period)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.cleaner is not None:
                await asyncio.to_thread(self.cleaner.close)
