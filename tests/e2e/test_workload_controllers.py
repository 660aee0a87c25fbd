"""ReplicaSets, Deployments, the scheduler, garbage collection and node lifecycle
against the real apiserver process, driven with kubectl.

Each test runs every workload controller in its own event loop, on informers
scoped to a fresh namespace, with three Nodes made through the API. No node
agent exists yet, so the test plays one (`Agent`): it renews each live
node's Lease, reports pods bound to live nodes Running and Ready with a
status patch, and confirms that terminating pods stopped. A node can be
"killed" — its agent goes silent — to exercise node lifecycle.

kubectl runs in a thread (`Cluster.kubectl`) so the controllers keep running
while it waits, as they would in their own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from switchboard.api import kinds
from switchboard.client import errors, events, informer, rest
from switchboard.controllers.deployment import DeploymentController
from switchboard.controllers.garbagecollector import GarbageCollector
from switchboard.controllers.nodelifecycle import NodeLifecycleController
from switchboard.controllers.replicaset import ReplicaSetController
from switchboard.controllers.scheduler import Scheduler
from tests.e2e.conftest import Server, manifest

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
NODE_LEASES = "kube-node-lease"
HASH = "pod-template-hash"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Agent:
    """The node agents of the test's nodes, all in one task."""

    client: rest.Client
    pods: informer.Informer
    nodes: list[str]
    dead: set[str] = field(default_factory=set)
    auto_ready: bool = True

    async def run(self) -> None:
        while True:
            for node in self.nodes:
                if node not in self.dead:
                    with contextlib.suppress(errors.ClientError):
                        await self.client.patch(
                            kinds.LEASES, NODE_LEASES, node, {"spec": {"renewTime": micro_now()}}
                        )
            for pod in self.pods.list():
                bound_to = (pod.get("spec") or {}).get("nodeName")
                if bound_to not in self.nodes or bound_to in self.dead:
                    continue
                meta = pod["metadata"]
                with contextlib.suppress(errors.ClientError):
                    if meta.get("deletionTimestamp"):
                        await self.client.delete(
                            kinds.PODS, meta["namespace"], meta["name"], grace_period_seconds=0
                        )
                    elif self.auto_ready and not _ready(pod) and _phase(pod) == "Pending":
                        await self.client.patch(
                            kinds.PODS,
                            meta["namespace"],
                            meta["name"],
                            {"status": running_status(pod)},
                            subresource="status",
                        )
            await asyncio.sleep(0.2)


def running_status(pod: Obj, ready: bool = True) -> Obj:
    """What a node agent reports for a started pod: Running, its containers up."""
    started = now()
    return {
        "phase": "Running",
        "podIP": "10.0.0.1",
        "startTime": started,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": started,
            }
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": started}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


@dataclass
class Cluster:
    server: Server
    client: rest.Client
    namespace: str
    nodes: list[str]
    agent: Agent
    pod_cache: informer.Informer
    rs_cache: informer.Informer
    recorder: events.EventRecorder

    async def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = await asyncio.to_thread(
            self.server.kubectl, "-n", self.namespace, *args, check=check, stdin=stdin
        )
        return result.stdout + result.stderr if not check else result.stdout

    async def pods(self, *, active_only: bool = True) -> list[Obj]:
        items = (await self.client.list(kinds.PODS, self.namespace))["items"]
        if active_only:
            items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return sorted(items, key=lambda p: p["metadata"]["name"])

    async def replicasets(self) -> list[Obj]:
        items = (await self.client.list(kinds.REPLICASETS, self.namespace))["items"]
        return sorted(items, key=lambda r: r["metadata"]["name"])

    async def get(self, kind: kinds.ResourceKind, name: str) -> Obj | None:
        try:
            return await self.client.get(kind, self.namespace, name)
        except errors.NotFound:
            return None

    async def event_reasons(self, name: str, namespace: str | None = None) -> list[str]:
        await self.recorder.flush()
        listed = await self.client.list(kinds.EVENTS, namespace or self.namespace)
        return [e["reason"] for e in listed["items"] if e["involvedObject"].get("name") == name]

    async def events_about(self, name: str) -> list[Obj]:
        await self.recorder.flush()
        listed = await self.client.list(kinds.EVENTS, self.namespace)
        return [e for e in listed["items"] if e["involvedObject"].get("name") == name]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition did not become true in time")
        await asyncio.sleep(0.1)


