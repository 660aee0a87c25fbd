"""The REST client's edges against a fake server: how watch streams and error answers
become events and exceptions. (Verbs against the real apiserver are in tests/e2e.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from switchboard.api import kinds
from switchboard.client import errors, rest
from tests.unit import fakeapi


@pytest.fixture
async def api() -> AsyncIterator[fakeapi.FakeAPI]:
    async with fakeapi.running() as running:
        yield running


@pytest.fixture
async def client(api: fakeapi.FakeAPI) -> AsyncIterator[rest.Client]:
    async with rest.Client.for_server(api.url) as c:
        yield c


async def collect(client: rest.Client, resource_version: str = "1") -> list[rest.WatchEvent]:
    return [ev async for ev in client.watch(kinds.SERVICES, resource_version=resource_version)]


def line(type_: str, obj: object) -> bytes:
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


SVC = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "2"}}


async def test_a_watch_yields_one_event_per_line_even_when_lines_arrive_split(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    whole = line("ADDED", SVC) + line("BOOKMARK", {"metadata": {"resourceVersion": "3"}})
    api.raw_watch_lines = [whole[:10], whole[10:-5], whole[-5:]]
    got = await collect(client)
    assert [(e.type, e.object["metadata"]["resourceVersion"]) for e in got] == [
        ("ADDED", "2"),
        ("BOOKMARK", "3"),
    ]


async def test_a_last_line_without_a_newline_is_still_an_event(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    api.raw_watch_lines = [line("DELETED", SVC).rstrip(b"\n")]
    assert [e.type for e in await collect(client)] == ["DELETED"]


async def test_an_error_event_with_code_410_raises_gone(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    api.raw_watch_lines = [line("ADDED", SVC), line("ERROR", fakeapi.gone_status(1))]
    seen: list[str] = []
    with pytest.raises(errors.Gone) as caught:
        async for ev in client.watch(kinds.SERVICES, resource_version="1"):
            seen.append(ev.type)
    assert seen == ["ADDED"]  # events before the error are not lost
    assert caught.value.code == 410


async def test_an_http_410_answer_to_a_watch_raises_gone(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    api.compact()
    with pytest.raises(errors.Gone):
        await collect(client, resource_version="1")


async def test_an_error_event_with_another_code_raises_that_api_error(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    status = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "boom"}
    api.raw_watch_lines = [line("ERROR", status)]
    with pytest.raises(errors.APIError) as caught:
        await collect(client)
    assert (caught.value.code, caught.value.message) == (500, "boom")


@pytest.mark.parametrize(
    "bad",
    [b"this is not json\n", line("SURPRISE", SVC), b'{"type":"ADDED","object":[1]}\n'],
)
async def test_a_watch_line_that_is_not_an_event_raises_instead_of_being_skipped(
    api: fakeapi.FakeAPI, client: rest.Client, bad: bytes
) -> None:
    api.raw_watch_lines = [bad, line("ADDED", SVC)]
    with pytest.raises(errors.TransportError):
        await collect(client)


async def test_a_watch_broken_mid_stream_raises_transport_error(
    api: fakeapi.FakeAPI, client: rest.Client
) -> None:
    await api.put("a")
    stream = client.watch(kinds.SERVICES, resource_version="1")
    first = await anext(stream)
    assert first.type == "ADDED"
    await api.drop_watches()
    with pytest.raises(errors.TransportError):
        await anext(stream)


async def test_an_error_answer_without_a_status_body_keeps_its_code() -> None:
    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such thing")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", teapot)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with rest.Client.for_server(f"http://127.0.0.1:{runner.addresses[0][1]}") as c:
            with pytest.raises(errors.NotFound) as caught:
                await c.get(kinds.SERVICES, "default", "a")
    finally:
        await runner.cleanup()
    assert caught.value.reason == "NotFound"
    assert caught.value.message == "no such thing"


def test_resource_paths_follow_the_kubernetes_url_layout() -> None:
    assert rest.resource_path(kinds.SERVICES, "ns") == "/api/v1/namespaces/ns/services"
    assert (
        rest.resource_path(kinds.PODS, "ns", "p", "binding")
        == "/api/v1/namespaces/ns/pods/p/binding"
    )
    assert rest.resource_path(kinds.ENDPOINTSLICES, None) == (
        "/apis/discovery.k8s.io/v1/endpointslices"
    )
    assert rest.resource_path(kinds.NODES, None, "n1") == "/api/v1/nodes/n1"
    assert rest.resource_path(kinds.LEASES, "kube-system", "x") == (
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
    )


def test_a_namespaced_object_without_a_namespace_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        rest.resource_path(kinds.SERVICES, None, "web")
