"""The registry: Kubernetes object semantics on top of the key/value store.

Each verb is one method. Writes read the current value, build the new one
through the kind's `Strategy`, and commit it only if the key is still at the
revision that was read (optimistic concurrency, retried on internal races
like Kubernetes' GuaranteedUpdate). Nothing is written unless every check
passed, so a rejected request changes nothing.

Deletion follows Kubernetes: an object with finalizers, or deleted with
propagationPolicy=Foreground, or a pod bound to a live node, is first marked
(`metadata.deletionTimestamp`) and removed only when its finalizers are gone
(or its node agent confirms the pod stopped). Namespaces are emptied by the
namespace finalizer loop in `lifecycle`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from switchboard.api import fielderrors as fe
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, objectsize, status
from switchboard.apiserver.reads import Reads
from switchboard.apiserver.strategy import Strategy, for_kind
from switchboard.store import errors as store_errors
from switchboard.store.protocol import KeyValue, Store

Mutation = Callable[[Obj], Awaitable[Obj] | Obj]

_MAX_RETRIES = 16


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None  # Orphan | Background | Foreground
    preconditions_uid: str | None = None
    preconditions_rv: str | None = None
    dry_run: bool = False


class Transaction(Protocol):
    """What a hook took for one write: kept on commit, given back on rollback."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class _NoTransaction:
    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None


NO_TRANSACTION: Transaction = _NoTransaction()


class WriteHooks:
    """Kind-specific side effects around writes (Service allocation).

    `before_create`/`before_update` run after validation and may reject the
    write with field errors (or raise an APIError); what they take is held in
    the returned transaction, committed once the store write succeeded and
    rolled back on any failure, so concurrent writes never share state.
    """

    async def before_create(
        self, kind: ResourceKind, obj: Obj, *, dry_run: bool
    ) -> tuple[Transaction, list[fe.FieldError]]:
        return NO_TRANSACTION, []

    async def before_update(
        self, kind: ResourceKind, new: Obj, old: Obj, *, dry_run: bool
    ) -> tuple[Transaction, list[fe.FieldError]]:
        return NO_TRANSACTION, []

    async def after_delete(self, kind: ResourceKind, obj: Obj) -> None:
        return None


