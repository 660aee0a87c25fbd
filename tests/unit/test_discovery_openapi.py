"""What the server says about itself, and field validation, checked against real kubectl.

The pure functions are tested directly; then a small aiohttp app serving
only them (plus a dict of created objects) is driven by every installed
kubectl minor from 1.27 to 1.33, and the test asserts on the requests
kubectl sent and on what it printed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from switchboard.api import kinds, schema
from switchboard.apiserver import discovery, openapi

# ---- schema: strict field validation ---------------------------------------------------------


def _deployment(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", **container}]},
            },
        },
    }


def test_a_valid_deployment_passes_strict_validation() -> None:
    assert schema.check("Deployment", _deployment(), "Strict") == ([], [])


def test_unknown_field_in_a_list_item_is_named_with_its_index() -> None:
    errors, warnings = schema.check("Deployment", _deployment(imagee="nginx"), "Strict")
    assert errors == [
        'strict decoding error: unknown field "spec.template.spec.containers[0].imagee"'
    ]
    assert warnings == []


def test_warn_mode_returns_each_unknown_field_as_a_warning() -> None:
    obj = _deployment(imagee="x")
    obj["spec"]["foo"] = 1
    errors, warnings = schema.check("Deployment", obj, "Warn")
    assert errors == []
    assert warnings == [  # in document order: spec.foo was added last
        'unknown field "spec.template.spec.containers[0].imagee"',
        'unknown field "spec.foo"',
    ]


def test_ignore_mode_drops_unknown_fields_silently() -> None:
    assert schema.check("Deployment", _deployment(imagee="x"), "Ignore") == ([], [])


def test_metadata_and_status_fields_are_known_and_checked() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "uid": "u", "resourceVersion": "1", "colour": "red"},
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "hostnam": "x"}]}},
    }
    errors, _ = schema.check("Service", obj, "Strict")
    assert errors == [
        'strict decoding error: unknown field "metadata.colour",'
        ' unknown field "status.loadBalancer.ingress[0].hostnam"'
    ]


def test_duplicate_fields_are_found_in_the_request_text_in_document_order() -> None:
    raw = (
        '{"apiVersion":"apps/v1","kind":"Deployment",'
        '"metadata":{"name":"a","name":"b","unknownMeta":1},'
        '"spec":{"unknown1":1,"dupe":1,"dupe":2,"paused":true,"paused":false,'
        '"template":{"spec":{"containers":[{"name":"n","x":1,'
        '"imagePullPolicy":"Always","imagePullPolicy":"Never"}]}}}}'
    )
    errors, _ = schema.check("Deployment", json.loads(raw), "Strict", raw=raw)
    assert errors == [
        'strict decoding error: duplicate field "metadata.name",'
        ' unknown field "metadata.unknownMeta", unknown field "spec.unknown1",'
        ' unknown field "spec.dupe", duplicate field "spec.paused",'
        ' unknown field "spec.template.spec.containers[0].x",'
        ' duplicate field "spec.template.spec.containers[0].imagePullPolicy"'
    ]


def test_a_type_error_fails_even_in_ignore_mode_with_gos_wording() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": "80"}]}}
    errors, warnings = schema.check("Service", obj, "Ignore")
    assert errors == [
        "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port"
        " of type int32"
    ]
    assert warnings == []


def test_type_errors_name_the_go_type_of_each_field() -> None:
    obj = {
        "metadata": {"labels": {"a": 1}, "creationTimestamp": 5, "generation": 1.5},
        "spec": {
            "selector": ["x"],
            "ports": [{"port": 80, "targetPort": True}, "http"],
            "sessionAffinity": 3,
        },
        "status": "up",
    }
    assert schema.type_errors("Service", obj) == [
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels"
        " of type string",
        "json: cannot unmarshal number into Go struct field"
        " ObjectMeta.metadata.creationTimestamp of type string",
        "json: cannot unmarshal number 1.5 into Go struct field ObjectMeta.metadata.generation"
        " of type int64",
        "json: cannot unmarshal array into Go struct field ServiceSpec.spec.selector"
        " of type map[string]string",
        "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort"
        " of type int32",
        "json: cannot unmarshal string into Go struct field ServiceSpec.spec.ports"
        " of type v1.ServicePort",
        "json: cannot unmarshal number into Go struct field ServiceSpec.spec.sessionAffinity"
        " of type string",
        "json: cannot unmarshal string into Go struct field Service.status"
        " of type v1.ServiceStatus",
    ]


def test_int_or_string_and_null_take_any_shape_they_allow() -> None:
    ports = [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8}]
    obj = {"spec": {"ports": ports, "clusterIP": None}}
    assert schema.type_errors("Service", obj) == []


def test_an_int32_out_of_range_is_a_type_error() -> None:
    raw = '{"spec": {"replicas": 3000000000, "minReadySeconds": 1e3}}'
    assert schema.check("Deployment", None, "Strict", raw=raw)[0] == [
        "json: cannot unmarshal number 3000000000 into Go struct field DeploymentSpec.spec.replicas"
        " of type int32"
    ]
    assert schema.type_errors("Deployment", {"spec": {"minReadySeconds": 10}}) == []


def test_quantities_take_strings_and_numbers_of_the_quantity_shape() -> None:
    limits = {"cpu": "500m", "memory": "1Gi", "gpu": 1, "x": 0.5}
    pod = {"spec": {"containers": [{"name": "c", "resources": {"limits": limits}}]}}
    assert schema.type_errors("Pod", pod) == []
    limits["bad"] = "1 Gigabyte"
    assert schema.type_errors("Pod", pod) == [
        "quantities must match the regular expression"
        " '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    ]


def test_timestamps_must_be_rfc3339() -> None:
    assert (
        schema.type_errors("Pod", {"metadata": {"creationTimestamp": "2024-01-02T03:04:05Z"}}) == []
    )
    assert schema.type_errors("Pod", {"metadata": {"creationTimestamp": "yesterday"}}) == [
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00":'
        ' cannot parse "yesterday" as "2006"'
    ]


def test_the_objects_api_version_picks_between_same_named_kinds() -> None:
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "note": "n", "regarding": {}}
    assert schema.check("Event", event, "Strict") == ([], [])
    core = {"apiVersion": "v1", "kind": "Event", "note": "n"}
    assert schema.check("Event", core, "Strict")[0] == [
        'strict decoding error: unknown field "note"'
    ]


def test_a_body_that_is_not_json_is_checked_as_decoded() -> None:
    raw = "apiVersion: apps/v1\nkind: Deployment\n"
    errors, _ = schema.check("Deployment", {"spec": {"x": 1}}, "Strict", raw=raw)
    assert errors == ['strict decoding error: unknown field "spec.x"']


def test_schema_json_is_generated_from_the_current_kinds_and_client() -> None:
    pytest.importorskip("kubernetes")
    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_schema.py"
    spec = importlib.util.spec_from_file_location("gen_schema", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "schema.json is stale: run scripts/gen_schema.py"


def test_every_served_kind_and_the_scale_subresource_have_a_schema() -> None:
    for kind in kinds.KINDS:
        assert schema.definition_name(kind.kind, kind.api_version)
    assert schema.definition_name("Scale") == "io.k8s.api.autoscaling.v1.Scale"
    with pytest.raises(schema.UnknownKind):
        schema.definition_name("Ingress")


def test_decode_error_message_names_the_version_without_its_group() -> None:
    assert schema.decode_error_message("Deployment", "apps/v1", "boom") == (
        'Deployment in version "v1" cannot be handled as a Deployment: boom'
    )


def test_field_validation_mode_defaults_to_warn_and_rejects_other_values() -> None:
    assert schema.parse_mode(None) == "Warn"
    assert schema.parse_mode("Strict") == "Strict"
    with pytest.raises(ValueError, match='fieldValidation: Unsupported value: "strict"'):
        schema.parse_mode("strict")


# ---- discovery -------------------------------------------------------------------------------

KUBECTL_127_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
KUBECTL_133_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_version_reports_kubernetes_1_33() -> None:
    info = discovery.version_info()
    assert (info["major"], info["minor"]) == ("1", "33")
    assert info["gitVersion"].startswith("v1.33.")
    assert "/" in info["platform"]


def test_classic_discovery_lists_core_and_named_groups() -> None:
    assert discovery.core_versions()["versions"] == ["v1"]
    groups = {g["name"]: g for g in discovery.group_list()["groups"]}
    assert set(groups) == {"apps", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io"}
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert discovery.group("apps") == {"kind": "APIGroup", "apiVersion": "v1", **groups["apps"]}
    assert discovery.group("batch") is None
    assert discovery.resource_list("batch", "v1") is None


def test_resource_list_carries_short_names_and_subresources() -> None:
    core = discovery.resource_list("", "v1")
    assert core is not None
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["services"]["shortNames"] == ["svc"]
    assert by_name["pods"]["categories"] == ["all"]
    assert by_name["pods/log"] == {
        "name": "pods/log",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get"],
    }
    assert by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["pods/exec"]["verbs"] == ["create", "get"]
    assert by_name["pods/binding"]["kind"] == "Binding"
    assert by_name["namespaces/finalize"]["verbs"] == ["update"]
    assert by_name["services/status"]["verbs"] == ["get", "patch", "update"]
    apps = discovery.resource_list("apps", "v1")
    assert apps is not None
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_storage_version_hash_is_shared_by_both_event_kinds() -> None:
    core = discovery.resource_list("", "v1")
    events = discovery.resource_list("events.k8s.io", "v1")
    assert core is not None and events is not None
    hashes = [
        r["storageVersionHash"]
        for r in [*core["resources"], *events["resources"]]
        if r["name"] == "events"
    ]
    assert len(hashes) == 2 and hashes[0] == hashes[1]


def test_kubectl_1_27_gets_aggregated_discovery_v2beta1_and_1_33_gets_v2() -> None:
    assert discovery.negotiate_aggregated(KUBECTL_127_ACCEPT) == (
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    )
    assert discovery.negotiate_aggregated(KUBECTL_133_ACCEPT) == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert discovery.negotiate_aggregated("application/json, */*") is None
    protobuf_only = (
        "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert discovery.negotiate_aggregated(protobuf_only) is None


def test_aggregated_discovery_describes_every_resource_once() -> None:
    core = discovery.aggregated("core", "v2beta1")
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    [group] = core["items"]
    assert "name" not in group["metadata"]
    [v1] = group["versions"]
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced"
    assert {s["subresource"] for s in pods["subresources"]} == {"status", "log", "exec", "binding"}
    apis = discovery.aggregated("apis")
    deployments = next(
        r
        for g in apis["items"]
        if g["metadata"]["name"] == "apps"
        for r in g["versions"][0]["resources"]
        if r["resource"] == "deployments"
    )
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    served = sum(len(v["resources"]) for g in apis["items"] for v in g["versions"])
    assert served + len(v1["resources"]) == len(kinds.KINDS)


# ---- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_root_points_at_every_group_version_with_its_hash() -> None:
    root = openapi.v3_root()["paths"]
    assert set(root) == {"api/v1" if not g else f"apis/{g}/{v}" for g, v in kinds.group_versions()}
    url = root["apis/apps/v1"]["serverRelativeURL"]
    assert url == f"/openapi/v3/apis/apps/v1?hash={openapi.v3_hash('apis/apps/v1')}"
    assert openapi.v3_document(url) == openapi.v3_document("apis/apps/v1")
    assert openapi.v3_document("apis/batch/v1") is None


def test_every_served_kind_has_a_patch_operation_with_field_validation() -> None:
    for kind in kinds.KINDS:
        path = f"apis/{kind.group}/{kind.version}" if kind.group else f"api/{kind.version}"
        doc = openapi.v3_document(path)
        assert doc is not None
        gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
        patches = [
            item["patch"]
            for item in doc["paths"].values()
            if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk
        ]
        assert patches, kind.kind
        for op in patches:
            assert "fieldValidation" in {p["name"] for p in op["parameters"]}


def test_component_schemas_are_tagged_with_their_kind_and_every_ref_resolves() -> None:
    doc = openapi.v3_document("apis/apps/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    assert schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas
    refs = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].removeprefix("#/components/schemas/"))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(doc)
    assert refs <= set(schemas)


def test_openapi_v2_is_a_minimal_protobuf_document() -> None:
    body = openapi.v2_document_protobuf()
    assert body.startswith(b"\x0a\x032.0\x12")
    assert discovery.GIT_VERSION.encode() in body


# ---- the real kubectl ------------------------------------------------------------------------

MINORS = range(27, 34)

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        {image_field}: {image}
        ports:
        - containerPort: 80
"""


