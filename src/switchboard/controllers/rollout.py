"""The arithmetic of a Deployment rollout, as pkg/controller/deployment does it.

Pure functions over Deployment and ReplicaSet dicts; the controller in
`deployment` reads its caches, asks these what size each ReplicaSet should
have, and writes the difference (`deploymentstatus` derives the status).

- The *new* ReplicaSet is the oldest one whose pod template equals the
  Deployment's (ignoring pod-template-hash); every other one is *old*.
- RollingUpdate keeps the total within `replicas + maxSurge` (surge rounded
  up) while scaling the new ReplicaSet up, and the available pods at or
  above `replicas - maxUnavailable` (rounded down) while scaling old ones
  down, unhealthy old pods first. When both resolve to 0, maxUnavailable
  is 1, so a rollout always moves.
- A change of `spec.replicas` during a rollout is a *scaling event*: every
  active ReplicaSet is resized in proportion to its share (recorded in its
  max-replicas annotation), leftovers to the largest, instead of hastening
  or stalling the rollout.
- Recreate scales every old ReplicaSet to 0 and waits until none of their
  pods runs before the new one gets any replicas.
- Old ReplicaSets beyond `revisionHistoryLimit` are deleted once empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from switchboard.api.kinds import Obj
from switchboard.controllers import podtemplate
from switchboard.controllers.pods import parse_time

_MAX_INT32 = 2**31 - 1


# ---- accessors ---------------------------------------------------------------------------


def spec_replicas(obj: Obj | None) -> int:
    """`spec.replicas`, defaulting to 1 as the API does; 0 for no object."""
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def created(obj: Obj) -> tuple[float, str]:
    """Sort key by creation time, then name (ReplicaSetsByCreationTimestamp)."""
    meta = obj.get("metadata") or {}
    return (parse_time(meta.get("creationTimestamp")) or 0.0, str(meta.get("name", "")))


def uid(obj: Obj) -> str:
    return str(obj["metadata"].get("uid", ""))


def active(replicasets: Iterable[Obj | None]) -> list[Obj]:
    """ReplicaSets with `spec.replicas` above 0."""
    return [rs for rs in replicasets if rs is not None and spec_replicas(rs) > 0]


def total_replicas(replicasets: Iterable[Obj | None]) -> int:
    return sum(spec_replicas(rs) for rs in replicasets if rs is not None)


def total_status(replicasets: Iterable[Obj | None], field: str) -> int:
    return sum(status_int(rs, field) for rs in replicasets if rs is not None)


# ---- strategy parameters ------------------------------------------------------------------


def int_or_percent(value: object, total: int, *, round_up: bool) -> int:
    """An IntOrString scaled against `total`: 3 → 3, "25%" of 10 → 3 (up) or 2 (down)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError as exc:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from exc
        scaled = total * pct / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")


def is_rolling(d: Obj) -> bool:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    return bool(strategy.get("type", "RollingUpdate") == "RollingUpdate")


def resolve_fenceposts(max_surge: object, max_unavailable: object, desired: int) -> tuple[int, int]:
    surge = int_or_percent(0 if max_surge is None else max_surge, desired, round_up=True)
    unavailable = int_or_percent(
        0 if max_unavailable is None else max_unavailable, desired, round_up=False
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1  # surge may be blocked by quota; one unavailable pod keeps it moving
    return surge, unavailable


def _fenceposts(d: Obj) -> tuple[int, int]:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(
        ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), spec_replicas(d)
    )


def max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or spec_replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], spec_replicas(d))


def min_available(d: Obj) -> int:
    return spec_replicas(d) - max_unavailable(d) if is_rolling(d) else 0


def progress_deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if value is None or int(value) == _MAX_INT32:
        return None
    return int(value)


