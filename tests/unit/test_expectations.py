"""A controller waits for its own writes to show in its caches before acting again."""

from __future__ import annotations

from switchboard.controllers.expectations import Expectations


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_without_expectations_is_satisfied() -> None:
    assert Expectations().satisfied("ns/rs")


def test_expected_creations_must_all_be_observed() -> None:
    e = Expectations()
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")


def test_observing_more_creations_than_expected_does_not_go_negative() -> None:
    e = Expectations()
    e.expect_creations("ns/rs", 1)
    for _ in range(3):
        e.creation_observed("ns/rs")
    e.expect_creations("ns/rs", 1)
    assert not e.satisfied("ns/rs")


def test_a_deletion_observed_twice_counts_once() -> None:
    e = Expectations()
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/a")
    e.deletion_observed("ns/rs", "ns/a")
    assert not e.satisfied("ns/rs")
    assert e.pending("ns/rs") == (0, 1)
    e.deletion_observed("ns/rs", "ns/b")
    assert e.satisfied("ns/rs")


def test_expectations_expire_so_a_lost_event_cannot_stall_a_controller() -> None:
    clock = FakeClock()
    e = Expectations(ttl=10, clock=clock)
    e.expect_creations("ns/rs", 1)
    clock.now = 10
    assert not e.satisfied("ns/rs")
    clock.now = 10.5
    assert e.satisfied("ns/rs")


def test_forgetting_a_key_clears_it() -> None:
    e = Expectations()
    e.expect_creations("ns/rs", 3)
    e.forget("ns/rs")
    assert e.satisfied("ns/rs")
    assert e.pending("ns/rs") == (0, 0)
