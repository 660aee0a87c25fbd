"""Everyday kubectl flows through the `kubectl` dispatcher, asserted on what kubectl printed.

The dispatcher runs the kubectl minor the server reports. The `create
<subcommand>` tests pin kubectl 1.31 (JSON bodies) and 1.32/1.33 (protobuf
bodies) explicitly. Every test works in a namespace of its own on one
server shared by the module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Server, cells, manifest, rows

pytestmark = pytest.mark.e2e

AGE = re.compile(r"^(\d+[smhdy])+$")  # 5s, 2m3s, 3h, 2y330d
SERVICE_COLUMNS = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
DEPLOYMENT_COLUMNS = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


def deployment(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    replicas: int = 2,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    app = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {**app, **(labels or {})}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": app},
            "template": {
                "metadata": {"labels": app},
                "spec": {
                    "containers": containers
                    or [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 8080}]}]
                },
            },
        },
    }


def service(name: str, *, labels: dict[str, str] | None = None, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name, **(labels or {})}},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": 8080}]},
    }


def pod(name: str, *, labels: dict[str, str] | None = None, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": spec,
    }


def apply(server: Server, ns: str, *objects: dict[str, Any]) -> list[str]:
    out = server.kubectl("apply", "-n", ns, "-f", "-", stdin=manifest(*objects))
    return out.stdout.splitlines()


def create(server: Server, ns: str, *objects: dict[str, Any]) -> list[str]:
    out = server.kubectl("create", "-n", ns, "-f", "-", stdin=manifest(*objects))
    return out.stdout.splitlines()


def table(server: Server, *args: str) -> list[list[str]]:
    return rows(server.kubectl("get", *args).stdout)


def describe_fields(text: str) -> dict[str, str]:
    """`Key:   value` lines of a describe, top level only."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z][A-Za-z -]*):\s*(.*)$", line)
        if m:
            fields.setdefault(m.group(1), m.group(2).strip())
    return fields


