"""resourceVersion and resourceVersionMatch on lists and gets, as Kubernetes serves them.

Kubernetes' "Semantics for get and list" (API Concepts): a list at an Exact
revision shows the objects as they were then, NotOlderThan (and a bare
resourceVersion without a limit) the newest state once the server has
reached that revision, a limit without a continue token makes a bare
resourceVersion Exact. A revision not reached yet is waited for and then
answered 504 "Too large resource version"; an Exact one compacted away is
410 Gone; combinations ValidateListOptions refuses are 422 on
ListOptions.meta.k8s.io, and an unreadable resourceVersion is 400. Every
answer here is compared whole with what Kubernetes sends, and a refused
request must change nothing.

The servers run as their own processes (see `apiserver_process`): one with
a short wait for a revision not yet reached, and one with Kubernetes' own
three seconds whose history the tests compact while it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from switchboard.store.sqlite import SQLiteStore
from tests.e2e.apiserver_process import ApiServer, Reply, running_apiserver

pytestmark = pytest.mark.e2e

WAIT = 1.0  # the test server's --resource-version-wait, in seconds
JSON = {"Content-Type": "application/json"}
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}

load_kube_config: Any = config.load_kube_config  # the client's config module has no annotations


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_apiserver(
        tmp_path_factory.mktemp("apiserver"), "--resource-version-wait", str(WAIT)
    ) as srv:
        yield srv


def core_api(srv: ApiServer) -> Any:
    cfg = client.Configuration()
    load_kube_config(config_file=str(srv.kubeconfig), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


@pytest.fixture(scope="module")
def core(apiserver: ApiServer) -> Iterator[Any]:
    api = core_api(apiserver)
    yield api
    api.api_client.close()


@pytest.fixture
def namespace(apiserver: ApiServer) -> Iterator[str]:
    name = "rv-" + uuid.uuid4().hex[:10]
    create(apiserver, "/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    apiserver.request("DELETE", f"/api/v1/namespaces/{name}")


# ---- helpers ---------------------------------------------------------------------------------


def create(srv: ApiServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = srv.request("POST", path, json.dumps(body).encode(), JSON)
    assert reply.status == 201, reply.body
    result: dict[str, Any] = reply.json()
    return result


def service(name: str, version: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "web", "v": version}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def services(ns: str, **query: str) -> str:
    path = f"/api/v1/namespaces/{ns}/services"
    return f"{path}?{urlencode(query)}" if query else path


def get_json(srv: ApiServer, path: str, headers: dict[str, str] | None = None) -> Any:
    reply = srv.request("GET", path, headers=headers)
    assert reply.status == 200, reply.body
    return reply.json()


def names(listed: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listed["items"]]


def state(srv: ApiServer, ns: str) -> list[tuple[str, str]]:
    """The namespace's Services as (name, resourceVersion): what a refused request keeps."""
    return [
        (item["metadata"]["name"], item["metadata"]["resourceVersion"])
        for item in get_json(srv, services(ns))["items"]
    ]


def status_of(reply: Reply) -> dict[str, Any]:
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body: dict[str, Any] = reply.json()
    assert body["kind"] == "Status" and body["code"] == reply.status, body
    return body