def _kubectl(minor: int) -> str | None:
    found = shutil.which("kubectl")
    if found is None:
        return None
    for directory in (Path(found).parent, Path(found).resolve().parent):
        candidate = directory / f"kubectl.1.{minor}"
        if candidate.exists():
            return str(candidate)
    return None


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    accept: str
    content_type: str
    body: bytes


@dataclass
class FakeAPIServer:
    """Serves discovery and OpenAPI from the functions under test; objects live in a dict."""

    aggregated: bool = True
    requests: list[Request] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Request(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Accept", ""),
                request.headers.get("Content-Type", ""),
                body,
            )
        )
        path = request.path.rstrip("/")
        if request.method == "GET":
            return self.get(path, request.headers.get("Accept", ""))
        if request.method == "POST":
            return self.create(path, body, request.query.get("fieldValidation"))
        if request.method == "PATCH":
            return self.patch(path, body)
        return _status(405, "MethodNotAllowed", "not served by this fake")

    def get(self, path: str, accept: str) -> web.StreamResponse:
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return web.json_response(discovery.version_info())
        if path in ("/api", "/apis"):
            media_type = discovery.negotiate_aggregated(accept) if self.aggregated else None
            if media_type is None:
                classic = discovery.core_versions() if path == "/api" else discovery.group_list()
                return web.json_response(classic)
            version = discovery.aggregated_version(media_type)
            groups = discovery.aggregated("core" if path == "/api" else "apis", version)
            return web.Response(body=json.dumps(groups), headers={"Content-Type": media_type})
        if path == "/openapi/v3":
            return web.json_response(openapi.v3_root())
        if path.startswith("/openapi/v3/"):
            document = openapi.v3_document_json(path)
            if document is not None:
                return web.Response(body=document, content_type="application/json")
        if path == "/openapi/v2":
            v2 = openapi.v2_document_protobuf()
            return web.Response(body=v2, headers={"Content-Type": openapi.V2_MEDIA_TYPE})
        found: dict[str, Any] | None = None
        if len(parts) == 2 and parts[0] == "api":
            found = discovery.resource_list("", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.resource_list(parts[1], parts[2])
        else:
            found = self.objects.get(path)
        if found is not None:
            return web.json_response(found)
        name = parts[-1] if parts else ""
        return _status(404, "NotFound", f'"{name}" not found')

    def create(self, path: str, body: bytes, validation: str | None) -> web.StreamResponse:
        obj = json.loads(body)
        errors, warnings = schema.check(obj["kind"], obj, schema.parse_mode(validation), raw=body)
        if errors:
            message = schema.decode_error_message(obj["kind"], obj["apiVersion"], errors[0])
            return _status(400, "BadRequest", message)
        obj["metadata"].update(resourceVersion="1", uid="0000", namespace="default")
        self.objects[f"{path}/{obj['metadata']['name']}"] = obj
        headers = {"Warning": ",".join(f'299 - "{w}"' for w in warnings)} if warnings else None
        return web.json_response(obj, status=201, headers=headers)

    def patch(self, path: str, body: bytes) -> web.StreamResponse:
        if path.endswith("/scale"):
            parts = path.split("/")
            scale = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": parts[-2], "namespace": "default"},
                "spec": json.loads(body).get("spec", {}),
                "status": {"replicas": 2},
            }
            return web.json_response(scale)
        current = self.objects.get(path)
        if current is None:
            return _status(404, "NotFound", "not found")
        return web.json_response(current)

    def sent(self, method: str, path_end: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_end)]


