"""The garbage collector: dependents go when their owners go.

An object's `metadata.ownerReferences` name its owners (by kind, name and
uid). The collector watches every kind it is given an informer for, indexes
each cache by owner uid, and works one object key at a time
(pkg/controller/garbagecollector's attemptToDeleteItem and friends):

- An object whose owners are all gone is deleted — *background*
  propagation: the owner was removed and its dependents follow. "Gone" is
  decided by the cache and confirmed by a live GET before anything is
  deleted (the cache may simply not have seen a new owner yet); a name
  whose uid differs is a different object, so the owner is gone. Deletes
  carry a uid precondition, so a re-created object of the same name is
  never hit.
- An object with at least one owner still alive keeps living; references
  to owners that are gone (or being deleted in the foreground) are removed
  from it.
- An owner deleted with propagationPolicy=Foreground carries the finalizer
  `foregroundDeletion`: its dependents are deleted (themselves in the
  foreground when they have dependents of their own), and the finalizer is
  removed — which lets the apiserver remove the owner — once no dependent
  with `blockOwnerDeletion` is left.
- An owner deleted with propagationPolicy=Orphan carries the finalizer
  `orphan`: the reference to it is removed from each dependent, then the
  finalizer.

Owners of kinds without an informer are looked up with GET; owners of kinds
the API does not know are assumed alive, so nothing is deleted on a guess.
Uids found absent are remembered (uids never come back), so a thousand
pods of a deleted ReplicaSet cost one GET, not a thousand.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

from switchboard.api import kinds
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.client import errors, informer, rest, workqueue
from switchboard.client.events import EventRecorder
from switchboard.client.informer import Informer
from switchboard.controllers.workers import ensure_index, run_workers

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
OWNER_UID_INDEX = "owner-uid"
ABSENT_CACHE_SIZE = 4096

OwnerState = Literal["solid", "dangling", "waiting"]


def owner_uid_index(obj: Obj) -> Iterable[str]:
    """Objects by the uid of every owner they name."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return tuple(str(r["uid"]) for r in refs if isinstance(r, dict) and r.get("uid"))


def _finalizers(obj: Obj) -> list[str]:
    return [str(f) for f in (obj.get("metadata") or {}).get("finalizers") or []]


