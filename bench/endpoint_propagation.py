"""Endpoint propagation: from a pod's Ready condition written to a watcher seeing its slice.

Target (issue "Controllers"): p99 <= 50 ms with 10,000 Services and 30,000
pods in the store. There is no peer process here: kube-proxy's
network-programming latency SLO covers more than this path, so the figure
is set against the target itself (ratio = p99 / 50 ms).

The apiserver and the controller-manager (`--no-leader-elect`) run as their
own processes. The store is filled over loopback HTTP with aiohttp, 64
requests in flight: one Node (Ready, its Lease renewed by this process every
few seconds so node lifecycle leaves it alone), N Services selecting
`app=svc-N`, and three pods per Service bound to the Node through
`spec.nodeName`, each given a podIP by a status patch but not Ready. The
controller-manager starts once the store is full, as one would restart
after an upgrade; the run waits until it has written a slice holding the
three addresses of every Service, and reads its RSS after a quiet moment.

Then one watch on endpointslices is opened, and for each of 200 sampled
pods, one at a time, its status is patched to Ready=True; the figure is the
time from the PATCH's acknowledgement until the watch delivers a slice in
which that pod's address is ready. An event can come before the client has
read the acknowledgement, so a sample is never below zero.

Run with `bench/run endpoint_propagation` (or `-- --services 1000` for a quick
look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import _processes

TARGET_P99 = 0.050
PODS_PER_SERVICE = 3
SAMPLES = 200
CONCURRENCY = 64
NAMESPACE = "bench-endpoints"
NODE = "bench-node"
NODE_LEASES = "kube-node-lease"
SLICE_LABEL = "kubernetes.io/service-name"
BUDGET_SECONDS = 290.0
REQUEST_SECONDS = 60.0
EVENT_SECONDS = 10.0
SETTLE_SECONDS = 150.0
QUIET_SECONDS = 3.0
LEASE_RENEW_SECONDS = 5.0

Obj = dict[str, Any]


class BenchError(Exception):
    """The benchmark could not measure: a request failed or a process misbehaved."""


# ---- what is written ------------------------------------------------------------------------


def _now(fraction: bool = False) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")


def service_name(index: int) -> str:
    return f"svc-{index:05d}"


def pod_name(index: int) -> str:
    return f"pod-{index:05d}"


def pod_ip(index: int) -> str:
    return f"10.{1 + index // 62500}.{index // 250 % 250}.{index % 250 + 1}"


def service(index: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(index)},
        "spec": {
            "selector": {"app": service_name(index)},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        },
    }


def pod(index: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(index),
            "labels": {"app": service_name(index // PODS_PER_SERVICE)},
        },
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}],
        },
    }


def pod_status(index: int, ready: bool) -> Obj:
    return {
        "status": {
            "phase": "Running",
            "podIP": pod_ip(index),
            "podIPs": [{"ip": pod_ip(index)}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": _now(),
                }
            ],
        }
    }


# ---- talking to the apiserver ---------------------------------------------------------------

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_MERGE = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, body: Obj, *, ok: int
) -> bytes:
    headers = _MERGE if method == "PATCH" else _JSON
    async with session.request(method, url, data=orjson.dumps(body), headers=headers) as resp:
        answer = await resp.read()
        if resp.status != ok:
            raise BenchError(f"{method} {url} answered {resp.status}: {answer[:300]!r}")
    return answer


async def _in_parallel(count: int, one: Any) -> None:
    pending = iter(range(count))

    async def worker() -> None:
        for i in pending:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def make_node(session: aiohttp.ClientSession, base: str) -> None:
    await _send(session, "POST", f"{base}/api/v1/nodes", {"metadata": {"name": NODE}}, ok=201)
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": _now(),
        "lastTransitionTime": _now(),
    }
    status = {"status": {"conditions": [ready], "allocatable": {"pods": "100000"}}}
    await _send(session, "PATCH", f"{base}/api/v1/nodes/{NODE}/status", status, ok=200)
    lease = {
        "metadata": {"name": NODE},
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": _now(True)},
    }
    leases = f"{base}/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASES}/leases"
    await _send(session, "POST", leases, lease, ok=201)


async def renew_lease(session: aiohttp.ClientSession, base: str) -> None:
    url = f"{base}/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASES}/leases/{NODE}"
    while True:
        await asyncio.sleep(LEASE_RENEW_SECONDS)
        await _send(session, "PATCH", url, {"spec": {"renewTime": _now(True)}}, ok=200)


async def fill(session: aiohttp.ClientSession, base: str, services: int) -> float:
    started = time.perf_counter()
    ns = f"{base}/api/v1/namespaces/{NAMESPACE}"
    await _send(
        session, "POST", f"{base}/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}, ok=201
    )

    async def one_service(i: int) -> None:
        await _send(session, "POST", f"{ns}/services", service(i), ok=201)

    async def one_pod(i: int) -> None:
        await _send(session, "POST", f"{ns}/pods", pod(i), ok=201)
        await _send(
            session, "PATCH", f"{ns}/pods/{pod_name(i)}/status", pod_status(i, False), ok=200
        )

    await _in_parallel(services, one_service)
    await _in_parallel(services * PODS_PER_SERVICE, one_pod)
    return time.perf_counter() - started


async def list_slices(session: aiohttp.ClientSession, base: str) -> tuple[list[Obj], str]:
    url = f"{base}/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
    items: list[Obj] = []
    token = revision = ""
    while True:
        params = {"limit": "500"}
        if token:
            params["continue"] = token
        async with session.get(url, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {url} answered {resp.status}: {body[:300]!r}")
        page = orjson.loads(body)
        items += page["items"]
        revision = revision or page["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue", "")
        if not token:
            return items, revision


def _addresses(slice_: Obj, ready_only: bool) -> set[str]:
    return {
        address
        for endpoint in slice_.get("endpoints") or []
        if not ready_only or (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint.get("addresses") or []
    }


async def wait_for_slices(session: aiohttp.ClientSession, base: str, services: int) -> str:
    """Wait until every Service's slices hold its three addresses; the list's resourceVersion."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        items, revision = await list_slices(session, base)
        per_service: dict[str, set[str]] = {}
        for item in items:
            owner = (item["metadata"].get("labels") or {}).get(SLICE_LABEL, "")
            per_service.setdefault(owner, set()).update(_addresses(item, ready_only=False))
        complete = sum(1 for a in per_service.values() if len(a) == PODS_PER_SERVICE)
        if complete == services:
            return revision
        if time.monotonic() > deadline:
            raise BenchError(
                f"after {SETTLE_SECONDS:.0f} s only {complete} of {services} Services had"
                " slices holding their pods"
            )
        await asyncio.sleep(1.0)