async def make_node(client: rest.Client, name: str, labels: dict[str, str]) -> None:
    await client.create(kinds.NODES, None, {"metadata": {"name": name, "labels": labels}})
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now(),
        "lastTransitionTime": now(),
    }
    await client.patch(
        kinds.NODES,
        None,
        name,
        {"status": {"conditions": [ready], "allocatable": {"pods": "110"}}},
        subresource="status",
    )
    await client.create(
        kinds.LEASES,
        NODE_LEASES,
        {
            "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        },
    )


@contextlib.asynccontextmanager
async def controllers(
    client: rest.Client, namespace: str, recorder: events.EventRecorder
) -> AsyncIterator[tuple[informer.Informer, informer.Informer]]:
    """Every workload controller on informers of `namespace`, running until exit."""
    pods = informer.Informer(client, kinds.PODS, namespace)
    replicasets = informer.Informer(client, kinds.REPLICASETS, namespace)
    deployments = informer.Informer(client, kinds.DEPLOYMENTS, namespace)
    nodes = informer.Informer(client, kinds.NODES)
    leases = informer.Informer(client, kinds.LEASES, NODE_LEASES)
    runners = [
        ReplicaSetController(client, replicasets, pods, events=recorder).run(workers=4),
        DeploymentController(client, deployments, replicasets, pods, events=recorder).run(
            workers=4
        ),
        Scheduler(client, pods, nodes, events=recorder).run(),
        GarbageCollector(client, [pods, replicasets, deployments], events=recorder).run(workers=4),
        NodeLifecycleController(
            client,
            nodes,
            leases,
            pods,
            events=recorder,
            grace_period=2.0,
            eviction_timeout=2.0,
            monitor_period=0.25,
            orphan_grace=1.0,
        ).run(),
    ]
    tasks = [asyncio.create_task(i.run()) for i in (pods, replicasets, deployments, nodes, leases)]
    tasks += [asyncio.create_task(r) for r in runners]
    try:
        yield pods, replicasets
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def cluster(server: Server) -> AsyncIterator[Cluster]:
    async with rest.Client.from_kubeconfig(server.kubeconfig) as client:
        suffix = uuid.uuid4().hex[:8]
        namespace = f"wl-{suffix}"
        nodes = [f"node-{i}-{suffix}" for i in range(3)]
        await client.create(kinds.NAMESPACES, None, {"metadata": {"name": namespace}})
        for i, name in enumerate(nodes):
            await make_node(client, name, {"kubernetes.io/hostname": name, "rack": f"r{i}"})
        recorder = events.EventRecorder(client, "controller-manager")
        async with controllers(client, namespace, recorder) as (pods, replicasets):
            agent = Agent(client, pods, nodes)
            agent_task = asyncio.create_task(agent.run())
            try:
                yield Cluster(server, client, namespace, nodes, agent, pods, replicasets, recorder)
            finally:
                agent_task.cancel()
                await asyncio.gather(agent_task, return_exceptions=True)
        await recorder.close()
        with contextlib.suppress(errors.ClientError):
            await client.delete(kinds.NAMESPACES, None, namespace)
        for name in nodes:
            with contextlib.suppress(errors.ClientError):
                await client.delete(kinds.NODES, None, name)
            with contextlib.suppress(errors.ClientError):
                await client.delete(kinds.LEASES, NODE_LEASES, name)


async def settle_pods(cluster: Cluster, count: int, *, ready: bool = True) -> list[Obj]:
    """Wait until exactly `count` active pods exist (all Ready, when asked); return them."""
    found: list[Obj] = []

    async def check() -> bool:
        nonlocal found
        found = await cluster.pods()
        everything = await cluster.pods(active_only=False)
        return (
            len(found) == count
            and len(everything) == count
            and (not ready or all(_ready(p) for p in found))
        )

    try:
        await eventually(check)
    except AssertionError:
        names = [(p["metadata"]["name"], _phase(p)) for p in found]
        raise AssertionError(f"wanted {count} pods, have {names}") from None
    return found


def image_of(obj: Obj) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


# ---- Deployments with kubectl ----------------------------------------------------------------


async def test_kubectl_create_deployment_runs_three_ready_pods_spread_over_the_nodes(
    cluster: Cluster,
) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=3")
    out = await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in out

    pods = await settle_pods(cluster, 3)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(cluster.nodes)
    (rs,) = await cluster.replicasets()
    d = await cluster.get(kinds.DEPLOYMENTS, "web")
    assert d is not None
    assert rs["metadata"]["name"] == f"web-{rs['metadata']['labels'][HASH]}"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"
    for p in pods:
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert p["metadata"]["labels"] == {"app": "web", HASH: rs["metadata"]["labels"][HASH]}
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    status = d["status"]
    assert status["observedGeneration"] == d["metadata"]["generation"]
    assert (status["replicas"], status["updatedReplicas"]) == (3, 3)
    assert (status["readyReplicas"], status["availableReplicas"]) == (3, 3)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"

    table = await cluster.kubectl("get", "deployment", "web", "--no-headers")
    assert table.split()[1:4] == ["3/3", "3", "3"]
    assert "ScalingReplicaSet" in await cluster.event_reasons("web")
    assert "SuccessfulCreate" in await cluster.event_reasons(rs["metadata"]["name"])
    assert "Scheduled" in await cluster.event_reasons(pods[0]["metadata"]["name"])


async def test_kubectl_scale_grows_a_deployment_to_five_pods_and_shrinks_it_to_one(
    cluster: Cluster,
) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=3")
    await settle_pods(cluster, 3)

    await cluster.kubectl("scale", "deployment/web", "--replicas=5")
    pods = await settle_pods(cluster, 5)
    per_node = [p["spec"]["nodeName"] for p in pods]
    assert max(per_node.count(n) for n in cluster.nodes) == 2  # spread 2/2/1

    await cluster.kubectl("scale", "deployment/web", "--replicas=1")
    await settle_pods(cluster, 1)
    (rs,) = await cluster.replicasets()
    assert rs["spec"]["replicas"] == 1
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"
    out = await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    assert "successfully rolled out" in out


async def test_kubectl_set_image_rolls_out_a_new_replicaset_and_retires_the_old_one(
    cluster: Cluster,
) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=3")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    (first,) = await cluster.replicasets()

    # maxSurge 25% of 3 rounds up to 1, maxUnavailable rounds down to 0: the
    # ReplicaSets together never ask for more than 4 pods.
    biggest_total = 0

    def watch_sizes(*_: Obj) -> None:
        nonlocal biggest_total
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in cluster.rs_cache.list())
        biggest_total = max(biggest_total, total)

    cluster.rs_cache.add_handlers(watch_sizes, lambda old, new: watch_sizes(new), None)

    await cluster.kubectl("set", "image", "deployment/web", "x=y")
    out = await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in out

    pods = await settle_pods(cluster, 3)
    rss = {rs["metadata"]["name"]: rs for rs in await cluster.replicasets()}
    assert len(rss) == 2
    old = rss[first["metadata"]["name"]]
    (new,) = [rs for name, rs in rss.items() if name != first["metadata"]["name"]]
    assert old["spec"]["replicas"] == 0
    assert new["spec"]["replicas"] == 3
    assert image_of(new) == "y"
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert {p["metadata"]["labels"][HASH] for p in pods} == {new["metadata"]["labels"][HASH]}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"y"}
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(cluster.nodes)
    assert biggest_total <= 4
    messages = [e["message"] for e in await cluster.events_about("web")]
    assert f"Scaled down replica set {old['metadata']['name']} from 1 to 0" in messages


