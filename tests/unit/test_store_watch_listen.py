"""A watch that listens: live events handed to a callback from the store's dispatch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.store import protocol, sqlite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sqlite.SQLiteStore]:
    opened = await sqlite.SQLiteStore.open(tmp_path / "store.db")
    yield opened
    await opened.close()


class Heard:
    """What one listener was handed, and whether its watch was closed."""

    def __init__(self) -> None:
        self.events: list[protocol.Event] = []
        self.closed = False

    def __call__(self, event: protocol.Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    @property
    def revisions(self) -> list[int]:
        return [event.revision for event in self.events]


async def settle() -> None:
    """Let the store's dispatch, scheduled after its writers' wake-ups, run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_watch_from_now_listens_at_once_and_hears_each_write_in_order(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/w/a", b"1")
    watch = store.watch("/w/", await store.current_revision())
    heard = Heard()
    assert watch.listen(heard, heard.close)
    await store.create("/w/b", b"1")
    await store.update("/w/a", b"2", 0)
    await store.create("/other/x", b"1")
    await store.delete("/w/b")
    await settle()
    assert [(e.type, e.kv.key, e.revision) for e in heard.events] == [
        ("PUT", "/w/b", 2),
        ("PUT", "/w/a", 3),
        ("DELETE", "/w/b", 5),
    ]
    await watch.close()


async def test_every_listener_is_handed_the_same_event_object(
    store: sqlite.SQLiteStore,
) -> None:
    first, second = Heard(), Heard()
    watches = [store.watch("/", 0), store.watch("/", 0)]
    assert watches[0].listen(first, first.close)
    assert watches[1].listen(second, second.close)
    await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(5)))
    await settle()
    assert first.revisions == second.revisions == [1, 2, 3, 4, 5]
    assert all(a is b for a, b in zip(first.events, second.events, strict=True))
    for watch in watches:
        await watch.close()


async def test_listening_waits_for_the_history_then_loses_and_repeats_nothing(
    store: sqlite.SQLiteStore,
) -> None:
    for i in range(3):
        await store.create(f"/h/{i}", b"v")
    await settle()  # all three dispatched: the watch must replay them from the log
    watch = store.watch("/h/", 0)
    heard = Heard()
    assert not watch.listen(heard, heard.close)  # three events to replay first
    events = aiter(watch)
    replayed = [await anext(events), await anext(events)]
    assert not watch.listen(heard, heard.close)
    await store.create("/h/3", b"v")  # queued behind the history
    await settle()
    replayed.append(await anext(events))
    await store.create("/h/4", b"v")
    await settle()
    assert watch.listen(heard, heard.close)
    await store.create("/h/5", b"v")
    await settle()
    assert [e.revision for e in replayed] == [1, 2, 3]
    assert heard.revisions == [4, 5, 6]
    await watch.close()


async def test_a_write_is_answered_before_its_listeners_hear_of_it(
    store: sqlite.SQLiteStore,
) -> None:
    answered: list[int] = []
    heard_after: list[list[int]] = []
    watch = store.watch("/", 0)
    assert watch.listen(lambda event: heard_after.append(list(answered)), lambda: None)

    async def write() -> None:
        answered.append((await store.create("/a", b"v")).mod_revision)

    await write()
    await settle()
    assert heard_after == [[1]]
    await watch.close()


async def test_a_listener_that_fails_closes_its_own_watch_only(
    store: sqlite.SQLiteStore,
) -> None:
    def fail(event: protocol.Event) -> None:
        raise RuntimeError("listener bug")

    closed: list[bool] = []
    broken = store.watch("/", 0)
    assert broken.listen(fail, lambda: closed.append(True))
    heard = Heard()
    healthy = store.watch("/", 0)
    assert healthy.listen(heard, heard.close)
    await store.create("/a", b"v")
    await store.create("/b", b"v")
    await settle()
    assert closed == [True]
    assert heard.revisions == [1, 2]
    assert not heard.closed
    await healthy.close()


async def test_closing_the_store_tells_a_listening_watch(tmp_path: Path) -> None:
    store = await sqlite.SQLiteStore.open(tmp_path / "store.db")
    heard = Heard()
    assert store.watch("/", 0).listen(heard, heard.close)
    await store.close()
    assert heard.closed


async def test_a_listener_of_a_watch_from_a_future_revision_hears_only_what_follows_it(
    store: sqlite.SQLiteStore,
) -> None:
    watch = store.watch("/", 2)
    heard = Heard()
    assert watch.listen(heard, heard.close)
    for key in ("/a", "/b", "/c"):
        await store.create(key, b"v")
    await settle()
    assert heard.revisions == [3]
    await watch.close()
