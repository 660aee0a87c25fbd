"""A controller owns what its selector matches and its reference names — no more."""

from __future__ import annotations

from switchboard.api import selectors
from switchboard.api.kinds import Obj
from switchboard.controllers import claims
from switchboard.controllers.claims import Claim

OWNER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "metadata": {"name": "web", "namespace": "ns", "uid": "u-web"},
}
SELECTOR = selectors.from_label_selector({"matchLabels": {"app": "web"}})


def pod(labels: dict[str, str], owner_uid: str | None = None, deleting: bool = False) -> Obj:
    meta: Obj = {"name": "p", "labels": labels, "resourceVersion": "7"}
    if owner_uid:
        meta["ownerReferences"] = [{"uid": owner_uid, "controller": True, "name": "x"}]
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta}


def deleting(owner: Obj) -> Obj:
    return {**owner, "metadata": {**owner["metadata"], "deletionTimestamp": "2024-01-01T00:00:00Z"}}


def test_an_owned_pod_that_still_matches_stays_owned() -> None:
    assert claims.decide(OWNER, SELECTOR, pod({"app": "web"}, "u-web")) is Claim.OWNED


def test_an_owned_pod_that_stopped_matching_is_released_unless_the_owner_is_going() -> None:
    relabelled = pod({"app": "debug"}, "u-web")
    assert claims.decide(OWNER, SELECTOR, relabelled) is Claim.RELEASE
    assert claims.decide(deleting(OWNER), SELECTOR, relabelled) is Claim.IGNORE


def test_a_matching_orphan_is_adopted_by_a_live_owner_only() -> None:
    orphan = pod({"app": "web"})
    assert claims.decide(OWNER, SELECTOR, orphan) is Claim.ADOPT
    assert claims.decide(deleting(OWNER), SELECTOR, orphan) is Claim.IGNORE
    assert claims.decide(OWNER, SELECTOR, pod({"app": "web"}, deleting=True)) is Claim.IGNORE
    assert claims.decide(OWNER, SELECTOR, pod({"app": "db"})) is Claim.IGNORE


def test_a_pod_controlled_by_another_owner_is_never_touched() -> None:
    assert claims.decide(OWNER, SELECTOR, pod({"app": "web"}, "u-other")) is Claim.IGNORE


def test_adoption_appends_a_controller_reference_guarded_by_the_resource_version() -> None:
    orphan = pod({"app": "web"})
    orphan["metadata"]["ownerReferences"] = [{"uid": "u-x", "name": "x", "kind": "Foo"}]
    patch = claims.adoption_patch(OWNER, orphan)
    assert patch["metadata"]["resourceVersion"] == "7"
    refs = patch["metadata"]["ownerReferences"]
    assert refs[0]["uid"] == "u-x"
    assert refs[1] == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": "u-web",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_releasing_the_only_reference_removes_the_field() -> None:
    patch = claims.release_patch("u-web", pod({"app": "x"}, "u-web"))
    assert patch == {"metadata": {"ownerReferences": None, "resourceVersion": "7"}}