def failure(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def too_large(requested: int, current: int) -> dict[str, Any]:
    """Kubernetes' storage.NewTooLargeResourceVersionError from the watch cache's wait."""
    return failure(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def bad_resource_version(value: str, reason: str) -> str:
    return (
        f'invalid resource version: resourceVersion: Invalid value: "{value}": '
        f'strconv.ParseUint: parsing "{value}": {reason}'
    )


@dataclass(frozen=True)
class History:
    """A namespace whose Services changed after revision `before`."""

    namespace: str
    before: str  # the list's resourceVersion when a (v=1) and b existed
    a_before: str  # a's own resourceVersion then


def make_history(srv: ApiServer, ns: str) -> History:
    a = create(srv, services(ns), service("a"))
    create(srv, services(ns), service("b"))
    before = get_json(srv, services(ns))["metadata"]["resourceVersion"]
    patch = json.dumps({"metadata": {"labels": {"v": "2"}}}).encode()
    reply = srv.request(
        "PATCH",
        f"{services(ns)}/a",
        patch,
        {"Content-Type": "application/merge-patch+json"},
    )
    assert reply.status == 200, reply.body
    assert srv.request("DELETE", f"{services(ns)}/b").status == 200
    create(srv, services(ns), service("c", version="3"))
    return History(ns, before, a["metadata"]["resourceVersion"])


@pytest.fixture
def history(apiserver: ApiServer, namespace: str) -> History:
    return make_history(apiserver, namespace)


def timed(call: Callable[[], Reply]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = call()
    return reply, time.monotonic() - started


def current_revision(srv: ApiServer) -> int:
    return int(get_json(srv, "/api/v1/namespaces")["metadata"]["resourceVersion"])


# ---- Exact ------------------------------------------------------------------------------------


def test_an_exact_list_shows_the_objects_as_they_were_at_that_revision(
    core: Any, history: History
) -> None:
    listed = core.list_namespaced_service(
        history.namespace, resource_version=history.before, resource_version_match="Exact"
    )

    assert listed.metadata.resource_version == history.before
    assert [s.metadata.name for s in listed.items] == ["a", "b"]  # b deleted since, c not yet
    a = listed.items[0].metadata
    assert (a.labels["v"], a.resource_version) == ("1", history.a_before)


def test_an_exact_list_with_a_selector_or_as_a_table_reads_the_same_revision(
    apiserver: ApiServer, history: History
) -> None:
    query = {"resourceVersion": history.before, "resourceVersionMatch": "Exact"}
    # Both carried v=1 then; now a carries v=2, b is gone and c carries v=3.
    selected = get_json(apiserver, services(history.namespace, labelSelector="v=1", **query))
    assert names(selected) == ["a", "b"]
    assert selected["metadata"]["resourceVersion"] == history.before
    assert names(get_json(apiserver, services(history.namespace, labelSelector="v=1"))) == []

    table = get_json(apiserver, services(history.namespace, **query), TABLE)
    assert table["kind"] == "Table"
    assert [row["cells"][0] for row in table["rows"]] == ["a", "b"]
    assert table["metadata"]["resourceVersion"] == history.before


def test_a_limit_without_continue_makes_a_resource_version_exact_across_pages(
    apiserver: ApiServer, history: History
) -> None:
    for query in ({}, {"resourceVersionMatch": "Exact"}):
        first = get_json(
            apiserver,
            services(history.namespace, resourceVersion=history.before, limit="1", **query),
        )
        assert (names(first), first["metadata"]["resourceVersion"]) == (["a"], history.before)
        assert first["items"][0]["metadata"]["labels"]["v"] == "1"
        rest = get_json(
            apiserver,
            services(history.namespace, limit="1", **{"continue": first["metadata"]["continue"]}),
        )
        assert (names(rest), rest["metadata"]["resourceVersion"]) == (["b"], history.before)
        assert "continue" not in rest["metadata"]


def test_a_continue_token_with_resource_version_zero_reads_the_tokens_revision(
    apiserver: ApiServer, history: History
) -> None:
    first = get_json(
        apiserver, services(history.namespace, resourceVersion=history.before, limit="1")
    )
    token = first["metadata"]["continue"]
    rest = get_json(
        apiserver,
        services(history.namespace, limit="1", resourceVersion="0", **{"continue": token}),
    )
    assert (names(rest), rest["metadata"]["resourceVersion"]) == (["b"], history.before)


# ---- NotOlderThan and Any ---------------------------------------------------------------------


def test_a_not_older_than_list_serves_the_newest_state(core: Any, history: History) -> None:
    newest = core.list_namespaced_service(history.namespace)
    for kwargs in (
        {"resource_version": history.before, "resource_version_match": "NotOlderThan"},
        {"resource_version": history.before},  # no limit: not older than
        {"resource_version": "0"},  # any: this server always has the newest
        {"resource_version": "0", "resource_version_match": "NotOlderThan"},
    ):
        listed = core.list_namespaced_service(history.namespace, **kwargs)
        assert [s.metadata.name for s in listed.items] == ["a", "c"], kwargs
        assert listed.items[0].metadata.labels["v"] == "2"
        assert int(listed.metadata.resource_version) >= int(newest.metadata.resource_version)


def test_a_get_with_a_resource_version_serves_the_newest_object(
    apiserver: ApiServer, history: History
) -> None:
    path = f"{services(history.namespace)}/a"
    newest = get_json(apiserver, path)
    for rv in (history.a_before, "0", newest["metadata"]["resourceVersion"]):
        got = get_json(apiserver, f"{path}?resourceVersion={rv}")
        assert got["metadata"]["resourceVersion"] == newest["metadata"]["resourceVersion"]
        assert got["metadata"]["labels"]["v"] == "2"
    missing = apiserver.request("GET", f"{services(history.namespace)}/b?resourceVersion=1")
    assert status_of(missing)["reason"] == "NotFound"


# ---- a revision not reached yet ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"resourceVersionMatch": "NotOlderThan"},
        {"resourceVersionMatch": "Exact"},
        {"limit": "1"},
    ],
    ids=["bare", "not-older-than", "exact", "limit"],
)
def test_a_list_at_a_revision_not_reached_waits_then_times_out(
    apiserver: ApiServer, namespace: str, query: dict[str, str]
) -> None:
    create(apiserver, services(namespace), service("a"))
    before = state(apiserver, namespace)
    current = current_revision(apiserver)
    future = current + 1000

    reply, took = timed(
        lambda: apiserver.request("GET", services(namespace, resourceVersion=str(future), **query))
    )

    assert took >= WAIT * 0.9
    assert reply.headers["retry-after"] == "1"
    body = status_of(reply)
    assert body == too_large(future, int(body["message"].rsplit(" ", 1)[1]))
    assert int(body["message"].rsplit(" ", 1)[1]) >= current
    assert state(apiserver, namespace) == before


def test_a_get_at_a_revision_not_reached_waits_then_times_out(
    apiserver: ApiServer, namespace: str
) -> None:
    create(apiserver, services(namespace), service("a"))
    future = current_revision(apiserver) + 1000
    reply, took = timed(
        lambda: apiserver.request("GET", f"{services(namespace)}/a?resourceVersion={future}")
    )
    assert took >= WAIT * 0.9
    assert reply.headers["retry-after"] == "1"
    body = status_of(reply)
    assert body == too_large(future, int(body["message"].rsplit(" ", 1)[1]))


def test_a_list_is_answered_once_a_write_reaches_its_revision(
    apiserver: ApiServer, namespace: str
) -> None:
    wanted = current_revision(apiserver) + 1
    replies: list[Reply] = []
    reader = threading.Thread(
        target=lambda: replies.append(
            apiserver.request("GET", services(namespace, resourceVersion=str(wanted)))
        )
    )
    reader.start()
    time.sleep(WAIT / 5)
    create(apiserver, services(namespace), service("late"))
    reader.join(timeout=10)

    (reply,) = replies
    assert reply.status == 200, reply.body
    listed = reply.json()
    # The server's own writes (a namespace finalized) may have reached it first.
    assert names(listed) in (["late"], [])
    assert int(listed["metadata"]["resourceVersion"]) >= wanted


# ---- refused combinations ---------------------------------------------------------------------


def forbidden(detail: str, field: str = "resourceVersionMatch") -> dict[str, str]:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


NEEDS_RV = forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided")
WITH_CONTINUE = forbidden("resourceVersionMatch is forbidden when continue is provided")
EXACT_ZERO = forbidden('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
NOT_SUPPORTED = {
    "reason": "FieldValueNotSupported",
    "message": 'Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""',
    "field": "resourceVersionMatch",
}
INITIAL_EVENTS = forbidden("sendInitialEvents is forbidden for list", "sendInitialEvents")


def invalid_list_options(*causes: dict[str, str]) -> dict[str, Any]:
    rendered = [f"{c['field']}: {c['message']}" for c in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return failure(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {joined}',
        {"kind": "ListOptions", "group": "meta.k8s.io", "causes": list(causes)},
    )


@pytest.mark.parametrize(
    ("query", "causes"),
    [
        ({"resourceVersionMatch": "Exact"}, [NEEDS_RV]),
        ({"resourceVersionMatch": "NotOlderThan", "limit": "1"}, [NEEDS_RV]),
        ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, [EXACT_ZERO]),
        ({"resourceVersionMatch": "Newest", "resourceVersion": "5"}, [NOT_SUPPORTED]),
        (
            {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "5", "continue": "x"},
            [WITH_CONTINUE],
        ),
        ({"resourceVersionMatch": "Exact", "continue": "x"}, [NEEDS_RV, WITH_CONTINUE]),
        ({"resourceVersionMatch": "Newest"}, [NEEDS_RV, NOT_SUPPORTED]),
        ({"sendInitialEvents": "true"}, [INITIAL_EVENTS]),
        (
            {"sendInitialEvents": "false", "resourceVersionMatch": "Exact"},
            [NEEDS_RV, INITIAL_EVENTS],
        ),
    ],
    ids=[
        "match-without-rv",
        "match-without-rv-with-limit",
        "exact-zero",
        "unknown-match",
        "match-with-continue",
        "two-errors",
        "unknown-match-without-rv",
        "initial-events-on-list",
        "initial-events-and-match",
    ],
)
def test_a_combination_validate_list_options_refuses_is_invalid_and_changes_nothing(
    apiserver: ApiServer, namespace: str, query: dict[str, str], causes: list[dict[str, str]]
) -> None:
    create(apiserver, services(namespace), service("a"))
    before = state(apiserver, namespace)

    listed = apiserver.request("GET", services(namespace, **query))
    assert status_of(listed) == invalid_list_options(*causes)
    assert "retry-after" not in listed.headers

    # DeleteCollection validates its ListOptions the same way, before deleting anything.
    deleted = apiserver.request("DELETE", services(namespace, **query))
    assert status_of(deleted) == invalid_list_options(*causes)
    assert state(apiserver, namespace) == before


def test_the_python_client_sees_the_422_for_a_match_without_a_resource_version(
    core: Any, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        core.list_namespaced_service(namespace, resource_version_match="Exact")
    assert info.value.status == 422
    assert json.loads(info.value.body or "") == invalid_list_options(NEEDS_RV)


def test_a_watch_refuses_a_match_without_send_initial_events(
    apiserver: ApiServer, namespace: str
) -> None:
    query = {"watch": "true", "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "1"}
    reply = apiserver.request("GET", services(namespace, **query))
    assert status_of(reply) == failure(
        422,
        "Invalid",
        'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        {
            "kind": "ListOptions",
            "group": "meta.k8s.io",
            "causes": [
                forbidden(
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                    "provided"
                )
            ],
        },
    )


def watch_events(srv: ApiServer, ns: str, **query: str) -> list[dict[str, Any]]:
    """The events of a watch that ends after a second, as (type, name or bookmark) lines."""
    reply = srv.request("GET", services(ns, watch="true", timeoutSeconds="1", **query))
    assert reply.status == 200, reply.body
    return [json.loads(line) for line in reply.body.splitlines()]


def test_a_watch_list_starts_with_the_state_at_its_revision_and_marks_the_end(
    apiserver: ApiServer, namespace: str
) -> None:
    create(apiserver, services(namespace), service("a"))
    create(apiserver, services(namespace), service("b"))
    revision = get_json(apiserver, services(namespace))["metadata"]["resourceVersion"]
    for rv in ({}, {"resourceVersion": "0"}, {"resourceVersion": revision}):
        events = watch_events(
            apiserver,
            namespace,
            sendInitialEvents="true",
            resourceVersionMatch="NotOlderThan",
            allowWatchBookmarks="true",
            **rv,
        )
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("BOOKMARK", None),
        ], rv
        end = events[-1]["object"]["metadata"]
        assert end["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert int(end["resourceVersion"]) >= int(revision)


def test_a_watch_without_initial_events_starts_from_now(
    apiserver: ApiServer, namespace: str
) -> None:
    create(apiserver, services(namespace), service("a"))
    timer = threading.Timer(0.3, create, (apiserver, services(namespace), service("c")))
    timer.start()
    try:
        events = watch_events(
            apiserver, namespace, sendInitialEvents="false", resourceVersionMatch="NotOlderThan"
        )
    finally:
        timer.join()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "c")]


@pytest.mark.parametrize("value", ["true", "1", "yes", "", "TRUE"])
def test_any_watch_flag_but_false_or_zero_starts_a_watch(
    apiserver: ApiServer, namespace: str, value: str
) -> None:
    # Kubernetes decodes a query boolean as true unless it is "0" or "false" (any case).
    create(apiserver, services(namespace), service("a"))
    reply = apiserver.request("GET", services(namespace, watch=value, timeoutSeconds="1"))
    assert reply.status == 200, reply.body
    (line,) = reply.body.splitlines()
    event = json.loads(line)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "a")


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_a_false_watch_flag_lists(apiserver: ApiServer, namespace: str, value: str) -> None:
    create(apiserver, services(namespace), service("a"))
    listed = get_json(apiserver, services(namespace, watch=value))
    assert listed["kind"] == "ServiceList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]


