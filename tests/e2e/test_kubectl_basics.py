"""get, apply and delete as every installed kubectl minor (1.27–1.33) prints them.

Each test runs once per minor against one shared server, each in a namespace
of its own. The Deployment has two containers with env vars and ports, so a
re-apply that changes one image shows whether the server merged kubectl's
strategic-merge patch by merge key or replaced the container list.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import MINORS, Server, manifest, rows

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("minor", MINORS)]

AGE = re.compile(r"^(\d+[smhdy])+$")  # 5s, 2m3s, 3h, 2y330d


def deployment(name: str, *, web_image: str = "nginx:1.25") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": web_image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "LEVEL", "value": "info"},
                            ],
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "ports": [{"name": "metrics", "containerPort": 9090}],
                            "env": [{"name": "LOG", "value": "debug"}],
                        },
                    ]
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def apply(server: Server, ns: str, minor: int, *objects: dict[str, Any]) -> list[str]:
    out = server.kubectl("apply", "-n", ns, "-f", "-", minor=minor, stdin=manifest(*objects))
    return out.stdout.splitlines()


def containers_by_name(deploy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}


def test_apply_prints_created_then_unchanged_for_the_same_manifest(
    server: Server, namespace: str, minor: int
) -> None:
    assert apply(server, namespace, minor, deployment("web")) == ["deployment.apps/web created"]
    assert apply(server, namespace, minor, deployment("web")) == ["deployment.apps/web unchanged"]
    got = server.get_json("deployment", "web", "-n", namespace, minor=minor)
    assert got["metadata"]["generation"] == 1


def test_reapply_with_a_new_image_prints_configured_and_bumps_generation(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, deployment("web"))
    changed = deployment("web", web_image="nginx:1.26")
    assert apply(server, namespace, minor, changed) == ["deployment.apps/web configured"]
    got = server.get_json("deployment", "web", "-n", namespace, minor=minor)
    assert got["metadata"]["generation"] == 2


def test_reapply_keeps_the_untouched_container_and_the_env_and_ports_of_the_changed_one(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, deployment("web"))
    apply(server, namespace, minor, deployment("web", web_image="nginx:1.26"))

    got = containers_by_name(server.get_json("deployment", "web", "-n", namespace, minor=minor))

    assert list(got) == ["web", "sidecar"]
    web, sidecar = got["web"], got["sidecar"]
    assert web["image"] == "nginx:1.26"
    assert web["env"] == [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"}]
    assert web["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert sidecar["image"] == "busybox:1.36"
    assert sidecar["env"] == [{"name": "LOG", "value": "debug"}]
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]


def test_get_prints_the_deployment_table_from_the_server(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, deployment("web"))

    out = server.kubectl("get", "deployments", "-n", namespace, minor=minor).stdout

    header, row = rows(out)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row[:4] == ["web", "0/2", "0", "0"]
    assert AGE.match(row[4])


def test_get_o_wide_adds_containers_images_and_selector(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, deployment("web"))

    out = server.kubectl("get", "deploy", "web", "-n", namespace, "-o", "wide", minor=minor)

    header, row = rows(out.stdout)
    assert header == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert row[5:] == ["web,sidecar", "nginx:1.25,busybox:1.36", "app=web"]


def test_get_o_name_prints_resource_slash_name(server: Server, namespace: str, minor: int) -> None:
    apply(server, namespace, minor, deployment("web"), service("web"))

    out = server.kubectl("get", "deploy,svc", "-n", namespace, "-o", "name", minor=minor)

    assert out.stdout.splitlines() == ["deployment.apps/web", "service/web"]


def test_get_o_json_and_o_yaml_print_the_stored_object(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, service("web"))

    as_json = server.get_json("service", "web", "-n", namespace, minor=minor)
    as_yaml = server.kubectl("get", "service", "web", "-n", namespace, "-o", "yaml", minor=minor)

    assert as_json["kind"] == "Service"
    assert as_json["metadata"]["namespace"] == namespace
    assert as_json["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    lines = as_yaml.stdout.splitlines()
    assert lines[0] == "apiVersion: v1"
    assert "kind: Service" in lines
    assert f"  namespace: {namespace}" in lines
    assert f'  resourceVersion: "{as_json["metadata"]["resourceVersion"]}"' in lines


def test_get_of_a_missing_deployment_prints_not_found(
    server: Server, namespace: str, minor: int
) -> None:
    out = server.kubectl("get", "deployment", "nope", "-n", namespace, minor=minor, check=False)

    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        'Error from server (NotFound): deployments.apps "nope" not found'
    ]


def test_delete_prints_deleted_and_a_later_get_is_not_found(
    server: Server, namespace: str, minor: int
) -> None:
    apply(server, namespace, minor, deployment("web"))

    out = server.kubectl("delete", "deployment", "web", "-n", namespace, minor=minor)
    after = server.kubectl("get", "deployment", "web", "-n", namespace, minor=minor, check=False)

    assert out.stdout.splitlines() == ['deployment.apps "web" deleted']
    assert after.stderr.splitlines() == [
        'Error from server (NotFound): deployments.apps "web" not found'
    ]


def test_delete_f_deletes_every_object_of_the_manifest(
    server: Server, namespace: str, minor: int
) -> None:
    text = manifest(service("web"), deployment("web"))
    server.kubectl("apply", "-n", namespace, "-f", "-", minor=minor, stdin=text)

    out = server.kubectl("delete", "-n", namespace, "-f", "-", minor=minor, stdin=text)
    after = server.kubectl("get", "deploy,svc", "-n", namespace, minor=minor)

    assert out.stdout.splitlines() == ['service "web" deleted', 'deployment.apps "web" deleted']
    assert after.stdout == ""
    assert after.stderr.splitlines() == [f"No resources found in {namespace} namespace."]
