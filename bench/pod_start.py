"""Pod start latency on one node, and the agent's memory at 100 pods, against bare processes.

What runs, in one run:

- Switchboard: `switchboard up --nodes 1 --detach` in a data directory of
  its own. The benchmark watches Pods in a namespace of its own, then
  creates N (default 100) agnhost netexec Pods with an HTTP readinessProbe
  (periodSeconds 1) through the API with aiohttp, `--batch` (default 10) at
  a time, each batch created concurrently and waited for until all of it is
  Ready before the next. A pod's start latency is from the acknowledgement
  of its POST until the first watch event that shows it Ready, both clocked
  in this process. With all N running, the agent's RSS (its VmRSS; the
  pods are processes of their own) is read from /proc, the agent's pid from
  the lab's `lab.json`. `switchboard down` always runs at the end.
- The peer: the same N netexec servers started as bare processes,
  `python -m switchboard.agent.agnhost netexec` each on a loopback port of
  its own, in the same batches; a process's start latency is from its
  spawn until /healthz answers 200. This is what a pod costs without the
  API, the scheduler's write, the network namespace, the veth, the probe
  and the status update.

Run with `bench/run pod_start` (or `bench/run pod_start -- --pods 20` for a
quick look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import _processes

NAMESPACE = "bench-pod-start"
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
# The peer's netexec answers on loopback only: the host serves nothing on its own addresses.
PEER = (
    "import functools, sys\n"
    "from switchboard.agent import agnhost, netexec\n"
    "netexec.Netexec = functools.partial(netexec.Netexec, listen_host='127.0.0.1')\n"
    "sys.exit(agnhost.main(sys.argv[1:]))\n"
)


class BenchError(Exception):
    """The benchmark could not measure: a request failed, or a pod never became Ready."""


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "pod-start"}},
        "spec": {
            "containers": [
                {
                    "name": "netexec",
                    "image": IMAGE,
                    "args": ["netexec", "--http-port=8080"],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 1,
                    },
                }
            ]
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def pod_latencies(server: str, count: int, batch: int) -> list[float]:
    """Seconds from each POST's acknowledgement until the watch shows that pod Ready."""
    acknowledged: dict[str, float] = {}
    ready: dict[str, float] = {}
    waiters: dict[str, asyncio.Future[None]] = {}
    async with aiohttp.ClientSession(server) as session:
        async with session.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        ) as response:
            if response.status not in (201, 409):
                raise BenchError(f"creating the namespace: {response.status}")
        async with session.get(f"/api/v1/namespaces/{NAMESPACE}/pods") as response:
            version = (await response.json())["metadata"]["resourceVersion"]

        async def watch() -> None:
            params = {"watch": "true", "resourceVersion": version, "labelSelector": "app=pod-start"}
            async with session.get(
                f"/api/v1/namespaces/{NAMESPACE}/pods",
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as response:
                async for line in response.content:
                    arrived = time.monotonic()
                    event = json.loads(line)
                    obj = event["object"]
                    name = obj.get("metadata", {}).get("name", "")
                    if name not in ready and is_ready(obj):
                        ready[name] = arrived
                        waiter = waiters.get(name)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(None)

        async def create(name: str) -> None:
            waiters[name] = asyncio.get_running_loop().create_future()
            async with session.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod(name)) as r:
                acknowledged[name] = time.monotonic()
                if r.status != 201:
                    raise BenchError(f"creating {name}: {r.status} {await r.text()}")
            if name in ready:
                waiters[name].set_result(None)
            await asyncio.wait_for(waiters[name], timeout=120)

        watcher = asyncio.create_task(watch())
        try:
            for start in range(0, count, batch):
                names = [f"netexec-{i:03d}" for i in range(start, min(count, start + batch))]
                await asyncio.gather(*(create(name) for name in names))
        except TimeoutError as exc:
            raise BenchError("a pod was not Ready within 120 s") from exc
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return [ready[name] - acknowledged[name] for name in acknowledged]


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except OSError:
        return False


def process_latencies(count: int, batch: int) -> list[float]:
    """Seconds from spawning each bare netexec until its /healthz answers."""
    latencies: list[float] = []
    started: list[subprocess.Popen[bytes]] = []
    try:
        for start in range(0, count, batch):
            pending: dict[int, float] = {}
            ports = free_ports(2 * min(batch, count - start))
            for http_port, udp_port in zip(ports[::2], ports[1::2], strict=True):
                argv = [sys.executable, "-c", PEER, "netexec", f"--http-port={http_port}"]
                argv += [f"--udp-port={udp_port}", "--udp-listen-addresses=127.0.0.1"]
                spawned = time.monotonic()
                started.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                pending[http_port] = spawned
            deadline = time.monotonic() + 60
            while pending:
                for port in list(pending):
                    if healthy(port):
                        latencies.append(time.monotonic() - pending.pop(port))
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(pending)} bare netexec processes never answered")
                time.sleep(0.005)
    finally:
        _processes.stop_all(started)
    return latencies


def agent_pid(data_dir: Path) -> int:
    state = json.loads((data_dir / "lab.json").read_text())
    return next(int(p["pid"]) for p in state["processes"] if p["role"].startswith("agent"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run pod_start", description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    peer = process_latencies(args.pods, args.batch)
    try:
        with _processes.lab(nodes=1, prefix="bench-pod-start-") as data_dir:
            agent = agent_pid(data_dir)
            idle_kib, _ = _processes.memory_kib(agent)
            server = _processes.server_url(data_dir / "kubeconfig")
            pods = asyncio.run(pod_latencies(server, args.pods, args.batch))
            time.sleep(2)  # let the last status writes and probes settle
            busy_kib, _ = _processes.memory_kib(agent)
    except (BenchError, _processes.ProcessError) as exc:
        print(f"pod_start: {exc}", file=sys.stderr)
        return 1
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{args.pods} pods, {args.batch} at a time")
    print(f"{'':34} {'p50':>9} {'p99':>9} {'mean':>9}")
    rows = (("pod: create ack -> Ready (watch)", pods), ("bare process: spawn -> /healthz", peer))
    for label, values in rows:
        print(
            f"{label:34} {statistics.median(values) * 1000:7.0f}ms"
            f" {percentile(values, 0.99) * 1000:7.0f}ms {statistics.mean(values) * 1000:7.0f}ms"
        )
    print(
        f"ratio pod / bare process: p50 {statistics.median(pods) / statistics.median(peer):.1f}x,"
        f" p99 {percentile(pods, 0.99) / percentile(peer, 0.99):.1f}x"
    )
    print(
        f"agent RSS: {idle_kib / 1024:.0f} MiB with no pods,"
        f" {busy_kib / 1024:.0f} MiB with {args.pods} pods running"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
