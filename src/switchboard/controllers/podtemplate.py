"""Pod templates, controller references and the annotations a Deployment writes.

Everything here is pure: objects (plain dicts) in, new values out.

- Controller references. An object is *controlled* by the one ownerReference
  with `controller: true`; ReplicaSets own their pods and Deployments their
  ReplicaSets that way, with `blockOwnerDeletion` so foreground deletion of
  the owner waits for them.
- Pods from a template, as pkg/controller's GetPodFromTemplate makes them:
  the template's labels, annotations and finalizers, `generateName` from the
  owner's name, the owner as controller.
- The pod-template-hash. A Deployment names each ReplicaSet after a hash of
  the pod template it stamps out (plus the Deployment's collisionCount), and
  labels the ReplicaSet's pods with it so two ReplicaSets of one Deployment
  never select each other's pods. Kubernetes hashes its Go structs; we hash
  the canonical JSON of the template with the same FNV-1a 32 and the same
  vowel-free alphabet, so the names look alike but are our own.
- Revisions. Each ReplicaSet of a Deployment carries
  `deployment.kubernetes.io/revision`; the newest template gets the highest.
  Rolling back to an old template moves that ReplicaSet to a new revision and
  remembers its old ones in `deployment.kubernetes.io/revision-history`.
  `desired-replicas` and `max-replicas` record the Deployment's size when the
  ReplicaSet was last scaled, which is how a resize is told from a rollout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping

from switchboard.api.kinds import Obj

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEPRECATED_ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"

# Annotations a Deployment keeps to itself instead of copying to its ReplicaSets.
_NOT_COPIED = frozenset(
    {
        LAST_APPLIED_ANNOTATION,
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        DEPRECATED_ROLLBACK_TO_ANNOTATION,
    }
)
# Kubernetes caps the revision-history annotation; older entries fall off the front.
REVISION_HISTORY_LIMIT_CHARS = 2000

# rand.SafeEncodeString's alphabet: no vowels, no 0/1/3, so no words and no look-alikes.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


# ---- controller references -----------------------------------------------------------------


def controller_ref(owner: Obj) -> Obj:
    """The ownerReference that makes `owner` the controller of a dependent."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with `controller: true`, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def controller_uid(obj: Obj) -> str | None:
    ref = controller_of(obj)
    return str(ref["uid"]) if ref and ref.get("uid") else None


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    return controller_uid(obj) == str(owner["metadata"].get("uid", ""))


def without_owner(refs: Iterable[Obj], uid: str) -> list[Obj]:
    return [r for r in refs if r.get("uid") != uid]


# ---- pods from templates -------------------------------------------------------------------


def pod_from_template(template: Obj, owner: Obj) -> Obj:
    """A new Pod for `owner` (a ReplicaSet) from its pod template, named by the apiserver."""
    tmeta = template.get("metadata") or {}
    meta: Obj = {
        "generateName": f"{owner['metadata']['name']}-",
        "namespace": owner["metadata"].get("namespace", ""),
        "ownerReferences": [controller_ref(owner)],
    }
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            meta[field] = dict(tmeta[field])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _labels_without_hash(template: Obj) -> dict[str, str]:
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return labels


def _normalized(template: Obj) -> Obj:
    """The template without its hash label and without empty maps, for comparisons."""
    t = copy.deepcopy(template)
    meta = t.get("metadata") or {}
    meta["labels"] = _labels_without_hash(template)
    meta = {k: v for k, v in meta.items() if v not in (None, {}, [], "")}
    if meta:
        t["metadata"] = meta
    else:
        t.pop("metadata", None)
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """Whether two pod templates are the same apart from the pod-template-hash label."""
    return _normalized(a) == _normalized(b)


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash of a Deployment's template: a short, DNS-safe token."""
    data = json.dumps(_normalized(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in str(h))


def template_with_hash(template: Obj, pod_template_hash: str) -> Obj:
    """A copy of `template` whose labels carry `pod-template-hash`."""
    t = copy.deepcopy(template)
    t.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH_LABEL] = (
        pod_template_hash
    )
    return t


def selector_with_hash(selector: Obj, pod_template_hash: str) -> Obj:
    s = copy.deepcopy(selector)
    s.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = pod_template_hash
    return s


def template_without_hash(template: Obj) -> Obj:
    """The pod template a Deployment would carry for this ReplicaSet (as rollback writes it)."""
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return t


# ---- revisions and replica annotations -----------------------------------------------------


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def _int_annotation(obj: Obj, key: str) -> int | None:
    value = annotations_of(obj).get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def revision(obj: Obj) -> int:
    """The revision number on a Deployment or ReplicaSet; 0 when absent or unreadable."""
    return _int_annotation(obj, REVISION_ANNOTATION) or 0


def max_revision(replicasets: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in replicasets), default=0)


def desired_replicas(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)


def max_replicas(rs: Obj) -> int | None:
    return _int_annotation(rs, MAX_REPLICAS_ANNOTATION)


def copied_annotations(deployment_annotations: Mapping[str, str]) -> dict[str, str]:
    """The Deployment annotations that its ReplicaSets carry too (e.g. change-cause)."""
    return {k: v for k, v in deployment_annotations.items() if k not in _NOT_COPIED}


def replicas_annotations(desired: int, maximum: int) -> dict[str, str]:
    return {DESIRED_REPLICAS_ANNOTATION: str(desired), MAX_REPLICAS_ANNOTATION: str(maximum)}


def new_rs_annotations(
    deployment: Obj,
    current: Mapping[str, str],
    new_revision: int,
    *,
    exists: bool,
    desired: int,
    maximum: int,
) -> dict[str, str]:
    """A ReplicaSet's annotations once it is (or becomes) the Deployment's new ReplicaSet.

    Copies the Deployment's own annotations, raises the revision to
    `new_revision` when it is lower (recording the old one in the history,
    as a rollback does), and for a ReplicaSet about to be created records
    the replica annotations.
    """
    result = dict(current)
    result.update(copied_annotations(annotations_of(deployment)))
    old_text = current.get(REVISION_ANNOTATION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return result  # a revision we cannot read is left alone, as Kubernetes does
    if old < new_revision:
        result[REVISION_ANNOTATION] = str(new_revision)
        if old_text is not None:
            history = [h for h in current.get(REVISION_HISTORY_ANNOTATION, "").split(",") if h]
            history.append(old_text)
            while len(",".join(history)) > REVISION_HISTORY_LIMIT_CHARS and len(history) > 1:
                history.pop(0)
            result[REVISION_HISTORY_ANNOTATION] = ",".join(history)
    if not exists:
        result.update(replicas_annotations(desired, maximum))
    return result
