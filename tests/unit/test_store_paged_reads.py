"""Pages of a paged list, which the store reads on the event loop's own connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.store import errors, protocol, sqlite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sqlite.SQLiteStore]:
    opened = await sqlite.SQLiteStore.open(tmp_path / "store.db")
    yield opened
    await opened.close()


async def paged(store: sqlite.SQLiteStore, prefix: str, limit: int) -> protocol.ListResult:
    """Every page from the first one's revision on, as one result."""
    first = await store.list(prefix, limit=limit)
    items, page = list(first.items), first
    while page.more:
        page = await store.list(prefix, first.revision, page.items[-1].key, limit)
        assert page.revision == first.revision
        items += page.items
    return protocol.ListResult(items, first.revision, False)


async def test_a_paged_list_stays_at_its_first_pages_revision_while_writes_land(
    store: sqlite.SQLiteStore,
) -> None:
    await asyncio.gather(*(store.create(f"/p/{i:04d}", b"v1") for i in range(1200)))
    first = await store.list("/p/", limit=500)
    await store.update("/p/0700", b"v2", 0)
    await store.delete("/p/0900")
    await store.create("/p/0950x", b"new")
    rest = await store.list("/p/", first.revision, first.items[-1].key, 500)
    last = await store.list("/p/", first.revision, rest.items[-1].key, 500)
    keys = [kv.key for kv in first.items + rest.items + last.items]
    assert keys == [f"/p/{i:04d}" for i in range(1200)]
    assert {kv.value for kv in rest.items + last.items} == {b"v1"}
    assert not last.more


async def test_pages_agree_with_one_whole_list_at_the_same_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await asyncio.gather(*(store.create(f"/a/{i:04d}", b"v") for i in range(700)))
    for i in range(0, 700, 7):
        await store.delete(f"/a/{i:04d}")
    whole = await store.list("/a/")  # no limit: read by the worker
    assert await paged(store, "/a/", 50) == whole
    assert await paged(store, "/a/", 1000) == whole


async def test_a_page_at_a_compacted_or_future_revision_is_refused(
    store: sqlite.SQLiteStore,
) -> None:
    for i in range(4):
        await store.create(f"/c/{i}", b"v")
    await store.compact(2)
    with pytest.raises(errors.Compacted):
        await store.list("/c/", 2, "", 10)
    with pytest.raises(errors.FutureRevision):
        await store.list("/c/", 5, "", 10)
    page = await store.list("/c/", 3, "", 10)
    assert [kv.key for kv in page.items] == ["/c/0", "/c/1", "/c/2"]