def _refs(obj: Obj) -> list[Obj]:
    return [
        r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, dict)
    ]


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class GarbageCollector:
    def __init__(
        self,
        client: rest.Client,
        informers: Iterable[Informer],
        *,
        events: EventRecorder | None = None,
    ) -> None:
        self.client = client
        self.events = events
        self.queue = workqueue.WorkQueue(name="garbagecollector")
        self._informers = list(informers)
        self._by_resource: dict[tuple[str, str], Informer] = {}
        self._by_kind: dict[tuple[str, str], Informer] = {}
        self._absent: OrderedDict[str, None] = OrderedDict()
        for inf in self._informers:
            self._by_resource[(inf.kind.group, inf.kind.plural)] = inf
            self._by_kind[(inf.kind.group, inf.kind.kind)] = inf
            ensure_index(inf, OWNER_UID_INDEX, owner_uid_index)
            inf.add_handlers(*self._handlers(inf.kind))

    async def run(self, workers: int = 5) -> None:
        await run_workers(self.queue, self.sync, self._informers, workers)

    # ---- keys and handlers ---------------------------------------------------------------

    @staticmethod
    def key(kind: ResourceKind, obj: Obj) -> str:
        return f"{kind.group}/{kind.plural}/{informer.key_of(obj)}"

    def _handlers(
        self, kind: ResourceKind
    ) -> tuple[informer.OnAdd, informer.OnUpdate, informer.OnDelete]:
        def added(obj: Obj) -> None:
            if _refs(obj) or self._deleting_with_policy(obj):
                self.queue.add(self.key(kind, obj))

        def updated(old: Obj, new: Obj) -> None:
            old_refs, new_refs = _refs(old), _refs(new)
            if old_refs != new_refs:
                self.queue.add(self.key(kind, new))
                kept = {r.get("uid") for r in new_refs}
                for ref in old_refs:
                    if ref.get("uid") not in kept:
                        self._enqueue_owner(new, kind, ref)  # it may be waiting for this one
            elif self._deleting_with_policy(new) or (
                _refs(new)
                and old["metadata"].get("finalizers") != new["metadata"].get("finalizers")
            ):
                self.queue.add(self.key(kind, new))

        def deleted(obj: Obj) -> None:
            uid = str(obj["metadata"].get("uid", ""))
            for dep_kind, dep in self._dependents(uid):
                self.queue.add(self.key(dep_kind, dep))
            for ref in _refs(obj):
                self._enqueue_owner(obj, kind, ref)

        return added, updated, deleted

    @staticmethod
    def _deleting_with_policy(obj: Obj) -> bool:
        if not obj["metadata"].get("deletionTimestamp"):
            return False
        finalizers = _finalizers(obj)
        return FOREGROUND in finalizers or ORPHAN in finalizers

    def _owner_kind(self, ref: Obj) -> tuple[ResourceKind | None, Informer | None]:
        group, version = _group_version(str(ref.get("apiVersion", "")))
        kind_name = str(ref.get("kind", ""))
        inf = self._by_kind.get((group, kind_name))
        if inf is not None:
            return inf.kind, inf
        return kinds.by_gvk(group, version, kind_name), None

    def _enqueue_owner(self, dependent: Obj, dep_kind: ResourceKind, ref: Obj) -> None:
        kind, inf = self._owner_kind(ref)
        if kind is None or inf is None:
            return
        ns = dependent["metadata"].get("namespace", "") if kind.namespaced else ""
        name = str(ref.get("name", ""))
        owner = inf.get(f"{ns}/{name}" if ns else name)
        if owner is not None and owner["metadata"].get("uid") == ref.get("uid"):
            self.queue.add(self.key(kind, owner))

    def _dependents(self, uid: str) -> list[tuple[ResourceKind, Obj]]:
        if not uid:
            return []
        return [
            (inf.kind, dep) for inf in self._informers for dep in inf.by_index(OWNER_UID_INDEX, uid)
        ]

    # ---- sync ----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        group, plural, cache_key = key.split("/", 2)
        inf = self._by_resource.get((group, plural))
        obj = inf.get(cache_key) if inf is not None else None
        if inf is None or obj is None:
            return
        kind = inf.kind
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            finalizers = _finalizers(obj)
            if ORPHAN in finalizers:
                await self._orphan_dependents(kind, obj)
            elif FOREGROUND in finalizers:
                await self._delete_dependents(kind, obj)
            return  # otherwise it is on its way out already
        refs = _refs(obj)
        if not refs:
            return
        states: list[tuple[Obj, OwnerState]] = [
            (ref, await self._owner_state(obj, kind, ref)) for ref in refs
        ]
        if any(state == "solid" for _, state in states):
            gone = {str(ref.get("uid")) for ref, state in states if state != "solid"}
            if gone:
                await self._remove_refs(kind, obj, gone)
            return
        waiting = any(state == "waiting" for _, state in states)
        finalizers = _finalizers(obj)
        if waiting and self._dependents(str(meta.get("uid", ""))):
            policy = "Foreground"  # an owner waits on us, and we have dependents ourselves
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("deleting %s %s: its owners are gone (%s)", kind.kind, cache_key, policy)
        try:
            await self.client.delete(
                kind,
                meta.get("namespace"),
                meta["name"],
                propagation_policy=policy,
                preconditions={"uid": str(meta["uid"])},
            )
        except errors.NotFound:
            return

    async def _owner_state(self, dependent: Obj, dep_kind: ResourceKind, ref: Obj) -> OwnerState:
        uid = str(ref.get("uid", ""))
        if uid in self._absent:
            return "dangling"
        kind, inf = self._owner_kind(ref)
        if kind is None:
            return "solid"  # a kind we cannot look up: never delete on a guess
        if kind.namespaced and not dep_kind.namespaced:
            # A cluster-scoped object cannot be owned by a namespaced one.
            self._event(
                dependent,
                "OwnerRefInvalidNamespace",
                f"ownerRef [{ref.get('apiVersion')}/{ref.get('kind')}, namespace: , name: "
                f'{ref.get("name")}, uid: {uid}] does not exist in namespace ""',
            )
            self._remember_absent(uid)
            return "dangling"
        ns = dependent["metadata"].get("namespace", "") if kind.namespaced else ""
        name = str(ref.get("name", ""))
        owner = inf.get(f"{ns}/{name}" if ns else name) if inf is not None else None
        if owner is None or owner["metadata"].get("uid") != uid:
            try:
                owner = await self.client.get(kind, ns or None, name)
            except errors.NotFound:
                owner = None
            if owner is None or owner["metadata"].get("uid") != uid:
                self._remember_absent(uid)
                return "dangling"
        if owner["metadata"].get("deletionTimestamp") and FOREGROUND in _finalizers(owner):
            return "waiting"
        return "solid"

    def _remember_absent(self, uid: str) -> None:
        self._absent[uid] = None
        self._absent.move_to_end(uid)
        while len(self._absent) > ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    async def _remove_refs(self, kind: ResourceKind, obj: Obj, uids: set[str]) -> None:
        meta = obj["metadata"]
        refs = [r for r in _refs(obj) if str(r.get("uid")) not in uids]
        body = {
            "metadata": {
                "ownerReferences": refs or None,
                "resourceVersion": meta["resourceVersion"],
            }
        }
        try:
            await self.client.patch(kind, meta.get("namespace"), meta["name"], body)
        except errors.NotFound:
            return

    async def _remove_finalizer(self, kind: ResourceKind, obj: Obj, finalizer: str) -> None:
        meta = obj["metadata"]
        rest_ = [f for f in _finalizers(obj) if f != finalizer]
        body = {
            "metadata": {"finalizers": rest_ or None, "resourceVersion": meta["resourceVersion"]}
        }
        try:
            await self.client.patch(kind, meta.get("namespace"), meta["name"], body)
        except errors.NotFound:
            return

    async def _orphan_dependents(self, kind: ResourceKind, owner: Obj) -> None:
        uid = str(owner["metadata"]["uid"])
        for dep_kind, dep in self._dependents(uid):
            await self._remove_refs(dep_kind, dep, {uid})
        await self._remove_finalizer(kind, owner, ORPHAN)

    async def _delete_dependents(self, kind: ResourceKind, owner: Obj) -> None:
        uid = str(owner["metadata"]["uid"])
        dependents = self._dependents(uid)
        blocking = [
            dep
            for _, dep in dependents
            if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in _refs(dep))
        ]
        if not blocking:
            await self._remove_finalizer(kind, owner, FOREGROUND)
            return
        for dep_kind, dep in dependents:
            if not dep["metadata"].get("deletionTimestamp"):
                self.queue.add(self.key(dep_kind, dep))

    def _event(self, obj: Obj, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record(obj, "Warning", reason, message)