async def test_kubectl_apply_of_a_changed_template_rolls_out(cluster: Cluster) -> None:
    def body(image: str) -> str:
        return manifest(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "api"}},
                    "template": {
                        "metadata": {"labels": {"app": "api"}},
                        "spec": {"containers": [{"name": "api", "image": image}]},
                    },
                },
            }
        )

    await cluster.kubectl("apply", "-f", "-", stdin=body("api:1"))
    await cluster.kubectl("rollout", "status", "deployment/api", "--timeout=60s")
    await cluster.kubectl("apply", "-f", "-", stdin=body("api:2"))
    await cluster.kubectl("rollout", "status", "deployment/api", "--timeout=60s")
    pods = await settle_pods(cluster, 2)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"api:2"}
    rss = await cluster.replicasets()
    assert sorted(rs["spec"]["replicas"] for rs in rss) == [0, 2]
    new = next(rs for rs in rss if rs["spec"]["replicas"] == 2)
    # The apply bookkeeping stays on the Deployment; it is not copied to ReplicaSets.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in new["metadata"]["annotations"]


async def test_kubectl_rollout_undo_goes_back_to_the_previous_template(cluster: Cluster) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=2")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    (first,) = await cluster.replicasets()
    await cluster.kubectl("set", "image", "deployment/web", "x=y")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")

    await cluster.kubectl("rollout", "undo", "deployment/web")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")

    pods = await settle_pods(cluster, 2)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"x"}
    d = await cluster.get(kinds.DEPLOYMENTS, "web")
    assert d is not None and image_of(d) == "x"
    rss = {rs["metadata"]["name"]: rs for rs in await cluster.replicasets()}
    assert len(rss) == 2  # the old ReplicaSet came back instead of a third one
    back = rss[first["metadata"]["name"]]
    assert back["spec"]["replicas"] == 2
    annotations = back["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    assert annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    history = await cluster.kubectl("rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


async def test_kubectl_rollout_restart_replaces_every_pod(cluster: Cluster) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=3")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    before = {p["metadata"]["name"] for p in await cluster.pods()}

    await cluster.kubectl("rollout", "restart", "deployment/web")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")

    after = await settle_pods(cluster, 3)
    assert not before & {p["metadata"]["name"] for p in after}
    assert all(
        "kubectl.kubernetes.io/restartedAt" in p["metadata"].get("annotations", {}) for p in after
    )
    assert sorted(rs["spec"]["replicas"] for rs in await cluster.replicasets()) == [0, 3]


async def test_recreate_stops_every_old_pod_before_starting_a_new_one(cluster: Cluster) -> None:
    def body(image: str) -> str:
        return manifest(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {
                        "metadata": {"labels": {"app": "db"}},
                        "spec": {"containers": [{"name": "db", "image": image}]},
                    },
                },
            }
        )

    await cluster.kubectl("apply", "-f", "-", stdin=body("db:1"))
    await cluster.kubectl("rollout", "status", "deployment/db", "--timeout=60s")
    old_hash = (await cluster.replicasets())[0]["metadata"]["labels"][HASH]
    overlaps: list[str] = []

    def on_add(obj: Obj) -> None:
        if obj["metadata"]["labels"].get(HASH) != old_hash:
            old = [p for p in cluster.pod_cache.list() if p["metadata"]["labels"][HASH] == old_hash]
            if old:
                overlaps.append(obj["metadata"]["name"])

    cluster.pod_cache.on_add(on_add)
    await cluster.kubectl("apply", "-f", "-", stdin=body("db:2"))
    await cluster.kubectl("rollout", "status", "deployment/db", "--timeout=60s")
    pods = await settle_pods(cluster, 3)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"db:2"}
    assert overlaps == []


