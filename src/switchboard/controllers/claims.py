"""Adoption and release: which objects a controller owns (ControllerRefManager).

A ReplicaSet owns the pods that carry its controller reference; a Deployment
owns ReplicaSets the same way. The selector decides what *should* be owned,
the reference what *is*:

    controller ref   selector matches   owner alive   →  result
    this owner       yes                -             →  owned
    this owner       no                 yes           →  released (reference removed)
    this owner       no                 deleting      →  left alone (not owned)
    another owner    -                  -             →  not ours
    none             yes                yes           →  adopted (reference added)
    none             no / -             deleting      →  not ours

Objects being deleted are never adopted. Before the first adoption the owner
is re-read from the API, so a controller acting on a stale cache cannot
adopt pods for an owner that was just deleted or replaced.

Writes are merge patches of `metadata.ownerReferences` carrying the
resourceVersion the decision was based on, so a concurrent change fails
with Conflict (and the owner's key is retried) instead of being lost.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable

from switchboard.api import selectors
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.client import errors, rest
from switchboard.controllers import podtemplate


class Claim(enum.Enum):
    OWNED = "owned"
    ADOPT = "adopt"
    RELEASE = "release"
    IGNORE = "ignore"


def decide(owner: Obj, selector: selectors.LabelSelector, obj: Obj) -> Claim:
    """What a controller should do about `obj` (pure; see the table above)."""
    owner_meta = owner["metadata"]
    meta = obj.get("metadata") or {}
    matches = selector.matches(meta.get("labels") or {})
    ref = podtemplate.controller_of(obj)
    if ref is not None:
        if ref.get("uid") != owner_meta.get("uid"):
            return Claim.IGNORE
        if matches:
            return Claim.OWNED
        return Claim.IGNORE if owner_meta.get("deletionTimestamp") else Claim.RELEASE
    if owner_meta.get("deletionTimestamp") or not matches or meta.get("deletionTimestamp"):
        return Claim.IGNORE
    return Claim.ADOPT


class OwnerGone(Exception):
    """The owner was deleted or replaced since the cache was read: do not adopt for it."""


def adoption_patch(owner: Obj, obj: Obj) -> Obj:
    meta = obj["metadata"]
    refs = [*(meta.get("ownerReferences") or []), podtemplate.controller_ref(owner)]
    return {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}}


def release_patch(owner_uid: str, obj: Obj) -> Obj:
    meta = obj["metadata"]
    refs = podtemplate.without_owner(meta.get("ownerReferences") or [], owner_uid)
    return {
        "metadata": {
            "ownerReferences": refs or None,
            "resourceVersion": meta["resourceVersion"],
        }
    }


async def claim(
    client: rest.Client,
    kind: ResourceKind,
    owner: Obj,
    selector: selectors.LabelSelector,
    candidates: Iterable[Obj],
    recheck_owner: Callable[[], Awaitable[Obj | None]],
) -> list[Obj]:
    """Adopt and release as needed; return the objects `owner` now owns.

    `recheck_owner` reads the owner fresh from the API (None when it is gone);
    it is called at most once, before the first adoption.
    """
    owned: list[Obj] = []
    checked = False
    owner_uid = str(owner["metadata"]["uid"])
    for obj in candidates:
        decision = decide(owner, selector, obj)
        if decision is Claim.OWNED:
            owned.append(obj)
        elif decision is Claim.ADOPT:
            if not checked:
                fresh = await recheck_owner()
                if (
                    fresh is None
                    or fresh["metadata"].get("uid") != owner_uid
                    or fresh["metadata"].get("deletionTimestamp")
                ):
                    raise OwnerGone(
                        f"{owner['kind']} {owner['metadata']['name']} is gone or being deleted; "
                        "not adopting"
                    )
                checked = True
            try:
                owned.append(await _patch(client, kind, obj, adoption_patch(owner, obj)))
            except errors.NotFound:
                continue
        elif decision is Claim.RELEASE:
            try:
                await _patch(client, kind, obj, release_patch(owner_uid, obj))
            except errors.NotFound:
                continue
    return owned


def reread(
    client: rest.Client, kind: ResourceKind, owner: Obj
) -> Callable[[], Awaitable[Obj | None]]:
    """A `recheck_owner` for `claim`: `owner` as the API has it now, None once it is gone."""
    meta = owner["metadata"]

    async def read() -> Obj | None:
        try:
            return await client.get(kind, meta.get("namespace", ""), meta["name"])
        except errors.NotFound:
            return None

    return read


async def _patch(client: rest.Client, kind: ResourceKind, obj: Obj, body: Obj) -> Obj:
    meta = obj["metadata"]
    return await client.patch(kind, meta.get("namespace"), meta["name"], body)
