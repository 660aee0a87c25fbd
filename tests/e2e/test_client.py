"""The API client against the real apiserver process: verbs, errors, watches,
informers, leader election and events, as controllers will use them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import errors, events, informer, leaderelection, rest
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]


@pytest.fixture
async def client(server: Server) -> AsyncIterator[rest.Client]:
    async with rest.Client.from_kubeconfig(server.kubeconfig) as c:
        yield c


@pytest.fixture
async def namespace(client: rest.Client) -> AsyncIterator[str]:
    """A fresh namespace per test, so tests sharing one server never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(kinds.NAMESPACES, None, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(errors.ClientError):
        await client.delete(kinds.NAMESPACES, None, name)


def service(name: str, labels: dict[str, str] | None = None, port: int = 80) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"ports": [{"port": port}]},
    }


def pod(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
    }


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 10) -> None:
    """Wait until `check()` is true, failing the test if it is not `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition did not become true in time")
        await asyncio.sleep(0.02)


# ---- REST verbs and errors ---------------------------------------------------------------


async def test_a_created_service_reads_back_with_its_resource_version(
    client: rest.Client, namespace: str
) -> None:
    created = await client.create(kinds.SERVICES, namespace, service("web"))
    got = await client.get(kinds.SERVICES, namespace, "web")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert got["spec"]["ports"][0]["port"] == 80


async def test_reading_a_missing_object_raises_not_found(
    client: rest.Client, namespace: str
) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await client.get(kinds.SERVICES, namespace, "absent")
    assert caught.value.code == 404
    assert caught.value.reason == "NotFound"


async def test_creating_an_existing_name_raises_already_exists(
    client: rest.Client, namespace: str
) -> None:
    await client.create(kinds.SERVICES, namespace, service("dup"))
    with pytest.raises(errors.AlreadyExists):
        await client.create(kinds.SERVICES, namespace, service("dup"))


async def test_updating_from_a_stale_resource_version_raises_conflict(
    client: rest.Client, namespace: str
) -> None:
    first = await client.create(kinds.SERVICES, namespace, service("cas"))
    await client.patch(kinds.SERVICES, namespace, "cas", {"metadata": {"labels": {"a": "1"}}})
    first["metadata"]["labels"] = {"a": "2"}
    with pytest.raises(errors.Conflict):
        await client.update(kinds.SERVICES, first)
    current = await client.get(kinds.SERVICES, namespace, "cas")
    assert current["metadata"]["labels"] == {"a": "1"}


async def test_an_update_from_the_current_version_is_stored(
    client: rest.Client, namespace: str
) -> None:
    current = await client.create(kinds.SERVICES, namespace, service("put"))
    current["metadata"]["labels"] = {"tier": "web"}
    updated = await client.update(kinds.SERVICES, current)
    assert updated["metadata"]["labels"] == {"tier": "web"}
    assert int(updated["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])


async def test_an_invalid_object_raises_invalid_naming_the_field(
    client: rest.Client, namespace: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await client.create(kinds.SERVICES, namespace, service("Not_A_Label"))
    fields = [c.get("field") for c in caught.value.status["details"]["causes"]]
    assert "metadata.name" in fields


async def test_merge_json_and_strategic_patches_each_change_the_object(
    client: rest.Client, namespace: str
) -> None:
    await client.create(kinds.SERVICES, namespace, service("patched"))
    await client.patch(kinds.SERVICES, namespace, "patched", {"metadata": {"labels": {"m": "1"}}})
    await client.patch(
        kinds.SERVICES,
        namespace,
        "patched",
        [{"op": "add", "path": "/metadata/labels/j", "value": "2"}],
        patch_type="json",
    )
    result = await client.patch(
        kinds.SERVICES,
        namespace,
        "patched",
        {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}},
        patch_type="strategic",
    )
    assert result["metadata"]["labels"] == {"m": "1", "j": "2"}
    # Strategic merge matches ports by their merge key: port 80 gains a name, 443 is added.
    assert sorted((p["port"], p["name"]) for p in result["spec"]["ports"]) == [
        (80, "http"),
        (443, "https"),
    ]


async def test_list_all_follows_continue_tokens_across_pages(
    client: rest.Client, namespace: str
) -> None:
    await asyncio.gather(
        *(client.create(kinds.SERVICES, namespace, service(f"s{i}")) for i in range(7))
    )
    first = await client.list(kinds.SERVICES, namespace, limit=3)
    assert len(first["items"]) == 3 and first["metadata"]["continue"]
    items, resource_version = await client.list_all(kinds.SERVICES, namespace, page_size=3)
    assert sorted(i["metadata"]["name"] for i in items) == [f"s{i}" for i in range(7)]
    assert all(i["kind"] == "Service" and i["apiVersion"] == "v1" for i in items)
    assert int(resource_version) >= int(first["metadata"]["resourceVersion"])


async def test_label_and_field_selectors_filter_a_list(client: rest.Client, namespace: str) -> None:
    await client.create(kinds.SERVICES, namespace, service("blue", {"color": "blue"}))
    await client.create(kinds.SERVICES, namespace, service("red", {"color": "red"}))
    blue, _ = await client.list_all(kinds.SERVICES, namespace, label_selector="color=blue")
    named, _ = await client.list_all(kinds.SERVICES, namespace, field_selector="metadata.name=red")
    assert [i["metadata"]["name"] for i in blue] == ["blue"]
    assert [i["metadata"]["name"] for i in named] == ["red"]


async def test_a_delete_with_a_wrong_uid_precondition_changes_nothing(
    client: rest.Client, namespace: str
) -> None:
    await client.create(kinds.SERVICES, namespace, service("guarded"))
    with pytest.raises(errors.Conflict):
        await client.delete(
            kinds.SERVICES, namespace, "guarded", preconditions={"uid": "not-the-uid"}
        )
    await client.get(kinds.SERVICES, namespace, "guarded")
    await client.delete(kinds.SERVICES, namespace, "guarded")
    with pytest.raises(errors.NotFound):
        await client.get(kinds.SERVICES, namespace, "guarded")


async def test_a_pod_bound_through_its_binding_subresource_has_its_node_name(
    client: rest.Client, namespace: str
) -> None:
    await client.create(kinds.PODS, namespace, pod("bindme"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "bindme"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    }
    await client.create(kinds.PODS, namespace, binding, subresource="binding")
    bound = await client.get(kinds.PODS, namespace, "bindme")
    assert bound["spec"]["nodeName"] == "node-1"


async def test_a_status_update_through_the_subresource_changes_the_status(
    client: rest.Client, namespace: str
) -> None:
    created = await client.create(kinds.PODS, namespace, pod("phased"))
    created["status"] = {"phase": "Running"}
    await client.update(kinds.PODS, created, subresource="status")
    got = await client.get(kinds.PODS, namespace, "phased", subresource="status")
    assert got["status"]["phase"] == "Running"


async def test_a_cluster_scoped_object_is_read_without_a_namespace(
    client: rest.Client, namespace: str
) -> None:
    got = await client.get(kinds.NAMESPACES, None, namespace)
    assert got["metadata"]["name"] == namespace


async def test_an_unreachable_server_raises_transport_error() -> None:
    async with rest.Client.for_server("http://127.0.0.1:9") as dead:
        with pytest.raises(errors.TransportError):
            await dead.get(kinds.SERVICES, "default", "anything")


# ---- watch -------------------------------------------------------------------------------


async def test_a_watch_from_a_resource_version_streams_later_changes_in_order(
    client: rest.Client, namespace: str
) -> None:
    _, resource_version = await client.list_all(kinds.SERVICES, namespace)
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        stream = client.watch(
            kinds.SERVICES, namespace, resource_version=resource_version, allow_bookmarks=False
        )
        async with contextlib.aclosing(stream) as events_:
            async for ev in events_:
                seen.append((ev.type, ev.object["metadata"]["name"]))
                if len(seen) == 3:
                    return

    task = asyncio.create_task(consume())
    await client.create(kinds.SERVICES, namespace, service("w"))
    await client.patch(kinds.SERVICES, namespace, "w", {"metadata": {"labels": {"v": "2"}}})
    await client.delete(kinds.SERVICES, namespace, "w")
    await asyncio.wait_for(task, timeout=10)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_a_watch_that_allows_bookmarks_receives_them(
    client: rest.Client, namespace: str
) -> None:
    _, resource_version = await client.list_all(kinds.SERVICES, namespace)

    async def first_bookmark() -> rest.WatchEvent:
        stream = client.watch(kinds.SERVICES, namespace, resource_version=resource_version)
        async with contextlib.aclosing(stream) as events_:
            async for ev in events_:
                if ev.type == "BOOKMARK":
                    return ev
        raise AssertionError("the watch ended without a bookmark")

    bookmark = await asyncio.wait_for(first_bookmark(), timeout=10)
    assert bookmark.object["kind"] == "Service"
    assert "resourceVersion" in bookmark.object["metadata"]


async def test_a_bookmark_carries_a_resource_version_no_older_than_the_watch_start(
    client: rest.Client, namespace: str
) -> None:
    _, resource_version = await client.list_all(kinds.SERVICES, namespace)

    async def first_bookmark() -> rest.WatchEvent:
        stream = client.watch(kinds.SERVICES, namespace, resource_version=resource_version)
        async with contextlib.aclosing(stream) as events_:
            async for ev in events_:
                if ev.type == "BOOKMARK":
                    return ev
        raise AssertionError("the watch ended without a bookmark")

    bookmark = await asyncio.wait_for(first_bookmark(), timeout=10)
    assert int(bookmark.object["metadata"]["resourceVersion"]) >= int(resource_version)


async def test_a_watch_with_a_malformed_resource_version_raises_bad_request(
    client: rest.Client, namespace: str
) -> None:
    with pytest.raises(errors.APIError) as caught:
        async for _ in client.watch(kinds.SERVICES, namespace, resource_version="not-a-number"):
            pass
    assert caught.value.code == 400


async def test_a_watch_ends_when_the_server_closes_it_at_its_timeout(
    client: rest.Client, namespace: str
) -> None:
    _, resource_version = await client.list_all(kinds.SERVICES, namespace)
    stream = client.watch(
        kinds.SERVICES,
        namespace,
        resource_version=resource_version,
        allow_bookmarks=False,
        timeout_seconds=1,
    )
    received = [ev async for ev in stream]
    assert received == []


# ---- informers ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(inf: informer.Informer) -> AsyncIterator[informer.Informer]:
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.wait_synced(), timeout=10)
        yield inf
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_informer_lists_existing_services_then_follows_changes(
    client: rest.Client, namespace: str
) -> None:
    await client.create(kinds.SERVICES, namespace, service("before", {"app": "a"}))
    inf = informer.Informer(client, kinds.SERVICES, namespace, page_size=1)
    inf.add_index("app", informer.label_index("app"))
    seen: list[tuple[str, str]] = []
    inf.add_handlers(
        on_add=lambda o: seen.append(("add", informer.key_of(o))),
        on_update=lambda old, new: seen.append(("update", informer.key_of(new))),
        on_delete=lambda o: seen.append(("delete", informer.key_of(o))),
    )
    async with running(inf):
        assert seen == [("add", f"{namespace}/before")]
        await client.create(kinds.SERVICES, namespace, service("after", {"app": "b"}))
        await client.patch(
            kinds.SERVICES, namespace, "before", {"metadata": {"labels": {"app": "b"}}}
        )
        await client.delete(kinds.SERVICES, namespace, "after")
        await eventually(lambda: len(seen) == 4)
        assert seen[1:] == [
            ("add", f"{namespace}/after"),
            ("update", f"{namespace}/before"),
            ("delete", f"{namespace}/after"),
        ]
        assert inf.keys() == [f"{namespace}/before"]
        assert inf.keys_by_index("app", f"{namespace}/b") == [f"{namespace}/before"]
        assert inf.keys_by_index("app", f"{namespace}/a") == []


async def test_an_informer_indexes_pods_by_node_and_honours_its_label_selector(
    client: rest.Client, namespace: str
) -> None:
    for name, node in (("p1", "n1"), ("p2", "n1"), ("p3", "n2")):
        spec = pod(name, {"role": "web"})
        spec["spec"]["nodeName"] = node
        await client.create(kinds.PODS, namespace, spec)
    await client.create(kinds.PODS, namespace, pod("other", {"role": "db"}))
    inf = informer.Informer(client, kinds.PODS, namespace, label_selector="role=web")
    inf.add_index(informer.NODE, informer.node_index)
    async with running(inf):
        assert len(inf) == 3
        assert inf.keys_by_index(informer.NODE, "n1") == [f"{namespace}/p1", f"{namespace}/p2"]
        await client.delete(kinds.PODS, namespace, "p3", grace_period_seconds=0)
        await eventually(lambda: inf.keys_by_index(informer.NODE, "n2") == [])


# ---- leader election ---------------------------------------------------------------------


class Candidate:
    """A leader elector running in a task, noting whether its work is running."""

    def __init__(self, client: rest.Client, namespace: str, identity: str, **kw: Any) -> None:
        self.elector = leaderelection.LeaderElector(
            client,
            namespace,
            "controller-manager",
            identity,
            lease_duration=kw.pop("lease_duration", 2),
            renew_deadline=kw.pop("renew_deadline", 1.5),
            retry_period=kw.pop("retry_period", 0.2),
            **kw,
        )
        self.working = False
        self.started = 0
        self.task = asyncio.create_task(self.elector.run(self.work))

    async def work(self) -> None:
        self.started += 1
        self.working = True
        try:
            await asyncio.Event().wait()
        finally:
            self.working = False

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def lease_of(client: rest.Client, namespace: str) -> Obj:
    return await client.get(kinds.LEASES, namespace, "controller-manager")


async def test_of_two_candidates_exactly_one_leads_and_the_other_takes_over_when_it_stops(
    client: rest.Client, namespace: str
) -> None:
    a, b = Candidate(client, namespace, "a"), Candidate(client, namespace, "b")
    try:
        await eventually(lambda: a.working or b.working)
        await asyncio.sleep(1)  # several renewals: the standby must stay standing by
        assert [a.working, b.working].count(True) == 1
        leader, standby = (a, b) if a.working else (b, a)
        lease = await lease_of(client, namespace)
        assert lease["spec"]["holderIdentity"] == leader.elector.identity
        assert lease["spec"]["leaseDurationSeconds"] == 2
        transitions = lease["spec"]["leaseTransitions"]

        await leader.stop()
        assert not leader.working
        await eventually(
            lambda: standby.working, within=10
        )  # released: no lease to wait out (slack for loaded machines)
        lease = await lease_of(client, namespace)
        assert lease["spec"]["holderIdentity"] == standby.elector.identity
        assert lease["spec"]["leaseTransitions"] == transitions + 1
        assert standby.elector.is_leader()
    finally:
        await a.stop()
        await b.stop()


async def test_a_crashed_leaders_lease_is_taken_over_only_after_it_expires(
    client: rest.Client, namespace: str
) -> None:
    first = Candidate(client, namespace, "first", release_on_cancel=False)
    await eventually(lambda: first.working)
    await first.stop()  # gone without releasing, as a killed process would be
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    second = Candidate(client, namespace, "second")
    try:
        await eventually(lambda: second.working, within=6)
        # The newcomer must see the Lease unchanged for a whole lease duration first.
        assert loop.time() - stopped_at >= 2
        assert (await lease_of(client, namespace))["spec"]["holderIdentity"] == "second"
    finally:
        await second.stop()


async def test_a_leader_whose_lease_is_taken_stops_its_work_before_the_lease_could_expire(
    client: rest.Client, namespace: str
) -> None:
    leader = Candidate(client, namespace, "leader")
    try:
        await eventually(lambda: leader.working)
        lease = await lease_of(client, namespace)
        lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=60)
        await client.update(kinds.LEASES, lease)
        loop = asyncio.get_running_loop()
        taken_at = loop.time()
        await eventually(lambda: not leader.working, within=4)
        # It gives up at its renew deadline (1.5 s), before a lease duration (2 s) has passed.
        assert loop.time() - taken_at < 2
        await asyncio.wait_for(leader.task, timeout=2)  # run() returns once leadership is lost
        assert (await lease_of(client, namespace))["spec"]["holderIdentity"] == "intruder"
    finally:
        await leader.stop()


# ---- events ------------------------------------------------------------------------------


async def test_a_recorded_event_names_the_object_reason_and_component(
    client: rest.Client, namespace: str
) -> None:
    svc = await client.create(kinds.SERVICES, namespace, service("noted"))
    recorder = events.EventRecorder(client, "endpointslice-controller", host="node-1")
    recorder.record(svc, "Warning", "FailedToUpdateEndpointSlices", "it went wrong")
    await recorder.close()
    listed, _ = await client.list_all(kinds.EVENTS, namespace)
    assert len(listed) == 1
    event = listed[0]
    assert event["involvedObject"]["kind"] == "Service"
    assert event["involvedObject"]["name"] == "noted"
    assert event["involvedObject"]["uid"] == svc["metadata"]["uid"]
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "FailedToUpdateEndpointSlices",
        "it went wrong",
    )
    assert event["source"] == {"component": "endpointslice-controller", "host": "node-1"}
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_repeated_identical_events_become_one_event_with_a_count(
    client: rest.Client, namespace: str
) -> None:
    svc = await client.create(kinds.SERVICES, namespace, service("noisy"))
    recorder = events.EventRecorder(client, "test")
    for _ in range(3):
        recorder.record(svc, "Normal", "Synced", "all good")
    recorder.record(svc, "Normal", "Synced", "something else")
    await recorder.close()
    listed, _ = await client.list_all(kinds.EVENTS, namespace)
    counts = sorted((e["message"], e["count"]) for e in listed)
    assert counts == [("all good", 3), ("something else", 1)]


async def test_an_event_about_a_cluster_scoped_object_is_written_to_default(
    client: rest.Client, namespace: str
) -> None:
    node_name = f"node-{namespace}"
    node = await client.create(kinds.NODES, None, {"metadata": {"name": node_name}})
    recorder = events.EventRecorder(client, "test")
    try:
        recorder.record(node, "Normal", "Registered", "node registered")
        await recorder.close()
        listed, _ = await client.list_all(
            kinds.EVENTS, "default", field_selector=f"involvedObject.name={node_name}"
        )
        assert [e["reason"] for e in listed] == ["Registered"]
    finally:
        await client.delete(kinds.NODES, None, node_name)


def test_an_event_type_other_than_normal_or_warning_is_refused(client: rest.Client) -> None:
    recorder = events.EventRecorder(client, "test")
    with pytest.raises(ValueError, match="Normal"):
        recorder.record({}, "Error", "X", "y")  # type: ignore[arg-type]