def revision_history_limit(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("revisionHistoryLimit")
    if value is None or int(value) == _MAX_INT32:
        return None
    return int(value)


# ---- which ReplicaSet is which ------------------------------------------------------------


def find_new(d: Obj, replicasets: Sequence[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    template = (d.get("spec") or {}).get("template") or {}
    for rs in sorted(replicasets, key=created):
        if podtemplate.equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


def find_old(replicasets: Sequence[Obj], new: Obj | None) -> list[Obj]:
    return [rs for rs in replicasets if new is None or uid(rs) != uid(new)]


def is_scaling_event(d: Obj, replicasets: Iterable[Obj | None]) -> bool:
    """Some active ReplicaSet was sized for a different `spec.replicas` than the current one."""
    for rs in active(replicasets):
        desired = podtemplate.desired_replicas(rs)
        if desired is not None and desired != spec_replicas(d):
            return True
    return False


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = podtemplate.desired_replicas(rs)
    want = spec_replicas(d)
    return (
        desired == want
        and spec_replicas(rs) == want
        and status_int(rs, "availableReplicas") == want
    )


# ---- sizes --------------------------------------------------------------------------------


def new_rs_replicas(d: Obj, all_rs: Iterable[Obj | None], new_rs_size: int) -> int:
    """How large the new ReplicaSet may be now (NewRSNewReplicas)."""
    if not is_rolling(d):
        return spec_replicas(d)
    want = spec_replicas(d)
    max_total = want + max_surge(d)
    current = total_replicas(all_rs)
    if current >= max_total:
        return new_rs_size
    return new_rs_size + min(max_total - current, want - new_rs_size)


def rolling_scale_down(d: Obj, new: Obj | None, old: Sequence[Obj]) -> dict[str, int]:
    """New sizes for old ReplicaSets in one step of a rolling update (reconcileOldReplicaSets).

    First unhealthy old replicas go (they cost no availability), then healthy
    ones while the available count stays at or above minAvailable. Returns
    {name: new size} for the ReplicaSets that shrink.
    """
    old = sorted(active(old), key=created)
    if total_replicas(old) == 0:
        return {}
    sizes = {rs["metadata"]["name"]: spec_replicas(rs) for rs in old}
    all_count = total_replicas(old) + spec_replicas(new)
    min_avail = spec_replicas(d) - max_unavailable(d)
    new_unavailable = spec_replicas(new) - status_int(new, "availableReplicas")
    max_scaled_down = all_count - min_avail - new_unavailable
    if max_scaled_down <= 0:
        return {}
    # Unhealthy replicas first.
    cleaned = 0
    for rs in old:
        name = rs["metadata"]["name"]
        if cleaned >= max_scaled_down:
            break
        unhealthy = sizes[name] - status_int(rs, "availableReplicas")
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        step = min(max_scaled_down - cleaned, unhealthy)
        sizes[name] -= step
        cleaned += step
    # Then healthy ones, down to minAvailable.
    available = total_status([*old, new], "availableReplicas")
    if available > min_avail:
        budget = available - min_avail
        scaled = 0
        for rs in old:
            name = rs["metadata"]["name"]
            if scaled >= budget:
                break
            if sizes[name] == 0:
                continue
            step = min(sizes[name], budget - scaled)
            sizes[name] -= step
            scaled += step
    return {
        rs["metadata"]["name"]: sizes[rs["metadata"]["name"]]
        for rs in old
        if sizes[rs["metadata"]["name"]] != spec_replicas(rs)
    }


def _fraction(rs: Obj, d: Obj) -> int:
    want = spec_replicas(d)
    if want == 0:
        return -spec_replicas(rs)
    deployment_replicas = want + max_surge(d)
    annotated = podtemplate.max_replicas(rs)
    if annotated is None or annotated == 0:
        annotated = status_int(d, "replicas")
    if annotated == 0:
        return 0
    # Go's math.Round: halves away from zero.
    size = spec_replicas(rs) * deployment_replicas / annotated
    return math.floor(size + 0.5) - spec_replicas(rs)


def proportional_sizes(d: Obj, new: Obj | None, old: Sequence[Obj]) -> dict[str, int]:
    """New sizes of every ReplicaSet for a scaling event (the `scale` step of sync.go).

    Returns {name: size} for each ReplicaSet whose size or replica
    annotations must be written (sizes may equal the current ones).
    """
    want = spec_replicas(d)
    # One active (or, with none active, the newest) ReplicaSet takes everything.
    old_newest_first = sorted(old, key=created, reverse=True)
    candidates = active([*old_newest_first, new])
    if len(candidates) <= 1:
        target = (
            candidates[0]
            if candidates
            else (new if new is not None else (old_newest_first[0] if old_newest_first else None))
        )
        if target is None:
            return {}
        return {target["metadata"]["name"]: want}
    if is_saturated(d, new):
        return {rs["metadata"]["name"]: 0 for rs in active(old)}
    if not is_rolling(d):
        return {}
    allowed = want + max_surge(d) if want > 0 else 0
    to_add = allowed - total_replicas(candidates)
    if to_add > 0:
        # Larger first; among equals the newer first.
        ordered = sorted(candidates, key=lambda rs: (-spec_replicas(rs), _neg_created(rs)))
    else:
        ordered = sorted(candidates, key=lambda rs: (-spec_replicas(rs), created(rs)))
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        name = rs["metadata"]["name"]
        proportion = 0
        if to_add != 0 and spec_replicas(rs) != 0 and to_add != added:
            allowed_left = to_add - added
            fraction = _fraction(rs, d)
            proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
        sizes[name] = spec_replicas(rs) + proportion
        added += proportion
    if to_add != 0 and ordered:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


def _neg_created(rs: Obj) -> tuple[float, str]:
    ts, name = created(rs)
    # Newer first: larger timestamps sort first; names break ties in reverse.
    return (-ts, "".join(chr(0x10FFFF - ord(c)) for c in name))


def history_to_delete(d: Obj, old: Sequence[Obj]) -> list[Obj]:
    """Old ReplicaSets beyond revisionHistoryLimit that are empty and settled, oldest first."""
    limit = revision_history_limit(d)
    if limit is None:
        return []
    alive = [rs for rs in old if not rs["metadata"].get("deletionTimestamp")]
    excess = len(alive) - limit
    if excess <= 0:
        return []
    by_revision = sorted(alive, key=lambda rs: (podtemplate.revision(rs), created(rs)))
    doomed = []
    for rs in by_revision[:excess]:
        settled = int(rs["metadata"].get("generation") or 0) <= status_int(rs, "observedGeneration")
        if spec_replicas(rs) == 0 and status_int(rs, "replicas") == 0 and settled:
            doomed.append(rs)
    return doomed


def old_pods_running(new: Obj | None, pods_by_rs: dict[str, list[Obj]], old: Sequence[Obj]) -> bool:
    """Recreate waits until no pod of an old ReplicaSet is left running (oldPodsRunning)."""
    if total_status(old, "replicas") > 0:
        return True
    for rs_uid, pods in pods_by_rs.items():
        if new is not None and rs_uid == uid(new):
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
    return False