# ---- unreadable resourceVersions and continue ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "invalid syntax"),
        ("-1", "invalid syntax"),
        ("+5", "invalid syntax"),
        ("1.5", "invalid syntax"),
        (" 5", "invalid syntax"),
        ("99999999999999999999999", "value out of range"),
        ("18446744073709551616", "value out of range"),
    ],
)
def test_an_unreadable_resource_version_is_a_bad_request(
    apiserver: ApiServer, namespace: str, value: str, reason: str
) -> None:
    create(apiserver, services(namespace), service("a"))
    before = state(apiserver, namespace)
    expected = failure(400, "BadRequest", bad_resource_version(value, reason))
    for query in ({}, {"resourceVersionMatch": "Exact"}, {"limit": "1"}):
        reply = apiserver.request("GET", services(namespace, resourceVersion=value, **query))
        assert status_of(reply) == expected, query
    # A get: Kubernetes answers 500 here (kubernetes#101350); this server answers as a list.
    reply = apiserver.request("GET", f"{services(namespace)}/a?resourceVersion={quote(value)}")
    assert status_of(reply) == expected
    assert state(apiserver, namespace) == before


def test_a_resource_version_beside_a_continue_token_is_a_bad_request(
    apiserver: ApiServer, namespace: str
) -> None:
    for name in ("a", "b"):
        create(apiserver, services(namespace), service(name))
    token = get_json(apiserver, services(namespace, limit="1"))["metadata"]["continue"]
    rv = str(current_revision(apiserver))
    reply = apiserver.request(
        "GET", services(namespace, limit="1", resourceVersion=rv, **{"continue": token})
    )
    assert status_of(reply) == failure(
        400, "BadRequest", "specifying resource version is not allowed when using continue"
    )


