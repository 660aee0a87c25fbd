"""What the agent makes of a Pod without running it: argv, env, DNS, probes, status.

The pure halves of the agent (`launch`, `podstatus`, probe parsing), checked
against what the kubelet does with the same spec.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from switchboard.agent import containerstate, launch, podstatus, probes, runningpod

NODE = launch.NodeFacts(name="node-1", ip="10.250.0.1", cpu=4, memory_bytes=8 * 2**30)


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-0",
            "namespace": "shop",
            "uid": "u-1",
            "labels": {"app": "web", "tier": "front"},
        },
        "spec": {"nodeName": "node-1", "containers": list(containers), **spec},
    }


def started(c: dict[str, Any], p: dict[str, Any] | None = None) -> launch.Launch:
    return launch.container_launch(p or pod(c), c, pod_ip="10.244.1.5", node=NODE)


# -- argv ---------------------------------------------------------------------------------


def test_agnhost_runs_built_in_with_the_agents_pythonpath_only_for_it() -> None:
    c = {"name": "a", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "args": ["pause"]}
    made = launch.container_launch(
        pod(c), c, pod_ip="10.244.1.5", node=NODE, inherit={"PYTHONPATH": "/src"}
    )
    assert made.argv == (sys.executable, "-m", "switchboard.agent.agnhost", "pause")
    assert made.env["PYTHONPATH"] == "/src"
    assert made.image_id.startswith(launch.BUILTIN_IMAGE_ID_PREFIX)
    other = {"name": "b", "image": "busybox", "command": ["sleep", "1"]}
    assert (
        "PYTHONPATH"
        not in launch.container_launch(
            pod(other), other, pod_ip="", node=NODE, inherit={"PYTHONPATH": "/src"}
        ).env
    )


def test_another_image_runs_its_command_and_args_from_the_node() -> None:
    made = started({"name": "a", "image": "busybox", "command": ["sh", "-c"], "args": ["echo hi"]})
    assert made.argv == ("sh", "-c", "echo hi")
    assert not made.error_reason


def test_an_image_neither_built_in_nor_given_a_command_cannot_pull() -> None:
    made = started({"name": "a", "image": "nginx:1.27", "args": ["-g", "daemon off;"]})
    assert made.error_reason == "ErrImagePull"
    assert 'image "nginx:1.27" is not built into this node' in made.error_message
    assert made.argv == ()


def test_command_and_args_expand_variables_as_kubernetes_does() -> None:
    c = {
        "name": "a",
        "image": "busybox",
        "env": [{"name": "GREETING", "value": "hi"}],
        "command": ["echo", "$(GREETING)", "$(MISSING)", "$$(GREETING)", "$$$$", "$((1+1))", "$x"],
    }
    assert started(c).argv == ("echo", "hi", "$(MISSING)", "$(GREETING)", "$$", "$((1+1))", "$x")


# -- env ----------------------------------------------------------------------------------


def test_env_has_the_downward_api_and_expands_earlier_variables() -> None:
    def ref(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    c = {
        "name": "a",
        "image": "busybox",
        "command": ["true"],
        "env": [
            {"name": "POD_NAME", **ref("metadata.name")},
            {"name": "POD_NAMESPACE", **ref("metadata.namespace")},
            {"name": "POD_IP", **ref("status.podIP")},
            {"name": "NODE_NAME", **ref("spec.nodeName")},
            {"name": "HOST_IP", **ref("status.hostIP")},
            {"name": "TIER", **ref("metadata.labels['tier']")},
            {"name": "URL", "value": "http://$(POD_IP):8080/$(POD_NAME)"},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {
                    "resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}
                },
            },
        ],
        "resources": {"requests": {"memory": "64Mi"}},
    }
    env = started(c).env
    assert env["POD_NAME"] == "web-0"
    assert env["POD_NAMESPACE"] == "shop"
    assert env["POD_IP"] == "10.244.1.5"
    assert env["NODE_NAME"] == "node-1"
    assert env["HOST_IP"] == "10.250.0.1"
    assert env["TIER"] == "front"
    assert env["URL"] == "http://10.244.1.5:8080/web-0"
    assert env["CPU"] == "4"  # no limit: the node's capacity
    assert env["MEM_MI"] == "64"
    assert env["HOSTNAME"] == "web-0"
    assert env["PATH"] == launch.DEFAULT_PATH


def test_a_config_map_reference_fails_the_container_unless_optional() -> None:
    ref = {"configMapKeyRef": {"name": "settings", "key": "mode"}}
    c = {
        "name": "a",
        "image": "busybox",
        "command": ["true"],
        "env": [{"name": "M", "valueFrom": ref}],
    }
    made = started(c)
    assert made.error_reason == "CreateContainerConfigError"
    assert 'ConfigMap "settings"' in made.error_message
    ref["configMapKeyRef"]["optional"] = True  # type: ignore[index]
    assert "M" not in started(c).env


# -- DNS ----------------------------------------------------------------------------------


def test_cluster_first_pods_get_the_cluster_dns_and_search_path() -> None:
    text = launch.resolv_conf(pod(), cluster_dns=["10.96.0.10"])
    assert text == (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )


def test_without_cluster_dns_or_with_dns_policy_default_the_node_resolv_conf_stays() -> None:
    assert launch.resolv_conf(pod(), cluster_dns=[]) is None
    assert launch.resolv_conf(pod(dnsPolicy="Default"), cluster_dns=["10.96.0.10"]) is None
    assert launch.resolv_conf(pod(hostNetwork=True), cluster_dns=["10.96.0.10"]) is None


def test_dns_policy_none_uses_the_pods_dns_config_alone() -> None:
    config = {
        "nameservers": ["1.2.3.4"],
        "searches": ["example.test"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    text = launch.resolv_conf(pod(dnsPolicy="None", dnsConfig=config), cluster_dns=["10.96.0.10"])
    assert text == "nameserver 1.2.3.4\nsearch example.test\noptions ndots:2 edns0\n"


def test_a_long_pod_name_is_cut_to_a_valid_hostname() -> None:
    p = pod()
    p["metadata"]["name"] = "a" * 62 + "-b" * 5
    assert launch.hostname(p) == "a" * 62
    p["spec"]["hostname"] = "custom"
    assert launch.hostname(p) == "custom"


# -- probes -------------------------------------------------------------------------------


def test_a_probe_takes_kubernetes_defaults_and_named_ports_resolve() -> None:
    c = {
        "name": "a",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "http"}},
    }
    probe = probes.Probe.of(c, "readiness")
    assert probe == probes.Probe(
        kind="readiness",
        handler=probes.HttpGet(port="http"),
        period=10.0,
        timeout=1.0,
        success_threshold=1,
        failure_threshold=3,
    )
    assert probes.resolve_port("http", c) == 8080
    assert probes.resolve_port(9000, c) == 9000
    assert probes.resolve_port("metrics", c) is None
    assert probes.Probe.of(c, "liveness") is None
    grpc = probes.Probe.of({"livenessProbe": {"grpc": {"port": 9}}}, "liveness")
    assert grpc is not None and grpc.handler == probes.Unsupported("grpc")


# -- status -------------------------------------------------------------------------------


def status(
    name: str, state: containerstate.State, last: containerstate.Terminated | None = None
) -> containerstate.ContainerStatus:
    return containerstate.ContainerStatus(
        name=name,
        image="busybox",
        image_id="x",
        state=state,
        last_state=last,
        restart_count=1 if last else 0,
        container_id="switchboard://1",
    )


RUNNING = containerstate.Running(started_at=1000.0)
OK = containerstate.Terminated(0, "Completed", 1010.0, started_at=1000.0)
FAILED = containerstate.Terminated(3, "Error", 1010.0, started_at=1000.0)
BACKOFF = containerstate.Waiting("CrashLoopBackOff", "back-off 10s")


@pytest.mark.parametrize(
    ("policy", "states", "expected"),
    [
        ("Always", [containerstate.Waiting("ContainerCreating")], "Pending"),
        ("Always", [RUNNING, containerstate.Waiting("ErrImagePull")], "Pending"),
        ("Always", [RUNNING], "Running"),
        ("Always", [OK], "Running"),  # about to be restarted
        ("OnFailure", [FAILED], "Running"),
        ("OnFailure", [OK, OK], "Succeeded"),
        ("Never", [OK, FAILED], "Failed"),
        ("Never", [RUNNING, FAILED], "Running"),
    ],
)
def test_phase_follows_the_kubelet(
    policy: str, states: list[containerstate.State], expected: str
) -> None:
    containers = [status(f"c{i}", s) for i, s in enumerate(states)]
    assert podstatus.phase(policy, [], containers) == expected


def test_a_container_backing_off_keeps_the_pod_running_and_a_deleted_pod_ends() -> None:
    crashing = [status("c", BACKOFF, last=FAILED)]
    assert podstatus.phase("Always", [], crashing) == "Running"
    assert podstatus.phase("Always", [], crashing, terminal=True) == "Failed"
    assert podstatus.phase("Always", [], [status("c", OK)], terminal=True) == "Succeeded"


def test_a_failing_init_container_keeps_the_pod_pending_or_fails_it_under_never() -> None:
    init = [status("init", FAILED)]
    main = [status("c", containerstate.Waiting("PodInitializing"))]
    assert podstatus.phase("Always", init, main) == "Pending"
    assert podstatus.phase("Never", init, main) == "Failed"


def test_status_reports_ips_conditions_and_container_states() -> None:
    p = pod({"name": "web", "image": "busybox"}, {"name": "side", "image": "busybox"})
    snapshot = containerstate.PodSnapshot(
        init_containers=(),
        containers=(status("web", RUNNING), status("side", BACKOFF, last=FAILED)),
        initialized=True,
        finished=False,
        stopping=False,
    )
    made = podstatus.pod_status(
        p,
        snapshot,
        {"web": podstatus.Probed(ready=True, started=True)},
        pod_ip="10.244.1.5",
        host_ip="10.250.0.1",
        start_time="2024-01-01T00:00:00Z",
        now=2000.0,
        sandbox_ready=True,
    )
    assert made["phase"] == "Running"
    assert made["podIPs"] == [{"ip": "10.244.1.5"}] and made["hostIP"] == "10.250.0.1"
    conditions = {c["type"]: c for c in made["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["message"] == "containers with unready status: [side]"
    assert conditions["Initialized"]["status"] == "True"
    web, side = made["containerStatuses"]
    assert web["ready"] and web["state"] == {"running": {"startedAt": "1970-01-01T00:16:40Z"}}
    assert side["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert side["lastState"]["terminated"]["exitCode"] == 3 and side["restartCount"] == 1


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    p = pod({"name": "web", "image": "busybox"})
    earlier = "2024-01-01T00:00:00Z"
    p["status"] = {
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": earlier}]
    }
    made = podstatus.pod_status(
        p, None, {}, pod_ip=None, host_ip="h", start_time=earlier, now=5000.0, sandbox_ready=False
    )
    ready = next(c for c in made["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == earlier
    assert made["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert "podIP" not in made


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ],
)
def test_qos_class(resources: list[dict[str, Any]], expected: str) -> None:
    containers = [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]
    assert podstatus.qos_class(pod(*containers)) == expected


def test_back_off_delays_read_as_go_durations() -> None:
    delays = [runningpod.go_duration(s) for s in (0.5, 10, 80, 300)]
    assert delays == ["500ms", "10s", "1m20s", "5m0s"]
