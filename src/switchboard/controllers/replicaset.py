"""The ReplicaSet controller: keep `spec.replicas` pods from the template running.

For each ReplicaSet key, `sync` (pkg/controller/replicaset's syncReplicaSet):

1. reads the ReplicaSet and the namespace's pods from the informer caches;
2. claims pods (`claims`): owned pods that still match, orphans that match
   adopted, owned pods that no longer match released;
3. if its expectations are met and it is not being deleted, compares the
   *active* owned pods (`pods.is_active`: neither finished nor being
   deleted) with `spec.replicas` and creates from the template (in doubling
   batches, at most `burst_replicas` per sync) or deletes the pods
   Kubernetes would delete first (`pods.pods_to_delete`);
4. writes `status` (replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas, observedGeneration, a ReplicaFailure condition when
   creating or deleting failed) through the status subresource.

A pod that fails or is deleted stops being active at once, so the next sync
replaces it; scaling through `/scale` is just a new `spec.replicas`.

Idempotence rests on expectations (`expectations`): before creating N pods
the controller expects N creations and does not manage replicas again until
its pod cache has seen them (or the creations failed, which it ticks off
itself). A fresh process has no expectations and starts from freshly listed
caches holding every pod the previous one created, so a restart mid-scale
never doubles pods.

Events: SuccessfulCreate, FailedCreate, SuccessfulDelete, FailedDelete.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable

from switchboard.api import kinds, selectors
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder, EventType
from switchboard.client.informer import Informer
from switchboard.controllers import claims, owners, pods, podtemplate
from switchboard.controllers.expectations import Expectations
from switchboard.controllers.workers import (
    CONTROLLER_UID_INDEX,
    controller_uid_index,
    ensure_index,
    run_workers,
    same_resource_version,
)

log = logging.getLogger(__name__)

BURST_REPLICAS = 500  # Kubernetes' burstReplicas: creations or deletions per sync


class ReplicaSetController:
    def __init__(
        self,
        client: rest.Client,
        replicasets: Informer,
        pod_informer: Informer,
        *,
        events: EventRecorder | None = None,
        burst_replicas: int = BURST_REPLICAS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.replicasets = replicasets
        self.pods = pod_informer
        self.events = events
        self.burst_replicas = burst_replicas
        self.clock = clock
        self.queue = workqueue.WorkQueue(name="replicaset")
        self.expectations = Expectations()
        ensure_index(replicasets, informer.NAMESPACE, informer.namespace_index)
        ensure_index(replicasets, CONTROLLER_UID_INDEX, controller_uid_index)
        ensure_index(pod_informer, informer.NAMESPACE, informer.namespace_index)
        ensure_index(pod_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        replicasets.add_handlers(self._rs_added, self._rs_updated, self._rs_deleted)
        pod_informer.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    async def run(self, workers: int = 5) -> None:
        await run_workers(self.queue, self.sync, (self.replicasets, self.pods), workers)

    # ---- event handlers ------------------------------------------------------------------

    def _rs_added(self, obj: Obj) -> None:
        self.queue.add(informer.key_of(obj))

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.queue.add(informer.key_of(new))

    def _rs_deleted(self, obj: Obj) -> None:
        key = informer.key_of(obj)
        self.expectations.forget(key)
        self.queue.add(key)

    def _owner_key(self, pod: Obj) -> str | None:
        return owners.controller_key(pod, self.replicasets, kinds.REPLICASETS)

    def _pod_added(self, obj: Obj) -> None:
        pod = obj
        if pods.is_being_deleted(pod):
            # Seen for the first time already terminating (e.g. after a restart): not a creation.
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)
            return
        if podtemplate.controller_of(pod) is None:
            for k in owners.selecting_keys(pod, self.replicasets):
                self.queue.add(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if same_resource_version(old, new):
            return
        labels_changed = (old["metadata"].get("labels") or {}) != (
            new["metadata"].get("labels") or {}
        )
        if pods.is_being_deleted(new):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self.queue.add(new_key)
            rs = self.replicasets.get(new_key)
            min_ready = int(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready > 0 and not pods.is_ready(old) and pods.is_ready(new):
                # Check availability again once minReadySeconds have passed.
                self.queue.add_after(new_key, min_ready + 1)
            return
        if podtemplate.controller_of(new) is None and (
            labels_changed or podtemplate.controller_of(old) is not None
        ):
            for k in owners.selecting_keys(new, self.replicasets):
                self.queue.add(k)

    def _pod_deleted(self, obj: Obj) -> None:
        pod = obj
        key = self._owner_key(pod)
        if key is None:
            return
        self.expectations.deletion_observed(key, informer.key_of(pod))
        self.queue.add(key)

    # ---- sync ----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.replicasets.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        rs = copy.deepcopy(cached)
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = selectors.from_label_selector((rs.get("spec") or {}).get("selector"))
        except selectors.SelectorError as exc:
            log.warning("replicaset %s has an invalid selector: %s", key, exc)
            return
        owned = await self._claim_pods(rs, selector)
        manage_error: errors.APIError | None = None
        if needs_sync and not pods.is_being_deleted(rs):
            try:
                await self._manage_replicas(key, rs, owned)
            except errors.APIError as exc:
                manage_error = exc
        status = replicaset_status(rs, owned, manage_error, self.clock())
        updated = await self._write_status(rs, status)
        spec = updated.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        st = updated.get("status") or {}
        if (
            manage_error is None
            and min_ready > 0
            and st.get("readyReplicas", 0) == spec.get("replicas", 1)
            and st.get("availableReplicas", 0) != spec.get("replicas", 1)
        ):
            self.queue.add_after(key, min_ready)
        if manage_error is not None:
            raise manage_error

    async def _claim_pods(self, rs: Obj, selector: selectors.LabelSelector) -> list[Obj]:
        ns = rs["metadata"].get("namespace", "")
        candidates = [p for p in self.pods.by_index(informer.NAMESPACE, ns) if pods.is_active(p)]
        recheck = claims.reread(self.client, kinds.REPLICASETS, rs)
        try:
            owned = await claims.claim(self.client, kinds.PODS, rs, selector, candidates, recheck)
        except claims.OwnerGone:
            return [p for p in candidates if podtemplate.is_controlled_by(p, rs)]
        return [p for p in owned if pods.is_active(p)]

    async def _manage_replicas(self, key: str, rs: Obj, owned: list[Obj]) -> None:
        diff = len(owned) - int((rs.get("spec") or {}).get("replicas", 1))
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, self.burst_replicas))
        elif diff > 0:
            await self._delete_pods(key, rs, owned, min(diff, self.burst_replicas))

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        self.expectations.expect_creations(key, count)
        template = (rs.get("spec") or {}).get("template") or {}
        made = 0
        failure: errors.APIError | None = None
        for batch in pods.slow_start_batches(count):
            results = await asyncio.gather(
                *(self._create_one(rs, template) for _ in range(batch)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    if not isinstance(result, errors.APIError):
                        # Not an API answer (e.g. the connection broke): the create may or
                        # may not have happened; the expectation expires if it did not.
                        raise result
                    if not errors.namespace_terminating(result):
                        failure = failure or result
                else:
                    made += 1
            if failure is not None:
                break
        # No event will come for pods that were never created.
        for _ in range(count - made):
            self.expectations.creation_observed(key)
        if failure is not None:
            raise failure

    async def _create_one(self, rs: Obj, template: Obj) -> None:
        pod = podtemplate.pod_from_template(template, rs)
        try:
            created = await self.client.create(kinds.PODS, rs["metadata"].get("namespace"), pod)
        except errors.APIError as exc:
            if not errors.namespace_terminating(exc):  # the ReplicaSet is about to go as well
                self._event(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            raise
        self._event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pods(self, key: str, rs: Obj, owned: list[Obj], count: int) -> None:
        doomed = pods.pods_to_delete(owned, count, self._related_pods(rs))
        self.expectations.expect_deletions(key, [informer.key_of(p) for p in doomed])
        results = await asyncio.gather(
            *(self._delete_one(key, rs, p) for p in doomed), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _delete_one(self, key: str, rs: Obj, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete(
                kinds.PODS,
                meta.get("namespace"),
                meta["name"],
                preconditions={"uid": meta["uid"]},
            )
        except errors.APIError as exc:
            # No event will come for a delete that did not happen.
            self.expectations.deletion_observed(key, informer.key_of(pod))
            if isinstance(exc, errors.NotFound):
                return
            self._event(rs, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
            raise
        self._event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Active pods of this ReplicaSet and of its siblings under the same controller."""
        owner_uid = podtemplate.controller_uid(rs)
        if owner_uid is None:
            sets = [rs]
        else:
            sets = self.replicasets.by_index(CONTROLLER_UID_INDEX, owner_uid) or [rs]
        related: list[Obj] = []
        for s in sets:
            uid = str(s["metadata"].get("uid", ""))
            related.extend(
                p for p in self.pods.by_index(CONTROLLER_UID_INDEX, uid) if pods.is_active(p)
            )
        return related

    async def _write_status(self, rs: Obj, status: Obj) -> Obj:
        if status == (rs.get("status") or {}):
            return rs
        for attempt in range(2):
            try:
                return await self.client.update(
                    kinds.REPLICASETS, {**rs, "status": status}, subresource="status"
                )
            except errors.Conflict:
                if attempt:
                    raise
                meta = rs["metadata"]
                fresh = await self.client.get(
                    kinds.REPLICASETS, meta.get("namespace"), meta["name"]
                )
                if fresh["metadata"].get("uid") != meta.get("uid"):
                    return rs
                rs = fresh
            except errors.NotFound:
                return rs
        return rs

    def _event(self, obj: Obj, type_: EventType, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(obj, type_, reason, message)


def replicaset_status(
    rs: Obj, owned: list[Obj], manage_error: errors.APIError | None, now: float
) -> Obj:
    """The status a ReplicaSet should show for its active owned pods (calculateStatus)."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully = sum(
        1
        for p in owned
        if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())
    )
    status: Obj = {"replicas": len(owned)}
    counts = {
        "fullyLabeledReplicas": fully,
        "readyReplicas": sum(1 for p in owned if pods.is_ready(p)),
        "availableReplicas": sum(1 for p in owned if pods.is_available(p, min_ready, now)),
        "observedGeneration": int(rs["metadata"].get("generation") or 0),
    }
    status.update({k: v for k, v in counts.items() if v})
    conditions = [
        c for c in (rs.get("status") or {}).get("conditions") or [] if isinstance(c, dict)
    ]
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        diff = len(owned) - int(spec.get("replicas", 1))
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": pods.format_time(now),
                "reason": reason,
                "message": manage_error.message,
            }
        )
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status
