"""Errors raised by every Store backend.

StoreError
├── KeyExists      create of a key that is live
├── KeyNotFound    update/delete of a key that is not live
├── Conflict       update/delete whose expected revision is not the key's current one
├── Compacted      read or watch at a revision older than the compacted one
└── FutureRevision read or watch at a revision newer than the current one
"""


class StoreError(Exception):
    """Base of all storage errors."""


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class Conflict(StoreError):
    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"key {key!r} is at revision {actual}, not {expected}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted; the oldest available is {compacted + 1}"
        )
        self.requested = requested
        self.compacted = compacted


class FutureRevision(StoreError):
    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current
