"""Leader election through a coordination.k8s.io/v1 Lease, as client-go does it.

Several controller-managers may run; only the one holding the Lease acts.
The Lease records `holderIdentity`, `leaseDurationSeconds`, `acquireTime`,
`renewTime` and `leaseTransitions`, and every write carries the
resourceVersion it read, so two candidates racing for it cannot both win:
the loser gets 409 Conflict and tries again later.

Timing (defaults 15 s / 10 s / 2 s, client-go's):

- A candidate retries every `retry_period` (with jitter) until the Lease is
  free or its holder has not renewed for `lease_duration`. Expiry is judged
  by when *this* process last saw the Lease change, on its own monotonic
  clock, never by the timestamps in the Lease: clocks on two machines need
  not agree.
- The leader renews every `retry_period`. If it has not managed to renew for
  `renew_deadline`, it stops leading and cancels its work. Because
  `renew_deadline` < `lease_duration`, a leader that is cut off stops acting
  before any other candidate may consider the Lease expired.
- A leader that is stopped (its `run` cancelled) releases the Lease by
  clearing `holderIdentity`, so a standby takes over at its next retry
  instead of waiting out the lease duration.

`run(on_started_leading)` returns once leadership is lost or the callback
returns; the caller decides whether to campaign again or exit (client-go's
controller-manager exits, so no state from a lost term survives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import errors, rest

log = logging.getLogger(__name__)

JITTER = 1.2  # client-go's JitterFactor for the acquire loop


def micro_time(at: datetime | None = None) -> str:
    """A MicroTime as Kubernetes writes it: RFC 3339 with microseconds, UTC."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: rest.Client,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        *,
        release_on_cancel: bool = True,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                "leader election needs lease_duration > renew_deadline > retry_period > 0, "
                f"got {lease_duration} / {renew_deadline} / {retry_period}"
            )
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.on_new_leader = on_new_leader
        self._observed: Obj | None = None  # the Lease as last read or written
        self._observed_at = 0.0  # monotonic time it last changed
        self._leader = ""
        self._leading = False

    @property
    def leader(self) -> str:
        """The holder this elector last saw ("" when none)."""
        return self._leader

    def is_leader(self) -> bool:
        return self._leading

    async def run(self, on_started_leading: Callable[[], Awaitable[None]]) -> None:
        """Campaign, then run `on_started_leading()` for as long as this elector leads."""
        await self._acquire()
        self._leading = True
        log.info("%s: %s became leader of lease %s", self.name, self.identity, self._where())
        work = asyncio.ensure_future(on_started_leading())
        renew = asyncio.create_task(self._renew_until_lost())
        try:
            await asyncio.wait({work, renew}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._leading = False
            for task in (work, renew):
                task.cancel()
            await asyncio.gather(work, renew, return_exceptions=True)
            if self.release_on_cancel:
                # Bounded: a stopping process must not hang on an unreachable API server.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release(), timeout=self.renew_deadline)
        if renew.done() and not renew.cancelled():
            log.warning("%s: %s lost lease %s", self.name, self.identity, self._where())
        failure = work.exception() if work.done() and not work.cancelled() else None
        if failure is not None:
            raise failure

    # ---- campaign and renew --------------------------------------------------------------

    async def _acquire(self) -> None:
        while True:
            if await self._attempt():
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER))

    async def _renew_until_lost(self) -> None:
        loop = asyncio.get_running_loop()
        last_renew = loop.time()
        while True:
            await asyncio.sleep(self.retry_period)
            remaining = last_renew + self.renew_deadline - loop.time()
            if remaining <= 0:
                return
            try:
                renewed = await asyncio.wait_for(self._attempt(), timeout=remaining)
            except TimeoutError:
                renewed = False
            if renewed:
                last_renew = loop.time()
            elif loop.time() - last_renew >= self.renew_deadline:
                return

    async def _attempt(self) -> bool:
        """Try once to take or renew the Lease; False if someone else holds it."""
        try:
            return await self._try_acquire_or_renew()
        except errors.ClientError as exc:
            log.info("%s: lease %s: %s", self.identity, self._where(), exc)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        now = micro_time()
        try:
            lease = await self.client.get(kinds.LEASES, self.namespace, self.name)
        except errors.NotFound:
            fresh: Obj = {
                "apiVersion": kinds.LEASES.api_version,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self._duration_seconds(),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self.client.create(kinds.LEASES, self.namespace, fresh)
            except errors.AlreadyExists:
                return False
            self._observe(created, loop.time())
            return True

        self._observe(lease, loop.time())
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and loop.time() < self._observed_at + duration:
            return False
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self._duration_seconds(),
            renewTime=now,
        )
        if holder != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease = {**lease, "spec": new_spec}
        try:
            updated = await self.client.update(kinds.LEASES, lease)
        except errors.Conflict:
            return False
        self._observe(updated, loop.time())
        return True

    async def _release(self) -> None:
        """Give the Lease up at once if we still hold it, so a standby need not wait."""
        lease = self._observed
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        spec = {
            **lease["spec"],
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "renewTime": micro_time(),
        }
        with contextlib.suppress(errors.ClientError):
            released = await self.client.update(kinds.LEASES, {**lease, "spec": spec})
            self._observe(released, asyncio.get_running_loop().time())
            log.info("%s: %s released lease %s", self.name, self.identity, self._where())

    def _observe(self, lease: Obj, at: float) -> None:
        previous = self._observed
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if previous is None or (previous.get("metadata") or {}).get("resourceVersion") != rv:
            self._observed_at = at
        self._observed = lease
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        if holder != self._leader:
            self._leader = holder
            if self.on_new_leader is not None and holder:
                self.on_new_leader(holder)

    def _duration_seconds(self) -> int:
        return max(1, math.ceil(self.lease_duration))

    def _where(self) -> str:
        return f"{self.namespace}/{self.name}"
