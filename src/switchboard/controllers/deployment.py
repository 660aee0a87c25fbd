"""The Deployment controller: roll pod templates out through ReplicaSets.

A Deployment owns ReplicaSets, one per pod template it has had, named
`<deployment>-<pod-template-hash>` so that creating one is idempotent: a
restarted controller that creates the same ReplicaSet again gets
AlreadyExists and finds it. `sync` (pkg/controller/deployment's
syncDeployment) per Deployment key:

1. claims ReplicaSets matching the selector (`claims`);
2. being deleted → only status; paused → only resizing and history
   cleanup; a change of `spec.replicas` (`rollout.is_scaling_event`) →
   proportional resizing of every active ReplicaSet;
3. otherwise rolls out: RollingUpdate grows the new ReplicaSet within
   maxSurge and shrinks old ones within maxUnavailable, one step per sync
   (each step's writes bring the events that cause the next sync);
   Recreate scales every old ReplicaSet to 0, waits until none of their
   pods is left, then scales the new one up;
4. keeps revisions (`podtemplate.new_rs_annotations`): the new ReplicaSet's
   revision is one more than the highest old one, which is how `kubectl
   rollout undo` (which copies an old ReplicaSet's template back into the
   Deployment) makes an old ReplicaSet new again; `kubectl rollout restart`
   changes a template annotation, which makes a new ReplicaSet;
5. deletes old, empty ReplicaSets beyond `revisionHistoryLimit` once the
   rollout is complete;
6. writes status and the Available/Progressing conditions that `kubectl
   rollout status` waits on (`dstatus.rollout_status`), and re-checks a stuck
   rollout when its progress deadline passes.

Every write is based on the cached object's resourceVersion; a stale cache
gets Conflict and the key is retried. Events: ScalingReplicaSet,
SelectingAll, ReplicaSetCreateError.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence

from switchboard.api import kinds, selectors
from switchboard.api.kinds import Obj
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder, EventType
from switchboard.client.informer import Informer
from switchboard.controllers import claims, owners, pods, podtemplate, rollout
from switchboard.controllers import deploymentstatus as dstatus
from switchboard.controllers.workers import (
    CONTROLLER_UID_INDEX,
    controller_uid_index,
    ensure_index,
    run_workers,
    same_resource_version,
)

log = logging.getLogger(__name__)


class DeploymentController:
    def __init__(
        self,
        client: rest.Client,
        deployments: Informer,
        replicasets: Informer,
        pod_informer: Informer,
        *,
        events: EventRecorder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.pods = pod_informer
        self.events = events
        self.clock = clock
        self.queue = workqueue.WorkQueue(name="deployment")
        ensure_index(deployments, informer.NAMESPACE, informer.namespace_index)
        ensure_index(replicasets, informer.NAMESPACE, informer.namespace_index)
        ensure_index(replicasets, CONTROLLER_UID_INDEX, controller_uid_index)
        ensure_index(pod_informer, CONTROLLER_UID_INDEX, controller_uid_index)
        deployments.add_handlers(self._enqueue, self._deployment_updated, self._enqueue)
        replicasets.add_handlers(self._rs_added, self._rs_updated, self._rs_deleted)
        pod_informer.on_delete(self._pod_deleted)

    async def run(self, workers: int = 5) -> None:
        await run_workers(
            self.queue, self.sync, (self.deployments, self.replicasets, self.pods), workers
        )

    # ---- event handlers ------------------------------------------------------------------

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(informer.key_of(obj))

    def _deployment_updated(self, old: Obj, new: Obj) -> None:
        self.queue.add(informer.key_of(new))

    def _owner_key(self, rs: Obj) -> str | None:
        return owners.controller_key(rs, self.deployments, kinds.DEPLOYMENTS)

    def _rs_added(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)
        elif podtemplate.controller_of(obj) is None:
            for k in owners.selecting_keys(obj, self.deployments):
                self.queue.add(k)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if same_resource_version(old, new):
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self.queue.add(new_key)
            return
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if podtemplate.controller_of(new) is None and (labels_changed or old_key is not None):
            for k in owners.selecting_keys(new, self.deployments):
                self.queue.add(k)

    def _rs_deleted(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _pod_deleted(self, obj: Obj) -> None:
        # Recreate waits for the last old pod to go; nothing else needs pod events.
        rs_key = owners.controller_key(obj, self.replicasets, kinds.REPLICASETS)
        rs = self.replicasets.get(rs_key) if rs_key else None
        if rs is None:
            return
        key = self._owner_key(rs)
        d = self.deployments.get(key) if key else None
        if key and d and not rollout.is_rolling(d):
            self.queue.add(key)

    # ---- sync ----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        spec = d.get("spec") or {}
        selector_obj = spec.get("selector")
        if selector_obj == {} or selector_obj is None:
            self._event(
                d,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            generation = int(d["metadata"].get("generation") or 0)
            if int((d.get("status") or {}).get("observedGeneration") or 0) < generation:
                status = {**(d.get("status") or {}), "observedGeneration": generation}
                await self._write_status(d, status)
            return
        try:
            selector = selectors.from_label_selector(selector_obj)
        except selectors.SelectorError as exc:
            log.warning("deployment %s has an invalid selector: %s", key, exc)
            return
        rs_list = await self._claim_replicasets(d, selector)
        if pods.is_being_deleted(d):
            new, old = await self._new_and_old(d, rs_list, create=False)
            await self._sync_status(d, [*old, new], new)
            return
        d = await self._check_paused_conditions(d)
        if spec.get("paused"):
            await self._sync_scale(d, rs_list)
            return
        new_guess = rollout.find_new(d, rs_list)
        old_guess = rollout.find_old(rs_list, new_guess)
        if rollout.is_scaling_event(d, [*old_guess, new_guess]):
            await self._sync_scale(d, rs_list)
        elif rollout.is_rolling(d):
            await self._rollout_rolling(d, rs_list)
        else:
            await self._rollout_recreate(d, rs_list)

    async def _claim_replicasets(self, d: Obj, selector: selectors.LabelSelector) -> list[Obj]:
        ns = d["metadata"].get("namespace", "")
        candidates = self.replicasets.by_index(informer.NAMESPACE, ns)
        recheck = claims.reread(self.client, kinds.DEPLOYMENTS, d)
        try:
            owned = await claims.claim(
                self.client, kinds.REPLICASETS, d, selector, candidates, recheck
            )
        except claims.OwnerGone:
            owned = [rs for rs in candidates if podtemplate.is_controlled_by(rs, d)]
        return [copy.deepcopy(rs) for rs in owned]

    # ---- the new ReplicaSet and revisions ------------------------------------------------

    async def _new_and_old(
        self, d: Obj, rs_list: list[Obj], *, create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """The new ReplicaSet (created when asked and missing) and the old ones, with
        revisions synced (getAllReplicaSetsAndSyncRevision)."""
        new = rollout.find_new(d, rs_list)
        old = rollout.find_old(rs_list, new)
        new_revision = podtemplate.max_revision(old) + 1
        want = rollout.spec_replicas(d)
        maximum = want + rollout.max_surge(d)
        if new is not None:
            current = podtemplate.annotations_of(new)
            wanted = podtemplate.new_rs_annotations(
                d, current, new_revision, exists=True, desired=want, maximum=maximum
            )
            # 0 and absent are the same (the API omits zero).
            min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
            rs_min_ready = int((new.get("spec") or {}).get("minReadySeconds") or 0)
            if wanted != current or rs_min_ready != min_ready:
                changed = copy.deepcopy(new)
                changed["metadata"]["annotations"] = wanted
                if min_ready:
                    changed["spec"]["minReadySeconds"] = min_ready
                else:
                    changed["spec"].pop("minReadySeconds", None)
                new = await self.client.update(kinds.REPLICASETS, changed)
                _replace(rs_list, new)
                return new, old
            status = copy.deepcopy(d.get("status") or {})
            needs_update = _set_revision(d, str(new_revision))
            if (
                rollout.progress_deadline(d) is not None
                and dstatus.get_condition(status, "Progressing") is None
            ):
                dstatus.set_condition(
                    status,
                    dstatus.new_condition(
                        "Progressing",
                        "True",
                        dstatus.REASON_FOUND_NEW_RS,
                        f'Found new replica set "{new["metadata"]["name"]}"',
                        self.clock(),
                    ),
                )
                needs_update = True
            if needs_update:
                await self._write_status(d, status)
            return new, old
        if not create:
            return None, old
        created = await self._create_new_replicaset(d, old, new_revision, want, maximum)
        rs_list.append(created)
        return created, old

    async def _create_new_replicaset(
        self, d: Obj, old: list[Obj], new_revision: int, want: int, maximum: int
    ) -> Obj:
        meta = d["metadata"]
        spec = d["spec"]
        status = copy.deepcopy(d.get("status") or {})
        collision = status.get("collisionCount")
        pod_template_hash = podtemplate.template_hash(spec["template"], collision)
        template = podtemplate.template_with_hash(spec["template"], pod_template_hash)
        name = f"{meta['name']}-{pod_template_hash}"
        new_rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta.get("namespace"),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [podtemplate.controller_ref(d)],
            },
            "spec": {
                "replicas": 0,
                "selector": podtemplate.selector_with_hash(spec["selector"], pod_template_hash),
                "template": template,
            },
        }
        if spec.get("minReadySeconds"):
            new_rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        replicas = rollout.new_rs_replicas(d, [*old, new_rs], 0)
        new_rs["spec"]["replicas"] = replicas
        new_rs["metadata"]["annotations"] = podtemplate.new_rs_annotations(
            d, {}, new_revision, exists=False, desired=want, maximum=maximum
        )
        already_existed = False
        try:
            created = await self.client.create(kinds.REPLICASETS, meta.get("namespace"), new_rs)
        except errors.AlreadyExists:
            existing = await self._get_replicaset(meta.get("namespace", ""), name)
            if (
                existing is not None
                and podtemplate.is_controlled_by(existing, d)
                and podtemplate.equal_ignore_hash(
                    (existing.get("spec") or {}).get("template") or {}, spec["template"]
                )
            ):
                created, already_existed = existing, True
            else:
                # Another template hashed to the same name: hash again with a new count.
                status["collisionCount"] = int(collision or 0) + 1
                await self._write_status(d, status)
                raise
        except errors.APIError as exc:
            msg = f'Failed to create new replica set "{name}": {exc.message}'
            if rollout.progress_deadline(d) is not None:
                dstatus.set_condition(
                    status,
                    dstatus.new_condition(
                        "Progressing", "False", dstatus.REASON_RS_CREATE_ERROR, msg, self.clock()
                    ),
                )
                await self._write_status(d, status)
            self._event(d, "Warning", dstatus.REASON_RS_CREATE_ERROR, msg)
            raise
        if not already_existed and replicas > 0:
            self._event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {replicas}",
            )
        needs_update = _set_revision(d, str(new_revision))
        if not already_existed and rollout.progress_deadline(d) is not None:
            dstatus.set_condition(
                status,
                dstatus.new_condition(
                    "Progressing",
                    "True",
                    dstatus.REASON_NEW_RS_CREATED,
                    f'Created new replica set "{name}"',
                    self.clock(),
                ),
            )
            needs_update = True
        if needs_update:
            await self._write_status(d, status)
        return created

    async def _get_replicaset(self, namespace: str, name: str) -> Obj | None:
        cached = self.replicasets.get(f"{namespace}/{name}")
        if cached is not None:
            return cached
        try:
            return await self.client.get(kinds.REPLICASETS, namespace, name)
        except errors.NotFound:
            return None

    # ---- scaling -------------------------------------------------------------------------

    async def _scale(self, d: Obj, rs: Obj, size: int, *, force_annotations: bool) -> Obj:
        """Resize a ReplicaSet (and refresh its replica annotations); returns it as written."""
        current = rollout.spec_replicas(rs)
        want = rollout.spec_replicas(d)
        ann = podtemplate.annotations_of(rs)
        wanted_ann = {**ann, **podtemplate.replicas_annotations(want, want + rollout.max_surge(d))}
        if current == size and (not force_annotations or wanted_ann == ann):
            return rs
        changed = copy.deepcopy(rs)
        changed["spec"]["replicas"] = size
        changed["metadata"]["annotations"] = wanted_ann
        written = await self.client.update(kinds.REPLICASETS, changed)
        if current != size:
            direction = "up" if size > current else "down"
            self._event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} from {current} to {size}",
            )
        return written

    async def _sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """A resize, or any change while paused: resize proportionally, no rollout."""
        new, old = await self._new_and_old(d, rs_list, create=False)
        sizes = rollout.proportional_sizes(d, new, old)
        for name, size in sizes.items():
            rs = next(r for r in rs_list if r["metadata"]["name"] == name)
            _replace(rs_list, await self._scale(d, rs, size, force_annotations=True))
        new = rollout.find_new(d, rs_list)
        old = rollout.find_old(rs_list, new)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old)
        await self._sync_status(d, [*old, new], new)

    # ---- rollouts ------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new, old = await self._new_and_old(d, rs_list, create=True)
        assert new is not None
        want = rollout.spec_replicas(d)
        current = rollout.spec_replicas(new)
        if current != want:
            size = want if current > want else rollout.new_rs_replicas(d, [*old, new], current)
            if size != current:
                new = await self._scale(d, new, size, force_annotations=True)
                await self._sync_rollout_status(d, [*old, new], new)
                return
        sizes = rollout.rolling_scale_down(d, new, old)
        if sizes:
            for rs in old:
                size_for = sizes.get(rs["metadata"]["name"])
                if size_for is not None:
                    _replace(old, await self._scale(d, rs, size_for, force_annotations=True))
            await self._sync_rollout_status(d, [*old, new], new)
            return
        if dstatus.is_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, [*old, new], new)

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new, old = await self._new_and_old(d, rs_list, create=False)
        scaled_down = False
        for rs in rollout.active(old):
            _replace(old, await self._scale(d, rs, 0, force_annotations=True))
            scaled_down = True
        if scaled_down:
            await self._sync_rollout_status(d, [*old, new], new)
            return
        pods_by_rs = {
            rollout.uid(rs): self.pods.by_index(CONTROLLER_UID_INDEX, rollout.uid(rs))
            for rs in rs_list
        }
        if rollout.old_pods_running(new, pods_by_rs, old):
            await self._sync_rollout_status(d, [*old, new], new)
            return
        if new is None:
            new, old = await self._new_and_old(d, rs_list, create=True)
        assert new is not None
        new = await self._scale(d, new, rollout.spec_replicas(d), force_annotations=True)
        if dstatus.is_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, [*old, new], new)

    async def _cleanup(self, d: Obj, old: Sequence[Obj]) -> None:
        for rs in rollout.history_to_delete(d, old):
            meta = rs["metadata"]
            try:
                await self.client.delete(
                    kinds.REPLICASETS,
                    meta.get("namespace"),
                    meta["name"],
                    preconditions={"uid": meta["uid"]},
                )
            except errors.NotFound:
                continue

    # ---- status --------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> Obj:
        if rollout.progress_deadline(d) is None:
            return d
        status = copy.deepcopy(d.get("status") or {})
        cond = dstatus.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == dstatus.REASON_TIMED_OUT:
            return d
        paused = bool((d.get("spec") or {}).get("paused"))
        paused_shown = cond is not None and cond.get("reason") == dstatus.REASON_PAUSED
        if paused and not paused_shown:
            reason, message = dstatus.REASON_PAUSED, "Deployment is paused"
        elif not paused and paused_shown:
            reason, message = dstatus.REASON_RESUMED, "Deployment is resumed"
        else:
            return d
        dstatus.set_condition(
            status, dstatus.new_condition("Progressing", "Unknown", reason, message, self.clock())
        )
        await self._write_status(d, status)
        return d

    async def _sync_status(self, d: Obj, all_rs: Sequence[Obj | None], new: Obj | None) -> None:
        status = dstatus.calculate_status(d, all_rs, new, self.clock())
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    async def _sync_rollout_status(
        self, d: Obj, all_rs: Sequence[Obj | None], new: Obj | None
    ) -> None:
        now = self.clock()
        status = dstatus.rollout_status(d, all_rs, new, now)
        if status == (d.get("status") or {}):
            delay = dstatus.requeue_after(d, status, now)
            if delay is not None:
                self.queue.add_after(informer.key_of(d), delay)
            return
        await self._write_status(d, status)

    async def _write_status(self, d: Obj, status: Obj) -> None:
        """Write `status` (and the revision annotation, which status writes may carry);
        `d` is updated in place to what the server answered."""
        written = await self.client.update(
            kinds.DEPLOYMENTS, {**d, "status": status}, subresource="status"
        )
        d.clear()
        d.update(written)

    def _event(self, obj: Obj, type_: EventType, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(obj, type_, reason, message)


def _set_revision(d: Obj, revision: str) -> bool:
    annotations = d["metadata"].setdefault("annotations", {})
    if annotations.get(podtemplate.REVISION_ANNOTATION) == revision:
        return False
    annotations[podtemplate.REVISION_ANNOTATION] = revision
    return True


def _replace(items: list[Obj], obj: Obj) -> None:
    """Swap the entry with obj's uid for `obj` (the answer to a write)."""
    uid = obj["metadata"].get("uid")
    for i, item in enumerate(items):
        if item["metadata"].get("uid") == uid:
            items[i] = obj
            return
