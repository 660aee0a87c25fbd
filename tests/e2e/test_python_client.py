"""The official `kubernetes` Python client drives the apiserver unchanged.

The same flows the kubectl tests cover — create, read, list, replace, the
three patch types, delete, subresources, selectors and paging, the error
Statuses, watches with bookmarks — through `kubernetes.client` and
`kubernetes.watch`, whose typed models also check every answer's shape.
The server runs as its own process (see `apiserver_process`); each test
works in a namespace of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from switchboard.apiserver import app as app_module
from switchboard.apiserver import lifecycle
from switchboard.apiserver.registry import Registry
from switchboard.apiserver.server import write_kubeconfig
from switchboard.store.sqlite import SQLiteStore
from tests.e2e.apiserver_process import ApiServer, running_apiserver

pytestmark = pytest.mark.e2e

MERGE_PATCH = "application/merge-patch+json"
T = TypeVar("T")

# The client's config and watch modules carry no annotations.
load_kube_config: Any = config.load_kube_config
Watch: Any = watch.Watch


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(tmp_path_factory.mktemp("apiserver"), "--bookmark-interval", "1") as srv:
        yield srv


def new_api_client(srv: ApiServer) -> client.ApiClient:
    cfg = client.Configuration()
    load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


@pytest.fixture(scope="module")
def api(apiserver: ApiServer) -> Iterator[client.ApiClient]:
    with new_api_client(apiserver) as api_client:
        yield api_client


@pytest.fixture
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)


@pytest.fixture
def namespace(core: Any) -> Iterator[str]:
    name = "py-" + uuid.uuid4().hex[:10]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)


# ---- helpers -------------------------------------------------------------------------------


def failure(call: Callable[[], Any]) -> tuple[ApiException, dict[str, Any]]:
    """Run a call that must fail; return the exception and its Status body."""
    with pytest.raises(ApiException) as info:
        call()
    body = json.loads(info.value.body or "")
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == info.value.status
    return info.value, body


def service_body(name: str, *, labels: dict[str, str] | None = None, port: int = 80) -> Any:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1ServiceSpec(
            selector={"app": name},
            ports=[client.V1ServicePort(name="http", port=port, target_port=8080)],
        ),
    )


def deployment_body(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }


def pod_body(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
    }


def wait_until(check: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.1)


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


# ---- namespaces ----------------------------------------------------------------------------


def test_a_namespace_is_created_read_listed_patched_and_deleted(core: Any) -> None:
    name = "py-ns-" + uuid.uuid4().hex[:8]
    created = core.create_namespace({"metadata": {"name": name}})
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == name

    assert core.read_namespace(name).metadata.uid == created.metadata.uid
    listed = core.list_namespace(label_selector=f"kubernetes.io/metadata.name={name}")
    assert [ns.metadata.name for ns in listed.items] == [name]

    patched = core.patch_namespace(name, {"metadata": {"labels": {"team": "blue"}}})
    assert patched.metadata.labels["team"] == "blue"

    deleted = core.delete_namespace(name)
    assert deleted is not None
    wait_until(lambda: gone(lambda: core.read_namespace(name)), what="namespace removal")


def test_deleting_a_namespace_removes_everything_in_it(core: Any, apps: Any) -> None:
    name = "py-doomed-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_service(name, service_body("web"))
    core.create_namespaced_pod(name, pod_body("web-1"))
    apps.create_namespaced_deployment(name, deployment_body("web"))
    core.create_namespaced_endpoints(name, {"metadata": {"name": "web"}})

    terminating = core.delete_namespace(name)
    assert terminating is not None
    assert core.read_namespace(name).status.phase == "Terminating"

    wait_until(lambda: gone(lambda: core.read_namespace(name)), what="namespace removal")
    assert core.list_namespaced_service(name).items == []
    assert core.list_namespaced_pod(name).items == []
    assert core.list_namespaced_endpoints(name).items == []
    assert apps.list_namespaced_deployment(name).items == []


def test_nothing_can_be_created_in_a_terminating_namespace(core: Any) -> None:
    name = "py-closing-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name, "finalizers": ["example.com/hold"]}})
    core.create_namespaced_pod(name, pod_body("keeps-it-open"))
    core.delete_namespace(name)

    exc, body = failure(lambda: core.create_namespaced_service(name, service_body("late")))
    assert exc.status == 403
    assert body["reason"] == "Forbidden"
    assert "because it is being terminated" in body["message"]


def test_creating_in_a_namespace_that_does_not_exist_is_not_found(
    core: Any,
) -> None:
    exc, body = failure(lambda: core.create_namespaced_service("no-such-ns", service_body("x")))
    assert exc.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'namespaces "no-such-ns" not found'


# ---- services: every verb --------------------------------------------------------------------


def test_a_service_is_created_read_listed_replaced_and_deleted(core: Any, namespace: str) -> None:
    created = core.create_namespaced_service(namespace, service_body("web"))
    assert created.metadata.namespace == namespace
    assert created.metadata.uid
    assert created.spec.ports[0].protocol == "TCP"
    assert created.spec.type == "ClusterIP"

    read = core.read_namespaced_service("web", namespace)
    assert read.metadata.resource_version == created.metadata.resource_version

    listed = core.list_namespaced_service(namespace)
    assert [s.metadata.name for s in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    read.spec.ports[0].port = 8081
    replaced = core.replace_namespaced_service("web", namespace, read)
    assert replaced.spec.ports[0].port == 8081
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    deleted = core.delete_namespaced_service("web", namespace)
    assert deleted is not None
    exc, _ = failure(lambda: core.read_namespaced_service("web", namespace))
    assert exc.status == 404


def test_a_strategic_merge_patch_merges_service_ports_by_port(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("web"))
    patched = core.patch_namespaced_service(
        "web", namespace, {"spec": {"ports": [{"name": "metrics", "port": 9090}]}}
    )
    assert sorted((p.name, p.port) for p in patched.spec.ports) == [
        ("http", 80),
        ("metrics", 9090),
    ]


def test_a_merge_patch_replaces_the_whole_ports_list(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("web"))
    patched = core.patch_namespaced_service(
        "web",
        namespace,
        {"metadata": {"labels": {"tier": "front"}}, "spec": {"ports": [{"port": 9090}]}},
        _content_type=MERGE_PATCH,
    )
    assert [p.port for p in patched.spec.ports] == [9090]
    assert patched.metadata.labels == {"tier": "front"}


def test_a_json_patch_applies_its_operations_in_order(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("web"))
    patched = core.patch_namespaced_service(
        "web",
        namespace,
        [
            {"op": "add", "path": "/metadata/labels", "value": {"a": "1"}},
            {"op": "replace", "path": "/spec/ports/0/port", "value": 8443},
            {"op": "test", "path": "/spec/ports/0/name", "value": "http"},
        ],
    )
    assert patched.metadata.labels == {"a": "1"}
    assert patched.spec.ports[0].port == 8443


def test_a_json_patch_whose_test_fails_changes_nothing(core: Any, namespace: str) -> None:
    before = core.create_namespaced_service(namespace, service_body("web"))
    exc, body = failure(
        lambda: core.patch_namespaced_service(
            "web",
            namespace,
            [
                {"op": "replace", "path": "/spec/ports/0/port", "value": 8443},
                {"op": "test", "path": "/spec/ports/0/name", "value": "not-http"},
            ],
        )
    )
    assert exc.status == 422
    assert body["reason"] == "Invalid"
    assert (
        body["message"]
        == 'test failed: the value at "/spec/ports/0/name" is "http", not "not-http"'
    )
    after = core.read_namespaced_service("web", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.ports[0].port == 80


def test_replacing_with_a_stale_resource_version_is_a_conflict(core: Any, namespace: str) -> None:
    stale = core.create_namespaced_service(namespace, service_body("web"))
    core.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"v": "2"}}})

    stale.spec.ports[0].port = 81
    exc, body = failure(lambda: core.replace_namespaced_service("web", namespace, stale))
    assert exc.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on services "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_service("web", namespace).spec.ports[0].port == 80


def test_reading_a_missing_service_is_not_found(core: Any, namespace: str) -> None:
    exc, body = failure(lambda: core.read_namespaced_service("nope", namespace))
    assert exc.status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'services "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "services"}


def test_deleting_a_missing_service_is_not_found(core: Any, namespace: str) -> None:
    exc, body = failure(lambda: core.delete_namespaced_service("nope", namespace))
    assert exc.status == 404
    assert body["reason"] == "NotFound"


def test_creating_a_service_twice_is_already_exists(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("web"))
    exc, body = failure(lambda: core.create_namespaced_service(namespace, service_body("web")))
    assert exc.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'services "web" already exists'


def test_an_invalid_service_is_rejected_with_one_cause_per_field(core: Any, namespace: str) -> None:
    exc, body = failure(
        lambda: core.create_namespaced_service(
            namespace,
            {"metadata": {"name": "Bad_Name"}, "spec": {"ports": [{"port": 0}]}},
        )
    )
    assert exc.status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Service"
    assert body["details"]["name"] == "Bad_Name"
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert {"metadata.name", "spec.ports[0].port"} <= fields
    assert body["message"].startswith('Service "Bad_Name" is invalid: ')
    assert gone(lambda: core.read_namespaced_service("Bad_Name", namespace))


def test_generate_name_gives_each_object_a_unique_name_with_the_prefix(
    core: Any, namespace: str
) -> None:
    body = {"metadata": {"generateName": "web-"}, "spec": {"ports": [{"port": 80}]}}
    first = core.create_namespaced_service(namespace, body)
    second = core.create_namespaced_service(namespace, body)
    for svc in (first, second):
        assert svc.metadata.name.startswith("web-")
        assert len(svc.metadata.name) == len("web-") + 5
        assert svc.metadata.generate_name == "web-"
    assert first.metadata.name != second.metadata.name
    names = {s.metadata.name for s in core.list_namespaced_service(namespace).items}
    assert names == {first.metadata.name, second.metadata.name}


# ---- lists: selectors and paging ---------------------------------------------------------------


def test_services_are_listed_by_label_selector(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("a", labels={"tier": "front"}))
    core.create_namespaced_service(namespace, service_body("b", labels={"tier": "back"}))
    core.create_namespaced_service(namespace, service_body("c"))

    def names(selector: str) -> list[str]:
        listed = core.list_namespaced_service(namespace, label_selector=selector)
        return [s.metadata.name for s in listed.items]

    assert names("tier=front") == ["a"]
    assert names("tier!=front") == ["b", "c"]
    assert names("tier in (front,back)") == ["a", "b"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]


def test_services_are_listed_by_field_selector(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("a"))
    core.create_namespaced_service(namespace, service_body("b"))
    listed = core.list_namespaced_service(namespace, field_selector="metadata.name=b")
    assert [s.metadata.name for s in listed.items] == ["b"]
    everywhere = core.list_service_for_all_namespaces(
        field_selector=f"metadata.namespace={namespace},metadata.name!=b"
    )
    assert [s.metadata.name for s in everywhere.items] == ["a"]


def test_an_unknown_field_selector_is_a_bad_request(core: Any, namespace: str) -> None:
    exc, body = failure(
        lambda: core.list_namespaced_service(namespace, field_selector="spec.nope=1")
    )
    assert exc.status == 400
    assert body["reason"] == "BadRequest"
    assert body["message"] == "field label not supported: spec.nope"


def test_a_long_list_is_read_in_pages_with_limit_and_continue(core: Any, namespace: str) -> None:
    names = [f"svc-{i:02d}" for i in range(7)]
    for name in names:
        core.create_namespaced_service(namespace, service_body(name))

    pages: list[list[str]] = []
    token = None
    while True:
        page = core.list_namespaced_service(namespace, limit=3, _continue=token)
        pages.append([s.metadata.name for s in page.items])
        token = page.metadata._continue
        if not token:
            break
    assert pages == [names[0:3], names[3:6], names[6:7]]


def test_a_paged_list_keeps_the_snapshot_of_its_first_page(core: Any, namespace: str) -> None:
    for i in range(4):
        core.create_namespaced_service(namespace, service_body(f"svc-{i}"))
    first = core.list_namespaced_service(namespace, limit=2)
    core.delete_namespaced_service("svc-3", namespace)
    core.create_namespaced_service(namespace, service_body("svc-9"))

    rest = core.list_namespaced_service(namespace, limit=10, _continue=first.metadata._continue)
    assert [s.metadata.name for s in rest.items] == ["svc-2", "svc-3"]
    assert rest.metadata.resource_version == first.metadata.resource_version


def test_a_selective_list_is_paged_over_the_matching_items_only(core: Any, namespace: str) -> None:
    for i in range(6):
        labels = {"keep": "yes"} if i % 2 == 0 else None
        core.create_namespaced_service(namespace, service_body(f"svc-{i}", labels=labels))
    first = core.list_namespaced_service(namespace, label_selector="keep=yes", limit=2)
    assert [s.metadata.name for s in first.items] == ["svc-0", "svc-2"]
    assert first.metadata._continue
    rest = core.list_namespaced_service(
        namespace, label_selector="keep=yes", limit=2, _continue=first.metadata._continue
    )
    assert [s.metadata.name for s in rest.items] == ["svc-4"]


def test_a_garbled_continue_token_is_a_bad_request(core: Any, namespace: str) -> None:
    exc, body = failure(
        lambda: core.list_namespaced_service(namespace, limit=1, _continue="not-a-token")
    )
    assert exc.status == 400
    assert body["reason"] == "BadRequest"
    assert "continue" in body["message"]


def test_deletecollection_removes_only_the_selected_services(core: Any, namespace: str) -> None:
    core.create_namespaced_service(namespace, service_body("a", labels={"batch": "old"}))
    core.create_namespaced_service(namespace, service_body("b", labels={"batch": "old"}))
    core.create_namespaced_service(namespace, service_body("c", labels={"batch": "new"}))

    core.delete_collection_namespaced_service(namespace, label_selector="batch=old")

    remaining = core.list_namespaced_service(namespace)
    assert [s.metadata.name for s in remaining.items] == ["c"]


# ---- deployments, scale, replicasets -------------------------------------------------------


def test_a_deployment_is_created_read_replaced_patched_and_deleted(
    apps: Any, namespace: str
) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment_body("web"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"

    read = apps.read_namespaced_deployment("web", namespace)
    read.spec.template.spec.containers[0].image = "nginx:1.26"
    replaced = apps.replace_namespaced_deployment("web", namespace, read)
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.26"
    assert replaced.metadata.generation == 2

    # Strategic merge: containers merge by name, so a sidecar is added beside web.
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}},
    )
    assert sorted(c.name for c in patched.spec.template.spec.containers) == ["log", "web"]

    # JSON patch on a list element by index.
    patched = apps.patch_namespaced_deployment(
        "web", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    )
    assert patched.spec.replicas == 4

    listed = apps.list_namespaced_deployment(namespace, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]

    apps.delete_namespaced_deployment("web", namespace)
    assert gone(lambda: apps.read_namespaced_deployment("web", namespace))


def test_the_scale_subresource_reads_and_patches_replicas(apps: Any, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment_body("web", replicas=2))

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.kind == "Scale"
    assert scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=web"

    patched = apps.patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 5}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.replicas == 5
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 5

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    scale.spec.replicas = 1
    replaced = apps.replace_namespaced_deployment_scale("web", namespace, scale)
    assert replaced.spec.replicas == 1
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 1


def test_scaling_to_a_negative_count_is_invalid(apps: Any, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment_body("web", replicas=2))
    exc, body = failure(
        lambda: apps.patch_namespaced_deployment_scale(
            "web", namespace, {"spec": {"replicas": -1}}, _content_type=MERGE_PATCH
        )
    )
    assert exc.status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.replicas"]
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2


def test_a_deployment_whose_selector_misses_its_template_is_invalid(
    apps: Any, namespace: str
) -> None:
    body = deployment_body("web")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    exc, status = failure(lambda: apps.create_namespaced_deployment(namespace, body))
    assert exc.status == 422
    assert status["details"]["group"] == "apps"
    assert "spec.template.metadata.labels" in {c["field"] for c in status["details"]["causes"]}
    # The message names the group-qualified kind, as Kubernetes' NewInvalid does.
    assert status["message"].startswith('Deployment.apps "web" is invalid: ')


def test_a_replicaset_is_created_read_listed_patched_and_deleted(apps: Any, namespace: str) -> None:
    body = deployment_body("web-rs", replicas=2)
    del body["spec"]["replicas"]
    created = apps.create_namespaced_replica_set(namespace, body)
    assert created.spec.replicas == 1

    patched = apps.patch_namespaced_replica_set(
        "web-rs", namespace, {"spec": {"replicas": 3}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.replicas == 3
    listed = apps.list_namespaced_replica_set(namespace, label_selector="app=web-rs")
    assert [rs.metadata.name for rs in listed.items] == ["web-rs"]
    read = apps.read_namespaced_replica_set("web-rs", namespace)
    read.metadata.labels["rev"] = "2"
    assert apps.replace_namespaced_replica_set("web-rs", namespace, read).metadata.labels == {
        "app": "web-rs",
        "rev": "2",
    }
    apps.delete_namespaced_replica_set("web-rs", namespace)
    assert gone(lambda: apps.read_namespaced_replica_set("web-rs", namespace))


# ---- pods and their status -----------------------------------------------------------------


def test_a_pod_status_is_written_only_through_the_status_subresource(
    core: Any, namespace: str
) -> None:
    created = core.create_namespaced_pod(namespace, pod_body("web"))
    assert created.status.phase == "Pending"

    ignored = core.patch_namespaced_pod(
        "web", namespace, {"status": {"phase": "Running"}}, _content_type=MERGE_PATCH
    )
    assert ignored.status.phase == "Pending"

    patched = core.patch_namespaced_pod_status(
        "web",
        namespace,
        {"status": {"phase": "Running", "podIP": "10.0.0.7"}, "spec": {"nodeName": "ignored"}},
        _content_type=MERGE_PATCH,
    )
    assert patched.status.phase == "Running"
    assert patched.status.pod_ip == "10.0.0.7"
    assert patched.spec.node_name is None

    status = core.read_namespaced_pod_status("web", namespace)
    assert status.status.phase == "Running"
    running = core.list_namespaced_pod(namespace, field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["web"]


def test_a_pod_spec_is_immutable_but_its_image_is_not(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("web"))
    patched = core.patch_namespaced_pod(
        "web", namespace, {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}
    )
    assert patched.spec.containers[0].image == "nginx:1.26"

    exc, body = failure(
        lambda: core.patch_namespaced_pod(
            "web", namespace, {"spec": {"restartPolicy": "Never"}}, _content_type=MERGE_PATCH
        )
    )
    assert exc.status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["spec"]


def test_binding_assigns_a_pod_to_a_node_once(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("web"))
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="web"),
        target=client.V1ObjectReference(kind="Node", name="node-1"),
    )
    # The answer is a Status, as from Kubernetes, which the client cannot read as a Binding.
    resp = core.create_namespaced_pod_binding("web", namespace, binding, _preload_content=False)
    assert resp.status == 201
    assert json.loads(resp.data)["status"] == "Success"
    assert core.read_namespaced_pod("web", namespace).spec.node_name == "node-1"

    binding.target.name = "node-2"
    exc, body = failure(lambda: core.create_namespaced_pod_binding("web", namespace, binding))
    assert exc.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"].endswith('pod web is already assigned to node "node-1"')
    assert core.read_namespaced_pod("web", namespace).spec.node_name == "node-1"


def test_an_unbound_pod_is_deleted_at_once(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_body("web"))
    core.delete_namespaced_pod("web", namespace)
    assert gone(lambda: core.read_namespaced_pod("web", namespace))


# ---- endpoints and endpointslices -------------------------------------------------------------


def test_endpoints_are_created_replaced_patched_and_deleted(core: Any, namespace: str) -> None:
    body = client.V1Endpoints(
        metadata=client.V1ObjectMeta(name="web"),
        subsets=[
            client.V1EndpointSubset(
                addresses=[client.V1EndpointAddress(ip="10.0.0.1")],
                ports=[client.CoreV1EndpointPort(port=8080, name="http")],
            )
        ],
    )
    created = core.create_namespaced_endpoints(namespace, body)
    assert created.subsets[0].addresses[0].ip == "10.0.0.1"

    created.subsets[0].addresses.append(client.V1EndpointAddress(ip="10.0.0.2"))
    replaced = core.replace_namespaced_endpoints("web", namespace, created)
    assert [a.ip for a in replaced.subsets[0].addresses] == ["10.0.0.1", "10.0.0.2"]

    patched = core.patch_namespaced_endpoints(
        "web", namespace, {"metadata": {"labels": {"svc": "web"}}}
    )
    assert patched.metadata.labels == {"svc": "web"}
    assert len(patched.subsets[0].addresses) == 2

    core.delete_namespaced_endpoints("web", namespace)
    assert gone(lambda: core.read_namespaced_endpoints("web", namespace))


def test_endpointslices_are_created_listed_by_service_and_patched(
    api: client.ApiClient, namespace: str
) -> None:
    discovery: Any = client.DiscoveryV1Api(api)

    def slice_body(name: str, service: str, ip: str) -> Any:
        return client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name=name, labels={"kubernetes.io/service-name": service}),
            address_type="IPv4",
            endpoints=[
                client.V1Endpoint(
                    addresses=[ip], conditions=client.V1EndpointConditions(ready=True)
                )
            ],
            ports=[client.DiscoveryV1EndpointPort(name="http", port=8080, protocol="TCP")],
        )

    discovery.create_namespaced_endpoint_slice(namespace, slice_body("web-abc", "web", "10.0.0.1"))
    discovery.create_namespaced_endpoint_slice(namespace, slice_body("db-abc", "db", "10.0.0.9"))

    listed = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=web"
    )
    assert [s.metadata.name for s in listed.items] == ["web-abc"]
    assert listed.items[0].endpoints[0].conditions.ready is True

    patched = discovery.patch_namespaced_endpoint_slice(
        "web-abc",
        namespace,
        {"endpoints": [{"addresses": ["10.0.0.2"]}]},
        _content_type=MERGE_PATCH,
    )
    assert [e.addresses for e in patched.endpoints] == [["10.0.0.2"]]

    read = discovery.read_namespaced_endpoint_slice("web-abc", namespace)
    read.ports[0].port = 9090
    assert discovery.replace_namespaced_endpoint_slice("web-abc", namespace, read).ports[
        0
    ].port == (9090)
    discovery.delete_namespaced_endpoint_slice("web-abc", namespace)
    assert gone(lambda: discovery.read_namespaced_endpoint_slice("web-abc", namespace))


# ---- events ---------------------------------------------------------------------------------


def test_core_events_are_listed_by_the_object_they_are_about(core: Any, namespace: str) -> None:
    for name, pod in (("e1", "web-1"), ("e2", "web-2")):
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                "reason": "Started",
                "message": f"Started {pod}",
                "type": "Normal",
                "count": 1,
            },
        )
    listed = core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.name=web-2,involvedObject.namespace={namespace},"
        "involvedObject.kind=Pod",
    )
    assert [(e.metadata.name, e.message) for e in listed.items] == [("e2", "Started web-2")]

    patched = core.patch_namespaced_event(
        "e2", namespace, {"count": 2, "message": "again"}, _content_type=MERGE_PATCH
    )
    assert (patched.count, patched.message) == (2, "again")
    core.delete_namespaced_event("e1", namespace)
    assert [e.metadata.name for e in core.list_namespaced_event(namespace).items] == ["e2"]


def test_an_events_k8s_io_event_is_read_back_in_both_api_versions(
    api: client.ApiClient, core: Any, namespace: str
) -> None:
    events: Any = client.EventsV1Api(api)
    # Strict: every field must be one events.k8s.io/v1 knows, though the body names no apiVersion.
    created = events.create_namespaced_event(
        namespace,
        field_validation="Strict",
        body=client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="scheduled"),
            event_time=datetime.now(UTC),
            regarding=client.V1ObjectReference(kind="Pod", name="web", namespace=namespace),
            reason="Scheduled",
            note="Assigned to node-1",
            type="Normal",
            action="Binding",
            reporting_controller="example.com/scheduler",
            reporting_instance="scheduler-1",
        ),
    )
    assert created.regarding.name == "web"
    assert created.note == "Assigned to node-1"

    as_events_v1 = events.read_namespaced_event("scheduled", namespace)
    assert as_events_v1.api_version == "events.k8s.io/v1"
    assert as_events_v1.regarding.name == "web"

    as_core = core.read_namespaced_event("scheduled", namespace)
    assert as_core.api_version == "v1"
    assert as_core.involved_object.name == "web"
    assert as_core.message == "Assigned to node-1"
    assert as_core.reporting_component == "example.com/scheduler"

    by_object = core.list_namespaced_event(namespace, field_selector="involvedObject.name=web")
    assert [e.metadata.name for e in by_object.items] == ["scheduled"]
    by_regarding = events.list_namespaced_event(namespace, field_selector="regarding.name=web")
    assert [e.metadata.name for e in by_regarding.items] == ["scheduled"]

    patched = events.patch_namespaced_event(
        "scheduled", namespace, {"note": "Assigned to node-2"}, _content_type=MERGE_PATCH
    )
    assert patched.note == "Assigned to node-2"
    assert core.read_namespaced_event("scheduled", namespace).message == "Assigned to node-2"
    events.delete_namespaced_event("scheduled", namespace)
    assert gone(lambda: core.read_namespaced_event("scheduled", namespace))


# ---- cluster-scoped kinds and leases ------------------------------------------------------------


def test_a_node_is_created_patched_through_status_and_deleted(core: Any) -> None:
    name = "py-node-" + uuid.uuid4().hex[:8]
    created = core.create_node(
        {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    )
    assert created.metadata.namespace is None

    patched = core.patch_node(name, {"spec": {"unschedulable": True}})
    assert patched.spec.unschedulable is True
    cordoned = core.list_node(field_selector="spec.unschedulable=true")
    assert name in [n.metadata.name for n in cordoned.items]

    status = core.patch_node_status(
        name,
        {"status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}},
        _content_type=MERGE_PATCH,
    )
    assert [(a.type, a.address) for a in status.status.addresses] == [("InternalIP", "192.0.2.10")]

    node = core.read_node(name)
    node.metadata.labels["role"] = "edge"
    assert core.replace_node(name, node).metadata.labels["role"] == "edge"
    core.delete_node(name)
    assert gone(lambda: core.read_node(name))


def test_a_lease_is_acquired_renewed_and_released(api: client.ApiClient, namespace: str) -> None:
    coordination: Any = client.CoordinationV1Api(api)
    acquired = coordination.create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="leader"),
            spec=client.V1LeaseSpec(
                holder_identity="a",
                lease_duration_seconds=15,
                acquire_time=datetime.now(UTC),
                renew_time=datetime.now(UTC),
            ),
        ),
    )
    assert acquired.spec.holder_identity == "a"
    assert acquired.spec.renew_time.microsecond is not None

    renewed_at = datetime.now(UTC)
    acquired.spec.renew_time = renewed_at
    renewed = coordination.replace_namespaced_lease("leader", namespace, acquired)
    assert renewed.spec.renew_time == renewed_at

    # A second candidate holding the old copy loses the race.
    acquired.spec.holder_identity = "b"
    exc, body = failure(
        lambda: coordination.replace_namespaced_lease("leader", namespace, acquired)
    )
    assert exc.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"].startswith("Operation cannot be fulfilled on leases.coordination.k8s.io")

    patched = coordination.patch_namespaced_lease(
        "leader", namespace, {"spec": {"holderIdentity": None}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.holder_identity is None
    assert [ls.metadata.name for ls in coordination.list_namespaced_lease(namespace).items] == [
        "leader"
    ]
    coordination.delete_namespaced_lease("leader", namespace)
    assert gone(lambda: coordination.read_namespaced_lease("leader", namespace))


# ---- watches ---------------------------------------------------------------------------------


def test_a_watch_from_a_resource_version_sees_changes_made_meanwhile(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    start = core.list_namespaced_service(namespace).metadata.resource_version

    def make_changes() -> None:
        time.sleep(0.3)
        with new_api_client(apiserver) as second:
            other: Any = client.CoreV1Api(second)
            other.create_namespaced_service(namespace, service_body("watched"))
            other.patch_namespaced_service(
                "watched", namespace, {"metadata": {"labels": {"step": "2"}}}
            )
            other.delete_namespaced_service("watched", namespace)

    writer = threading.Thread(target=make_changes)
    writer.start()
    seen: list[tuple[str, str, dict[str, str] | None]] = []
    w = Watch()
    for event in w.stream(
        core.list_namespaced_service, namespace, resource_version=start, timeout_seconds=10
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, obj.metadata.labels))
        if event["type"] == "DELETED":
            w.stop()
    writer.join()

    assert seen == [
        ("ADDED", "watched", None),
        ("MODIFIED", "watched", {"step": "2"}),
        ("DELETED", "watched", {"step": "2"}),
    ]


def test_a_watch_without_resource_version_starts_with_the_current_state(
    core: Any, namespace: str
) -> None:
    core.create_namespaced_service(namespace, service_body("a"))
    core.create_namespaced_service(namespace, service_body("b"))
    w = Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_service,
        namespace,
        field_selector="metadata.name=b",
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        w.stop()
    assert seen == [("ADDED", "b")]


def test_a_watch_that_allows_bookmarks_receives_one_at_its_resource_version(
    core: Any, namespace: str
) -> None:
    start = core.list_namespaced_service(namespace).metadata.resource_version
    w = Watch()
    bookmark = None
    for event in w.stream(
        core.list_namespaced_service,
        namespace,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        if event["type"] == "BOOKMARK":
            bookmark = event["raw_object"]
            w.stop()
    assert bookmark is not None, "no BOOKMARK within 5s with --bookmark-interval 1"
    assert bookmark["kind"] == "Service"
    assert bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(start)
    assert w.resource_version == bookmark["metadata"]["resourceVersion"]


def test_a_watch_that_does_not_allow_bookmarks_receives_none(core: Any, namespace: str) -> None:
    start = core.list_namespaced_service(namespace).metadata.resource_version
    types = [
        event["type"]
        for event in Watch().stream(
            core.list_namespaced_service, namespace, resource_version=start, timeout_seconds=3
        )
    ]
    assert types == []


def test_a_watch_with_a_label_selector_sees_objects_enter_and_leave_it(
    apiserver: ApiServer, core: Any, namespace: str
) -> None:
    core.create_namespaced_service(namespace, service_body("web"))
    start = core.list_namespaced_service(namespace).metadata.resource_version

    def relabel() -> None:
        time.sleep(0.3)
        with new_api_client(apiserver) as second:
            other: Any = client.CoreV1Api(second)
            other.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"on": "1"}}})
            other.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"on": "0"}}})

    writer = threading.Thread(target=relabel)
    writer.start()
    w = Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_service,
        namespace,
        label_selector="on=1",
        resource_version=start,
        timeout_seconds=10,
    ):
        seen.append(event["type"])
        if len(seen) == 2:
            w.stop()
    writer.join()
    assert seen == ["ADDED", "DELETED"]


def test_a_watch_from_a_resource_version_that_is_not_a_number_is_a_bad_request(
    core: Any, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        list(
            Watch().stream(
                core.list_namespaced_service,
                namespace,
                resource_version="yesterday",
                timeout_seconds=2,
            )
        )
    assert info.value.status == 400


# ---- a compacted history -------------------------------------------------------------------
#
# The server process compacts on its own schedule (every minute, keeping the newest 10000
# revisions) and offers no way to force it from outside, so these tests serve the same
# application in this process, on a loopback port, where the test can compact the store.


class CompactableServer:
    """The apiserver's application on a thread of its own, with its store in reach."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.kubeconfig = data_dir / "kubeconfig"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._store: SQLiteStore | None = None
        self._runner: web.AppRunner | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._store = await SQLiteStore.open(self.data_dir / "state.db")
        registry = Registry(self._store)
        await lifecycle.bootstrap(registry)
        self._runner = web.AppRunner(app_module.build(registry, bookmark_interval=1))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        write_kubeconfig(self.kubeconfig, f"http://127.0.0.1:{port}")

    def compact(self) -> int:
        """Forget all history up to now; return the compacted revision."""

        async def compact() -> int:
            assert self._store is not None
            revision = await self._store.current_revision()
            await self._store.compact(revision)
            return revision

        return self._call(compact())

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._store is not None:
                await self._store.close()

        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(scope="module")