# ---- a compacted history, and Kubernetes' own wait ----------------------------------------------
#
# This server runs with the default wait. Its history is compacted while it is stopped (the
# store must be its file's only writer), then it is started again on the same data.


@dataclass(frozen=True)
class Compacted:
    srv: ApiServer
    history: History
    compacted: int
    token: str  # the continue token of a list's first page, taken before the compaction


async def _compact(path: Path) -> int:
    store = await SQLiteStore.open(path)
    try:
        revision = await store.current_revision()
        await store.compact(revision)
        return revision
    finally:
        await store.close()


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compacted]:
    data_dir = tmp_path_factory.mktemp("compacted")
    ns = "history"
    with running_apiserver(data_dir) as srv:
        create(srv, "/api/v1/namespaces", {"metadata": {"name": ns}})
        history = make_history(srv, ns)
        token = get_json(srv, services(ns, limit="1"))["metadata"]["continue"]
    revision = asyncio.run(_compact(data_dir / "state.db"))
    (data_dir / "kubeconfig").unlink()  # the next start announces itself by writing it anew
    with running_apiserver(data_dir) as srv:
        yield Compacted(srv, history, revision, token)


def test_an_exact_list_at_a_compacted_revision_is_gone(compacted: Compacted) -> None:
    srv, history = compacted.srv, compacted.history
    gone = failure(410, "Expired", "The resourceVersion for the provided list is too old.")
    for query in ({"resourceVersionMatch": "Exact"}, {"limit": "1"}):
        reply = srv.request(
            "GET", services(history.namespace, resourceVersion=history.before, **query)
        )
        assert status_of(reply) == gone, query

    core = core_api(srv)
    with contextlib.closing(core.api_client), pytest.raises(ApiException) as info:
        core.list_namespaced_service(
            history.namespace, resource_version=history.before, resource_version_match="Exact"
        )
    assert (info.value.status, json.loads(info.value.body or "")) == (410, gone)