# ---- ReplicaSets -----------------------------------------------------------------------------


def replicaset(name: str, replicas: int, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
            },
        },
    }


async def test_a_replicaset_replaces_a_pod_that_is_deleted_or_fails(cluster: Cluster) -> None:
    await cluster.client.create(kinds.REPLICASETS, cluster.namespace, replicaset("rs", 3))
    pods = await settle_pods(cluster, 3)
    deleted, failed = pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]

    await cluster.kubectl("delete", "pod", deleted)
    await cluster.client.patch(
        kinds.PODS, cluster.namespace, failed, {"status": {"phase": "Failed"}}, subresource="status"
    )

    async def replaced() -> bool:
        active = [p for p in await cluster.pods() if _phase(p) != "Failed"]
        names = {p["metadata"]["name"] for p in active}
        return len(active) == 3 and deleted not in names and failed not in names

    await eventually(replaced)
    rs = await cluster.get(kinds.REPLICASETS, "rs")
    assert rs is not None
    await eventually(lambda: _status_is(cluster, "rs", replicas=3, readyReplicas=3))


async def _status_is(cluster: Cluster, name: str, **want: int) -> bool:
    rs = await cluster.get(kinds.REPLICASETS, name)
    status = (rs or {}).get("status") or {}
    return all(status.get(k, 0) == v for k, v in want.items())


