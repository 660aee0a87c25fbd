"""PATCH bodies apply as the Kubernetes apiserver applies them, and malformed ones fail clearly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.api import mergekeys, patch
from switchboard.api.kinds import Obj
from switchboard.api.patch import PatchError

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def apply(kind: str, original: Obj, body: Any, content_type: str = SMP) -> Obj:
    return patch.apply_patch(kind, original, json.dumps(body).encode(), content_type)


def deployment(*containers: Obj, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 2,
            **spec,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
        },
    }


NGINX = {
    "name": "nginx",
    "image": "nginx:1.25",
    "imagePullPolicy": "IfNotPresent",
    "ports": [{"containerPort": 80, "protocol": "TCP"}],
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
}
SIDECAR = {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}


def containers(obj: Obj) -> list[Obj]:
    result: list[Obj] = obj["spec"]["template"]["spec"]["containers"]
    return result


# --- strategic merge patch: what kubectl apply sends ---------------------------


def test_kubectl_reapply_of_a_changed_image_keeps_untouched_fields_and_containers() -> None:
    original = deployment(NGINX, SIDECAR)
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.26", "name": "nginx"}],
                }
            }
        }
    }
    result = apply("Deployment", original, body)
    assert containers(result) == [{**NGINX, "image": "nginx:1.26"}, SIDECAR]
    assert result["spec"]["replicas"] == 2
    assert result["metadata"] == original["metadata"]


def test_the_exact_patch_from_the_wire_notes_applies_to_a_one_container_deployment() -> None:
    body = (
        b'{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],'
        b'"containers":[{"image":"nginx:1.26","name":"nginx"}]}}}}'
    )
    result = patch.apply_patch("Deployment", deployment(NGINX), body, SMP)
    assert containers(result) == [{**NGINX, "image": "nginx:1.26"}]


def test_a_naive_merge_patch_would_have_dropped_the_container_fields() -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "x"}]}}}}
    assert containers(apply("Deployment", deployment(NGINX), body, MERGE)) == [
        {"name": "nginx", "image": "x"}
    ]
    assert containers(apply("Deployment", deployment(NGINX), body))[0]["ports"] == NGINX["ports"]


def test_new_list_items_are_appended_and_nested_lists_merge_by_their_own_keys() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "ports": [{"containerPort": 443}],
                            "env": [{"name": "B", "value": "two"}],
                        },
                        {"name": "metrics", "image": "exporter"},
                    ]
                }
            }
        }
    }
    nginx, metrics = containers(apply("Deployment", deployment(NGINX), body))
    # Without $setElementOrder, Kubernetes puts a new item before the server's items
    # and keeps merged ones where they were.
    assert nginx["ports"] == [{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}]
    assert nginx["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]
    assert metrics == {"name": "metrics", "image": "exporter"}


def test_patch_delete_removes_the_list_item_with_that_merge_key() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"$patch": "delete", "name": "sidecar"}],
                }
            }
        }
    }
    assert containers(apply("Deployment", deployment(NGINX, SIDECAR), body)) == [NGINX]


def test_patch_replace_in_a_list_replaces_the_whole_list() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}
            }
        }
    }
    result = apply("Deployment", deployment(NGINX, SIDECAR), body)
    assert containers(result) == [{"name": "only", "image": "x"}]


def test_patch_replace_in_an_object_replaces_the_whole_object() -> None:
    body = {"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "new": "1"}}}}}
    result = apply("Deployment", deployment(NGINX), body)
    assert result["spec"]["template"]["metadata"]["labels"] == {"new": "1"}


def test_patch_delete_in_an_object_empties_it_and_adds_nothing_when_absent() -> None:
    original = deployment(NGINX, strategy={"type": "RollingUpdate"})
    body = {"spec": {"strategy": {"$patch": "delete"}, "selector": {"$patch": "delete"}}}
    result = apply("Deployment", original, body)
    assert result["spec"]["strategy"] == {}
    assert "selector" not in result["spec"]


def test_retain_keys_clears_the_keys_it_does_not_list() -> None:
    original = deployment(
        NGINX,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    body = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert apply("Deployment", original, body)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_rejects_a_patch_that_sets_a_key_it_does_not_list() -> None:
    body = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}
    with pytest.raises(PatchError, match="invalid patch format of retainKeys"):
        apply("Deployment", deployment(NGINX, strategy={"type": "RollingUpdate"}), body)


def test_delete_from_primitive_list_removes_finalizers() -> None:
    body = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    assert apply("Deployment", deployment(NGINX), body)["metadata"]["finalizers"] == ["b"]


def test_delete_from_primitive_list_leaves_a_missing_list_missing() -> None:
    original = deployment(NGINX)
    del original["metadata"]["finalizers"]
    body = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    assert "finalizers" not in apply("Deployment", original, body)["metadata"]


def test_finalizers_merge_as_a_set_and_keep_the_patch_order() -> None:
    body = {"metadata": {"finalizers": ["c", "a"]}}
    assert apply("Deployment", deployment(NGINX), body)["metadata"]["finalizers"] == ["c", "a", "b"]


def test_kubectl_replacing_a_finalizer_uses_order_and_deletion_lists_together() -> None:
    body = {
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["a", "c"],
            "finalizers": ["c"],
        }
    }
    assert apply("Deployment", deployment(NGINX), body)["metadata"]["finalizers"] == ["a", "c"]


def test_set_element_order_reorders_the_merged_list() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}
            }
        }
    }
    assert containers(apply("Deployment", deployment(NGINX, SIDECAR), body)) == [SIDECAR, NGINX]


def test_set_element_order_places_a_new_item_where_it_says() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [
                        {"name": "nginx"},
                        {"name": "init"},
                        {"name": "sidecar"},
                    ],
                    "containers": [{"name": "init", "image": "alpine"}],
                }
            }
        }
    }
    result = apply("Deployment", deployment(NGINX, SIDECAR), body)
    assert [c["name"] for c in containers(result)] == ["nginx", "init", "sidecar"]


def test_items_only_on_the_server_keep_their_place_among_ordered_items() -> None:
    original = deployment({"name": "a"}, {"name": "server-only"}, {"name": "b"})
    body = {
        "spec": {
            "template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
        }
    }
    result = apply("Deployment", original, body)
    assert [c["name"] for c in containers(result)] == ["server-only", "b", "a"]


def test_a_set_element_order_contradicting_the_patch_order_is_rejected() -> None:
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar"}, {"name": "nginx"}],
                }
            }
        }
    }
    with pytest.raises(PatchError, match="doesn't match \\$setElementOrder/containers list"):
        apply("Deployment", deployment(NGINX, SIDECAR), body)


def test_a_set_element_order_for_an_unlisted_list_takes_its_merge_key_from_the_entries() -> None:
    original = {"kind": "Lease", "spec": {"holders": [{"id": "x", "n": 1}, {"id": "y", "n": 2}]}}
    body = {
        "spec": {
            "$setElementOrder/holders": [{"id": "y"}, {"id": "x"}],
            "holders": [{"id": "x", "n": 5}],
        }
    }
    assert apply("Lease", original, body)["spec"]["holders"] == [
        {"id": "y", "n": 2},
        {"id": "x", "n": 5},
    ]


def test_lists_without_a_merge_key_are_replaced_whole() -> None:
    pod = {
        "kind": "Pod",
        "spec": {
            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "a"}}]}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
        },
    }
    body = {
        "spec": {
            "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "b"}}]}],
            "tolerations": [{"key": "b", "operator": "Exists"}],
        }
    }
    result = apply("Pod", pod, body)
    assert result["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "b"}}]
    assert result["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_endpoints_subsets_are_atomic() -> None:
    endpoints = {"kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    body = {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}
    assert apply("Endpoints", endpoints, body)["subsets"] == body["subsets"]


def test_service_ports_merge_by_port() -> None:
    service = {
        "kind": "Service",
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }
    body = {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "name": "https"}]}}
    assert apply("Service", service, body)["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 443, "name": "https"},
    ]


def test_node_status_conditions_merge_by_type() -> None:
    node = {
        "kind": "Node",
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "MemoryPressure", "status": "False"},
            ]
        },
    }
    body = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert apply("Node", node, body)["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "MemoryPressure", "status": "False"},
    ]


def test_owner_references_merge_by_uid() -> None:
    original = {
        "kind": "ReplicaSet",
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]},
    }
    body = {"metadata": {"ownerReferences": [{"uid": "2", "controller": True}]}}
    assert apply("ReplicaSet", original, body)["metadata"]["ownerReferences"] == [
        {"uid": "1", "name": "a"},
        {"uid": "2", "name": "b", "controller": True},
    ]


def test_without_set_element_order_the_patched_items_come_before_server_only_ones() -> None:
    original = {"kind": "Pod", "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    body = {"spec": {"containers": [{"name": "new"}, {"name": "b", "image": "x"}]}}
    assert [c["name"] for c in apply("Pod", original, body)["spec"]["containers"]] == [
        "new",
        "a",
        "b",
    ]


def test_null_deletes_a_key_and_new_values_are_stored_without_nulls_or_directives() -> None:
    original = deployment(NGINX)
    body = {
        "spec": {
            "replicas": None,
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "data", "emptyDir": {"medium": None}},
                        {"name": "gone", "$patch": "delete"},
                    ],
                    "securityContext": {"runAsUser": 1000, "fsGroup": None},
                }
            },
        }
    }
    result = apply("Deployment", original, body)
    assert "replicas" not in result["spec"]
    pod_spec = result["spec"]["template"]["spec"]
    assert pod_spec["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert pod_spec["securityContext"] == {"runAsUser": 1000}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"spec": {"$patch": "merge"}}, "unknown patch type: merge in map"),
        ({"spec": {"$patch": "explode"}}, "unknown patch type: explode in map"),
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}},
            "merging lists cannot yet be specified in the patch",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        ({"spec": {"$frobnicate": 1}}, "unknown strategic merge patch directive '\\$frobnicate'"),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "must list scalars"),
        ({"metadata": {"$setElementOrder": ["a"]}}, "invalid patch format of setElementOrder"),
        ({"spec": {"$retainKeys": "type"}}, "invalid patch format of retainKeys"),
    ],
)
def test_malformed_strategic_patches_are_rejected_with_a_reason(body: Obj, message: str) -> None:
    with pytest.raises(PatchError, match=message) as caught:
        apply("Deployment", deployment(NGINX), body)
    assert caught.value.status == 400


def test_merge_keys_come_from_the_kubernetes_struct_tags() -> None:
    deployment_lists = mergekeys.merge_lists("Deployment")
    assert deployment_lists[("spec", "template", "spec", "containers")] == "name"
    assert deployment_lists[("spec", "template", "spec", "containers", "ports")] == "containerPort"
    assert deployment_lists[("spec", "template", "spec", "containers", "volumeMounts")] == (
        "mountPath"
    )
    assert deployment_lists[("metadata", "finalizers")] is None
    assert deployment_lists[("metadata", "ownerReferences")] == "uid"
    assert mergekeys.merge_lists("Service")[("spec", "ports")] == "port"
    assert mergekeys.merge_lists("Pod")[("spec", "hostAliases")] == "ip"
    assert ("spec", "tolerations") not in mergekeys.merge_lists("Pod")
    assert ("subsets",) not in mergekeys.merge_lists("Endpoints")


# --- JSON merge patch (RFC 7386) -------------------------------------------------


def test_kubectl_scale_patch_sets_replicas() -> None:
    result = apply("Deployment", deployment(NGINX), {"spec": {"replicas": 5}}, MERGE)
    assert result["spec"]["replicas"] == 5
    assert containers(result) == [NGINX]


@pytest.mark.parametrize(
    ("original", "body", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_the_rfc_7386_examples(original: Obj, body: Obj, expected: Obj) -> None:
    assert apply("Lease", original, body, MERGE) == expected


# --- JSON patch (RFC 6902) ---------------------------------------------------------


def test_json_patch_adds_replaces_and_removes() -> None:
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels", "value": {"app": "web"}},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
        {"op": "add", "path": "/metadata/finalizers/0", "value": "first"},
    ]
    result = apply("Deployment", deployment(NGINX), ops, JSON_PATCH)
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["labels"] == {"app": "web"}
    assert result["metadata"]["finalizers"] == ["first", "b", "z"]


def test_json_pointer_escapes_address_keys_with_slashes_and_tildes() -> None:
    original = {"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}}
    ops = [
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "x"},
        {"op": "remove", "path": "/metadata/annotations/c~0d"},
    ]
    assert apply("Lease", original, ops, JSON_PATCH) == {"metadata": {"annotations": {"a/b": "x"}}}


def test_json_patch_moves_copies_and_tests() -> None:
    original = {"spec": {"a": {"x": 1}, "list": [1, 2]}}
    ops = [
        {"op": "test", "path": "/spec/a", "value": {"x": 1.0}},
        {"op": "copy", "from": "/spec/a", "path": "/spec/b"},
        {"op": "move", "from": "/spec/list/0", "path": "/spec/list/-"},
        {"op": "move", "from": "/spec/a", "path": "/spec/c"},
    ]
    assert apply("Lease", original, ops, JSON_PATCH) == {
        "spec": {"b": {"x": 1}, "list": [2, 1], "c": {"x": 1}}
    }


def test_a_failing_test_operation_fails_the_whole_patch_and_leaves_the_input_alone() -> None:
    original = deployment(NGINX)
    before = copy.deepcopy(original)
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 9},
        {"op": "test", "path": "/spec/replicas", "value": 2},
    ]
    with pytest.raises(
        PatchError, match='test failed: the value at "/spec/replicas" is 9'
    ) as caught:
        apply("Deployment", original, ops, JSON_PATCH)
    assert caught.value.status == 422
    assert original == before


def test_a_test_operation_does_not_take_true_for_one() -> None:
    with pytest.raises(PatchError, match="test failed"):
        apply("Lease", {"a": True}, [{"op": "test", "path": "/a", "value": 1}], JSON_PATCH)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "remove", "path": "/spec/missing"}], '"/spec/missing" does not exist'),
        ([{"op": "replace", "path": "/nope", "value": 1}], '"/nope" does not exist'),
        ([{"op": "add", "path": "/a/b/c", "value": 1}], '"/a/b/c" does not exist'),
        ([{"op": "add", "path": "/spec/list/5", "value": 1}], "out of bounds"),
        ([{"op": "add", "path": "/spec/list/01", "value": 1}], "is not an array index"),
        ([{"op": "move", "from": "/spec", "path": "/spec/x"}], "into its own child"),
        ([{"op": "frobnicate", "path": "/"}], "unknown JSON Patch operation"),
        ([{"op": "add", "path": "/x"}], 'needs a "value"'),
        ([{"op": "add", "path": "x", "value": 1}], 'must be empty or start with "/"'),
    ],
)
def test_json_patch_operations_that_cannot_apply_are_rejected(ops: list[Obj], message: str) -> None:
    with pytest.raises(PatchError, match=message) as caught:
        apply("Lease", {"spec": {"list": [1]}}, ops, JSON_PATCH)
    assert caught.value.status == 422


# --- JSON patch limits, as the Kubernetes apiserver sets them ------------------------


def _tests(count: int) -> list[Obj]:
    return [{"op": "test", "path": "/spec/a", "value": 1}] * count


def test_a_json_patch_of_ten_thousand_operations_applies() -> None:
    assert apply("Lease", {"spec": {"a": 1}}, _tests(10_000), JSON_PATCH) == {"spec": {"a": 1}}


def test_a_json_patch_of_more_than_ten_thousand_operations_is_refused_as_too_large() -> None:
    with pytest.raises(PatchError) as caught:
        apply("Lease", {"spec": {"a": 1}}, _tests(10_001), JSON_PATCH)
    assert caught.value.status == 413
    assert str(caught.value) == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, "
        "got 10001"
    )


def test_a_copy_bomb_is_stopped_once_its_copies_add_more_than_3_mib() -> None:
    # Each copy appends the list to itself, doubling it: 64 of them would make 2**64 items.
    original = {"spec": {"list": ["x" * 1000]}}
    before = copy.deepcopy(original)
    ops = [{"op": "copy", "from": "/spec/list", "path": "/spec/list/-"}] * 64
    with pytest.raises(PatchError) as caught:
        apply("Lease", original, ops, JSON_PATCH)
    assert caught.value.status == 422
    message = str(caught.value)
    assert message.startswith("Unable to complete the copy, the accumulated size increase of copy")
    assert message.endswith("exceeding the limit 3145728")
    # Stopped at the first copy over the limit: the next one would have doubled the total.
    copied = int(message.split("copy is ")[1].split(",")[0])
    assert 3 * 1024 * 1024 < copied < 2 * 3 * 1024 * 1024
    assert original == before


def test_copies_count_their_values_at_compact_json_length_up_to_exactly_the_limit() -> None:
    # "x" * n is n + 2 bytes of JSON: three copies of it add exactly 3 MiB, which is allowed.
    value = "x" * (1024 * 1024 - 2)
    copies = [{"op": "copy", "from": "/spec/v", "path": f"/spec/c{i}"} for i in range(4)]
    result = apply("Lease", {"spec": {"v": value}}, copies[:3], JSON_PATCH)
    assert result["spec"]["c2"] == value
    with pytest.raises(PatchError) as caught:
        apply("Lease", {"spec": {"v": value}}, copies, JSON_PATCH)
    assert str(caught.value) == (
        "Unable to complete the copy, the accumulated size increase of copy is 4194304, "
        "exceeding the limit 3145728"
    )


def test_adds_and_moves_do_not_count_against_the_copy_limit() -> None:
    big = "x" * (2 * 1024 * 1024)
    ops = [
        {"op": "add", "path": "/spec/a", "value": big},
        {"op": "move", "from": "/spec/a", "path": "/spec/b"},
        {"op": "copy", "from": "/spec/b", "path": "/spec/c"},
    ]
    result = apply("Lease", {"spec": {}}, ops, JSON_PATCH)
    assert result["spec"] == {"b": big, "c": big}


def test_copies_that_nest_a_value_too_deep_to_measure_are_rejected() -> None:
    # Copying an object into its own child nests it one level deeper each time.
    ops = [{"op": "copy", "from": "/spec", "path": "/spec/x"}] * 300
    with pytest.raises(PatchError, match='the value at "/spec" nests too deeply') as caught:
        apply("Lease", {"spec": {}}, ops, JSON_PATCH)
    assert caught.value.status == 400


# --- the entry point ---------------------------------------------------------------


@pytest.mark.parametrize("content_type", [SMP, MERGE, JSON_PATCH])
def test_no_patch_type_modifies_the_original(content_type: str) -> None:
    original = deployment(NGINX, SIDECAR)
    before = copy.deepcopy(original)
    body: Any = (
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x"}]
        if content_type == JSON_PATCH
        else {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "x"}]}}}}
    )
    result = apply("Deployment", original, body, content_type)
    assert original == before
    containers(result)[0]["ports"] = []
    assert original == before


def test_server_side_apply_is_refused_as_unsupported() -> None:
    with pytest.raises(PatchError, match="server-side apply") as caught:
        patch.apply_patch("Deployment", {}, b"{}", "application/apply-patch+yaml")
    assert caught.value.status == 415


def test_an_unknown_content_type_is_refused() -> None:
    with pytest.raises(PatchError, match="unsupported patch content type") as caught:
        patch.apply_patch("Deployment", {}, b"{}", "application/json")
    assert caught.value.status == 415


def test_content_type_parameters_are_ignored() -> None:
    result = patch.apply_patch(
        "Lease", {}, b'{"a":1}', "application/merge-patch+json; charset=utf-8"
    )
    assert result == {"a": 1}


@pytest.mark.parametrize("content_type", [SMP, MERGE, JSON_PATCH])
def test_a_body_that_is_not_json_is_rejected(content_type: str) -> None:
    with pytest.raises(PatchError, match="not valid JSON") as caught:
        patch.apply_patch("Lease", {}, b"{nope", content_type)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (SMP, b"[1]", "must be a JSON object, not an array"),
        (MERGE, b'"x"', "must be a JSON object, not a string"),
        (JSON_PATCH, b"{}", "must be an array of operations, not an object"),
        (JSON_PATCH, b"[1]", "every operation of a JSON Patch must be a JSON object"),
    ],
)
def test_a_body_of_the_wrong_shape_is_rejected(
    content_type: str, body: bytes, message: str
) -> None:
    with pytest.raises(PatchError, match=message):
        patch.apply_patch("Lease", {}, body, content_type)


def test_a_json_patch_that_replaces_the_object_with_a_scalar_is_rejected() -> None:
    with pytest.raises(PatchError, match="must be a JSON object, not a number"):
        apply("Lease", {}, [{"op": "replace", "path": "", "value": 1}], JSON_PATCH)


# --- properties -------------------------------------------------------------------------

_scalars = st.one_of(
    st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=5), st.floats(allow_nan=False)
)
_keys = st.text(alphabet="abcde", min_size=1, max_size=3)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(_keys, _documents, max_size=5)


def _merge_diff(a: Any, b: Any) -> Any:
    """The RFC 7386 patch that turns `a` into `b` (`b` holds no nulls)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return b
    diff: dict[str, Any] = {k: None for k in a if k not in b}
    for key, value in b.items():
        if key not in a:
            diff[key] = value
        elif a[key] != value:
            diff[key] = _merge_diff(a[key], value)
    return diff


