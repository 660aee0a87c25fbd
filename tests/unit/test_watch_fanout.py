"""Many watch streams on one apiserver: each gets exactly its events, in order, however fast
it reads. The apiserver runs in-process on loopback over a real store; watchers are HTTP
clients, a slow one a bare socket that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from switchboard.apiserver import app, lifecycle, services
from switchboard.apiserver.registry import Registry
from switchboard.store.sqlite import SQLiteStore

Obj = dict[str, Any]
WAIT = 10.0


@dataclass
class Api:
    url: str
    port: int
    store: SQLiteStore
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Obj | None = None) -> Obj:
        media = "application/merge-patch+json" if method == "PATCH" else "application/json"
        async with self.session.request(
            method,
            self.url + path,
            data=None if body is None else orjson.dumps(body),
            headers={"Content-Type": media},
        ) as resp:
            answer: Obj = orjson.loads(await resp.read())
            assert resp.status in (200, 201), answer
            return answer


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = await SQLiteStore.open(tmp_path / "state.db")
    hooks = services.ServiceHooks(services.DEFAULT_SERVICE_CIDR, services.DEFAULT_NODE_PORT_RANGE)
    registry = Registry(store, hooks)
    await lifecycle.bootstrap(registry)
    runner = web.AppRunner(app.build(registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", port, store, session)
    await runner.cleanup()
    await store.close()


@dataclass
class Watcher:
    """A watch stream read line by line into `events` (bookmarks left out)."""

    events: list[Obj] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def seen(self) -> list[tuple[str, str, str]]:
        return [
            (e["type"], e["object"]["metadata"]["name"], e["object"]["metadata"]["resourceVersion"])
            for e in self.events
        ]


@contextlib.asynccontextmanager
async def watching(api: Api, path: str, **params: str) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    opened = asyncio.get_running_loop().create_future()

    async def read() -> None:
        query = {"watch": "true", **params}
        timeout = aiohttp.ClientTimeout(total=None)
        async with api.session.get(api.url + path, params=query, timeout=timeout) as resp:
            assert resp.status == 200
            opened.set_result(None)
            while line := await resp.content.readline():
                event = orjson.loads(line)
                if event["type"] != "BOOKMARK":
                    watcher.events.append(event)

    watcher.task = asyncio.create_task(read())
    await asyncio.wait_for(asyncio.shield(opened), WAIT)
    try:
        yield watcher
    finally:
        watcher.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher.task


async def until(done: Callable[[], bool]) -> None:
    """Poll `done` until it holds; the watchers' readers give no signal to wait on."""
    async with asyncio.timeout(WAIT):
        while not done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def service(name: str, app_label: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"app": app_label}},
        "spec": {"ports": [{"port": 80}]},
    }


async def test_watchers_with_different_selectors_each_get_exactly_their_events_in_order(
    api: Api,
) -> None:
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    early = await api.call("POST", "/api/v1/namespaces/default/services", service("s0", "a"))
    start = early["metadata"]["resourceVersion"]
    # Each watcher with the test its objects must pass.
    wanted: dict[str, Callable[[Obj], bool]] = {
        "every namespace": lambda o: True,
        "default": lambda o: o["metadata"]["namespace"] == "default",
        "app=a": lambda o: (
            o["metadata"]["namespace"] == "default" and o["metadata"]["labels"].get("app") == "a"
        ),
        "app!=a": lambda o: (
            o["metadata"]["namespace"] == "default" and o["metadata"]["labels"].get("app") != "a"
        ),
        "name s1": lambda o: o["metadata"]["name"] == "s1",
        "from before s0": lambda o: o["metadata"]["namespace"] == "default",
    }
    default = "/api/v1/namespaces/default/services"
    async with (
        watching(api, "/api/v1/services", resourceVersion=start) as everywhere,
        watching(api, default, resourceVersion=start) as in_default,
        watching(api, default, resourceVersion=start, labelSelector="app=a") as app_a,
        watching(api, default, resourceVersion=start, labelSelector="app!=a") as not_app_a,
        watching(
            api, "/api/v1/services", resourceVersion=start, fieldSelector="metadata.name=s1"
        ) as named,
        watching(api, default, resourceVersion=str(int(start) - 1)) as replaying,
    ):
        watchers = {
            "every namespace": everywhere,
            "default": in_default,
            "app=a": app_a,
            "app!=a": not_app_a,
            "name s1": named,
            "from before s0": replaying,
        }
        expected: dict[str, list[tuple[str, str, str]]] = {name: [] for name in watchers}
        expected["from before s0"].append(("ADDED", "s0", start))
        current: dict[str, Obj] = {}

        def record(before: Obj | None, after: Obj | None, rv: str) -> None:
            """What each watcher is told: entering its selection is ADDED, leaving it DELETED."""
            for name, test in wanted.items():
                was = before is not None and test(before)
                now = after is not None and test(after)
                obj = after or before
                assert obj is not None
                if was or now:
                    type_ = "MODIFIED" if was and now else "ADDED" if now else "DELETED"
                    expected[name].append((type_, obj["metadata"]["name"], rv))

        async def write(method: str, path: str, name: str, body: Obj | None = None) -> None:
            answer = await api.call(method, path, body)
            rv = answer["metadata"]["resourceVersion"]
            key = f"{path.split('/')[4]}/{name}"
            after = None if method == "DELETE" else answer
            record(current.get(key), after, rv)
            if after is None:
                current.pop(key, None)
            else:
                current[key] = after

        other = "/api/v1/namespaces/other/services"
        await write("POST", default, "s1", service("s1", "a"))
        await write("POST", default, "s2", service("s2", "b"))
        await write("POST", other, "s1", service("s1", "a"))
        await write("PATCH", f"{default}/s1", "s1", {"metadata": {"labels": {"app": "b"}}})
        await write("PATCH", f"{default}/s2", "s2", {"metadata": {"labels": {"app": "a"}}})
        await write("PATCH", f"{default}/s2", "s2", {"metadata": {"annotations": {"x": "1"}}})
        await write("PATCH", f"{other}/s1", "s1", {"metadata": {"labels": {"app": "c"}}})
        await write("DELETE", f"{default}/s1", "s1")
        await write("DELETE", f"{other}/s1", "s1")
        await write("DELETE", f"{default}/s2", "s2")
        await until(lambda: all(len(w.events) >= len(expected[n]) for n, w in watchers.items()))
        await asyncio.sleep(0.1)  # room for anything extra to show up
        for name, watcher in watchers.items():
            assert watcher.seen() == expected[name], name
    # The writes moved objects into and out of the selections, not only through them.
    assert [t for t, _, _ in expected["app=a"]].count("DELETED") == 2
    assert [t for t, _, _ in expected["app!=a"]].count("ADDED") == 2