async def test_replicaset_status_counts_ready_and_available_pods(cluster: Cluster) -> None:
    cluster.agent.auto_ready = False
    created = await cluster.client.create(kinds.REPLICASETS, cluster.namespace, replicaset("rs", 2))
    await eventually(lambda: _status_is(cluster, "rs", replicas=2, readyReplicas=0))
    rs = await cluster.get(kinds.REPLICASETS, "rs")
    assert rs is not None
    assert rs["status"]["observedGeneration"] == created["metadata"]["generation"]
    assert rs["status"]["fullyLabeledReplicas"] == 2

    pods = await cluster.pods()
    name = pods[0]["metadata"]["name"]
    await cluster.client.patch(
        kinds.PODS,
        cluster.namespace,
        name,
        {"status": running_status(pods[0])},
        subresource="status",
    )
    await eventually(
        lambda: _status_is(cluster, "rs", replicas=2, readyReplicas=1, availableReplicas=1)
    )
    table = await cluster.kubectl("get", "rs", "rs", "--no-headers")
    assert table.split()[1:4] == ["2", "2", "1"]


async def test_kubectl_scale_on_a_replicaset_goes_through_the_scale_subresource(
    cluster: Cluster,
) -> None:
    await cluster.client.create(kinds.REPLICASETS, cluster.namespace, replicaset("rs", 1))
    await settle_pods(cluster, 1)
    await cluster.kubectl("scale", "rs/rs", "--replicas=4")
    await settle_pods(cluster, 4)
    scale = json.loads(
        await cluster.kubectl(
            "get", "--raw", f"/apis/apps/v1/namespaces/{cluster.namespace}/replicasets/rs/scale"
        )
    )
    assert scale["spec"]["replicas"] == 4
    await eventually(lambda: _status_is(cluster, "rs", replicas=4))
    await cluster.kubectl("scale", "rs/rs", "--replicas=2")
    await settle_pods(cluster, 2)


async def test_a_replicaset_controller_restarted_mid_scale_never_makes_extra_pods(
    cluster: Cluster,
) -> None:
    # A namespace of its own, out of sight of the cluster's controllers: only the
    # controller being restarted here manages it.
    client = cluster.client
    ns = f"{cluster.namespace}-restart"
    await client.create(kinds.NAMESPACES, None, {"metadata": {"name": ns}})
    seen: set[str] = set()
    watcher = informer.Informer(client, kinds.PODS, ns)
    watcher.on_add(lambda obj: seen.add(obj["metadata"]["name"]))
    watching = asyncio.create_task(watcher.run())
    try:
        await client.create(kinds.REPLICASETS, ns, replicaset("big", 200))

        async def run_controller(seconds: float) -> None:
            pods = informer.Informer(client, kinds.PODS, ns)
            rss = informer.Informer(client, kinds.REPLICASETS, ns)
            controller = ReplicaSetController(client, rss, pods)
            tasks = [
                asyncio.create_task(c) for c in (pods.run(), rss.run(), controller.run(workers=2))
            ]
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()  # as abrupt as it gets inside one process
            await asyncio.gather(*tasks, return_exceptions=True)

        for seconds in (0.05, 0.1, 0.1, 0.15, 0.2):
            await run_controller(seconds)
            # A successor takes over only after the old one is gone (leader election);
            # requests it had in flight land meanwhile.
            await asyncio.sleep(0.3)
        await run_controller(3)

        async def all_there() -> bool:
            listed = await client.list(kinds.PODS, ns)
            return len(listed["items"]) == 200

        await eventually(all_there)
        await asyncio.sleep(0.3)
        assert len(seen) == 200
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        with contextlib.suppress(errors.ClientError):
            await client.delete(kinds.NAMESPACES, None, ns)


# ---- garbage collection ----------------------------------------------------------------------


