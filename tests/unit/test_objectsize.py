"""Objects larger than etcd's default request limit are refused with 413, naming the object."""

from __future__ import annotations

import orjson
import pytest

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.apiserver import objectsize, status


def deployment(args_bytes: int) -> Obj:
    container = {"name": "web", "image": "nginx", "args": ["x" * args_bytes]}
    return {
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def padding_for(size: int) -> int:
    """The length of the args string that makes `deployment(...)` exactly `size` bytes stored."""
    return size - len(objectsize.encode(kinds.DEPLOYMENTS, "web", deployment(0)))


def test_an_object_of_exactly_the_cap_is_stored_as_the_codec_writes_it() -> None:
    obj = deployment(padding_for(1536 * 1024))
    value = objectsize.encode(kinds.DEPLOYMENTS, "web", obj)
    assert len(value) == 1536 * 1024
    assert orjson.loads(value)["metadata"] == {"name": "web", "namespace": "default"}


def test_an_object_one_byte_over_the_cap_is_refused_with_a_status_naming_it() -> None:
    obj = deployment(padding_for(1536 * 1024 + 1))
    with pytest.raises(status.APIError) as caught:
        objectsize.encode(kinds.DEPLOYMENTS, "web", obj)
    assert caught.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Request entity too large: deployments.apps "web" would be 1572865 bytes '
        "when stored, over the limit of 1572864 bytes: make the object smaller",
        "reason": "RequestEntityTooLarge",
        "details": {"name": "web", "kind": "deployments", "group": "apps"},
        "code": 413,
    }
