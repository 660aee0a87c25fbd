"""The garbage collector finds an owner's dependents by uid."""

from __future__ import annotations

from switchboard.controllers.garbagecollector import owner_uid_index


def test_dependents_are_indexed_under_every_owner_they_name() -> None:
    obj = {
        "metadata": {
            "ownerReferences": [
                {"uid": "a", "kind": "ReplicaSet", "name": "x"},
                {"uid": "b", "kind": "Service", "name": "y"},
                {"kind": "Broken"},
            ]
        }
    }
    assert owner_uid_index(obj) == ("a", "b")
    assert owner_uid_index({"metadata": {}}) == ()
