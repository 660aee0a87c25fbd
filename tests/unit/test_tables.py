"""Server-side Tables: the cells `kubectl get` prints, kind by kind.

Expected cells are what kube-apiserver's printers produce for the same object;
the Service and Pod rows were also checked by serving these Tables to kubectl.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.apiserver import tablecells, tables

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def kind(group: str, name: str) -> kinds.ResourceKind:
    found = next((k for k in kinds.KINDS if k.group == group and k.kind == name), None)
    assert found is not None
    return found


POD = kind("", "Pod")
SERVICE = kind("", "Service")
ENDPOINTS = kind("", "Endpoints")
SLICE = kind("discovery.k8s.io", "EndpointSlice")
NODE = kind("", "Node")
NAMESPACE = kind("", "Namespace")
DEPLOYMENT = kind("apps", "Deployment")
REPLICASET = kind("apps", "ReplicaSet")
EVENT = kind("", "Event")
EVENTS_V1_EVENT = kind("events.k8s.io", "Event")
LEASE = kind("coordination.k8s.io", "Lease")


def meta(name: str, created: str | None = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "namespace": "default", **extra}
    m["creationTimestamp"] = created if created is not None else ago(minutes=5)
    return m


def cells(k: kinds.ResourceKind, obj: dict[str, Any]) -> list[Any]:
    return tables.row(k, obj, NOW)["cells"]


def shown(k: kinds.ResourceKind, obj: dict[str, Any]) -> list[Any]:
    """The cells kubectl shows without -o wide."""
    cols = tables.columns(k)
    return [c for c, col in zip(cells(k, obj), cols, strict=True) if col["priority"] == 0]


def headers(k: kinds.ResourceKind, *, wide: bool) -> list[str]:
    """The header line kubectl prints: column names upper-cased."""
    return [c["name"].upper() for c in tables.columns(k) if wide or c["priority"] == 0]


# --- ages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=0), "0s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=3, seconds=2), "3m2s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=179), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=8, minutes=5), "8h"),
        (timedelta(hours=47), "47h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=2, hours=3), "2d3h"),
        (timedelta(days=8, hours=3), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 9), "9y"),
        (timedelta(milliseconds=-1500), "0s"),
        (timedelta(seconds=-5), "<invalid>"),
    ],
)
def test_durations_read_like_kubernetes_human_duration(delta: timedelta, text: str) -> None:
    assert tablecells.human_duration(delta) == text


def test_an_object_without_creation_timestamp_has_unknown_age() -> None:
    ns = {"metadata": {"name": "x"}, "status": {"phase": "Active"}}
    assert cells(NAMESPACE, ns) == ["x", "Active", "<unknown>"]


def test_a_naive_now_is_taken_as_utc() -> None:
    ns = {"metadata": meta("x", ago(seconds=7))}
    assert tables.row(NAMESPACE, ns, NOW.replace(tzinfo=None))["cells"][2] == "7s"


# --- the Table envelope -------------------------------------------------------


def test_a_table_carries_the_list_metadata_columns_and_one_row_per_object() -> None:
    objs = [{"metadata": meta("a")}, {"metadata": meta("b")}]
    t = tables.table(
        NAMESPACE, objs, now=NOW, list_meta={"resourceVersion": "42", "continue": "tok"}
    )
    assert t["kind"] == "Table"
    assert t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42", "continue": "tok"}
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert [r["cells"][0] for r in t["rows"]] == ["a", "b"]


def test_a_table_without_list_metadata_has_empty_metadata() -> None:
    assert tables.table(NAMESPACE, [], now=NOW)["metadata"] == {}
    assert tables.table(NAMESPACE, [], now=NOW)["rows"] == []


def test_rows_embed_partial_object_metadata_by_default() -> None:
    labels = {"app": "web"}
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("a", labels=labels)}
    (r,) = tables.table(NAMESPACE, [obj], now=NOW)["rows"]
    assert r["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    assert r["object"]["metadata"] is not obj["metadata"]


def test_include_object_object_embeds_the_whole_object_with_its_type() -> None:
    obj = {"metadata": meta("web"), "spec": {"type": "ClusterIP"}}
    (r,) = tables.table(SERVICE, [obj], now=NOW, include_object="Object")["rows"]
    assert r["object"] == {"apiVersion": "v1", "kind": "Service", **obj}
    assert "apiVersion" not in obj


def test_include_object_none_leaves_the_object_out() -> None:
    (r,) = tables.table(SERVICE, [{"metadata": meta("web")}], now=NOW, include_object="None")[
        "rows"
    ]
    assert "object" not in r


def test_an_unknown_include_object_is_rejected() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        tables.table(SERVICE, [], now=NOW, include_object="Everything")


def test_row_is_the_row_a_one_object_table_holds() -> None:
    svc = {"metadata": meta("web"), "spec": {"clusterIP": "10.96.0.1"}}
    assert tables.row(SERVICE, svc, NOW) == tables.table(SERVICE, [svc], now=NOW)["rows"][0]


def test_columns_are_copies_callers_may_change() -> None:
    tables.columns(POD)[0]["name"] = "changed"
    assert tables.columns(POD)[0]["name"] == "Name"


# --- columns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "normal", "wide"),
    [
        (NAMESPACE, "NAME STATUS AGE", ""),
        (POD, "NAME READY STATUS RESTARTS AGE", "IP NODE NOMINATED NODE READINESS GATES"),
        (SERVICE, "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "SELECTOR"),
        (ENDPOINTS, "NAME ENDPOINTS AGE", ""),
        (SLICE, "NAME ADDRESSTYPE PORTS ENDPOINTS AGE", ""),
        (
            NODE,
            "NAME STATUS ROLES AGE VERSION",
            "INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME",
        ),
        (DEPLOYMENT, "NAME READY UP-TO-DATE AVAILABLE AGE", "CONTAINERS IMAGES SELECTOR"),
        (REPLICASET, "NAME DESIRED CURRENT READY AGE", "CONTAINERS IMAGES SELECTOR"),
        (EVENT, "LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE FIRST SEEN COUNT NAME"),
        (EVENTS_V1_EVENT, "LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE"),
        (LEASE, "NAME HOLDER AGE", ""),
    ],
)
def test_every_served_kind_prints_kubectl_headers_and_wide_columns_have_priority_1(
    k: kinds.ResourceKind, normal: str, wide: str
) -> None:
    cols = tables.columns(k)
    assert " ".join(c["name"].upper() for c in cols if c["priority"] == 0) == normal
    wide_names = " ".join(c["name"].upper() for c in cols if c["priority"] == 1)
    assert wide_names.startswith(wide)
    assert {c["priority"] for c in cols} <= {0, 1}


def test_every_served_kind_has_one_name_column_and_described_typed_columns() -> None:
    for k in kinds.KINDS:
        cols = tables.columns(k)
        assert [c["name"] for c in cols if c["format"] == "name"] == ["Name"], k.kind
        for c in cols:
            assert c["type"] in ("string", "integer", "date"), (k.kind, c)
            assert c["description"], (k.kind, c)


def test_integer_columns_are_the_ones_kubernetes_types_as_integer() -> None:
    assert [c["name"] for c in tables.columns(REPLICASET) if c["type"] == "integer"] == [
        "Desired",
        "Current",
        "Ready",
    ]
    assert all(c["type"] == "string" for c in tables.columns(POD))


def test_an_unknown_kind_gets_name_and_age() -> None:
    widget = kinds.ResourceKind("example.com", "v1", "Widget", "widgets", "widget", True)
    assert [(c["name"], c["type"]) for c in tables.columns(widget)] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert cells(widget, {"metadata": meta("w", ago(days=2, hours=3))}) == ["w", "2d3h"]


# --- Namespace, Lease ---------------------------------------------------------


def test_a_namespace_row_shows_its_phase() -> None:
    ns = {"metadata": meta("kube-system", ago(days=3)), "status": {"phase": "Terminating"}}
    assert cells(NAMESPACE, ns) == ["kube-system", "Terminating", "3d"]


def test_a_lease_row_shows_its_holder_or_nothing() -> None:
    held = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "node-1_abc"}}
    assert cells(LEASE, held) == ["kube-scheduler", "node-1_abc", "5m"]
    assert cells(LEASE, {"metadata": meta("free"), "spec": {}}) == ["free", "", "5m"]


# --- Service ------------------------------------------------------------------


def service(name: str = "web", status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": meta(name), "spec": spec, "status": status or {}}


def test_a_node_port_service_row() -> None:
    svc = service(
        type="NodePort",
        clusterIP="10.96.0.10",
        clusterIPs=["10.96.0.10"],
        ports=[{"port": 80, "protocol": "TCP", "nodePort": 31234}],
        selector={"app": "web"},
    )
    assert cells(SERVICE, svc) == [
        "web",
        "NodePort",
        "10.96.0.10",
        "<none>",
        "80:31234/TCP",
        "5m",
        "app=web",
    ]


def test_a_cluster_ip_service_joins_its_ports_and_sorts_its_selector() -> None:
    svc = service(
        type="ClusterIP",
        clusterIP="10.96.0.1",
        ports=[{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        selector={"tier": "fe", "app": "web"},
    )
    assert cells(SERVICE, svc) == [
        "web",
        "ClusterIP",
        "10.96.0.1",
        "<none>",
        "80/TCP,53/UDP",
        "5m",
        "app=web,tier=fe",
    ]


def test_a_service_read_before_defaulting_shows_cluster_ip_type_and_tcp() -> None:
    svc = service(clusterIP="10.96.0.2", ports=[{"port": 8080}])
    assert shown(SERVICE, svc) == ["web", "ClusterIP", "10.96.0.2", "<none>", "8080/TCP", "5m"]


def test_a_service_without_ports_or_selector_shows_none() -> None:
    svc = service(type="ClusterIP", clusterIP="None")
    assert cells(SERVICE, svc) == ["web", "ClusterIP", "None", "<none>", "<none>", "5m", "<none>"]


def test_external_ips_are_joined() -> None:
    svc = service(type="ClusterIP", clusterIP="10.96.0.3", externalIPs=["192.0.2.1", "192.0.2.2"])
    assert cells(SERVICE, svc)[3] == "192.0.2.1,192.0.2.2"


def test_a_load_balancer_without_ingress_is_pending() -> None:
    svc = service(
        type="LoadBalancer",
        clusterIP="10.96.0.4",
        ports=[{"port": 443, "protocol": "TCP", "nodePort": 30443}],
    )
    assert shown(SERVICE, svc) == [
        "web",
        "LoadBalancer",
        "10.96.0.4",
        "<pending>",
        "443:30443/TCP",
        "5m",
    ]


def test_a_load_balancer_shows_sorted_ingress_then_external_ips() -> None:
    ingress = [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]
    svc = service(
        status={"loadBalancer": {"ingress": ingress}},
        type="LoadBalancer",
        clusterIP="10.96.0.5",
        externalIPs=["192.0.2.7"],
    )
    assert cells(SERVICE, svc)[3] == "203.0.113.9,lb.example.com,192.0.2.7"


def test_an_external_name_service_shows_the_name_and_no_cluster_ip() -> None:
    svc = service(type="ExternalName", externalName="db.example.com")
    assert shown(SERVICE, svc) == [
        "web",
        "ExternalName",
        "<none>",
        "db.example.com",
        "<none>",
        "5m",
    ]


# --- Endpoints, EndpointSlice ------------------------------------------------


def endpoints(*subsets: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta("web"), "subsets": list(subsets)}


def addrs(*ips: str) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in ips]


def test_endpoints_without_subsets_show_none() -> None:
    assert cells(ENDPOINTS, endpoints()) == ["web", "<none>", "5m"]


def test_endpoints_show_three_addresses_and_count_the_rest() -> None:
    ep = endpoints(
        {"addresses": addrs("10.244.1.5", "10.244.2.3"), "ports": [{"port": 8080}]},
        {"addresses": addrs("10.244.3.4", "10.244.3.5"), "ports": [{"port": 8080}]},
    )
    assert cells(ENDPOINTS, ep) == [
        "web",
        "10.244.1.5:8080,10.244.2.3:8080,10.244.3.4:8080 + 1 more...",
        "5m",
    ]


def test_endpoints_list_each_address_once_per_port() -> None:
    ep = endpoints({"addresses": addrs("10.244.1.5"), "ports": [{"port": 80}, {"port": 443}]})
    assert cells(ENDPOINTS, ep)[1] == "10.244.1.5:80,10.244.1.5:443"


def test_headless_endpoints_without_ports_show_bare_addresses() -> None:
    ep = endpoints({"addresses": addrs("10.244.1.5", "10.244.1.6")})
    assert cells(ENDPOINTS, ep)[1] == "10.244.1.5,10.244.1.6"


def test_ipv6_endpoints_are_bracketed() -> None:
    ep = endpoints({"addresses": addrs("fd00::5"), "ports": [{"port": 80}]})
    assert cells(ENDPOINTS, ep)[1] == "[fd00::5]:80"


def test_endpoints_with_only_not_ready_addresses_show_an_empty_cell() -> None:
    ep = endpoints({"notReadyAddresses": addrs("10.244.1.5"), "ports": [{"port": 80}]})
    assert cells(ENDPOINTS, ep)[1] == ""


def test_an_endpointslice_row_shows_ports_and_addresses() -> None:
    es = {
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}, {}],
        "endpoints": [{"addresses": [f"10.244.0.{i}"]} for i in range(1, 6)],
    }
    assert cells(SLICE, es) == [
        "web-abc12",
        "IPv4",
        "8080,metrics,*",
        "10.244.0.1,10.244.0.2,10.244.0.3 + 2 more...",
        "5m",
    ]


def test_an_empty_endpointslice_shows_unset() -> None:
    es = {"metadata": meta("web-abc12"), "addressType": "IPv4"}
    assert cells(SLICE, es) == ["web-abc12", "IPv4", "<unset>", "<unset>", "5m"]


# --- Node ---------------------------------------------------------------------


def node(ready: str | None, **extra: Any) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {
        "metadata": meta("node-1", ago(days=10), **extra.pop("meta", {})),
        "spec": extra.pop("spec", {}),
        "status": {"conditions": conditions, **extra},
    }


def test_a_ready_node_row_with_roles_and_wide_details() -> None:
    n = node(
        "True",
        meta={
            "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "kubernetes.io/role": "master",
                "node-role.kubernetes.io/": "",
            }
        },
        addresses=[
            {"type": "Hostname", "address": "node-1"},
            {"type": "InternalIP", "address": "172.18.0.2"},
        ],
        nodeInfo={
            "kubeletVersion": "v1.33.1",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "kernelVersion": "6.1.0-18-amd64",
            "containerRuntimeVersion": "containerd://1.7.13",
        },
    )
    assert cells(NODE, n) == [
        "node-1",
        "Ready",
        "control-plane,master",
        "10d",
        "v1.33.1",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-18-amd64",
        "containerd://1.7.13",
    ]


def test_a_cordoned_not_ready_node_says_both() -> None:
    n = node("False", spec={"unschedulable": True})
    assert shown(NODE, n) == ["node-1", "NotReady,SchedulingDisabled", "<none>", "10d", ""]


def test_a_node_without_a_ready_condition_is_unknown_with_unknown_system_info() -> None:
    assert cells(NODE, node(None))[1] == "Unknown"
    assert cells(NODE, node(None))[7:] == ["<unknown>", "<unknown>", "<unknown>"]


# --- Deployment, ReplicaSet ---------------------------------------------------


def template(*containers: tuple[str, str]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": n, "image": i} for n, i in containers]}}


def test_a_deployment_row_shows_ready_of_desired_and_its_wide_details() -> None:
    deploy = {
        "metadata": meta("web", ago(hours=3, minutes=5)),
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "template": template(("nginx", "nginx:1.27"), ("sidecar", "busybox")),
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells(DEPLOYMENT, deploy) == [
        "web",
        "2/3",
        3,
        2,
        "3h5m",
        "nginx,sidecar",
        "nginx:1.27,busybox",
        "app=web,!canary,tier in (be,fe)",
    ]


def test_a_new_deployment_defaults_to_one_replica_and_zero_counts() -> None:
    deploy = {"metadata": meta("web"), "spec": {"template": template(("app", "img"))}}
    assert shown(DEPLOYMENT, deploy) == ["web", "0/1", 0, 0, "5m"]


def test_a_deployment_with_an_invalid_selector_says_so() -> None:
    bad = {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]}
    deploy = {"metadata": meta("web"), "spec": {"selector": bad}}
    assert cells(DEPLOYMENT, deploy)[-1] == "<invalid>"


def test_a_replicaset_row_uses_integers_and_none_for_an_empty_selector() -> None:
    rs = {
        "metadata": meta("web-7d4b9c", ago(minutes=12)),
        "spec": {"replicas": 2, "selector": {}, "template": template(("nginx", "nginx"))},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    assert cells(REPLICASET, rs) == ["web-7d4b9c", 2, 2, 1, "12m", "nginx", "nginx", "<none>"]


# --- Event --------------------------------------------------------------------


def test_a_v1_event_row_and_its_wide_cells() -> None:
    ev = {
        "metadata": meta("web-1.17c", ago(minutes=3)),
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "reason": "Pulled",
        "message": "Container image already present on machine\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(minutes=3),
        "lastTimestamp": ago(seconds=40),
        "count": 4,
        "type": "Normal",
    }
    assert cells(EVENT, ev) == [
        "40s",
        "Normal",
        "Pulled",
        "pod/web-1",
        "spec.containers{app}",
        "kubelet, node-1",
        "Container image already present on machine",
        "3m",
        4,
        "web-1.17c",
    ]
    assert headers(EVENT, wide=False) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def test_an_events_v1_event_reads_regarding_note_and_series() -> None:
    ev = {
        "metadata": meta("web.abc"),
        "regarding": {"kind": "Service", "name": "web"},
        "note": "Ensuring load balancer",
        "reason": "EnsuringLoadBalancer",
        "type": "Normal",
        "eventTime": "2024-05-01T11:50:00.000000Z",
        "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:30.123456Z"},
        "reportingController": "service-controller",
        "reportingInstance": "cp-1",
    }
    assert cells(EVENTS_V1_EVENT, ev) == [
        "29s",
        "Normal",
        "EnsuringLoadBalancer",
        "service/web",
        "",
        "service-controller, cp-1",
        "Ensuring load balancer",
        "10m",
        7,
        "web.abc",
    ]


def test_a_singleton_event_counts_one_and_is_last_seen_when_first_seen() -> None:
    ev = {
        "metadata": meta("n.1"),
        "involvedObject": {"kind": "Node"},
        "reason": "Starting",
        "type": "Normal",
        "eventTime": ago(seconds=90),
        "reportingComponent": "kube-proxy",
    }
    shown_cells = ["90s", "Normal", "Starting", "node", "", "kube-proxy", "", "90s", 1, "n.1"]
    assert cells(EVENT, ev) == shown_cells


# --- Pod ----------------------------------------------------------------------


def pod(
    phase: str = "Running",
    statuses: list[dict[str, Any]] | None = None,
    *,
    init: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    containers: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    status.update(extra.pop("status", {}))
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}"} for i in range(containers)]}
    if init is not None:
        spec["initContainers"] = init
    spec.update(extra.pop("spec", {}))
    return {"metadata": meta("web-1", **extra.pop("meta", {})), "spec": spec, "status": status}


RUNNING = {"running": {"startedAt": ago(minutes=4)}}


def cs(
    state: dict[str, Any], ready: bool = False, restarts: int = 0, **more: Any
) -> dict[str, Any]:
    return {"name": "c0", "state": state, "ready": ready, "restartCount": restarts, **more}


def test_a_running_ready_pod_row_and_its_wide_cells() -> None:
    p = pod(
        "Running",
        [cs(RUNNING, ready=True)],
        spec={"nodeName": "node-1"},
        status={"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]},
    )
    assert cells(POD, p) == [
        "web-1",
        "1/1",
        "Running",
        "0",
        "5m",
        "10.244.1.5",
        "node-1",
        "<none>",
        "<none>",
    ]


def test_an_unscheduled_pod_is_pending_with_none_in_its_wide_cells() -> None:
    assert cells(POD, pod("Pending", containers=2)) == [
        "web-1",
        "0/2",
        "Pending",
        "0",
        "5m",
        "<none>",
        "<none>",
        "<none>",
        "<none>",
    ]


def test_a_pod_whose_container_waits_shows_the_waiting_reason() -> None:
    p = pod("Pending", [cs({"waiting": {"reason": "ContainerCreating"}})])
    assert shown(POD, p) == ["web-1", "0/1", "ContainerCreating", "0", "5m"]


def test_a_crash_looping_pod_shows_restarts_and_how_long_ago_the_last_was() -> None:
    last = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(seconds=5)}}
    p = pod(
        "Running",
        [cs({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2, lastState=last)],
    )
    assert shown(POD, p) == ["web-1", "0/1", "CrashLoopBackOff", "2 (5s ago)", "5m"]


def test_restarts_without_a_termination_time_are_a_bare_count() -> None:
    p = pod("Running", [cs(RUNNING, ready=True, restarts=3)])
    assert shown(POD, p)[3] == "3"


def test_a_succeeded_pod_is_completed_and_its_row_is_marked_completed() -> None:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    r = tables.row(POD, pod("Succeeded", [cs(done)]), NOW)
    assert r["cells"][:5] == ["web-1", "0/1", "Completed", "0", "5m"]
    assert r["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]


def test_a_failed_pod_shows_the_exit_code_when_there_is_no_reason() -> None:
    r = tables.row(POD, pod("Failed", [cs({"terminated": {"exitCode": 137}})]), NOW)
    assert r["cells"][2] == "ExitCode:137"
    assert r["conditions"][0]["reason"] == "Failed"


def test_a_killed_container_without_a_reason_shows_its_signal() -> None:
    p = pod("Failed", [cs({"terminated": {"exitCode": 0, "signal": 9}})])
    assert cells(POD, p)[2] == "Signal:9"


def test_a_running_pod_has_no_row_conditions() -> None:
    assert "conditions" not in tables.row(POD, pod("Running", [cs(RUNNING, ready=True)]), NOW)


def test_a_pod_being_deleted_is_terminating() -> None:
    p = pod("Running", [cs(RUNNING, ready=True)], meta={"deletionTimestamp": ago(seconds=1)})
    assert shown(POD, p) == ["web-1", "1/1", "Terminating", "0", "5m"]


def test_a_finished_pod_being_deleted_keeps_its_outcome() -> None:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    p = pod("Succeeded", [cs(done)], meta={"deletionTimestamp": ago(seconds=1)})
    assert cells(POD, p)[2] == "Completed"


def test_a_pod_on_a_lost_node_being_deleted_is_unknown() -> None:
    p = pod(
        "Running",
        [cs(RUNNING, ready=True)],
        meta={"deletionTimestamp": ago(seconds=1)},
        status={"reason": "NodeLost"},
    )
    assert cells(POD, p)[2] == "Unknown"


def test_a_pod_with_a_completed_and_a_running_container_is_running_when_ready() -> None:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    statuses = [cs(RUNNING, ready=True), {**cs(done), "name": "c1"}]
    ready = [{"type": "Ready", "status": "True"}]
    assert cells(POD, pod("Running", statuses, containers=2, conditions=ready))[1:3] == [
        "1/2",
        "Running",
    ]
    assert cells(POD, pod("Running", statuses, containers=2))[1:3] == ["1/2", "NotReady"]


def test_a_pod_waiting_for_its_init_container_shows_init_progress() -> None:
    p = pod(
        "Pending",
        [cs({"waiting": {"reason": "PodInitializing"}})],
        init=[{"name": "migrate"}],
        init_statuses=[{"name": "migrate", "state": RUNNING, "restartCount": 0}],
    )
    assert shown(POD, p) == ["web-1", "0/1", "Init:0/1", "0", "5m"]


def test_a_pod_past_its_first_init_container_counts_it() -> None:
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    p = pod(
        "Pending",
        init=[{"name": "a"}, {"name": "b"}],
        init_statuses=[
            {"name": "a", "state": done, "restartCount": 0},
            {"name": "b", "state": {"waiting": {"reason": "PodInitializing"}}},
        ],
    )
    assert cells(POD, p)[2] == "Init:1/2"


def test_a_crash_looping_init_container_shows_init_reason_and_its_restarts() -> None:
    last = {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=1)}}
    p = pod(
        "Pending",
        [cs({"waiting": {"reason": "PodInitializing"}})],
        init=[{"name": "migrate"}],
        init_statuses=[
            {
                "name": "migrate",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": last,
                "restartCount": 4,
            }
        ],
    )
    assert shown(POD, p) == ["web-1", "0/1", "Init:CrashLoopBackOff", "4 (60s ago)", "5m"]


def test_a_failed_init_container_shows_its_reason_or_exit_code() -> None:
    def failed(terminated: dict[str, Any]) -> str:
        p = pod(
            "Pending",
            init=[{"name": "i"}],
            init_statuses=[{"name": "i", "state": {"terminated": terminated}}],
        )
        return str(cells(POD, p)[2])

    assert failed({"exitCode": 2, "reason": "Error"}) == "Init:Error"
    assert failed({"exitCode": 2}) == "Init:ExitCode:2"
    assert failed({"exitCode": 2, "signal": 15}) == "Init:Signal:15"


def test_a_started_sidecar_counts_toward_ready_and_its_restarts_stay_counted() -> None:
    last = {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=2)}}
    p = pod(
        "Running",
        [cs(RUNNING, ready=True)],
        init=[{"name": "proxy", "restartPolicy": "Always"}],
        init_statuses=[
            {
                "name": "proxy",
                "state": RUNNING,
                "started": True,
                "ready": True,
                "restartCount": 1,
                "lastState": last,
            }
        ],
        conditions=[{"type": "Initialized", "status": "True"}],
    )
    assert shown(POD, p) == ["web-1", "2/2", "Running", "1 (2m ago)", "5m"]


def test_a_scheduling_gated_pod_says_so() -> None:
    gated = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
    assert cells(POD, pod("Pending", conditions=gated))[2] == "SchedulingGated"


def test_readiness_gates_count_the_conditions_that_hold() -> None:
    p = pod(
        "Running",
        [cs(RUNNING, ready=True)],
        spec={"readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "dns/ok"}]},
        conditions=[{"type": "lb/ready", "status": "True"}, {"type": "dns/ok", "status": "False"}],
    )
    assert cells(POD, p)[-1] == "1/2"


def test_a_pod_status_reason_replaces_the_phase() -> None:
    assert cells(POD, pod("Failed", status={"reason": "Evicted"}))[2] == "Evicted"
