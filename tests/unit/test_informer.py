"""Informers against a fake API server: list then watch, resume, relist on 410 Gone
with synthetic diffs, bookmarks, indexes and handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import informer, rest
from tests.unit import fakeapi

Obj = dict[str, Any]


class Recorder:
    """Handlers that write down what they were told, as (event, key, resourceVersion)."""

    def __init__(self, inf: informer.Informer) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()
        inf.add_handlers(self.add, self.update, self.delete)

    def _note(self, what: str, obj: Obj) -> None:
        self.seen.append((what, informer.key_of(obj), obj["metadata"]["resourceVersion"]))
        self.changed.set()

    def add(self, obj: Obj) -> None:
        self._note("add", obj)

    def update(self, old: Obj, new: Obj) -> None:
        assert informer.key_of(old) == informer.key_of(new)
        self._note("update", new)

    def delete(self, obj: Obj) -> None:
        self._note("delete", obj)

    def events(self) -> list[tuple[str, str]]:
        return [(what, key) for what, key, _ in self.seen]

    async def wait_for(self, count: int) -> None:
        async def enough() -> None:
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), timeout=5)


async def until(check: Callable[[], bool]) -> None:
    """Wait until `check()` holds; it reads state of the fake server that has no event."""

    async def poll() -> None:
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout=5)


@pytest.fixture
async def api() -> AsyncIterator[fakeapi.FakeAPI]:
    async with fakeapi.running() as running:
        yield running


@pytest.fixture
async def client(api: fakeapi.FakeAPI) -> AsyncIterator[rest.Client]:
    async with rest.Client.for_server(api.url) as c:
        yield c


@contextlib.asynccontextmanager
async def running(inf: informer.Informer) -> AsyncIterator[informer.Informer]:
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), timeout=5)
        yield inf
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(client: rest.Client, **kw: Any) -> informer.Informer:
    # Millisecond backoff keeps failure tests fast; the shape is the same.
    return informer.Informer(client, kinds.SERVICES, page_size=2, backoff=(0.01, 0.05), **kw)


# ---- list then watch ---------------------------------------------------------------------


async def test_existing_objects_are_listed_across_pages_and_reported_as_adds(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    for name in ("a", "b", "c"):
        await api.put(name)
    inf = make(client)
    rec = Recorder(inf)
    assert not inf.has_synced()
    async with running(inf):
        assert inf.has_synced()
        assert sorted(inf.keys()) == ["default/a", "default/b", "default/c"]
        assert sorted(rec.events()) == [
            ("add", "default/a"),
            ("add", "default/b"),
            ("add", "default/c"),
        ]
        assert api.list_calls == 2  # page_size=2: two pages
        assert inf.resource_version == str(api.revision)


async def test_watched_changes_update_the_cache_and_reach_the_handlers_in_order(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    inf = make(client)
    rec = Recorder(inf)
    async with running(inf):
        await api.put("b")
        await api.put("a", metadata={"labels": {"v": "2"}})
        await api.delete("b")
        await rec.wait_for(4)
        assert rec.events() == [
            ("add", "default/a"),
            ("add", "default/b"),
            ("update", "default/a"),
            ("delete", "default/b"),
        ]
        cached = inf.get("default/a")
        assert cached is not None and cached["metadata"]["labels"] == {"v": "2"}
        assert inf.get("default/b") is None


async def test_the_watch_starts_from_the_lists_resource_version(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    listed_at = str(api.revision)
    async with running(make(client)):
        await until(lambda: bool(api.watch_rvs))
    assert api.watch_rvs[0] == listed_at


# ---- failures ------------------------------------------------------------------------------


async def test_a_broken_watch_resumes_from_the_last_resource_version_without_relisting(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    inf = make(client)
    rec = Recorder(inf)
    async with running(inf):
        await api.put("b")
        await rec.wait_for(2)
        seen_rv = inf.resource_version
        api.refuse_watches = True
        await api.drop_watches()
        await api.put("c")  # happens while the informer is disconnected
        await until(lambda: len(api.watch_rvs) >= 3)  # it keeps retrying, backing off
        api.refuse_watches = False
        await rec.wait_for(3)
        assert rec.events()[-1] == ("add", "default/c")
        assert api.list_calls == 1
        assert set(api.watch_rvs[1:]) == {seen_rv}


@pytest.mark.parametrize("gone_as", ["http", "event"])
async def test_after_410_gone_the_relist_reports_what_changed_while_disconnected(
    api: fakeapi.FakeAPI, client: rest.Client, gone_as: str
) -> None:
    api.gone_as = gone_as  # type: ignore[assignment]
    for name in ("kept", "changed", "removed"):
        await api.put(name)
    inf = make(client)
    rec = Recorder(inf)
    async with running(inf):
        api.refuse_watches = True
        await api.drop_watches()
        await api.put("changed", metadata={"labels": {"v": "2"}})
        await api.delete("removed")
        await api.put("new")
        api.compact()  # the informer's resourceVersion is now too old to watch from
        rec.seen.clear()
        api.refuse_watches = False
        await rec.wait_for(3)
        await asyncio.sleep(0.05)  # nothing else should follow
        assert sorted(rec.events()) == [
            ("add", "default/new"),
            ("delete", "default/removed"),
            ("update", "default/changed"),
        ]
        assert sorted(inf.keys()) == ["default/changed", "default/kept", "default/new"]
        assert api.list_calls >= 2


async def test_a_synthetic_delete_carries_the_last_state_the_informer_saw(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("doomed", metadata={"labels": {"last": "seen"}})
    inf = make(client)
    deleted: list[Obj] = []
    inf.on_delete(deleted.append)
    async with running(inf):
        api.refuse_watches = True
        await api.drop_watches()
        await api.delete("doomed")
        api.compact()
        api.refuse_watches = False
        await until(lambda: bool(deleted))
    assert deleted[0]["metadata"]["labels"] == {"last": "seen"}


async def test_a_bookmark_moves_the_resume_point_forward(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    inf = make(client)
    async with running(inf):
        await until(lambda: bool(api.watch_rvs))
        await api.bookmark()
        await until(lambda: inf.resource_version == str(api.revision))
        await api.drop_watches()
        await until(lambda: len(api.watch_rvs) >= 2)
    assert api.watch_rvs[1] == str(api.revision)


async def test_a_bookmark_without_a_position_does_not_reset_the_resume_point(
    client: rest.Client,
) -> None:
    inf = make(client)
    inf.replace([], "42")
    inf.apply(rest.WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "0"}}))
    assert inf.resource_version == "42"


# ---- indexes and handlers ----------------------------------------------------------------


async def test_indexes_by_namespace_node_and_label_follow_every_change(
    client: rest.Client,
) -> None:
    inf = make(client)
    inf.add_index(informer.NAMESPACE, informer.namespace_index)
    inf.add_index(informer.NODE, informer.node_index)

    def obj(ns: str, name: str, rv: str, node: str = "", svc: str = "") -> Obj:
        labels = {"kubernetes.io/service-name": svc} if svc else {}
        meta = {"namespace": ns, "name": name, "resourceVersion": rv, "labels": labels}
        return {"metadata": meta, "spec": {"nodeName": node} if node else {}}

    inf.replace([obj("a", "p1", "1", "n1", "web"), obj("b", "p2", "2", "n1")], "2")
    inf.add_index("service", informer.label_index("kubernetes.io/service-name"))  # late: fills
    assert [o["metadata"]["name"] for o in inf.by_index(informer.NODE, "n1")] == ["p1", "p2"]
    assert inf.keys_by_index("service", "a/web") == ["a/p1"]

    inf.apply(rest.WatchEvent("MODIFIED", obj("a", "p1", "3", "n2", "api")))
    inf.apply(rest.WatchEvent("DELETED", obj("b", "p2", "4", "n1")))
    assert inf.keys_by_index(informer.NODE, "n1") == []
    assert inf.keys_by_index(informer.NODE, "n2") == ["a/p1"]
    assert inf.keys_by_index("service", "a/web") == []
    assert inf.keys_by_index("service", "a/api") == ["a/p1"]
    assert inf.keys_by_index(informer.NAMESPACE, "b") == []
    assert inf.index_values(informer.NAMESPACE) == ["a"]


def test_looking_up_an_unknown_index_names_it(client: rest.Client) -> None:
    with pytest.raises(ValueError, match="'missing'"):
        make(client).by_index("missing", "x")


async def test_a_handler_registered_after_sync_first_receives_the_cached_objects(
    client: rest.Client,
) -> None:
    inf = make(client)
    inf.replace([{"metadata": {"namespace": "d", "name": "x", "resourceVersion": "1"}}], "1")
    added: list[str] = []
    inf.on_add(lambda o: added.append(informer.key_of(o)))
    assert added == ["d/x"]


async def test_a_failing_handler_does_not_keep_the_others_from_their_events(
    client: rest.Client,
) -> None:
    inf = make(client)
    seen: list[str] = []

    def broken(obj: Obj) -> None:
        raise RuntimeError("bug in a handler")

    inf.on_add(broken)
    inf.on_add(lambda o: seen.append(informer.key_of(o)))
    inf.apply(rest.WatchEvent("ADDED", {"metadata": {"namespace": "d", "name": "x"}}))
    assert seen == ["d/x"]
    assert inf.get("d/x") is not None


async def test_wait_for_sync_returns_once_every_informer_has_listed(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    first, second = make(client), make(client, namespace="default")
    tasks = [asyncio.create_task(i.run()) for i in (first, second)]
    try:
        await asyncio.wait_for(informer.wait_for_sync(first, second), timeout=5)
        assert first.has_synced() and second.has_synced()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