async def test_deleting_a_deployment_in_the_foreground_removes_its_pods_and_replicasets_first(
    cluster: Cluster,
) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=3")
    await settle_pods(cluster, 3)

    await cluster.kubectl("delete", "deployment", "web", "--cascade=foreground", "--timeout=60s")

    # kubectl waited for the Deployment to go; in the foreground that is last.
    assert await cluster.get(kinds.DEPLOYMENTS, "web") is None
    assert await cluster.replicasets() == []
    assert await cluster.pods(active_only=False) == []


async def test_deleting_a_deployment_as_orphan_leaves_its_replicasets_without_owner(
    cluster: Cluster,
) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=2")
    pods = await settle_pods(cluster, 2)

    await cluster.kubectl("delete", "deployment", "web", "--cascade=orphan", "--timeout=60s")

    assert await cluster.get(kinds.DEPLOYMENTS, "web") is None
    (rs,) = await cluster.replicasets()
    assert "ownerReferences" not in rs["metadata"]
    assert rs["spec"]["replicas"] == 2
    await asyncio.sleep(1)
    after = await settle_pods(cluster, 2)
    assert {p["metadata"]["name"] for p in after} == {p["metadata"]["name"] for p in pods}
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in after)


async def test_deleting_a_replicaset_in_the_background_deletes_its_pods(cluster: Cluster) -> None:
    await cluster.client.create(kinds.REPLICASETS, cluster.namespace, replicaset("rs", 3))
    await settle_pods(cluster, 3)
    await cluster.kubectl("delete", "rs", "rs")
    assert await cluster.get(kinds.REPLICASETS, "rs") is None
    await settle_pods(cluster, 0)


async def test_an_object_whose_owner_is_gone_is_deleted(cluster: Cluster) -> None:
    ghost = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "never-existed",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }
    alive_rs = await cluster.client.create(
        kinds.REPLICASETS, cluster.namespace, replicaset("keep", 0)
    )
    alive = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "keep",
        "uid": alive_rs["metadata"]["uid"],
    }
    for name, refs in (("orphaned", [ghost]), ("half", [ghost, alive])):
        await cluster.client.create(
            kinds.PODS,
            cluster.namespace,
            {
                "metadata": {"name": name, "ownerReferences": refs},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        )

    await eventually(lambda: _gone(cluster, "orphaned"))

    async def pruned() -> bool:
        half = await cluster.get(kinds.PODS, "half")
        return half is not None and half["metadata"].get("ownerReferences") == [alive]

    await eventually(pruned)


async def _gone(cluster: Cluster, pod: str) -> bool:
    return await cluster.get(kinds.PODS, pod) is None


# ---- scheduling ------------------------------------------------------------------------------


async def test_a_pod_that_fits_nowhere_stays_pending_until_a_node_matches(
    cluster: Cluster,
) -> None:
    pod = {
        "metadata": {"name": "picky"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "x"}]},
    }
    await cluster.client.create(kinds.PODS, cluster.namespace, pod)

    async def unschedulable() -> bool:
        p = await cluster.get(kinds.PODS, "picky")
        conds = {c["type"]: c for c in ((p or {}).get("status") or {}).get("conditions") or []}
        return bool(conds.get("PodScheduled", {}).get("reason") == "Unschedulable")

    await eventually(unschedulable)
    failed = [e for e in await cluster.events_about("picky") if e["reason"] == "FailedScheduling"]
    assert failed and failed[0]["type"] == "Warning"
    assert failed[0]["message"] == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    )
    p = await cluster.get(kinds.PODS, "picky")
    assert p is not None and not p["spec"].get("nodeName")
    assert p["status"]["phase"] == "Pending"

    await cluster.kubectl("label", "node", cluster.nodes[1], "disk=ssd")

    async def bound() -> bool:
        p = await cluster.get(kinds.PODS, "picky")
        return bool((p or {}).get("spec", {}).get("nodeName") == cluster.nodes[1])

    await eventually(bound, within=15)


async def test_pods_go_only_to_ready_nodes(cluster: Cluster) -> None:
    down = cluster.nodes[0]
    cluster.agent.dead.add(down)
    await cluster.client.patch(
        kinds.NODES,
        None,
        down,
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]
            }
        },
        subresource="status",
    )
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=4")
    pods = await settle_pods(cluster, 4)
    assert down not in {p["spec"]["nodeName"] for p in pods}


