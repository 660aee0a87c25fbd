"""The last-change-trigger-time annotation: when the change happened that endpoints reflect.

Both endpoint controllers write `endpoints.kubernetes.io/last-change-trigger-time`
on what they write, so that latency can be measured from the change (a pod
turning Ready, a Service created) to the endpoints showing it. Times are
RFC 3339 with as many fractional digits as needed, as Go's time.RFC3339Nano
prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchboard.api.kinds import Obj
from switchboard.controllers import endpointrules

ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(when: datetime) -> str:
    """RFC 3339 with as many fractional digits as needed, as Go's time.RFC3339Nano prints."""
    utc = when.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _pod_trigger_time(pod: Obj) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime"))
    return None


@dataclass
class _ServiceState:
    service_time: datetime | None
    pod_times: dict[str, datetime]


@dataclass
class TriggerTimeTracker:
    """Computes the last-change-trigger-time annotation: when the change happened that the
    endpoints now being written reflect.

    For a Service seen the first time it is the Service's creation; afterwards the earliest
    pod Ready transition (or Service creation) that is newer than at the previous sync.
    Like Kubernetes' tracker it is an approximation when one object changes twice between
    two syncs. Call it once per sync, also when the sync turns out to write nothing.
    """

    _states: dict[str, _ServiceState] = field(default_factory=dict)

    def compute(self, service: Obj, pods: Iterable[Obj]) -> str | None:
        key = endpointrules.service_key(service)
        previous = self._states.get(key)
        earliest: datetime | None = None
        pod_times: dict[str, datetime] = {}
        for pod in pods:
            when = _pod_trigger_time(pod)
            if when is None:
                continue
            name = str(_meta(pod).get("name", ""))
            pod_times[name] = when
            before = previous.pod_times.get(name) if previous else None
            if before is None or when > before:
                earliest = when if earliest is None else min(earliest, when)
        created = parse_time(_meta(service).get("creationTimestamp"))
        if created is not None and (
            previous is None or previous.service_time is None or created > previous.service_time
        ):
            earliest = created if earliest is None else min(earliest, created)
        self._states[key] = _ServiceState(created, pod_times)
        if previous is None:
            return format_time(created) if created is not None else None
        return format_time(earliest) if earliest is not None else None

    def forget(self, key: str) -> None:
        self._states.pop(key, None)