def stalled_watch(api: Api, path: str, rv: str) -> socket.socket:
    """A watch whose client reads nothing until told to."""
    sock = socket.create_connection(("127.0.0.1", api.port))
    sock.sendall(
        f"GET {path}?watch=true&resourceVersion={rv} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode()
    )
    return sock


async def read_stalled(sock: socket.socket) -> list[Obj]:
    """Everything the stalled watch was sent, de-chunked into events, once it ends or goes quiet."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 1.0)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    sock.close()
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    lines = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        lines += body[:size]
        body = body[size + 2 :]
    return [orjson.loads(line) for line in lines.splitlines()]


async def patch_many(api: Api, names: list[str], rounds: int) -> list[str]:
    """Give each Service a new 20 KiB annotation per round; the resourceVersions written."""
    written: list[str] = []
    path = "/api/v1/namespaces/default/services/"
    for round_ in range(rounds):
        body = {"metadata": {"annotations": {"fill": f"{round_:04d}" * 5000}}}
        answers = await asyncio.gather(*(api.call("PATCH", path + n, body) for n in names))
        written += [a["metadata"]["resourceVersion"] for a in answers]
    return sorted(written, key=int)


async def test_a_watcher_that_stops_reading_holds_up_no_one_and_later_gets_every_event(
    api: Api,
) -> None:
    names = [f"big-{i}" for i in range(10)]
    for name in names:
        created = await api.call("POST", "/api/v1/namespaces/default/services", service(name, "a"))
    start = created["metadata"]["resourceVersion"]
    stalled = stalled_watch(api, "/api/v1/namespaces/default/services", start)
    async with watching(api, "/api/v1/namespaces/default/services", resourceVersion=start) as fast:
        await asyncio.sleep(0.1)
        written = await patch_many(api, names, rounds=50)  # 500 events, about 10 MB
        # The reading watcher has them all while the other has read nothing.
        await until(lambda: len(fast.events) == len(written))
        assert [e["object"]["metadata"]["resourceVersion"] for e in fast.events] == written
    got = await read_stalled(stalled)
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in got] == [
        ("MODIFIED", rv) for rv in written
    ]


async def test_a_watcher_that_fell_behind_past_compaction_is_told_410_after_what_it_had(
    api: Api,
) -> None:
    names = [f"big-{i}" for i in range(10)]
    for name in names:
        created = await api.call("POST", "/api/v1/namespaces/default/services", service(name, "a"))
    start = created["metadata"]["resourceVersion"]
    stalled = stalled_watch(api, "/api/v1/namespaces/default/services", start)
    await asyncio.sleep(0.1)
    written = await patch_many(api, names, rounds=50)
    await api.store.compact(int(written[-1]))
    got = await read_stalled(stalled)
    events, last = got[:-1], got[-1]
    assert last["type"] == "ERROR" and last["object"]["code"] == 410
    # What it had is the start of the history, in order, with nothing missing.
    assert [e["object"]["metadata"]["resourceVersion"] for e in events] == written[: len(events)]