def test_a_compacted_continue_token_is_gone_with_a_token_that_goes_on_at_the_newest(
    compacted: Compacted,
) -> None:
    srv, ns = compacted.srv, compacted.history.namespace
    reply = srv.request("GET", services(ns, limit="1", **{"continue": compacted.token}))
    body = status_of(reply)
    assert (body["code"], body["reason"]) == (410, "Expired")
    assert body["message"] == (
        "The provided continue parameter is too old to display a consistent list result. You "
        "can start a new list without the continue parameter, or use the continue token in "
        "this response to retrieve the remainder of the results. Continuing with the provided "
        "token results in an inconsistent list - objects that were created, modified, or "
        "deleted between the time the first chunk was returned and now may show up in the list."
    )
    rest = get_json(srv, services(ns, limit="1", **{"continue": body["metadata"]["continue"]}))
    assert names(rest) == ["c"]  # the rest after "a", as it is now
    assert int(rest["metadata"]["resourceVersion"]) >= compacted.compacted


def test_a_not_older_than_list_from_a_compacted_revision_serves_the_newest_state(
    compacted: Compacted,
) -> None:
    srv, history = compacted.srv, compacted.history
    listed = get_json(
        srv,
        services(
            history.namespace, resourceVersion=history.before, resourceVersionMatch="NotOlderThan"
        ),
    )
    assert names(listed) == ["a", "c"]
    assert int(listed["metadata"]["resourceVersion"]) >= compacted.compacted


def test_by_default_a_read_waits_three_seconds_for_a_revision_not_reached(
    compacted: Compacted,
) -> None:
    srv = compacted.srv
    future = current_revision(srv) + 1000
    reply, took = timed(lambda: srv.request("GET", f"/api/v1/services?resourceVersion={future}"))
    assert 3.0 <= took < 6.0
    body = status_of(reply)
    assert body == too_large(future, int(body["message"].rsplit(" ", 1)[1]))