@dataclass
class SliceWatch:
    """One watch on the namespace's EndpointSlices; resolves a waiter when its address is ready."""

    waiting: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    failure: BaseException | None = None

    def expect(self, address: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[address] = future
        return future

    def record(self, line: bytes, at: float) -> None:
        event = orjson.loads(line)
        if event["type"] == "ERROR":
            raise BenchError(f"the watch ended with an error: {event['object']}")
        if event["type"] not in ("ADDED", "MODIFIED"):
            return
        for address in _addresses(event["object"], ready_only=True) & self.waiting.keys():
            future = self.waiting.pop(address)
            if not future.done():
                future.set_result(at)


@contextlib.asynccontextmanager
async def watching_slices(base: str, revision: str) -> AsyncIterator[SliceWatch]:
    url = f"{base}/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
    params = {"watch": "true", "resourceVersion": revision}
    watch = SliceWatch()
    opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_SECONDS)

    async def follow(session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(url, params=params) as resp:
                if resp.status != 200:
                    raise BenchError(f"watch {url} answered {resp.status}")
                opened.set_result(None)
                while line := await resp.content.readline():
                    watch.record(line, time.perf_counter())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            watch.failure = exc
            if not opened.done():
                opened.set_exception(exc)
            for future in watch.waiting.values():
                if not future.done():
                    future.set_exception(BenchError(f"the watch failed: {exc!r}"))

    async with aiohttp.ClientSession(timeout=timeout) as session:
        task = asyncio.create_task(follow(session))
        try:
            await asyncio.wait_for(opened, timeout=REQUEST_SECONDS)
            yield watch
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def propagate(
    session: aiohttp.ClientSession, base: str, watch: SliceWatch, index: int
) -> float:
    """Make pod `index` Ready; seconds from the PATCH's acknowledgement to the slice event."""
    arrived = watch.expect(pod_ip(index))
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/pods/{pod_name(index)}/status"
    await _send(session, "PATCH", url, pod_status(index, True), ok=200)
    acked = time.perf_counter()
    try:
        at = await asyncio.wait_for(arrived, timeout=EVENT_SECONDS)
    except TimeoutError:
        raise BenchError(
            f"no slice showed {pod_name(index)} ({pod_ip(index)}) ready"
            f" within {EVENT_SECONDS:.0f} s"
        ) from None
    return max(at - acked, 0.0)


# ---- the run --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(work: Path, services: int) -> None:
    pods = services * PODS_PER_SERVICE
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} as the run began;"
        f" size: {services} Services, {pods} pods"
    )
    (work / "apiserver").mkdir()
    with _processes.running_apiserver(work / "apiserver") as apiserver:
        base = apiserver.url
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await make_node(session, base)
            renewing = asyncio.create_task(renew_lease(session, base))
            try:
                filled = await fill(session, base, services)
                print(
                    f"  for information: filled the store in {filled:.1f} s"
                    f" ({services + 2 * pods} requests, {CONCURRENCY} in flight)"
                )
                kubeconfig = str(apiserver.kubeconfig)
                argv = ["controller-manager", "--kubeconfig", kubeconfig, "--no-leader-elect"]
                log = work / "controller-manager.log"
                with _processes.running(argv, log, "controller-manager") as manager:
                    started = time.perf_counter()
                    revision = await wait_for_slices(session, base, services)
                    if manager.poll() is not None:
                        raise BenchError(f"the controller-manager exited:\n{_processes.tail(log)}")
                    print(
                        f"  for information: the controller-manager wrote slices for every"
                        f" Service {time.perf_counter() - started:.1f} s after it started"
                    )
                    await asyncio.sleep(QUIET_SECONDS)
                    steady_rss, _ = _processes.memory_kib(manager.pid)
                    samples = random.Random(0).sample(range(pods), SAMPLES)
                    latencies = []
                    async with watching_slices(base, revision) as watch:
                        for index in samples:
                            latencies.append(await propagate(session, base, watch, index))
                    end_rss, _ = _processes.memory_kib(manager.pid)
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
    p50 = statistics.median(latencies)
    p99 = _percentile(latencies, 0.99)
    ratio = p99 / TARGET_P99
    verdict = "met" if ratio <= 1 else "MISSED"
    print(
        f"endpoint propagation at {services} Services / {pods} pods ({SAMPLES} pods made Ready,"
        f" one at a time): p50 {_ms(p50)}, p99 {_ms(p99)}, worst {_ms(max(latencies))}"
        f" | peer: the target, p99 <= {_ms(TARGET_P99)} | ratio {ratio:.2f}x: {verdict}"
    )
    print(
        f"controller-manager memory: RSS {steady_rss / 1024:.0f} MiB steady once every slice"
        f" was written, {end_rss / 1024:.0f} MiB after the samples"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run endpoint_propagation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--services", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="put the store here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    if args.services * PODS_PER_SERVICE < SAMPLES:
        parser.error(f"--services must be at least {SAMPLES // PODS_PER_SERVICE + 1}")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # A SIGTERM unwinds like Ctrl-C, so the processes are stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-", dir=args.dir) as work:
        try:
            asyncio.run(asyncio.wait_for(run(Path(work), args.services), BUDGET_SECONDS))
        except TimeoutError:
            print(
                f"endpoint_propagation: did not finish within {BUDGET_SECONDS:.0f} s",
                file=sys.stderr,
            )
            return 1
        except (BenchError, _processes.ProcessError, aiohttp.ClientError) as exc:
            print(f"endpoint_propagation: could not measure: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
