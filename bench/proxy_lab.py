"""The Service proxy in a running lab: programming latency, throughput and connection rate.

Targets (DESIGN, "Performance targets"): pod Ready -> reachable through its
ClusterIP with p99 <= 150 ms (peer: kube-proxy's 1 s minSyncPeriod, the
earliest it would program a change that arrives just after a sync); TCP
throughput through a ClusterIP >= 0.95 of direct pod-to-pod (iperf3); and
the connection rate through a ClusterIP against direct, same target.

The benchmark starts its own 2-node lab (`switchboard up --detach` in a
temporary data directory) and always removes it (`switchboard down`). In it:

- a client pod on node-1 (agnhost pause); the measuring programs run inside
  its network namespace (`ip netns exec`, the agent names a pod's namespace
  after its uid), so every packet goes between lab namespaces;
- latency: a Deployment of one agnhost netexec pod (readinessProbe httpGet
  /healthz, periodSeconds 1) behind a ClusterIP Service. Each sample scales
  it to 2, so a new pod becomes Ready, then back to 1. The clock starts when
  this process's watch of the pods sees the new pod's Ready condition turn
  True (lastTransitionTime has only 1 s precision) and stops when a poller
  in the client pod -- a tight loop of fresh connections asking
  ClusterIP:80/hostname -- first gets the new pod's name. Both clocks are
  the machine's monotonic clock. With two endpoints behind a random choice
  the poller needs two requests on average to hit the new pod (each about a
  millisecond), included in the figure. A second watch, of the Service's
  EndpointSlices, splits each sample into Ready -> the pod's endpoint ready
  in a slice (controller-manager) and slice -> answer (the node agent's
  proxy, the kernel, the poller). The poller takes its source ports in turn
  from 20000-59999 (`--kernel-ports`: the kernel's choice), so a 4-tuple
  comes round only after tens of seconds, and its failed requests are
  counted by the phase of the sample they ended in: a connect that times
  out (`--poll-timeout`, 500 ms) holds the poller up, and shows in the tail;
- throughput: an iperf3 server pod on node-2 (iperf3 from the host's
  filesystem in the pod's namespace) and a Service for it; iperf3 -c from
  the client pod to the pod IP and to the ClusterIP, alternated (which goes
  first swaps each round), the mean of each;
- connection rate: an agnhost netexec pod on node-2 and a Service for it;
  N sequential HTTP/1.0 requests, each on a new connection, from the client
  pod to the pod IP and to the ClusterIP, alternated as above after a
  warm-up of each, the median of each.

Run with `bench/run proxy_lab` (root; needs kubectl and iperf3). It exits
non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from bench import _processes

NAMESPACE = "default"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
POD_NETNS_PREFIX = "sbpod-"  # the agent's default: the pod's namespace is this + its uid

# Run inside the client pod's namespace: asks host:port/hostname on a new connection
# each time and prints "<hostname> <monotonic time>" the first time a name answers
# ("! <time> <error>" for a request that failed). Source ports, if given as argv[4],
# go round 20000-59999 in turn instead of the kernel's choice (see the module's text).
POLLER = r"""
import socket, sys, time
host, port, TIMEOUT = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ports = sys.argv[4:] == ["ports"]
seen = set()
request = b"GET /hostname HTTP/1.0\r\n\r\n"
source = 20000
while True:
    source = 20000 + (source - 19999) % 40000
    try:
        with socket.socket() as sock:
            sock.settimeout(TIMEOUT)
            if ports:
                sock.bind(("", source))
            sock.connect((host, port))
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        now = time.monotonic()
    except OSError as exc:
        print("!", time.monotonic(), type(exc).__name__, flush=True)
        time.sleep(0.001)
        continue
    name = data.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()
    if name and name not in seen:
        seen.add(name)
        print(name, now, flush=True)
"""

# Run inside the client pod's namespace: N sequential requests on new connections; prints seconds.
REQUESTS = r"""
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = b"GET /hostname HTTP/1.0\r\n\r\n"
started = time.perf_counter()
for _ in range(count):
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request)
        while sock.recv(4096):
            pass