@pytest.fixture(params=[True, False], ids=["aggregated", "classic"])
async def fake_apiserver(request: pytest.FixtureRequest) -> AsyncIterator[FakeAPIServer]:
    server = FakeAPIServer(aggregated=request.param)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@dataclass
class Kubectl:
    binary: str
    server: FakeAPIServer
    home: Path

    async def run(self, *args: str) -> tuple[int, str, str]:
        argv = [self.binary, "--server", self.server.url, "--cache-dir", str(self.home / "cache")]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        process = await asyncio.create_subprocess_exec(
            *argv,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    def manifest(self, name: str, image: str = "nginx:1.25", image_field: str = "image") -> str:
        path = self.home / f"{name}-{image}-{image_field}.yaml"
        text = DEPLOYMENT_YAML.format(name=name, image=image, image_field=image_field)
        path.write_text(text)
        return str(path)


def _kubectl_or_skip(minor: int, server: FakeAPIServer, home: Path) -> Kubectl:
    binary = _kubectl(minor)
    if binary is None:
        pytest.skip(f"kubectl.1.{minor} is not installed")
    return Kubectl(binary, server, home)


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_apply_creates_with_server_side_strict_validation(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    code, out, err = await kubectl.run("apply", "-f", kubectl.manifest("web"))
    assert "failed to download openapi" not in err
    assert code == 0, err
    assert out.strip() == "deployment.apps/web created"
    [post] = fake_apiserver.sent("POST", "/apis/apps/v1/namespaces/default/deployments")
    assert post.query["fieldValidation"] == "Strict"
    assert post.query["fieldManager"] == "kubectl-client-side-apply"


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_apply_patches_with_merge_keys_and_strict_validation(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    assert (await kubectl.run("apply", "-f", kubectl.manifest("web")))[0] == 0
    code, out, err = await kubectl.run("apply", "-f", kubectl.manifest("web", "nginx:1.26"))
    assert code == 0, err
    assert out.strip() == "deployment.apps/web configured"
    [patch] = fake_apiserver.sent("PATCH", "/deployments/web")
    assert patch.query["fieldValidation"] == "Strict"
    assert patch.content_type == "application/strategic-merge-patch+json"
    template = json.loads(patch.body)["spec"]["template"]["spec"]
    assert template["$setElementOrder/containers"] == [{"name": "nginx"}]
    assert template["containers"] == [{"image": "nginx:1.26", "name": "nginx"}]


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_prints_the_servers_strict_decoding_error(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    manifest = kubectl.manifest("web", image_field="imagee")
    code, _, err = await kubectl.run("apply", "-f", manifest)
    assert code == 1
    assert (
        f'Error from server (BadRequest): error when creating "{manifest}": Deployment in'
        ' version "v1" cannot be handled as a Deployment: strict decoding error: unknown'
        ' field "spec.template.spec.containers[0].imagee"'
    ) in err
    code, out, err = await kubectl.run("apply", "--validate=false", "-f", manifest)
    assert code == 0, err
    assert out.strip() == "deployment.apps/web created"
    assert fake_apiserver.sent("POST", "/deployments")[-1].query["fieldValidation"] == "Ignore"


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_api_resources_lists_served_kinds_with_short_names(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    code, out, err = await kubectl.run("api-resources")
    assert code == 0, err
    rows = {tuple(line.split()) for line in out.splitlines()[1:]}
    assert ("services", "svc", "v1", "true", "Service") in rows
    assert ("deployments", "deploy", "apps/v1", "true", "Deployment") in rows
    assert ("namespaces", "ns", "v1", "false", "Namespace") in rows
    assert ("endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice") in rows
    assert len(rows) == len(kinds.KINDS)


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_scale_finds_the_autoscaling_scale_subresource(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    assert (await kubectl.run("apply", "-f", kubectl.manifest("web")))[0] == 0
    code, out, err = await kubectl.run("scale", "deployment/web", "--replicas=5")
    assert code == 0, err
    assert out.strip() == "deployment.apps/web scaled"
    [patch] = fake_apiserver.sent("PATCH", "/deployments/web/scale")
    assert json.loads(patch.body) == {"spec": {"replicas": 5}}


@pytest.mark.parametrize("minor", MINORS)
async def test_kubectl_explain_reads_field_descriptions_from_openapi_v3(
    minor: int, fake_apiserver: FakeAPIServer, tmp_path: Path
) -> None:
    kubectl = _kubectl_or_skip(minor, fake_apiserver, tmp_path)
    code, out, err = await kubectl.run("explain", "deployment.spec.replicas")
    assert code == 0, err
    assert "FIELD: replicas <integer>" in out
    assert "Number of desired pods." in out


def test_unknown_fields_are_dropped_at_every_depth_and_free_form_values_kept() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "colour": "red", "annotations": {"any-key": "kept"}},
        "spec": {
            "replicass": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagee": "x"}]},
            },
        },
    }
    assert schema.without_unknown("Deployment", obj) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"any-key": "kept"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    # The input is left alone; a request's own object is not changed under it.
    assert obj["spec"]["replicass"] == 3
