"""What the workload controllers need to know about a pod, and timestamps.

Pure functions over pod dicts:

- *active*: neither finished (phase Succeeded or Failed) nor being deleted.
  Only active pods count toward a ReplicaSet's replicas, so a pod that
  fails or is deleted is replaced at once, even while it still exists.
- *ready*: its Ready condition is True; *available*: ready for at least the
  owner's minReadySeconds.
- Which pods a shrinking ReplicaSet deletes first, in Kubernetes' order
  (pkg/controller ActivePodsWithRanks): unscheduled before scheduled,
  Pending before Unknown before Running, not ready before ready, pods
  doubled up on a node before lone ones, recently ready before long ready,
  more restarts before fewer, newer before older.

Timestamps are RFC 3339 strings in the API and float seconds since the
epoch here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from switchboard.api.kinds import Obj

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(seconds: float) -> str:
    """An RFC 3339 timestamp at second precision, as metav1.Time serializes."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key(obj: Obj) -> str:
    """The cache key of an object: `namespace/name`, or `name` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_terminal(pod: Obj) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_being_deleted(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Obj) -> bool:
    return not is_terminal(pod) and not is_being_deleted(pod)


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def ready_since(pod: Obj) -> float | None:
    """When the pod last became ready, if it is ready."""
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least `min_ready_seconds` (ready at all when that is 0)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def restart_count(pod: Obj) -> int:
    return sum(
        int(s.get("restartCount") or 0)
        for s in (pod.get("status") or {}).get("containerStatuses") or []
        if isinstance(s, dict)
    )


def node_name(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _deletion_rank(pod: Obj, colocated: Counter[str]) -> tuple[float, ...]:
    node = node_name(pod)
    ready = is_ready(pod)
    since = ready_since(pod) if ready else None
    created = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
    return (
        1 if node else 0,
        _PHASE_ORDER.get(phase(pod), 0),
        1 if ready else 0,
        -colocated[node] if node else 0,
        -(since or 0.0),
        -restart_count(pod),
        -(created if created is not None else float("inf")),
    )


def pods_to_delete(pods: Sequence[Obj], count: int, related: Iterable[Obj] = ()) -> list[Obj]:
    """The `count` pods a ReplicaSet should delete first.

    `related` are the active pods of the same workload (this ReplicaSet's and
    its siblings'): a pod sharing its node with more of them goes first, so
    scaling down also spreads.
    """
    if count <= 0:
        return []
    colocated = Counter(node_name(p) for p in related if node_name(p))
    ranked = sorted(pods, key=lambda p: _deletion_rank(p, colocated))
    return ranked[:count]


def slow_start_batches(total: int, initial: int = 1) -> list[int]:
    """Batch sizes 1, 2, 4, … summing to `total`, so a failing create stops early."""
    batches: list[int] = []
    size = initial
    remaining = total
    while remaining > 0:
        batch = min(size, remaining)
        batches.append(batch)
        remaining -= batch
        size *= 2
    return batches