def events_section(text: str) -> list[list[str]]:
    """The rows under `Events:` at the end of a describe."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Events:"))
    return rows("\n".join(lines[start + 1 :]))


# ---- apply ----------------------------------------------------------------------------------


def test_apply_without_a_container_deletes_it_and_keeps_the_other(
    server: Server, namespace: str
) -> None:
    both = [
        {"name": "web", "image": "nginx:1.25", "env": [{"name": "MODE", "value": "prod"}]},
        {"name": "sidecar", "image": "busybox:1.36"},
    ]
    apply(server, namespace, deployment("web", containers=both))

    out = apply(server, namespace, deployment("web", containers=both[:1]))

    assert out == ["deployment.apps/web configured"]
    got = server.get_json("deploy", "web", "-n", namespace)
    (web,) = got["spec"]["template"]["spec"]["containers"]
    assert (web["name"], web["image"], web["env"]) == (
        "web",
        "nginx:1.25",
        [{"name": "MODE", "value": "prod"}],
    )


def test_apply_of_a_changed_service_port_prints_configured(server: Server, namespace: str) -> None:
    assert apply(server, namespace, service("web")) == ["service/web created"]
    assert apply(server, namespace, service("web")) == ["service/web unchanged"]

    assert apply(server, namespace, service("web", port=81)) == ["service/web configured"]
    assert table(server, "svc", "web", "-n", namespace)[1][4] == "81/TCP"


def test_diff_shows_only_what_a_reapply_would_change(server: Server, namespace: str) -> None:
    apply(server, namespace, deployment("web"))
    changed = deployment("web")
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"

    out = server.kubectl("diff", "-n", namespace, "-f", "-", stdin=manifest(changed), check=False)

    assert out.returncode == 1, out  # 1: there are differences
    changes = [
        line
        for line in out.stdout.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changes == [
        "-  generation: 1",
        "+  generation: 2",
        "-      - image: nginx:1.25",
        "+      - image: nginx:1.26",
    ]
    assert server.get_json("deploy", "web", "-n", namespace)["metadata"]["generation"] == 1


# ---- get ------------------------------------------------------------------------------------


def test_get_svc_prints_the_service_columns(server: Server, namespace: str) -> None:
    apply(server, namespace, service("web"))

    header, row = table(server, "svc", "-n", namespace)

    assert header == SERVICE_COLUMNS
    assert [row[0], row[1], row[3], row[4]] == ["web", "ClusterIP", "<none>", "80/TCP"]
    assert AGE.match(row[5])


def test_get_svc_o_wide_adds_the_selector(server: Server, namespace: str) -> None:
    apply(server, namespace, service("web"))

    header, row = table(server, "svc", "-n", namespace, "-o", "wide")

    assert header == [*SERVICE_COLUMNS, "SELECTOR"]
    assert row[-1] == "app=web"


def test_get_pods_o_wide_shows_the_ip_and_node(server: Server, namespace: str) -> None:
    create(server, namespace, pod("bound", node="node-a"), pod("pending"))
    server.kubectl(
        "patch",
        "pod",
        "bound",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running","podIP":"192.0.2.10","podIPs":[{"ip":"192.0.2.10"}]}}',
    )

    header, bound, pending = table(server, "pods", "-n", namespace, "-o", "wide")

    assert header == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert bound[:4] == ["bound", "0/1", "Running", "0"]
    assert bound[5:] == ["192.0.2.10", "node-a", "<none>", "<none>"]
    assert pending[:4] == ["pending", "0/1", "Pending", "0"]
    assert pending[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_get_all_namespaces_prints_a_namespace_column(server: Server) -> None:
    for ns in ("all-ns-a", "all-ns-b"):
        server.kubectl("create", "namespace", ns)
        apply(server, ns, deployment("web", labels={"suite": "all-ns"}))

    header, *found = table(server, "deploy", "-A", "-l", "suite=all-ns")

    assert header == ["NAMESPACE", *DEPLOYMENT_COLUMNS]
    assert [r[:2] for r in found] == [["all-ns-a", "web"], ["all-ns-b", "web"]]


def test_label_selector_with_equality_lists_only_matching_objects(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, service("web"), service("api"), service("db"))

    _, *found = table(server, "svc", "-n", namespace, "-l", "app=web")

    assert [r[0] for r in found] == ["web"]


def test_label_selector_with_a_set_lists_only_matching_objects(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, service("web"), service("api"), service("db"))

    _, *found = table(server, "svc", "-n", namespace, "-l", "app in (web,api)")

    assert [r[0] for r in found] == ["api", "web"]


def test_field_selector_on_the_name_lists_one_object(server: Server, namespace: str) -> None:
    apply(server, namespace, deployment("web"), deployment("api"))

    _, *found = table(server, "deploy", "-n", namespace, "--field-selector", "metadata.name=web")

    assert [r[0] for r in found] == ["web"]


def test_field_selector_matching_nothing_prints_no_resources(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, deployment("web"))

    out = server.kubectl("get", "deploy", "-n", namespace, "--field-selector", "metadata.name=x")

    assert out.stdout == ""
    assert out.stderr.splitlines() == [f"No resources found in {namespace} namespace."]


def test_chunk_size_pages_through_the_list_and_prints_every_row(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, *(service(f"s{i}") for i in range(1, 6)))

    out = server.kubectl("get", "svc", "-n", namespace, "--chunk-size=2", "-v=6")

    header, *found = rows(out.stdout)
    assert header == SERVICE_COLUMNS
    assert [r[0] for r in found] == ["s1", "s2", "s3", "s4", "s5"]
    requests = re.findall(r"/services\?[^\s\"]*limit=2", out.stderr)
    assert len(requests) == 3, out.stderr
    assert sum("continue=" in r for r in requests) == 2


# ---- watch ----------------------------------------------------------------------------------


def test_get_w_on_a_deployment_prints_the_modified_row(server: Server, namespace: str) -> None:
    apply(server, namespace, deployment("web"))

    with server.watch("get", "deploy", "web", "-n", namespace, "-w", "--output-watch-events") as w:
        assert cells(w.wait_for(r"^EVENT\s")) == ["EVENT", *DEPLOYMENT_COLUMNS]
        assert cells(w.wait_for(r"^ADDED\s"))[:3] == ["ADDED", "web", "0/2"]
        server.kubectl("scale", "deploy", "web", "-n", namespace, "--replicas=3")
        assert cells(w.wait_for(r"^MODIFIED\s"))[:3] == ["MODIFIED", "web", "0/3"]


def test_get_svc_w_prints_a_new_row_when_the_service_changes(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, service("web"))

    with server.watch("get", "svc", "-n", namespace, "-w") as w:
        assert cells(w.wait_for(r"^NAME\s")) == SERVICE_COLUMNS
        assert cells(w.wait_for(r"^web\s"))[4] == "80/TCP"
        apply(server, namespace, service("web", port=81))
        assert cells(w.wait_for(r"^web\s"))[4] == "81/TCP"


def test_get_w_with_a_selector_prints_deleted_when_an_object_stops_matching(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, service("web"))

    with server.watch(
        "get", "svc", "-n", namespace, "-l", "app=web", "-w", "--output-watch-events"
    ) as w:
        w.wait_for(r"^ADDED\s+web\s")
        server.kubectl("label", "svc", "web", "-n", namespace, "app=other", "--overwrite")
        assert cells(w.wait_for(r"^DELETED\s"))[:2] == ["DELETED", "web"]


# ---- describe -------------------------------------------------------------------------------


def test_describe_deployment_prints_name_namespace_and_selector(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, deployment("web"))

    out = server.kubectl("describe", "deployment", "web", "-n", namespace).stdout

    fields = describe_fields(out)
    assert fields["Name"] == "web"
    assert fields["Namespace"] == namespace
    assert fields["Selector"] == "app=web"
    assert fields["Replicas"].startswith("2 desired")
    assert fields["Events"] == "<none>"


def test_describe_service_prints_name_namespace_and_selector(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, service("web"))

    out = server.kubectl("describe", "service", "web", "-n", namespace).stdout

    fields = describe_fields(out)
    assert fields["Name"] == "web"
    assert fields["Namespace"] == namespace
    assert fields["Selector"] == "app=web"
    assert fields["Type"] == "ClusterIP"
    assert fields["TargetPort"] == "8080/TCP"


def test_describe_lists_the_events_of_the_deployment(server: Server, namespace: str) -> None:
    apply(server, namespace, deployment("web"), deployment("other"))
    uid = server.get_json("deploy", "web", "-n", namespace)["metadata"]["uid"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def event(name: str, target: str, target_uid: str, message: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": target,
                "namespace": namespace,
                "uid": target_uid,
            },
            "reason": "ScalingReplicaSet",
            "message": message,
            "type": "Normal",
            "source": {"component": "deployment-controller"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    created = create(
        server,
        namespace,
        event("web.1", "web", uid, "Scaled up replica set web-5d4 to 2"),
        event("other.1", "other", "00000000-0000-0000-0000-000000000000", "not about web"),
    )
    out = server.kubectl("describe", "deployment", "web", "-n", namespace).stdout

    assert created == ["event/web.1 created", "event/other.1 created"]
    header, *events = events_section(out)
    assert header == ["Type", "Reason", "Age", "From", "Message"]
    assert len(events) == 2, out  # the dashes line, then the one event about web
    row = events[1]
    assert [row[0], row[1], row[3], row[4]] == [
        "Normal",
        "ScalingReplicaSet",
        "deployment-controller",
        "Scaled up replica set web-5d4 to 2",
    ]


# ---- delete ---------------------------------------------------------------------------------


def test_delete_by_label_deletes_only_the_matching_objects(server: Server, namespace: str) -> None:
    apply(
        server,
        namespace,
        service("web", labels={"tier": "front"}),
        service("api", labels={"tier": "front"}),
        service("db", labels={"tier": "back"}),
    )

    out = server.kubectl("delete", "svc", "-n", namespace, "-l", "tier=front")

    assert out.stdout.splitlines() == ['service "api" deleted', 'service "web" deleted']
    _, *left = table(server, "svc", "-n", namespace)
    assert [r[0] for r in left] == ["db"]


def test_delete_with_cascade_orphan_returns_and_leaves_the_replicaset_unowned(
    server: Server, namespace: str
) -> None:
    # The `orphan` finalizer is the garbage collector's to process: run the controllers.
    manager = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "controller-manager",
            "--kubeconfig",
            str(server.kubeconfig),
            "--no-leader-elect",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        apply(server, namespace, deployment("web"))
        deadline = time.monotonic() + 30
        while not server.kubectl("get", "rs", "-n", namespace, "-o", "name").stdout.strip():
            assert time.monotonic() < deadline, "the deployment got no ReplicaSet"
            time.sleep(0.2)

        out = server.kubectl(
            "delete", "deploy", "web", "-n", namespace, "--cascade=orphan", "--timeout=30s"
        )
        after = server.kubectl("get", "deploy", "web", "-n", namespace, check=False)
        deadline = time.monotonic() + 30
        while True:  # the garbage collector drops the ownerReference, then the finalizer
            left = server.kubectl("get", "rs", "-n", namespace, "-o", "json")
            replicasets = json.loads(left.stdout)["items"]
            if all(not rs["metadata"].get("ownerReferences") for rs in replicasets):
                break
            assert time.monotonic() < deadline, "the ReplicaSet kept its ownerReference"
            time.sleep(0.2)
    finally:
        manager.terminate()
        manager.wait(timeout=15)

    assert out.stdout.splitlines() == ['deployment.apps "web" deleted']
    assert after.stderr.splitlines() == [
        'Error from server (NotFound): deployments.apps "web" not found'
    ]
    assert [rs["metadata"]["name"].startswith("web-") for rs in replicasets] == [True]


def test_deleting_a_namespace_removes_everything_in_it(server: Server) -> None:
    ns = "doomed"
    server.kubectl("create", "namespace", ns)
    apply(server, ns, deployment("web"), service("web"))
    create(server, ns, pod("p1"))

    out = server.kubectl("delete", "namespace", ns)

    assert out.stdout.splitlines() == [f'namespace "{ns}" deleted']
    gone = server.kubectl("get", "namespace", ns, check=False)
    assert gone.stderr.splitlines() == [
        f'Error from server (NotFound): namespaces "{ns}" not found'
    ]
    left = server.kubectl(
        "get", "deploy,svc,pods", "-A", "--field-selector", f"metadata.namespace={ns}"
    )
    assert left.stdout == ""
    assert left.stderr.splitlines() == ["No resources found"]


# ---- scale and expose -----------------------------------------------------------------------


def test_scale_sets_spec_replicas_through_the_scale_subresource(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, deployment("web"))

    out = server.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5", "-v=6")

    assert out.stdout.splitlines() == ["deployment.apps/web scaled"]
    assert re.search(r"PATCH.*/deployments/web/scale", out.stderr), out.stderr
    got = server.get_json("deploy", "web", "-n", namespace)
    assert got["spec"]["replicas"] == 5
    assert table(server, "deploy", "web", "-n", namespace)[1][:2] == ["web", "0/5"]


def test_expose_creates_a_service_with_the_deployment_selector(
    server: Server, namespace: str
) -> None:
    apply(server, namespace, deployment("web"))

    out = server.kubectl(
        "expose", "deployment", "web", "-n", namespace, "--port=80", "--target-port=8080"
    )

    assert out.stdout.splitlines() == ["service/web exposed"]
    svc = server.get_json("svc", "web", "-n", namespace)
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]


# ---- invalid manifests ----------------------------------------------------------------------


def create_fails(server: Server, ns: str, obj: dict[str, Any]) -> list[str]:
    out = server.kubectl("create", "-n", ns, "-f", "-", stdin=manifest(obj), check=False)
    assert out.returncode == 1, out
    assert out.stdout == ""
    return out.stderr.splitlines()


def assert_nothing_created(server: Server, ns: str) -> None:
    out = server.kubectl("get", "deploy,svc,pods", "-n", ns)
    assert out.stdout == ""
    assert out.stderr.splitlines() == [f"No resources found in {ns} namespace."]


def test_create_of_a_service_port_without_port_names_the_field(
    server: Server, namespace: str
) -> None:
    bad = service("x")
    del bad["spec"]["ports"][0]["port"]

    (line,) = create_fails(server, namespace, bad)

    assert line.startswith('The Service "x" is invalid: spec.ports[0].port: '), line
    assert_nothing_created(server, namespace)


def test_create_of_a_deployment_whose_selector_misses_its_template_names_the_field(
    server: Server, namespace: str
) -> None:
    bad = deployment("mismatch")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}

    (line,) = create_fails(server, namespace, bad)

    assert line.startswith(
        'The Deployment "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
    ), line
    assert line.endswith("`selector` does not match template `labels`"), line
    assert_nothing_created(server, namespace)


def test_create_with_an_unknown_field_prints_strict_decoding_error(
    server: Server, namespace: str
) -> None:
    bad = deployment("typo")
    bad["spec"]["replicass"] = bad["spec"].pop("replicas")

    assert create_fails(server, namespace, bad) == [
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version '
        '"v1" cannot be handled as a Deployment: strict decoding error: unknown field '
        '"spec.replicass"'
    ]
    assert_nothing_created(server, namespace)


@pytest.mark.parametrize("validate", ["warn", "ignore"])
def test_an_unknown_field_let_through_is_not_stored(
    server: Server, namespace: str, validate: str
) -> None:
    typo = deployment(f"typo-{validate}")
    typo["spec"]["replicass"] = 3
    typo["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"

    done = server.kubectl(
        "create", "-n", namespace, f"--validate={validate}", "-f", "-", stdin=manifest(typo)
    )

    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    if validate == "warn":
        assert warnings == [
            'Warning: unknown field "spec.replicass"',
            'Warning: unknown field "spec.template.spec.containers[0].imagee"',
        ]
    else:
        assert warnings == []
    # As the apiserver's decoder does, the unknown fields are dropped, not kept.
    stored = server.get_json("deployment", f"typo-{validate}", "-n", namespace)
    assert "replicass" not in stored["spec"]
    assert "imagee" not in stored["spec"]["template"]["spec"]["containers"][0]
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"]


def test_create_with_a_name_that_is_not_a_dns_label_names_metadata_name(
    server: Server, namespace: str
) -> None:
    assert create_fails(server, namespace, service("Bad_Name")) == [
        'The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
        "with an alphabetic character, and end with an alphanumeric character (e.g. "
        "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    ]
    assert_nothing_created(server, namespace)


# ---- create <subcommand>: protobuf bodies on 1.32+, JSON before -------------------------------


@pytest.mark.parametrize("minor", [31, 32, 33])
def test_create_subcommands_make_objects_a_get_then_shows(server: Server, minor: int) -> None:
    ns = f"created-by-{minor}"
    node_port = str(30000 + minor)

    def run(*args: str) -> list[str]:
        return server.kubectl(*args, minor=minor).stdout.splitlines()

    assert run("create", "namespace", ns) == [f"namespace/{ns} created"]
    assert run(
        "create", "deployment", "web", "-n", ns, "--image=nginx:1.25", "--replicas=2", "--port=80"
    ) == ["deployment.apps/web created"]
    assert run("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:8080") == [
        "service/web created"
    ]
    assert run(
        "create", "service", "nodeport", "np", "-n", ns, "--tcp=80:8080", f"--node-port={node_port}"
    ) == ["service/np created"]

    assert rows(server.kubectl("get", "namespace", ns, minor=minor).stdout)[1][:2] == [ns, "Active"]
    (_, deploy_row) = rows(server.kubectl("get", "deploy", "web", "-n", ns, minor=minor).stdout)
    assert deploy_row[:2] == ["web", "0/2"]
    deploy = server.get_json("deploy", "web", "-n", ns, minor=minor)
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("nginx", "nginx:1.25")
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    header, np_row, web_row = rows(server.kubectl("get", "svc", "-n", ns, minor=minor).stdout)
    assert header == SERVICE_COLUMNS
    assert [np_row[0], np_row[1], np_row[4]] == ["np", "NodePort", f"80:{node_port}/TCP"]
    assert [web_row[0], web_row[1], web_row[4]] == ["web", "ClusterIP", "80/TCP"]
    web = server.get_json("svc", "web", "-n", ns, minor=minor)
    assert web["spec"]["selector"] == {"app": "web"}
    assert web["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]


# ---- what the server says about itself ------------------------------------------------------


def test_api_resources_lists_the_served_kinds(server: Server) -> None:
    header, *found = rows(server.kubectl("api-resources").stdout)

    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["services", "svc", "v1", "true", "Service"] in found
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in found
    assert ["namespaces", "ns", "v1", "false", "Namespace"] in found
    assert ["pods", "po", "v1", "true", "Pod"] in found
    assert not [r for r in found if "/" in r[0]], "subresources are not resources"


def test_version_prints_the_server_version(server: Server) -> None:
    version = json.loads(server.kubectl("get", "--raw", "/version").stdout)
    out = server.kubectl("version").stdout.splitlines()

    assert f"Server Version: {version['gitVersion']}" in out
    assert re.fullmatch(r"v1\.\d+\.\d+.*", version["gitVersion"])


def test_get_raw_healthz_prints_ok(server: Server) -> None:
    assert server.kubectl("get", "--raw", "/healthz").stdout == "ok"


def test_metrics_count_requests(server: Server) -> None:
    server.kubectl("get", "svc", "-n", "default")

    out = server.kubectl("get", "--raw", "/metrics").stdout

    assert re.search(
        r'^apiserver_request_total\{[^}]*resource="services"[^}]*verb="LIST"[^}]*\} \d',
        out,
        re.MULTILINE,
    ), out


# ---- errors ---------------------------------------------------------------------------------


def test_get_of_a_missing_object_prints_not_found(server: Server, namespace: str) -> None:
    for kind, printed in (("svc", "services"), ("pod", "pods"), ("deploy", "deployments.apps")):
        out = server.kubectl("get", kind, "nope", "-n", namespace, check=False)
        assert out.returncode == 1
        assert out.stderr.splitlines() == [
            f'Error from server (NotFound): {printed} "nope" not found'
        ]


def test_create_of_an_existing_object_prints_already_exists(server: Server, namespace: str) -> None:
    create(server, namespace, service("web"))

    again = server.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=manifest(service("web")), check=False
    )
    ns_again = server.kubectl("create", "namespace", namespace, check=False)

    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        'Error from server (AlreadyExists): error when creating "STDIN": services "web" already '
        "exists"
    ]
    assert ns_again.stderr.splitlines() == [
        f'Error from server (AlreadyExists): namespaces "{namespace}" already exists'
    ]