def compactable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompactableServer]:
    srv = CompactableServer(tmp_path_factory.mktemp("compactable"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def compactable_core(compactable: CompactableServer) -> Iterator[Any]:
    cfg = client.Configuration()
    load_kube_config(config_file=str(compactable.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        yield client.CoreV1Api(api_client)


def test_a_watch_from_a_compacted_resource_version_is_gone(
    compactable: CompactableServer, compactable_core: Any
) -> None:
    core = compactable_core
    core.create_namespace({"metadata": {"name": "history"}})
    old = core.create_namespaced_service("history", service_body("web")).metadata
    core.patch_namespaced_service("web", "history", {"metadata": {"labels": {"v": "2"}}})
    compacted = compactable.compact()

    with pytest.raises(ApiException) as info:
        list(
            Watch().stream(
                core.list_namespaced_service,
                "history",
                resource_version=old.resource_version,
                timeout_seconds=2,
            )
        )
    assert info.value.status == 410
    body = json.loads(info.value.body or "")
    assert body["kind"] == "Status"
    assert body["reason"] == "Expired"
    assert body["message"] == (
        f"too old resource version: {old.resource_version} ({compacted + 1})"
    )

    # From the compacted revision itself nothing is missing, so the watch starts.
    w = Watch()
    core.patch_namespaced_service("web", "history", {"metadata": {"labels": {"v": "3"}}})
    for event in w.stream(
        core.list_namespaced_service,
        "history",
        resource_version=str(compacted),
        timeout_seconds=5,
    ):
        assert (event["type"], event["object"].metadata.labels) == ("MODIFIED", {"v": "3"})
        w.stop()


def test_a_paged_list_continued_after_compaction_is_gone(
    compactable: CompactableServer, compactable_core: Any
) -> None:
    core = compactable_core
    core.create_namespace({"metadata": {"name": "paging"}})
    for i in range(3):
        core.create_namespaced_service("paging", service_body(f"svc-{i}"))
    first = core.list_namespaced_service("paging", limit=1)
    core.delete_namespaced_service("svc-2", "paging")
    compactable.compact()

    exc, body = failure(
        lambda: core.list_namespaced_service("paging", limit=1, _continue=first.metadata._continue)
    )
    assert exc.status == 410
    assert body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")
