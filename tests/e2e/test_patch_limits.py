"""Patches and writes that would make an object too large are refused, and change nothing.

The limits are Kubernetes' own: a JSON patch of more than 10,000 operations
is 413 RequestEntityTooLarge; its copies may add at most 3 MiB between them
(json-patch's AccumulatedCopySizeLimit as the Kubernetes apiserver sets it),
or the patch is 422 Invalid; and no object stored may be over 1.5 MiB,
etcd's default request limit, which a merge patch or a create can reach
within a 3 MiB body. Each test sends the request twice, once over plain
HTTP to see the code and Status the server answers, and once through
`kubectl patch` or `kubectl create` to see the line kubectl prints; then it
reads the object back to show it is exactly as it was.
"""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Server, manifest

pytestmark = pytest.mark.e2e

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
MAX_OBJECT_BYTES = 1536 * 1024


def deployment(name: str, args: list[str] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    container: dict[str, Any] = {"name": "web", "image": "nginx:1.25", "args": args or ["serve"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def send(server: Server, method: str, path: str, body: Any, content_type: str) -> tuple[int, Any]:
    """One request over plain HTTP; the answer's code and decoded body."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        conn.request(method, path, json.dumps(body), {"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def deployment_path(namespace: str, name: str = "") -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{path}/{name}" if name else path


@pytest.fixture
def stored(server: Server, namespace: str) -> dict[str, Any]:
    """Deployment `web` in the test's namespace, as the server stored it."""
    server.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
    got: dict[str, Any] = server.get_json("deployment", "web", "-n", namespace)
    return got


def kubectl_patch(
    server: Server, namespace: str, tmp_path: Path, patch_type: str, body: Any
) -> str:
    """What `kubectl patch` printed on stderr for `body`, sent from a file (it is too long
    for an argument); the command must fail."""
    patch_file = tmp_path / "patch.json"
    patch_file.write_text(json.dumps(body))
    result = server.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        namespace,
        "--type",
        patch_type,
        "--patch-file",
        str(patch_file),
        check=False,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr.strip()


def assert_unchanged(server: Server, namespace: str, before: dict[str, Any]) -> None:
    after = server.get_json("deployment", "web", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before


def test_a_json_patch_of_more_than_10000_operations_is_413_and_changes_nothing(
    server: Server, namespace: str, stored: dict[str, Any], tmp_path: Path
) -> None:
    ops = [{"op": "test", "path": "/spec/replicas", "value": 1}] * 10_001
    message = (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, "
        "got 10001"
    )

    code, body = send(server, "PATCH", deployment_path(namespace, "web"), ops, JSON_PATCH)
    assert (code, body["kind"], body["reason"], body["code"]) == (
        413,
        "Status",
        "RequestEntityTooLarge",
        413,
    )
    assert body["message"] == message
    printed = kubectl_patch(server, namespace, tmp_path, "json", ops)
    assert printed == f"Error from server (RequestEntityTooLarge): {message}"
    assert_unchanged(server, namespace, stored)


def test_a_json_patch_copy_bomb_is_422_once_its_copies_pass_3_mib_and_changes_nothing(
    server: Server, namespace: str, stored: dict[str, Any], tmp_path: Path
) -> None:
    # Each copy appends the args list to itself, doubling the object: 64 would be 2**64 times.
    args = "/spec/template/spec/containers/0/args"
    ops = [{"op": "copy", "from": args, "path": f"{args}/-"}] * 64
    message = re.compile(
        r"Unable to complete the copy, the accumulated size increase of copy is (\d+), "
        r"exceeding the limit 3145728"
    )

    code, body = send(server, "PATCH", deployment_path(namespace, "web"), ops, JSON_PATCH)
    assert (code, body["kind"], body["reason"], body["code"]) == (422, "Status", "Invalid", 422)
    found = message.fullmatch(body["message"])
    assert found is not None, body["message"]
    assert 3 * 1024 * 1024 < int(found[1]) < 6 * 1024 * 1024
    printed = kubectl_patch(server, namespace, tmp_path, "json", ops)
    assert printed == f"The request is invalid: {body['message']}"
    assert_unchanged(server, namespace, stored)


def test_a_merge_patch_growing_the_object_past_1_5_mib_is_413_and_changes_nothing(
    server: Server, namespace: str, stored: dict[str, Any], tmp_path: Path
) -> None:
    # A 1.6 MB argument: the request is well under the 3 MiB body limit, the object is not.
    big = {"name": "web", "image": "nginx:1.25", "args": ["x" * 1_600_000]}
    patch = {"spec": {"template": {"spec": {"containers": [big]}}}}
    message = re.compile(
        r'Request entity too large: deployments.apps "web" would be (\d+) bytes when stored, '
        r"over the limit of 1572864 bytes: make the object smaller"
    )

    code, body = send(server, "PATCH", deployment_path(namespace, "web"), patch, MERGE_PATCH)
    assert (code, body["kind"], body["reason"], body["code"]) == (
        413,
        "Status",
        "RequestEntityTooLarge",
        413,
    )
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    found = message.fullmatch(body["message"])
    assert found is not None, body["message"]
    assert int(found[1]) > MAX_OBJECT_BYTES
    printed = kubectl_patch(server, namespace, tmp_path, "merge", patch)
    assert printed == f"Error from server (RequestEntityTooLarge): {body['message']}"
    assert_unchanged(server, namespace, stored)


def test_creating_an_object_over_1_5_mib_is_413_and_stores_nothing(
    server: Server, namespace: str
) -> None:
    big = deployment("big", args=["x" * 1_600_000])
    code, body = send(server, "POST", deployment_path(namespace), big, "application/json")
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge")
    assert body["message"].startswith('Request entity too large: deployments.apps "big" would be ')
    result = server.kubectl("create", "-n", namespace, "-f", "-", stdin=manifest(big), check=False)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f'Error from server (RequestEntityTooLarge): error when creating "STDIN": {body["message"]}'
    )
    missing = server.kubectl("get", "deployment", "big", "-n", namespace, check=False)
    assert 'deployments.apps "big" not found' in missing.stderr