class Registry(Reads):
    def __init__(self, store: Store, hooks: WriteHooks | None = None) -> None:
        self.store = store
        self.hooks = hooks or WriteHooks()
        self._strategies: dict[tuple[str, str, str], Strategy] = {}

    def strategy(self, kind: ResourceKind) -> Strategy:
        s = self._strategies.get(kind.gvk)
        if s is None:
            s = self._strategies[kind.gvk] = for_kind(kind)
        return s

    # ---- create --------------------------------------------------------------------------

    async def create(
        self, kind: ResourceKind, namespace: str, obj: Obj, *, dry_run: bool = False
    ) -> Obj:
        strategy = self.strategy(kind)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        if kind.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = codec.generate_name(str(meta["generateName"]))
        meta.pop("resourceVersion", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = codec.new_uid()
        meta["creationTimestamp"] = codec.now()
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        strategy.prepare_create(obj)
        strategy.default(obj)
        strategy.finish_create(obj)
        name = str(meta.get("name") or "")
        errs = strategy.validate(obj)
        if errs:
            raise status.invalid(kind, name, errs)
        if kind.namespaced:
            await self._check_namespace(namespace)
        txn, errs = await self.hooks.before_create(kind, obj, dry_run=dry_run)
        if errs:
            raise status.invalid(kind, name, errs)
        if dry_run:
            txn.rollback()
            return obj
        try:
            value = objectsize.encode(kind, name, obj)
            kv = await self.store.create(kind.key(namespace, name), value)
        except store_errors.KeyExists as exc:
            txn.rollback()
            raise status.already_exists(kind, name) from exc
        except BaseException:
            txn.rollback()
            raise
        txn.commit()
        return self._out(kind, kv)

    async def _check_namespace(self, namespace: str) -> None:
        from switchboard.api.kinds import by_gvk

        ns_kind = by_gvk("", "v1", "Namespace")
        assert ns_kind is not None
        kv = await self.store.get(ns_kind.key("", namespace))
        if kv is None:
            raise status.not_found(ns_kind, namespace)
        ns = codec.decode(kv)
        if ns["metadata"].get("deletionTimestamp"):
            err = status.forbidden(
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
                ns_kind,
                namespace,
            )
            assert err.details is not None
            err.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise err

    # ---- update --------------------------------------------------------------------------

    async def update(
        self,
        kind: ResourceKind,
        namespace: str,
        name: str,
        mutate: Mutation,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """Read-modify-write with retries; `mutate` gets a copy of the current object.

        A resourceVersion left in the mutated object is a precondition: if it
        differs from the stored one the write fails with 409 Conflict.
        """
        strategy = self.strategy(kind)
        key = kind.key(namespace, name)
        for _ in range(_MAX_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise status.not_found(kind, name)
            old = self._out(kind, kv)
            result = mutate(copy.deepcopy(old))
            new = await result if isinstance(result, Awaitable) else result
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise status.bad_request("the object must be a JSON object with metadata")
            new_meta = new["metadata"]
            wanted_rv = new_meta.get("resourceVersion")
            if wanted_rv not in (None, "") and str(wanted_rv) != old["metadata"]["resourceVersion"]:
                raise status.conflict(kind, name)
            if new_meta.get("name", name) != name:
                raise status.bad_request(
                    f"the name of the object ({new_meta.get('name')}) does not match the name "
                    f"on the URL ({name})"
                )
            if kind.namespaced and new_meta.get("namespace", namespace) != namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            new_meta["name"] = name
            if kind.namespaced:
                new_meta["namespace"] = namespace
            # Fields only the server sets are carried over whatever the client sent.
            for field in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if field in old["metadata"]:
                    new_meta[field] = old["metadata"][field]
                else:
                    new_meta.pop(field, None)
            new["apiVersion"] = kind.api_version
            new["kind"] = kind.kind
            if subresource == "status":
                strategy.prepare_status_update(new, old)
                errs = strategy.validate_status_update(new, old)
            elif subresource == "binding":
                # A binding sets spec.nodeName, which an update of the pod may not change;
                # the change is the server's own, so only object meta is checked.
                errs = strategy.validate_status_update(new, old)
            else:
                strategy.prepare_update(new, old)
                strategy.default(new)
                strategy.finish_update(new, old)
                errs = strategy.validate_update(new, old)
            if errs:
                raise status.invalid(kind, name, errs)
            txn: Transaction = NO_TRANSACTION
            if subresource != "status":
                txn, errs = await self.hooks.before_update(kind, new, old, dry_run=dry_run)
                if errs:
                    raise status.invalid(kind, name, errs)
            if dry_run:
                # Nothing was written, so the object is still at the revision that was read
                # (`kubectl diff` would otherwise show resourceVersion as removed).
                new_meta["resourceVersion"] = old["metadata"]["resourceVersion"]
                txn.rollback()
                return new
            new_meta.pop("resourceVersion", None)
            if (
                new_meta.get("deletionTimestamp")
                and not new_meta.get("finalizers")
                # A pod in its grace period is removed by its node agent, not by this update.
                and (kind.kind != "Pod" or not new_meta.get("deletionGracePeriodSeconds"))
            ):
                # The last finalizer went away: the object is gone now.
                txn.rollback()
                try:
                    return await self._remove(kind, key, kv)
                except store_errors.Conflict:
                    continue
            if _same_without_rv(new, old):
                txn.rollback()
                return old  # a no-op write keeps its resourceVersion, as in Kubernetes
            try:
                value = objectsize.encode(kind, name, new)
                kv2 = await self.store.update(key, value, kv.mod_revision)
            except store_errors.Conflict:
                # Someone wrote in between: re-read and re-apply; a stale client-sent
                # resourceVersion is caught by the precondition check on the next pass.
                txn.rollback()
                continue
            except store_errors.KeyNotFound as exc:
                txn.rollback()
                raise status.not_found(kind, name) from exc
            except BaseException:
                txn.rollback()
                raise
            txn.commit()
            return self._out(kind, kv2)
        raise status.conflict(kind, name)

    # ---- delete --------------------------------------------------------------------------

    async def delete(
        self, kind: ResourceKind, namespace: str, name: str, opts: DeleteOptions
    ) -> Obj:
        key = kind.key(namespace, name)
        for _ in range(_MAX_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise status.not_found(kind, name)
            obj = self._out(kind, kv)
            meta = obj["metadata"]
            if opts.preconditions_uid and opts.preconditions_uid != meta.get("uid"):
                raise APIPrecondition(kind, name, "UID", opts.preconditions_uid, meta.get("uid"))
            if opts.preconditions_rv and opts.preconditions_rv != meta.get("resourceVersion"):
                raise APIPrecondition(
                    kind,
                    name,
                    "ResourceVersion",
                    opts.preconditions_rv,
                    meta.get("resourceVersion"),
                )
            finalizers = list(meta.get("finalizers") or [])
            if opts.propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if opts.propagation_policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            grace = await self._grace_period(kind, obj, opts)
            if kind.kind == "Namespace" and not meta.get("deletionTimestamp"):
                finalizers = finalizers or []
            if not finalizers and grace == 0 and kind.kind != "Namespace":
                if opts.dry_run:
                    return obj
                try:
                    return await self._remove(kind, key, kv)
                except store_errors.Conflict:
                    continue
            if meta.get("deletionTimestamp"):
                # Already being deleted: a shorter grace period may still be applied.
                current = meta.get("deletionGracePeriodSeconds")
                if grace == 0 and kind.kind == "Pod" and not finalizers:
                    return obj if opts.dry_run else await self._remove(kind, key, kv)
                if current is None or grace >= current:
                    return obj
            new = copy.deepcopy(obj)
            nm = new["metadata"]
            nm["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            nm["deletionGracePeriodSeconds"] = grace
            if finalizers:
                nm["finalizers"] = finalizers
            if kind.kind == "Namespace":
                new.setdefault("status", {})["phase"] = "Terminating"
            if opts.dry_run:
                return new
            nm.pop("resourceVersion", None)
            try:
                kv2 = await self.store.update(key, codec.encode(new), kv.mod_revision)
            except store_errors.Conflict:
                continue
            return self._out(kind, kv2)
        raise status.conflict(kind, name)

    async def _grace_period(self, kind: ResourceKind, obj: Obj, opts: DeleteOptions) -> int:
        if kind.kind != "Pod":
            return 0
        spec = obj.get("spec") or {}
        node = spec.get("nodeName")
        phase = (obj.get("status") or {}).get("phase")
        # Unscheduled or finished pods, and pods whose node is gone, have nobody to wait for.
        if not node or phase in ("Succeeded", "Failed"):
            return 0
        from switchboard.api.kinds import by_gvk

        node_kind = by_gvk("", "v1", "Node")
        assert node_kind is not None
        if await self.store.get(node_kind.key("", node)) is None:
            return 0
        if opts.grace_period_seconds is not None:
            return max(0, opts.grace_period_seconds)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    async def _remove(self, kind: ResourceKind, key: str, kv: KeyValue) -> Obj:
        deleted = await self.store.delete(key, kv.mod_revision)
        obj = self._out(kind, deleted)
        await self.hooks.after_delete(kind, obj)
        return obj


def _same_without_rv(new: Obj, old: Obj) -> bool:
    o = {**old, "metadata": {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}}
    n = {**new, "metadata": {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}}
    return n == o


class APIPrecondition(status.APIError):
    def __init__(self, kind: ResourceKind, name: str, what: str, want: Any, got: Any) -> None:
        super().__init__(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind.plural} "{name}": Precondition failed: '
            f"{what} in precondition: {want}, {what} in object meta: {got}",
            {"name": name, "kind": kind.plural},
        )