# ---- node lifecycle --------------------------------------------------------------------------


async def test_a_silent_node_becomes_not_ready_and_its_pods_are_replaced_elsewhere(
    cluster: Cluster,
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": "x"}],
                    # Without these, the pods get Kubernetes' default of 300 s.
                    "tolerations": [
                        {
                            "key": key,
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": 2,
                        }
                        for key in (
                            "node.kubernetes.io/unreachable",
                            "node.kubernetes.io/not-ready",
                        )
                    ],
                },
            },
        },
    }
    await cluster.kubectl("apply", "-f", "-", stdin=manifest(deployment))
    pods = await settle_pods(cluster, 3)
    victim = cluster.nodes[0]
    (doomed,) = [p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim]

    cluster.agent.dead.add(victim)

    async def node_unknown() -> bool:
        node = await cluster.client.get(kinds.NODES, None, victim)
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
        return (
            ready["status"] == "Unknown"
            and ready["reason"] == "NodeStatusUnknown"
            and ("node.kubernetes.io/unreachable", "NoExecute") in taints
        )

    await eventually(node_unknown, within=15)

    async def marked_not_ready() -> bool:
        p = await cluster.get(kinds.PODS, doomed)
        return p is None or p["metadata"].get("deletionTimestamp") is not None or not _ready(p)

    await eventually(marked_not_ready, within=10)

    async def moved() -> bool:
        active = await cluster.pods()
        return (
            len(active) == 3
            and all(_ready(p) for p in active)
            and victim not in {p["spec"]["nodeName"] for p in active}
        )

    await eventually(moved, within=30)
    # With nobody left on the node to confirm it stopped, the evicted pod is removed anyway.
    await eventually(lambda: _gone(cluster, doomed), within=30)
    # Events about Nodes, which have no namespace, live in "default".
    assert "NodeNotReady" in await cluster.event_reasons(victim, "default")
    assert "TaintManagerEviction" in await cluster.event_reasons(doomed)


async def test_a_node_that_comes_back_loses_its_taints(cluster: Cluster) -> None:
    victim = cluster.nodes[2]
    cluster.agent.dead.add(victim)

    async def tainted() -> bool:
        node = await cluster.client.get(kinds.NODES, None, victim)
        return bool((node.get("spec") or {}).get("taints"))

    await eventually(tainted, within=15)
    cluster.agent.dead.discard(victim)
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": now(),
    }
    await cluster.client.patch(
        kinds.NODES, None, victim, {"status": {"conditions": [ready]}}, subresource="status"
    )

    async def clean() -> bool:
        node = await cluster.client.get(kinds.NODES, None, victim)
        return not (node.get("spec") or {}).get("taints")

    await eventually(clean, within=15)


async def test_pods_of_a_node_that_no_longer_exists_are_deleted(cluster: Cluster) -> None:
    pod = {
        "metadata": {"name": "stranded"},
        "spec": {"nodeName": "no-such-node", "containers": [{"name": "c", "image": "x"}]},
    }
    await cluster.client.create(kinds.PODS, cluster.namespace, pod)
    await eventually(lambda: _gone(cluster, "stranded"), within=15)


async def test_a_paused_deployment_rolls_out_only_once_resumed(cluster: Cluster) -> None:
    await cluster.kubectl("create", "deployment", "web", "--image=x", "--replicas=2")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    await cluster.kubectl("rollout", "pause", "deployment/web")
    await cluster.kubectl("set", "image", "deployment/web", "x=y")

    async def paused_noted() -> bool:
        d = await cluster.get(kinds.DEPLOYMENTS, "web")
        conds = {c["type"]: c for c in ((d or {}).get("status") or {}).get("conditions") or []}
        return bool(conds.get("Progressing", {}).get("reason") == "DeploymentPaused")

    await eventually(paused_noted)
    await asyncio.sleep(1)
    assert len(await cluster.replicasets()) == 1
    assert {p["spec"]["containers"][0]["image"] for p in await cluster.pods()} == {"x"}

    await cluster.kubectl("rollout", "resume", "deployment/web")
    await cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    pods = await settle_pods(cluster, 2)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"y"}
