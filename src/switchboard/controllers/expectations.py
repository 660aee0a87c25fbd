"""Expectations: what a controller is still waiting to see in its caches.

A ReplicaSet controller that has just asked for three pods must not count
the pods again before its pod cache shows them, or it would create three
more. client-go's answer, kept here: before writing, record how many
creations and which deletions are expected for the owner's key; the pod
event handlers tick them off as the cache observes them; a sync only
manages replicas once nothing is outstanding. A failed write is ticked off
by the writer itself, since no event will come for it.

Expectations live only in memory. After a restart none are outstanding and
the first sync derives everything from freshly listed caches, which already
hold every pod the previous process managed to create, so a restart in the
middle of scaling never makes duplicates. Records older than `ttl` are
treated as satisfied, so a lost event delays a sync instead of stalling it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_TTL = 300.0  # client-go's ExpectationsTimeout


@dataclass(slots=True)
class _Record:
    creations: int
    deletions: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    """Outstanding creations (a count) and deletions (pod keys) per controller key."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def expect_creations(self, key: str, count: int) -> None:
        rec = self._records.setdefault(key, _Record(0, since=self._clock()))
        rec.creations += count
        rec.since = self._clock()

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        rec = self._records.setdefault(key, _Record(0, since=self._clock()))
        rec.deletions.update(pod_keys)
        rec.since = self._clock()

    def creation_observed(self, key: str) -> None:
        rec = self._records.get(key)
        if rec is not None and rec.creations > 0:
            rec.creations -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.deletions.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec.creations <= 0 and not rec.deletions:
            return True
        return self._clock() - rec.since > self._ttl

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected for `key`."""
        rec = self._records.get(key)
        return (0, 0) if rec is None else (max(rec.creations, 0), len(rec.deletions))

    def forget(self, key: str) -> None:
        self._records.pop(key, None)
