"""Pages joined by the store (`list_joined`) against the same pages listed row by row.

The reference is `list` plus the splice done in Python, which is what the
joined page must equal byte for byte, page by page: the same values in the
same order, the same last key, revision and `more`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.store import errors, protocol, sqlite

SPLICE = protocol.Splice(
    opening=b'{"metadata":{',
    closer=b"}",
    head=b'{"metadata":{"resourceVersion":"',
    tail=b'",',
    separator=b",",
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sqlite.SQLiteStore]:
    opened = await sqlite.SQLiteStore.open(tmp_path / "store.db")
    yield opened
    await opened.close()


def spliced(kv: protocol.KeyValue) -> bytes:
    rest = kv.value[len(SPLICE.opening) :]
    return SPLICE.head + str(kv.mod_revision).encode() + SPLICE.tail + rest


def value(name: str, extra: str = "") -> bytes:
    return orjson.dumps({"metadata": {"name": name}, "spec": {"note": extra}})


async def same_page(
    store: sqlite.SQLiteStore, prefix: str, revision: int, start_after: str, limit: int
) -> protocol.JoinedList:
    """The joined page, checked against the row-by-row page; returned for more checks."""
    rows = await store.list(prefix, revision, start_after, limit)
    joined = await store.list_joined(prefix, revision, start_after, limit, SPLICE)
    assert joined is not None
    assert joined.body == b",".join(spliced(kv) for kv in rows.items)
    assert joined.count == len(rows.items)
    assert joined.last_key == (rows.items[-1].key if rows.items else "")
    assert (joined.revision, joined.more) == (rows.revision, rows.more)
    return joined


async def test_pages_are_joined_in_key_order_whatever_order_the_keys_were_written_in(
    store: sqlite.SQLiteStore,
) -> None:
    names = [f"svc-{i:04d}" for i in range(1300)]
    random.Random(7).shuffle(names)
    for name in names:  # one by one: row ids follow the shuffled order, not the keys'
        await store.create(f"/s/{name}", value(name))
    for limit in (1, 500, 1000, 1299, 1300, 1301, 0):
        pages, start, revision = [], "", 0
        while True:
            page = await same_page(store, "/s/", revision, start, limit)
            pages.append(page.body)
            revision, start = page.revision, page.last_key
            if not page.more:
                break
        items = orjson.loads(b"[" + b",".join(p for p in pages if p) + b"]")
        assert [item["metadata"]["name"] for item in items] == sorted(names)


async def test_a_page_at_an_older_revision_joins_the_values_of_that_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await asyncio.gather(*(store.create(f"/o/{i:03d}", value(f"o{i}")) for i in range(60)))
    before = await store.current_revision()
    await store.update("/o/010", value("o10", "changed"), 0)
    await store.delete("/o/020")
    await store.create("/o/025x", value("new"))
    page = await same_page(store, "/o/", before, "/o/005", 20)
    items = orjson.loads(b"[" + page.body + b"]")
    assert [item["metadata"]["name"] for item in items] == [f"o{i}" for i in range(6, 26)]
    assert items[4]["spec"]["note"] == ""  # /o/010 as it was at `before`
    assert page.more
    await same_page(store, "/o/", 0, "", 0)


async def test_a_value_of_another_shape_makes_the_page_unjoinable(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/v/a", value("a"))
    await store.create("/v/b", b'{"metadata":{},"spec":{}}')  # empty metadata: no comma to add
    await store.create("/v/c", b'{"kind":"X","metadata":{"name":"c"}}')  # metadata not first
    assert await store.list_joined("/v/", 0, "", 10, SPLICE) is None
    assert await store.list_joined("/v/", 0, "/v/a", 1, SPLICE) is None
    await same_page(store, "/v/", 0, "", 1)  # the page of /v/a alone joins


async def test_an_empty_page_joins_to_nothing(store: sqlite.SQLiteStore) -> None:
    await store.create("/e/a", value("a"))
    page = await same_page(store, "/e/", 0, "/e/a", 5)
    assert (page.body, page.count, page.last_key, page.more) == (b"", 0, "", False)
    page = await same_page(store, "/none/", 0, "", 0)
    assert page.body == b""


async def test_a_joined_page_at_a_compacted_or_future_revision_is_refused(
    store: sqlite.SQLiteStore,
) -> None:
    for i in range(5):
        await store.create(f"/c/{i}", value(str(i)))
    await store.compact(3)
    with pytest.raises(errors.Compacted):
        await store.list_joined("/c/", 2, "", 2, SPLICE)
    with pytest.raises(errors.FutureRevision):
        await store.list_joined("/c/", 99, "", 2, SPLICE)


# Keys and values beyond ASCII: SQLite joins them as text, which must keep every byte.
_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
_notes = st.text(max_size=30)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.dictionaries(_names, _notes, max_size=25),
    deleted=st.sets(st.integers(0, 24), max_size=5),
    limit=st.integers(0, 8),
)
def test_any_keys_and_values_join_as_they_list(
    tmp_path_factory: pytest.TempPathFactory,
    entries: dict[str, str],
    deleted: set[int],
    limit: int,
) -> None:
    async def check() -> None:
        store = await sqlite.SQLiteStore.open(tmp_path_factory.mktemp("joined") / "s.db")
        try:
            keys = list(entries)
            for key in keys:
                await store.create(f"/h/{key}", value(key, entries[key]))
            for index in sorted(deleted):
                if index < len(keys):
                    await store.delete(f"/h/{keys[index]}")
            start, revision = "", 0
            while True:
                page = await same_page(store, "/h/", revision, start, limit)
                revision, start = page.revision, page.last_key
                if not page.more:
                    break
        finally:
            await store.close()

    asyncio.run(check())
