"""The SQLite store: key/value semantics, revisions, watch, compaction and durability."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.store import errors, protocol, sqlite

WRITER = Path(__file__).with_name("store_writer.py")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[sqlite.SQLiteStore]:
    opened = await sqlite.SQLiteStore.open(tmp_path / "store.db")
    yield opened
    await opened.close()


async def take(watch: protocol.Watch, count: int) -> list[protocol.Event]:
    """The next `count` events of `watch`, failing the test if they do not come soon."""
    events: list[protocol.Event] = []

    async def collect() -> None:
        async for event in watch:
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(collect(), timeout=5)
    return events


async def nothing_more(watch: protocol.Watch) -> bool:
    """True when `watch` has no event ready within a short while."""
    try:
        await asyncio.wait_for(take(watch, 1), timeout=0.05)
    except TimeoutError:
        return True
    return False


# Create, get, list, count.


async def test_create_returns_the_value_at_a_new_revision(store: sqlite.SQLiteStore) -> None:
    kv = await store.create("/a", b"one")
    assert kv == protocol.KeyValue("/a", b"one", create_revision=1, mod_revision=1)
    assert await store.get("/a") == kv
    assert await store.current_revision() == 1


async def test_each_write_advances_the_revision_by_one(store: sqlite.SQLiteStore) -> None:
    a = await store.create("/a", b"1")
    b = await store.create("/b", b"1")
    a2 = await store.update("/a", b"2", 0)
    gone = await store.delete("/b")
    assert [a.mod_revision, b.mod_revision, a2.mod_revision, gone.mod_revision] == [1, 2, 3, 4]
    assert await store.current_revision() == 4


async def test_create_of_a_live_key_raises_key_exists(store: sqlite.SQLiteStore) -> None:
    await store.create("/a", b"one")
    with pytest.raises(errors.KeyExists):
        await store.create("/a", b"two")
    assert (await store.get("/a")) == protocol.KeyValue("/a", b"one", 1, 1)
    assert await store.current_revision() == 1


async def test_get_of_a_missing_key_returns_none(store: sqlite.SQLiteStore) -> None:
    assert await store.get("/nothing") is None


async def test_list_returns_live_keys_under_the_prefix_in_key_order(
    store: sqlite.SQLiteStore,
) -> None:
    for key in ["/s/b", "/s/a", "/sx/a", "/r/a", "/s/c"]:
        await store.create(key, key.encode())
    await store.delete("/s/c")
    result = await store.list("/s/")
    assert [kv.key for kv in result.items] == ["/s/a", "/s/b"]
    assert result.revision == 6
    assert not result.more


async def test_list_pages_with_limit_and_start_after_cover_every_key_once(
    store: sqlite.SQLiteStore,
) -> None:
    keys = [f"/p/{i:04d}" for i in range(1234)]
    await asyncio.gather(*(store.create(key, b"v") for key in keys))
    seen: list[str] = []
    start_after = ""
    while True:
        page = await store.list("/p/", start_after=start_after, limit=500)
        seen += [kv.key for kv in page.items]
        if not page.more:
            break
        start_after = page.items[-1].key
    assert seen == keys
    assert len((await store.list("/p/", limit=1234)).items) == 1234
    assert not (await store.list("/p/", limit=1234)).more


async def test_count_counts_live_keys_under_the_prefix(store: sqlite.SQLiteStore) -> None:
    for key in ["/c/1", "/c/2", "/c/3", "/cc/1"]:
        await store.create(key, b"v")
    await store.delete("/c/2")
    assert await store.count("/c/") == 2
    assert await store.count("") == 3


async def test_keys_with_characters_above_ascii_list_under_their_prefix(
    store: sqlite.SQLiteStore,
) -> None:
    for key in ["/ü/a", "/ü/\U0010ffff", "/ü\U0010ffff", "/ý/a"]:
        await store.create(key, b"v")
    assert [kv.key for kv in (await store.list("/ü/")).items] == ["/ü/a", "/ü/\U0010ffff"]
    assert await store.count("/ü") == 3


# Update and delete.


async def test_update_with_the_current_revision_replaces_the_value(
    store: sqlite.SQLiteStore,
) -> None:
    created = await store.create("/a", b"one")
    updated = await store.update("/a", b"two", created.mod_revision)
    assert updated == protocol.KeyValue("/a", b"two", create_revision=1, mod_revision=2)
    assert await store.get("/a") == updated


async def test_update_with_stale_revision_raises_conflict(store: sqlite.SQLiteStore) -> None:
    created = await store.create("/a", b"one")
    await store.update("/a", b"two", created.mod_revision)
    with pytest.raises(errors.Conflict) as caught:
        await store.update("/a", b"three", created.mod_revision)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert (await store.get("/a")) == protocol.KeyValue("/a", b"two", 1, 2)


async def test_update_with_expected_revision_zero_is_unconditional(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"one")
    await store.update("/a", b"two", 0)
    assert (await store.update("/a", b"three", 0)).value == b"three"


async def test_update_of_a_missing_key_raises_key_not_found(store: sqlite.SQLiteStore) -> None:
    with pytest.raises(errors.KeyNotFound):
        await store.update("/a", b"one", 0)


async def test_racing_updates_from_the_same_revision_let_exactly_one_win(
    store: sqlite.SQLiteStore,
) -> None:
    created = await store.create("/a", b"zero")
    outcomes = await asyncio.gather(
        *(store.update("/a", str(i).encode(), created.mod_revision) for i in range(10)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, protocol.KeyValue)]
    assert len(winners) == 1
    assert all(isinstance(o, errors.Conflict) for o in outcomes if o not in winners)
    assert await store.get("/a") == winners[0]


async def test_delete_returns_the_last_value_at_the_delete_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"one")
    await store.update("/a", b"two", 0)
    deleted = await store.delete("/a")
    assert deleted == protocol.KeyValue("/a", b"two", create_revision=1, mod_revision=3)
    assert await store.get("/a") is None
    assert await store.count("/") == 0


async def test_delete_with_stale_revision_raises_conflict(store: sqlite.SQLiteStore) -> None:
    await store.create("/a", b"one")
    await store.update("/a", b"two", 0)
    with pytest.raises(errors.Conflict):
        await store.delete("/a", expected_revision=1)
    assert await store.get("/a") is not None


async def test_delete_of_a_missing_key_raises_key_not_found(store: sqlite.SQLiteStore) -> None:
    await store.create("/a", b"one")
    await store.delete("/a")
    with pytest.raises(errors.KeyNotFound):
        await store.delete("/a")


async def test_a_deleted_key_can_be_created_again_with_a_new_create_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"one")
    await store.delete("/a")
    again = await store.create("/a", b"again")
    assert again == protocol.KeyValue("/a", b"again", create_revision=3, mod_revision=3)
    assert (await store.update("/a", b"more", 3)).create_revision == 3


# Reads at past revisions.


async def test_get_at_an_old_revision_sees_the_value_of_that_time(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"one")  # 1
    await store.update("/a", b"two", 0)  # 2
    await store.create("/b", b"b")  # 3
    await store.delete("/a")  # 4
    await store.create("/a", b"three")  # 5
    assert await store.get("/a", 1) == protocol.KeyValue("/a", b"one", 1, 1)
    assert await store.get("/a", 3) == protocol.KeyValue("/a", b"two", 1, 2)
    assert await store.get("/a", 4) is None
    assert await store.get("/a", 5) == protocol.KeyValue("/a", b"three", 5, 5)
    assert await store.get("/b", 2) is None


async def test_list_at_an_old_revision_sees_the_keys_of_that_time(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/k/a", b"a1")  # 1
    await store.create("/k/b", b"b1")  # 2
    await store.delete("/k/a")  # 3
    await store.create("/k/a", b"a2")  # 4
    await store.update("/k/b", b"b2", 0)  # 5

    async def at(revision: int) -> list[tuple[str, bytes, int]]:
        result = await store.list("/k/", revision)
        assert result.revision == revision
        return [(kv.key, kv.value, kv.mod_revision) for kv in result.items]

    assert await at(2) == [("/k/a", b"a1", 1), ("/k/b", b"b1", 2)]
    assert await at(3) == [("/k/b", b"b1", 2)]
    assert await at(4) == [("/k/a", b"a2", 4), ("/k/b", b"b1", 2)]
    assert await at(5) == [("/k/a", b"a2", 4), ("/k/b", b"b2", 5)]
    page = await store.list("/k/", 2, start_after="", limit=1)
    assert [kv.key for kv in page.items] == ["/k/a"]
    assert page.more


async def test_reads_at_a_future_revision_raise_future_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"one")
    with pytest.raises(errors.FutureRevision):
        await store.get("/a", 2)
    with pytest.raises(errors.FutureRevision):
        await store.list("/", 2)


# Watch.


async def test_watch_replays_history_then_delivers_live_events(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/w/a", b"1")
    await store.create("/w/b", b"1")
    watch = store.watch("/w/", 0)
    replayed = await take(watch, 2)
    await store.update("/w/a", b"2", 0)
    live = await take(watch, 1)
    assert [(e.type, e.kv.key, e.revision) for e in replayed + live] == [
        ("PUT", "/w/a", 1),
        ("PUT", "/w/b", 2),
        ("PUT", "/w/a", 3),
    ]
    await watch.close()


async def test_watch_sees_only_keys_under_its_prefix(store: sqlite.SQLiteStore) -> None:
    await store.create("/w/a", b"1")
    await store.create("/wx/a", b"1")
    watch = store.watch("/w/", 0)
    await store.create("/v/a", b"1")
    await store.create("/w/b", b"1")
    assert [e.kv.key for e in await take(watch, 2)] == ["/w/a", "/w/b"]
    assert await nothing_more(watch)
    await watch.close()


async def test_watch_events_carry_the_previous_value(store: sqlite.SQLiteStore) -> None:
    watch = store.watch("/", 0)
    await store.create("/a", b"one")
    await store.update("/a", b"two", 0)
    await store.delete("/a")
    live = await take(watch, 3)
    replayed = await take(store.watch("/", 0), 3)
    one = protocol.KeyValue("/a", b"one", 1, 1)
    two = protocol.KeyValue("/a", b"two", 1, 2)
    expected = [
        protocol.Event("PUT", one, None, 1),
        protocol.Event("PUT", two, one, 2),
        protocol.Event("DELETE", protocol.KeyValue("/a", b"two", 1, 3), two, 3),
    ]
    assert live == expected
    assert replayed == expected
    await watch.close()


async def test_write_between_watch_and_first_iteration_is_delivered_once(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"1")
    watch = store.watch("/", 0)
    await store.create("/b", b"1")  # committed while the watch buffers, before it replays
    assert [e.revision for e in await take(watch, 2)] == [1, 2]
    assert await nothing_more(watch)
    await watch.close()


async def test_watch_opened_during_concurrent_writes_has_no_gap_and_no_duplicate(
    store: sqlite.SQLiteStore,
) -> None:
    writes_per_lane = 150

    async def write(lane: int) -> None:
        for i in range(writes_per_lane):
            kv = await store.create(f"/w/{lane}/{i}", b"v")
            if i % 3 == 0:
                await store.update(kv.key, b"v2", kv.mod_revision)

    writers = [asyncio.create_task(write(lane)) for lane in range(4)]
    watches: list[tuple[int, protocol.Watch]] = []
    while not all(task.done() for task in writers):
        after = await store.current_revision()
        watches.append((max(after - 7, 0), store.watch("/w/", max(after - 7, 0))))
        await asyncio.sleep(0.002)
    await asyncio.gather(*writers)
    final = (await store.create("/w/last", b"v")).mod_revision
    assert len(watches) > 3
    for after, watch in watches:
        revisions = [event.revision for event in await take(watch, final - after)]
        assert revisions == list(range(after + 1, final + 1))
        await watch.close()


async def test_watch_replay_longer_than_one_chunk_is_complete(
    store: sqlite.SQLiteStore,
) -> None:
    await asyncio.gather(*(store.create(f"/r/{i:04d}", b"v") for i in range(1200)))
    await asyncio.gather(*(store.create(f"/other/{i:04d}", b"v") for i in range(300)))
    watch = store.watch("/r/", 10)
    revisions = [event.revision for event in await take(watch, 1190)]
    assert revisions == list(range(11, 1201))
    assert await nothing_more(watch)
    await watch.close()


async def test_slow_watcher_does_not_block_writers(store: sqlite.SQLiteStore) -> None:
    watch = store.watch("/", 0)  # never read until all writes are done
    await asyncio.wait_for(
        asyncio.gather(*(store.create(f"/s/{i}", b"v") for i in range(500))), timeout=5
    )
    assert len(await take(watch, 500)) == 500
    await watch.close()


async def test_closing_a_watch_ends_its_iteration(store: sqlite.SQLiteStore) -> None:
    watch = store.watch("/", 0)
    received: list[protocol.Event] = []

    async def consume() -> None:
        async for event in watch:
            received.append(event)

    consumer = asyncio.create_task(consume())
    await store.create("/a", b"1")
    await asyncio.sleep(0.01)
    await watch.close()
    await asyncio.wait_for(consumer, timeout=1)
    assert [e.revision for e in received] == [1]


async def test_closing_the_store_ends_every_watch(store: sqlite.SQLiteStore) -> None:
    watch = store.watch("/", 0)
    consumer = asyncio.create_task(take(watch, 1))
    await asyncio.sleep(0.01)
    await store.close()
    await asyncio.wait_for(asyncio.gather(consumer, return_exceptions=True), timeout=1)
    with pytest.raises(errors.StoreError):
        await store.get("/a")


# Compaction.


async def test_watch_from_a_compacted_revision_raises_compacted(
    store: sqlite.SQLiteStore,
) -> None:
    for i in range(5):
        await store.create(f"/a/{i}", b"v")
    await store.compact(3)
    with pytest.raises(errors.Compacted) as caught:
        store.watch("/", 2)
    assert caught.value.compacted == 3


async def test_watch_from_the_compacted_revision_replays_everything_after_it(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"1")  # 1
    await store.update("/a", b"2", 0)  # 2
    await store.create("/b", b"1")  # 3
    await store.update("/a", b"3", 0)  # 4
    await store.delete("/b")  # 5
    await store.compact(3)
    events = await take(store.watch("/", 3), 2)
    a2 = protocol.KeyValue("/a", b"2", 1, 2)
    b1 = protocol.KeyValue("/b", b"1", 3, 3)
    assert events == [
        protocol.Event("PUT", protocol.KeyValue("/a", b"3", 1, 4), a2, 4),
        protocol.Event("DELETE", protocol.KeyValue("/b", b"1", 3, 5), b1, 5),
    ]


async def test_compaction_keeps_every_live_value(store: sqlite.SQLiteStore) -> None:
    await store.create("/a", b"1")
    for value in [b"2", b"3", b"4"]:
        await store.update("/a", value, 0)
    await store.create("/b", b"1")
    await store.delete("/b")
    await store.create("/c", b"1")
    await store.delete("/c")
    await store.create("/c", b"again")
    before = await store.list("/")
    await store.compact(await store.current_revision())
    after = await store.list("/")
    assert after == before
    assert [(kv.key, kv.value) for kv in after.items] == [("/a", b"4"), ("/c", b"again")]
    assert await store.update("/c", b"more", after.items[1].mod_revision)


async def test_compaction_removes_superseded_rows_and_tombstones(
    store: sqlite.SQLiteStore, tmp_path: Path
) -> None:
    await store.create("/a", b"1")
    await store.update("/a", b"2", 0)
    await store.create("/b", b"1")
    await store.delete("/b")
    await store.create("/c", b"1")  # 5
    await store.update("/c", b"2", 0)  # 6: keeps row 5 readable at revision 5
    await store.compact(5)
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as db:
        rows = db.execute("SELECT id FROM kv ORDER BY id").fetchall()
    assert [row[0] for row in rows] == [2, 5, 6]


async def test_reads_at_or_below_the_compacted_revision_raise_compacted(
    store: sqlite.SQLiteStore,
) -> None:
    for i in range(4):
        await store.create(f"/a/{i}", b"v")
    await store.compact(2)
    assert await store.compacted_revision() == 2
    for revision in (1, 2):
        with pytest.raises(errors.Compacted):
            await store.get("/a/0", revision)
        with pytest.raises(errors.Compacted):
            await store.list("/a/", revision)
    assert [kv.key for kv in (await store.list("/a/", 3)).items] == ["/a/0", "/a/1", "/a/2"]


async def test_compacting_beyond_the_current_revision_raises_future_revision(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"v")
    with pytest.raises(errors.FutureRevision):
        await store.compact(2)


async def test_compact_keep_leaves_the_newest_window_of_history(
    store: sqlite.SQLiteStore,
) -> None:
    await store.create("/a", b"0")
    for i in range(1, 10):
        await store.update("/a", str(i).encode(), 0)
    assert await store.compact_keep(3) == 7
    assert await store.compacted_revision() == 7
    assert (await store.get("/a", 8)) == protocol.KeyValue("/a", b"7", 1, 8)
    assert await store.compact_keep(3) == 7  # nothing new to forget


# Persistence.


async def test_reopen_after_close_keeps_values_revisions_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = await sqlite.SQLiteStore.open(path)
    await first.create("/a", b"1")
    await first.update("/a", b"2", 0)
    await first.create("/b", b"1")
    await first.delete("/b")  # 4: compacting to it deletes the newest row of the log
    await first.compact(4)
    await first.close()

    second = await sqlite.SQLiteStore.open(path)
    try:
        assert await second.current_revision() == 4
        assert await second.compacted_revision() == 4
        assert (await second.list("/")).items == [protocol.KeyValue("/a", b"2", 1, 2)]
        assert (await second.create("/b", b"again")).mod_revision == 5  # never reused
    finally:
        await second.close()


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(path), stdout=asyncio.subprocess.PIPE
    )
    assert writer.stdout is not None
    acknowledged: dict[str, int] = {}

    def acknowledge(line: bytes) -> None:
        key, revision = line.decode().split()
        acknowledged[key] = int(revision)

    try:
        while len(acknowledged) < 300:
            line = await asyncio.wait_for(writer.stdout.readline(), timeout=10)
            assert line, "the writer exited before it was killed"
            acknowledge(line)
        os.kill(writer.pid, signal.SIGKILL)
        # Lines written before the kill are acknowledgements too.
        for line in (await writer.stdout.read()).splitlines(keepends=True):
            if line.endswith(b"\n"):  # a line cut short by the kill was never complete
                acknowledge(line)
    finally:
        if writer.returncode is None:
            writer.kill()
        await writer.wait()
    # 255 is asyncio's stand-in when its child watcher could not collect the status (seen
    # on loaded machines); what matters is that the writer died mid-stream, checked below.
    assert writer.returncode in (-signal.SIGKILL, 255)

    store = await sqlite.SQLiteStore.open(path)
    try:
        for key, revision in acknowledged.items():
            assert await store.get(key) == protocol.KeyValue(key, key.encode(), revision, revision)
        assert await store.current_revision() >= max(acknowledged.values())
    finally:
        await store.close()