@given(_objects, _objects)
def test_a_merge_patch_of_the_difference_turns_one_object_into_the_other(a: Obj, b: Obj) -> None:
    assert patch.merge_patch(a, _merge_diff(a, b)) == b


@given(_objects)
def test_a_merge_patch_of_an_object_with_its_own_difference_is_identity(a: Obj) -> None:
    assert _merge_diff(a, a) == {}
    assert patch.merge_patch(a, _merge_diff(a, a)) == a


_tree = st.recursive(
    _scalars, lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=10
)
_patch_tree = st.recursive(
    st.one_of(st.none(), _scalars),
    lambda inner: st.dictionaries(_keys, inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_keys, _tree, max_size=4), st.dictionaries(_keys, _patch_tree, max_size=4))
def test_without_lists_or_directives_a_strategic_patch_is_a_merge_patch(a: Obj, p: Obj) -> None:
    assert patch.strategic_merge_patch("Pod", a, p) == patch.merge_patch(a, p)


_names = st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=4), min_size=1, unique=True)


@given(_names, st.data())
def test_reapplying_one_changed_image_keeps_every_other_container_and_the_order(
    names: list[str], data: st.DataObject
) -> None:
    original = deployment(*({"name": n, "image": f"{n}:1", "args": [n]} for n in names))
    changed = data.draw(st.sampled_from(names))
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": n} for n in names],
                    "containers": [{"name": changed, "image": f"{changed}:2"}],
                }
            }
        }
    }
    result = patch.strategic_merge_patch("Deployment", original, body)
    assert containers(result) == [
        {"name": n, "image": f"{n}:{2 if n == changed else 1}", "args": [n]} for n in names
    ]


@given(_objects, _keys, _documents)
def test_a_json_patch_add_then_remove_of_a_new_key_is_identity(
    a: Obj, key: str, value: Any
) -> None:
    new_key = key + "-new"
    ops = [
        {"op": "add", "path": f"/{new_key}", "value": value},
        {"op": "test", "path": f"/{new_key}", "value": value},
        {"op": "remove", "path": f"/{new_key}"},
    ]
    assert patch.json_patch(a, ops) == a
