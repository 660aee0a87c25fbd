"""The endpoint controllers' event handling and syncs, on informer caches fed by hand.

No server: informers are filled with `replace`/`apply` as a list and a watch
would, a fake client records the writes a sync makes and answers them as the
apiserver would (a name, a uid, a new resourceVersion), and the work queue
runs on a fake clock so delayed keys show up when the test says so.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from switchboard.api import kinds
from switchboard.api.kinds import ResourceKind
from switchboard.client import rest, workqueue
from switchboard.client.informer import Informer
from switchboard.controllers import servicepods
from switchboard.controllers.endpoints import EndpointsController
from switchboard.controllers.endpointslice import EndpointSliceController
from tests.unit.test_slicing import NODES, pod, service
from tests.unit.test_workqueue import FakeClock

Obj = dict[str, Any]


class FakeClient:
    """Records writes; answers like the apiserver with names, uids and resourceVersions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.results: list[Obj] = []
        self._ids = itertools.count(1000)

    def _stored(self, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        meta = out["metadata"]
        n = next(self._ids)
        if not meta.get("name"):
            meta["name"] = f"{meta['generateName']}{n}"
        meta.setdefault("uid", f"uid-{n}")
        meta["resourceVersion"] = str(n)
        self.results.append(out)
        return out

    async def create(self, kind: ResourceKind, namespace: str | None, obj: Obj) -> Obj:
        stored = self._stored(obj)
        self.calls.append(("create", kind.plural, stored["metadata"]["name"]))
        return stored

    async def update(self, kind: ResourceKind, obj: Obj) -> Obj:
        self.calls.append(("update", kind.plural, obj["metadata"]["name"]))
        return self._stored(obj)

    async def delete(self, kind: ResourceKind, namespace: str | None, name: str) -> Obj:
        self.calls.append(("delete", kind.plural, name))
        return {}


class Harness:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.clock = FakeClock()
        c: rest.Client = self.client  # type: ignore[assignment]
        self.pods = Informer(c, kinds.PODS)
        self.services = Informer(c, kinds.SERVICES)
        self.nodes = Informer(c, kinds.NODES)
        self.slices = Informer(c, kinds.ENDPOINTSLICES)
        self.endpoints = Informer(c, kinds.ENDPOINTS)
        self.nodes.replace(NODES.values(), "1")
        for inf in (self.pods, self.services, self.slices, self.endpoints):
            inf.replace([], "1")

    def slice_controller(self) -> EndpointSliceController:
        return EndpointSliceController(
            self.client,  # type: ignore[arg-type]
            self.pods,
            self.services,
            self.nodes,
            self.slices,
            queue_clock=self.clock,
        )

    def endpoints_controller(self) -> EndpointsController:
        return EndpointsController(
            self.client,  # type: ignore[arg-type]
            self.pods,
            self.services,
            self.endpoints,
            queue_clock=self.clock,
        )


def event(type_: str, obj: Obj) -> rest.WatchEvent:
    return rest.WatchEvent(type_, obj)  # type: ignore[arg-type]


async def drain(queue: workqueue.WorkQueue) -> set[str]:
    """Every key ready in the queue now, taken out."""
    keys: set[str] = set()
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.add(key)
    return keys


# --- pod → Service mapping --------------------------------------------------------------------


def test_a_pod_maps_to_the_services_whose_selector_its_labels_satisfy() -> None:
    h = Harness()
    index = servicepods.ServicePods(h.services, h.pods)
    h.services.replace(
        [
            service("web", selector={"app": "web"}),
            service("web-canary", selector={"app": "web", "track": "canary"}),
            service("api", selector={"app": "api"}),
            service("manual", selector={}),
        ],
        "2",
    )
    assert index.services_for_pod(pod("a", labels={"app": "web"})) == {"default/web"}
    canary = pod("b", labels={"app": "web", "track": "canary"})
    assert index.services_for_pod(canary) == {"default/web", "default/web-canary"}
    elsewhere = pod("c", labels={"app": "web"})
    elsewhere["metadata"]["namespace"] = "elsewhere"
    assert index.services_for_pod(elsewhere) == set()


def test_a_service_finds_exactly_the_pods_its_selector_matches() -> None:
    h = Harness()
    index = servicepods.ServicePods(h.services, h.pods)
    h.pods.replace(
        [
            pod("a", labels={"app": "web", "track": "canary"}),
            pod("b", labels={"app": "web"}),
            pod("c", labels={"track": "canary"}),
        ],
        "2",
    )
    canary = service("canary", selector={"app": "web", "track": "canary"})
    assert [p["metadata"]["name"] for p in index.pods_for(canary)] == ["a"]
    assert index.pods_for(service("none", selector={})) == []


def test_a_pod_update_that_changes_nothing_an_endpoint_shows_syncs_no_service() -> None:
    h = Harness()
    index = servicepods.ServicePods(h.services, h.pods)
    h.services.replace([service("web")], "2")
    old = pod("a")
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "8"
    new["metadata"]["annotations"] = {"note": "x"}
    assert index.services_to_update(old, new) == set()
    new["status"]["conditions"][0]["status"] = "False"
    assert index.services_to_update(old, new) == {"default/web"}


def test_a_pod_relabelled_between_services_syncs_the_one_it_left_and_the_one_it_joined() -> None:
    h = Harness()
    index = servicepods.ServicePods(h.services, h.pods)
    h.services.replace(
        [
            service("blue", selector={"color": "blue"}),
            service("tier", selector={"tier": "x"}),
            service("green", selector={"color": "green"}),
        ],
        "2",
    )
    old = pod("a", labels={"color": "blue", "tier": "x"})
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "8"
    new["metadata"]["labels"]["color"] = "green"
    assert index.services_to_update(old, new) == {"default/blue", "default/green"}


# --- EndpointSlice controller -----------------------------------------------------------------


async def test_a_pod_event_queues_only_the_services_that_select_the_pod() -> None:
    h = Harness()
    controller = h.slice_controller()
    h.services.replace([service("web"), service("api", selector={"app": "api"})], "2")
    await drain(controller.queue)
    h.pods.apply(event("ADDED", pod("a")))
    assert await drain(controller.queue) == {"default/web"}


async def test_a_synced_service_whose_slices_the_cache_shows_needs_no_more_writes() -> None:
    h = Harness()
    controller = h.slice_controller()
    h.services.replace([service("web")], "2")
    h.pods.replace([pod("a", "10.0.0.1"), pod("b", "10.0.0.2")], "2")
    await controller.sync("default/web")
    assert [call[0] for call in h.client.calls] == ["create"]
    h.slices.apply(event("ADDED", h.client.results[-1]))
    await controller.sync("default/web")
    assert len(h.client.calls) == 1


async def test_a_sync_waits_while_the_cache_lacks_the_slice_it_just_created() -> None:
    h = Harness()
    controller = h.slice_controller()
    h.services.replace([service("web")], "2")
    h.pods.replace([pod("a", "10.0.0.1")], "2")
    await controller.sync("default/web")
    h.pods.apply(event("ADDED", pod("b", "10.0.0.2")))
    await drain(controller.queue)
    await controller.sync("default/web")  # the created slice is not in the cache yet
    assert len(h.client.calls) == 1, "a stale cache must not lead to a second create"
    # As soon as the informer delivers our slice, the Service is synced again.
    h.slices.apply(event("ADDED", h.client.results[-1]))
    assert await drain(controller.queue) == {"default/web"}
    await controller.sync("default/web")
    assert h.client.calls[-1][0] == "update"


async def test_our_own_slice_write_queues_nothing_but_someone_elses_edit_does() -> None:
    h = Harness()
    controller = h.slice_controller()
    h.services.replace([service("web")], "2")
    h.pods.replace([pod("a", "10.0.0.1")], "2")
    await controller.sync("default/web")
    await drain(controller.queue)
    ours = h.client.results[-1]
    h.slices.apply(event("ADDED", ours))
    h.clock.advance(5)
    assert await drain(controller.queue) == set()

    theirs = copy.deepcopy(ours)
    theirs["metadata"]["resourceVersion"] = "5000"
    theirs["endpoints"] = []
    h.slices.apply(event("MODIFIED", theirs))
    h.clock.advance(5)
    assert await drain(controller.queue) == {"default/web"}


async def test_selectorless_and_external_name_services_get_no_writes() -> None:
    h = Harness()
    controller = h.slice_controller()
    external = service("ext")
    external["spec"]["type"] = "ExternalName"
    h.services.replace([service("manual", selector={}), external], "2")
    h.pods.replace([pod("a", "10.0.0.1")], "2")
    await controller.sync("default/manual")
    await controller.sync("default/ext")
    assert h.client.calls == []


# --- Endpoints controller ---------------------------------------------------------------------


async def test_the_endpoints_of_a_deleted_service_are_deleted() -> None:
    h = Harness()
    controller = h.endpoints_controller()
    h.endpoints.replace([{"metadata": {"name": "gone", "namespace": "default"}}], "2")
    await controller.sync("default/gone")
    assert h.client.calls == [("delete", "endpoints", "gone")]


async def test_the_endpoints_are_created_then_rewritten_only_when_they_change() -> None:
    h = Harness()
    controller = h.endpoints_controller()
    h.services.replace([service("web")], "2")
    h.pods.replace([pod("a", "10.0.0.1")], "2")
    await controller.sync("default/web")
    assert h.client.calls == [("create", "endpoints", "web")]
    h.endpoints.apply(event("ADDED", h.client.results[-1]))
    await controller.sync("default/web")
    assert len(h.client.calls) == 1
    h.pods.apply(event("MODIFIED", pod("a", "10.0.0.1", ready=False)))
    await controller.sync("default/web")
    assert h.client.calls[-1] == ("update", "endpoints", "web")
