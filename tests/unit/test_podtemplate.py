"""Pod templates become pods, hashes and revisions as a Deployment needs them."""

from __future__ import annotations

from switchboard.api.kinds import Obj
from switchboard.controllers import podtemplate as pt

TEMPLATE: Obj = {
    "metadata": {"labels": {"app": "web"}, "annotations": {"note": "x"}},
    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
}
RS: Obj = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "metadata": {"name": "web-abc", "namespace": "default", "uid": "u-rs"},
}


def test_a_pod_from_a_template_is_controlled_by_its_replicaset() -> None:
    pod = pt.pod_from_template(TEMPLATE, RS)
    assert pod["metadata"]["generateName"] == "web-abc-"
    assert pod["metadata"]["namespace"] == "default"
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["metadata"]["annotations"] == {"note": "x"}
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-abc",
            "uid": "u-rs",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert pt.is_controlled_by(pod, RS)
    assert pod["spec"] == TEMPLATE["spec"]
    pod["spec"]["containers"][0]["image"] = "changed"
    assert TEMPLATE["spec"]["containers"][0]["image"] == "nginx"


def test_the_template_hash_is_stable_and_dns_safe() -> None:
    h = pt.template_hash(TEMPLATE)
    assert h == pt.template_hash({**TEMPLATE})
    assert h.isalnum() and h.islower() and 1 <= len(h) <= 10
    assert not set(h) & set("aeiou013")


def test_the_template_hash_changes_with_the_template_and_the_collision_count() -> None:
    other = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "httpd"}]}}
    h = pt.template_hash(TEMPLATE)
    assert pt.template_hash(other) != h
    assert pt.template_hash(TEMPLATE, 1) != h
    assert pt.template_hash(TEMPLATE, 1) != pt.template_hash(TEMPLATE, 2)


def test_the_hash_label_does_not_change_the_hash_or_equality() -> None:
    hashed = pt.template_with_hash(TEMPLATE, "xyz")
    assert hashed["metadata"]["labels"] == {"app": "web", "pod-template-hash": "xyz"}
    assert pt.equal_ignore_hash(hashed, TEMPLATE)
    assert pt.template_hash(hashed) == pt.template_hash(TEMPLATE)
    assert pt.template_without_hash(hashed) == TEMPLATE


def test_templates_differing_in_an_annotation_are_different() -> None:
    restarted = {
        **TEMPLATE,
        "metadata": {**TEMPLATE["metadata"], "annotations": {"restartedAt": "now"}},
    }
    assert not pt.equal_ignore_hash(restarted, TEMPLATE)


def test_the_selector_gains_the_hash_label() -> None:
    sel = {"matchLabels": {"app": "web"}}
    assert pt.selector_with_hash(sel, "h") == {
        "matchLabels": {"app": "web", "pod-template-hash": "h"}
    }
    assert sel == {"matchLabels": {"app": "web"}}


def test_a_new_replicaset_gets_the_next_revision_and_replica_annotations() -> None:
    d = {
        "metadata": {
            "annotations": {"kubernetes.io/change-cause": "v2", pt.REVISION_ANNOTATION: "1"}
        }
    }
    result = pt.new_rs_annotations(d, {}, 2, exists=False, desired=3, maximum=4)
    assert result == {
        "kubernetes.io/change-cause": "v2",
        pt.REVISION_ANNOTATION: "2",
        pt.DESIRED_REPLICAS_ANNOTATION: "3",
        pt.MAX_REPLICAS_ANNOTATION: "4",
    }


def test_rolling_back_to_an_old_replicaset_records_its_old_revision() -> None:
    d: Obj = {"metadata": {}}
    current = {pt.REVISION_ANNOTATION: "1"}
    once = pt.new_rs_annotations(d, current, 3, exists=True, desired=3, maximum=4)
    assert once[pt.REVISION_ANNOTATION] == "3"
    assert once[pt.REVISION_HISTORY_ANNOTATION] == "1"
    twice = pt.new_rs_annotations(d, {**once}, 5, exists=True, desired=3, maximum=4)
    assert twice[pt.REVISION_HISTORY_ANNOTATION] == "1,3"
    assert pt.DESIRED_REPLICAS_ANNOTATION not in twice


def test_a_revision_is_never_lowered() -> None:
    current = {pt.REVISION_ANNOTATION: "7"}
    result = pt.new_rs_annotations({"metadata": {}}, current, 4, exists=True, desired=1, maximum=1)
    assert result == current


def test_last_applied_configuration_is_not_copied_to_replicasets() -> None:
    d = {"metadata": {"annotations": {pt.LAST_APPLIED_ANNOTATION: "{}", "team": "a"}}}
    assert pt.copied_annotations(d["metadata"]["annotations"]) == {"team": "a"}


def test_revisions_read_from_annotations() -> None:
    rss: list[Obj] = [
        {"metadata": {"annotations": {pt.REVISION_ANNOTATION: "2"}}},
        {"metadata": {"annotations": {pt.REVISION_ANNOTATION: "x"}}},
        {"metadata": {}},
    ]
    assert [pt.revision(rs) for rs in rss] == [2, 0, 0]
    assert pt.max_revision(rss) == 2
    assert pt.max_revision([]) == 0
