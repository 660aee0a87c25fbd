"""Which cached owner an event about a dependent concerns (resolveControllerRef).

A ReplicaSet cares about pod events, a Deployment about ReplicaSet events.
When a dependent changes, its owner's key goes on the work queue:

- a dependent with a controller reference names its owner; the owner counts
  only while the cache holds an object of that kind, group and name with the
  referenced uid (a reference to a deleted owner is not one to its namesake);
- an orphan (no controller reference) concerns every owner in its namespace
  whose selector matches its labels: any of them may adopt it.

Only informer caches are read; what is then owned is decided by `claims`.
"""

from __future__ import annotations

from switchboard.api import selectors
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.client import informer
from switchboard.client.informer import Informer
from switchboard.controllers import podtemplate


def controller_key(dependent: Obj, owners: Informer, kind: ResourceKind) -> str | None:
    """The key of the cached `kind` object controlling `dependent`, if there is one."""
    ref = podtemplate.controller_of(dependent)
    if ref is None or ref.get("kind") != kind.kind:
        return None
    if _group(str(ref.get("apiVersion", ""))) != kind.group:
        return None
    key = f"{dependent['metadata'].get('namespace', '')}/{ref.get('name', '')}"
    owner = owners.get(key)
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return None
    return key


def selecting_keys(orphan: Obj, owners: Informer) -> list[str]:
    """Keys of the cached owners in the orphan's namespace whose selector matches it.

    An owner with an invalid or empty selector selects nothing.
    """
    meta = orphan["metadata"]
    found = []
    for owner in owners.by_index(informer.NAMESPACE, meta.get("namespace", "")):
        try:
            sel = selectors.from_label_selector((owner.get("spec") or {}).get("selector"))
        except selectors.SelectorError:
            continue
        if not sel.empty and sel.matches(meta.get("labels") or {}):
            found.append(informer.key_of(owner))
    return found


def _group(api_version: str) -> str:
    group, slash, _ = api_version.partition("/")
    return group if slash else ""
