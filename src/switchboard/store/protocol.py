"""The Store protocol every backend (SQLite now, etcd later) implements.

The shape follows etcd v3: one global, strictly increasing revision counts
every write; each key carries the revision that created it and the one that
last modified it. The apiserver uses `mod_revision` as an object's
resourceVersion and the store's current revision as a list's.

Watch semantics: `watch(prefix, after)` yields every event with revision >
`after` for keys under `prefix`, in revision order, first replaying history
from the log, then live events, with no gap and no duplicate between the two.
A watch from a revision below the compacted one raises
`errors.Compacted` (the apiserver answers 410 Gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol


class KeyValue(NamedTuple):
    """One key's value at a revision; immutable.

    A NamedTuple rather than a frozen dataclass because lists build one per
    row: a frozen dataclass's `__init__` sets each field through
    `object.__setattr__`, several times slower per object, and a list of
    10,000 keys paid that for every row.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One write as a watcher sees it.

    For PUT, `kv` is the new value and `prev` the old one (None on create).
    For DELETE, `kv` is the last live value with `mod_revision` set to the
    revision of the delete, and `prev` is that same last live value.
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the revision the list was read at
    more: bool  # True when `limit` cut the list short


@dataclass(frozen=True, slots=True)
class Splice:
    """How `Store.list_joined` writes each value's mod_revision into it, and joins them.

    A value that starts with `opening`, followed by a byte other than
    `closer`, becomes `head + str(mod_revision) + tail + value[len(opening):]`.
    The apiserver uses it to put an object's resourceVersion into its stored
    JSON without decoding it: `{"metadata":{` becomes
    `{"metadata":{"resourceVersion":"N",`, which an empty `{"metadata":{}`
    (the closer) would turn into bad JSON. The spliced values are joined by
    `separator`.
    """

    opening: bytes
    closer: bytes  # one byte
    head: bytes
    tail: bytes
    separator: bytes


@dataclass(frozen=True, slots=True)
class JoinedList:
    """A page of a list as `Store.list_joined` returns it: the values spliced and joined."""

    body: bytes
    count: int  # how many values `body` holds
    last_key: str  # the page's last key ("" when it is empty): where the next page starts
    revision: int  # the revision the list was read at
    more: bool  # True when `limit` cut the list short


class Watch(Protocol):
    """An open watch: iterate events; `close()` stops it and ends the iteration."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def listen(self, listener: Callable[[Event], None], closed: Callable[[], None]) -> bool:
        """Hand live events to `listener` from now on, instead of through the iterator.

        Possible once the history before the watch opened has been iterated:
        then the events already waiting are passed to `listener` at once, in
        order, every later one as the store dispatches it, and True is
        returned; the iterator yields nothing more, and `closed` is called
        once when the watch closes. While history remains (or once the watch
        is closed) it returns False and changes nothing: iterate on and ask
        again. `listener` runs inside the store's dispatch, so it must not
        block; every listener of the store gets the same Event object for one
        write.
        """
        ...

    async def close(self) -> None: ...


class Store(Protocol):
    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        """The live value of `key` at `revision` (0 = now), or None."""
        ...

    async def list(
        self, prefix: str, revision: int = 0, start_after: str = "", limit: int = 0
    ) -> ListResult:
        """Live keys under `prefix` in key order, after `start_after`, at most `limit` (0 = all)."""
        ...

    async def list_joined(
        self, prefix: str, revision: int, start_after: str, limit: int, splice: Splice
    ) -> JoinedList | None:
        """The page `list` would return, as one byte string spliced and joined by `splice`.

        None when a value of the page is not of the splice's shape: `list` it then.
        """
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Write a new key; raises errors.KeyExists if it is live."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Replace `key` if its mod_revision is `expected_revision` (0 = any).

        Raises errors.KeyNotFound or errors.Conflict.
        """
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Delete `key`; returns the deleted value with mod_revision = the delete's revision."""
        ...

    def watch(self, prefix: str, after: int) -> Watch:
        """Events for keys under `prefix` with revision > `after` (see module docstring).

        Raises errors.Compacted (at once, or from the first iteration) when
        `after` is below the compacted revision.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Forget history at and below `revision`, keeping every live value."""
        ...

    async def close(self) -> None: ...


WriteKind = Literal["create", "update", "delete"]