print(time.perf_counter() - started)
"""


def labels(app: str) -> dict[str, Any]:
    return {"app": app, "bench": "proxy-lab"}


def pod(name: str, node: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {"nodeName": node, "containers": [container], "terminationGracePeriodSeconds": 1},
    }


def service(name: str, port: int, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "p", "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def netexec(port: int, probe: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "netexec",
        "image": AGNHOST,
        "args": ["netexec", f"--http-port={port}"],
        "ports": [{"containerPort": port}],
    }
    if probe:
        container["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 1,
        }
    return container


def manifests() -> list[dict[str, Any]]:
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels("web")},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": labels("web")},
                "spec": {
                    "containers": [netexec(8080, probe=True)],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }
    iperf = {"name": "iperf3", "image": "debian", "command": ["iperf3", "-s", "-p", "5201"]}
    return [
        pod("client", "node-1", {"name": "pause", "image": AGNHOST, "args": ["pause"]}),
        pod("iperf", "node-2", iperf),
        pod("echo", "node-2", netexec(8080, probe=False)),
        web,
        service("web", 80, 8080),
        service("iperf", 5201, 5201),
        service("echo", 80, 8080),
    ]


def kubectl(data: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(data / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def in_pod(netns: str, argv: list[str], timeout: float) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout


def is_ready(p: Any) -> bool:
    if p.metadata.deletion_timestamp is not None:
        return False
    conditions = (p.status and p.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def ready_pods(p: Any) -> list[str]:
    return [p.metadata.name] if is_ready(p) else []


def ready_endpoints(slice_: Any) -> list[str]:
    return [
        e.target_ref.name
        for e in slice_.endpoints or []
        if e.target_ref is not None and e.conditions is not None and e.conditions.ready
    ]


class FirstSeen:
    """Watches a list; notes the monotonic time each pod name is first seen ready in it."""

    def __init__(self, list_fn: Any, selector: str, names: Any) -> None:
        self.list_fn, self.selector, self.names = list_fn, selector, names
        self.ready: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopping = False
        listed = list_fn(NAMESPACE, label_selector=selector)
        now = time.monotonic()
        for item in listed.items:
            for name in names(item):
                self.ready[name] = now
        self.version = listed.metadata.resource_version
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            w = k8s_watch.Watch()
            try:
                for event in w.stream(
                    self.list_fn,
                    NAMESPACE,
                    label_selector=self.selector,
                    resource_version=self.version,
                    timeout_seconds=60,
                ):
                    now = time.monotonic()
                    item = event["object"]
                    self.version = item.metadata.resource_version
                    with self.lock:
                        for name in self.names(item):
                            self.ready.setdefault(name, now)
                    if self.stopping:
                        return
            except Exception:  # a dropped watch is resumed
                time.sleep(0.1)

    def seen(self, name: str) -> float | None:
        with self.lock:
            return self.ready.get(name)


class Poller:
    """The poller running in the client pod's namespace; first answer time per hostname."""

    def __init__(self, netns: str, host: str, port: int, timeout: float, ports: bool) -> None:
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-c",
                POLLER,
                host,
                str(port),
                str(timeout),
                *(["ports"] if ports else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.first: dict[str, float] = {}
        self.errors: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("!"):
                _, at, error = line.split()
                with self.lock:
                    self.errors.append((float(at), error))
                continue
            name, _, at = line.strip().rpartition(" ")
            with self.lock:
                self.first[name] = float(at)

    def answered(self, name: str) -> float | None:
        with self.lock:
            return self.first.get(name)

    def stop(self) -> None:
        _processes.stop(self.proc)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def programming_latency(
    data: Path,
    api: k8s.CoreV1Api,
    client_ns: str,
    cluster_ip: str,
    samples: int,
    timeout: float,
    ports: bool,
) -> tuple[list[tuple[float, float]], list[str]]:
    """(Ready seen -> first answer, Ready seen -> ready in the EndpointSlice) per sample."""
    latencies: list[tuple[float, float]] = []
    errors: list[str] = []
    phases: list[tuple[float, str]] = []

    def web_pods() -> list[Any]:
        return api.list_namespaced_pod(NAMESPACE, label_selector="app=web").items

    watch = FirstSeen(api.list_namespaced_pod, "app=web", ready_pods)
    slices = FirstSeen(
        k8s.DiscoveryV1Api().list_namespaced_endpoint_slice,
        "kubernetes.io/service-name=web",
        ready_endpoints,
    )
    poller = Poller(client_ns, cluster_ip, 80, timeout, ports)
    latencies: list[float] = []
    try:
        known = {p.metadata.name for p in web_pods()}
        wait_for(lambda: all(poller.answered(n) for n in known), 30, "the first web pod to answer")
        for _ in range(samples):
            phases.append((time.monotonic(), "after scale-up, before the new pod is Ready"))
            kubectl(data, "scale", "deployment/web", "--replicas=2")
            new = wait_for(
                lambda: [p.metadata.name for p in web_pods() if p.metadata.name not in known],
                30,
                "the new web pod",
            )[0]
            known.add(new)
            ready = wait_for(lambda n=new: watch.seen(n), 30, f"{new} to be Ready")
            answered = wait_for(lambda n=new: poller.answered(n), 30, f"{new} to answer")
            sliced = wait_for(lambda n=new: slices.seen(n), 30, f"{new} in the EndpointSlice")
            latencies.append((answered - ready, sliced - ready))
            phases.append((ready, "between Ready and the first answer"))
            phases.append((answered, "after the first answer, before scale-down"))
            phases.append((time.monotonic(), "after scale-down"))
            kubectl(data, "scale", "deployment/web", "--replicas=1")
            wait_for(lambda: len(web_pods()) == 1, 60, "the web deployment back at one pod")
    finally:
        watch.stopping = slices.stopping = True
        poller.stop()
        for at, error in list(poller.errors):
            phase = [name for start, name in phases if start <= at] or ["before the first sample"]
            errors.append(f"{error} {phase[-1]}")
    return latencies, errors


def iperf(client_ns: str, host: str, seconds: int) -> float:
    """Gbit/s received by the server over `seconds`."""
    out = in_pod(client_ns, ["iperf3", "-c", host, "-p", "5201", "-t", str(seconds), "-J"], 60)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def request_rate(client_ns: str, host: str, port: int, count: int) -> float:
    out = in_pod(client_ns, [sys.executable, "-c", REQUESTS, host, str(port), str(count)], 120)
    return count / float(out)


def verdict(value: float, target: float, at_least: bool) -> str:
    return "met" if (value >= target if at_least else value <= target) else "MISSED"


def bench(args: argparse.Namespace) -> None:
    with _processes.lab(nodes=2, prefix="sb-proxy-lab-") as data:
        k8s_config.load_kube_config(str(data / "kubeconfig"))
        api = k8s.CoreV1Api()
        kubectl(
            data,
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": manifests()}),
        )
        for name in ("client", "iperf", "echo"):
            kubectl(data, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
        kubectl(data, "rollout", "status", "deployment/web", "--timeout=120s")
        pods = {n: api.read_namespaced_pod(n, NAMESPACE) for n in ("client", "iperf", "echo")}
        client_ns = POD_NETNS_PREFIX + pods["client"].metadata.uid
        ips = {
            n: api.read_namespaced_service(n, NAMESPACE).spec.cluster_ip
            for n in ("web", "iperf", "echo")
        }

        latencies, errors = programming_latency(
            data, api, client_ns, ips["web"], args.samples, args.poll_timeout, not args.kernel_ports
        )
        ms = [total * 1000 for total, _ in latencies]
        p50, p99 = statistics.median(ms), percentile(ms, 0.99)
        print(
            f"pod Ready -> reachable through its ClusterIP ({len(ms)} samples): switchboard "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}) | "
            f"peer kube-proxy minSyncPeriod 1000 ms | ratio p99/peer {p99 / 1000:.3f}, "
            f"p99/target {p99 / 150:.2f} (target p99 <= 150 ms): {verdict(p99, 150, False)}"
        )

        print(
            "pod Ready -> reachable, every sample, slowest last (ms, total = Ready -> "
            "EndpointSlice + EndpointSlice -> answer): "
            + " ".join(
                f"{t * 1000:.0f}={s * 1000:.0f}+{(t - s) * 1000:.0f}" for t, s in sorted(latencies)
            )
        )
        split = [(s * 1000, (t - s) * 1000) for t, s in latencies]
        print(
            "pod Ready -> reachable, split (p50 / max, ms): Ready -> EndpointSlice seen "
            f"{statistics.median(a for a, _ in split):.1f} / {max(a for a, _ in split):.1f}, "
            f"EndpointSlice seen -> answer {statistics.median(b for _, b in split):.1f} / "
            f"{max(b for _, b in split):.1f}"
        )

        kinds = {e: errors.count(e) for e in sorted(set(errors))}
        print(
            "pod Ready -> reachable, poller requests that failed, by when they ended "
            f"(connect timeout {args.poll_timeout * 1000:.0f} ms): "
            + (", ".join(f"{n} {e}" for e, n in kinds.items()) or "none")
        )

        direct_bps, cluster_bps = [], []
        for n in range(args.iperf_runs):  # alternated, the first of each pair swapping
            order = [(direct_bps, pods["iperf"].status.pod_ip), (cluster_bps, ips["iperf"])]
            for found, host in order if n % 2 == 0 else reversed(order):
                found.append(iperf(client_ns, host, args.iperf_seconds))
        direct, cluster = statistics.mean(direct_bps), statistics.mean(cluster_bps)
        print(
            f"TCP throughput, iperf3 -t {args.iperf_seconds} x {args.iperf_runs} each, node-1 pod "
            f"-> node-2 pod: ClusterIP {cluster:.2f} Gbit/s | peer direct pod IP {direct:.2f} "
            f"Gbit/s | ratio {cluster / direct:.3f} (target >= 0.95): "
            f"{verdict(cluster / direct, 0.95, True)}"
        )
        print(
            "TCP throughput, each run (direct / ClusterIP, Gbit/s): "
            + ", ".join(f"{d:.2f}/{c:.2f}" for d, c in zip(direct_bps, cluster_bps, strict=True))
        )

        for host, port in ((pods["echo"].status.pod_ip, 8080), (ips["echo"], 80)):
            request_rate(client_ns, host, port, 50)  # warm-up: ARP, conntrack, the server
        direct_rates, cluster_rates = [], []
        for n in range(args.rate_runs):  # alternated like the iperf3 runs
            targets = [
                (direct_rates, pods["echo"].status.pod_ip, 8080),
                (cluster_rates, ips["echo"], 80),
            ]
            for found, host, port in targets if n % 2 == 0 else reversed(targets):
                found.append(request_rate(client_ns, host, port, args.requests))
        direct_rate, cluster_rate = (
            statistics.median(direct_rates),
            statistics.median(cluster_rates),
        )
        print(
            f"connection rate, {args.requests} sequential HTTP requests on new connections "
            f"(median of {args.rate_runs}): ClusterIP {cluster_rate:.0f} req/s | peer direct pod "
            f"IP {direct_rate:.0f} req/s | ratio {cluster_rate / direct_rate:.3f} "
            f"(target >= 0.95): {verdict(cluster_rate / direct_rate, 0.95, True)}"
        )
        print(
            "connection rate, each run (direct / ClusterIP, req/s): "
            + ", ".join(
                f"{d:.0f}/{c:.0f}" for d, c in zip(direct_rates, cluster_rates, strict=True)
            )
        )
        # The machine's speed drifts during a run; each pair ran back to back, so the
        # median of the pairs' ratios shows the path's cost with less of that drift.
        pair_ratio = statistics.median(
            c / d for d, c in zip(direct_rates, cluster_rates, strict=True)
        )
        print(
            "  for information: connection rate, the median of each pair's ClusterIP / direct "
            f"ratio: {pair_ratio:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="pods made Ready, one at a time")
    parser.add_argument(
        "--poll-timeout", type=float, default=0.5, help="the poller's connect timeout, seconds"
    )
    parser.add_argument(
        "--kernel-ports",
        action="store_true",
        help="let the kernel pick the poller's source ports (they come round within seconds)",
    )
    parser.add_argument("--iperf-seconds", type=int, default=5)
    parser.add_argument("--iperf-runs", type=int, default=4, help="runs each, alternated")
    parser.add_argument("--requests", type=int, default=500, help="requests per rate run")
    parser.add_argument("--rate-runs", type=int, default=5, help="runs each, alternated")
    args = parser.parse_args(argv)
    missing = [t for t in ("kubectl", "iperf3", "ip") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        print(f"proxy_lab: could not measure: needs root and {', '.join(missing) or 'nothing'}")
        return 1
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} as the run began")
    try:
        bench(args)
    except (
        OSError,
        subprocess.SubprocessError,
        TimeoutError,
        k8s.ApiException,
        _processes.ProcessError,
    ) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"proxy_lab: could not measure: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
