"""Listing 10,000 Services through Switchboard's API client and through the official one.

Why: the client library should be a well-kept Kubernetes client if that is
fast enough at 10,000 Services / 100,000 endpoints. An informer's first act
is a full list, and every controller restart repeats it, so that list is the
figure that decides.

Both clients list every Service in a namespace made for the benchmark on a
real `switchboard apiserver` process, paged with limit=500 and `continue` as
informers page:

- switchboard: `rest.Client.list_all` (aiohttp, orjson, objects stay dicts);
- kubernetes: the official package's `CoreV1Api.list_namespaced_service`,
  which deserialises every page into V1Service model objects.

Then the same for one EndpointSlice of 10 endpoints per Service — 100,000
endpoints, the other half of the scale the client must handle — through
`DiscoveryV1Api.list_namespaced_endpoint_slice`.

Each client runs in a child process of its own, so its peak memory (VmHWM)
is its own; the figure printed is the peak minus the process's size just
before the first list, i.e. what listing costs. Time is the best of three
passes. The objects are created first, 32 requests in flight.

Run with `bench/run client_list` (or `bench/run client_list -- --services 2000`
for a quick look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import _processes

NAMESPACE = "bench"  # its own, so the count is exactly what was created
PAGE = 500
PASSES = 3
CONCURRENCY = 32
CHILD_SECONDS = 120.0
CLIENTS = ("switchboard", "kubernetes")
ENDPOINTS_PER_SLICE = 10


class BenchError(Exception):
    """The benchmark could not measure."""


# ---- the two clients, each run in a child process -------------------------------------------


def _list_with_switchboard(kubeconfig: Path, plural: str) -> tuple[list[float], int, int]:
    from switchboard.api import kinds
    from switchboard.client import rest

    kind = kinds.SERVICES if plural == "services" else kinds.ENDPOINTSLICES

    async def passes() -> tuple[list[float], int, int]:
        async with rest.Client.from_kubeconfig(kubeconfig) as client:
            await client.get(kinds.NAMESPACES, None, NAMESPACE)  # connect before timing
            before, _ = _processes.memory_kib("self")
            times, count = [], 0
            for _ in range(PASSES):
                start = time.perf_counter()
                items, _ = await client.list_all(kind, NAMESPACE, page_size=PAGE)
                times.append(time.perf_counter() - start)
                count = len(items)
                del items
            return times, count, before

    return asyncio.run(passes())


def _list_with_kubernetes(kubeconfig: Path, plural: str) -> tuple[list[float], int, int]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api_client)
    lister = (
        core.list_namespaced_service
        if plural == "services"
        else client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice
    )
    core.read_namespace(NAMESPACE)  # connect before timing
    before, _ = _processes.memory_kib("self")
    times, count = [], 0
    for _ in range(PASSES):
        start = time.perf_counter()
        items: list[object] = []
        token = None
        while True:
            page = lister(NAMESPACE, limit=PAGE, _continue=token)
            items.extend(page.items)
            token = page.metadata._continue if page.metadata else None
            if not token:
                break
        times.append(time.perf_counter() - start)
        count = len(items)
        del items, page
    api_client.close()
    return times, count, before


def _fetch_only(kubeconfig: Path, plural: str) -> tuple[list[float], int, int]:
    """The same pages over plain aiohttp, not parsed: what the server and HTTP cost alone."""
    import re

    import aiohttp

    server = _processes.server_url(kubeconfig)
    group = "/api/v1" if plural == "services" else "/apis/discovery.k8s.io/v1"
    url = f"{server}{group}/namespaces/{NAMESPACE}/{plural}"
    token_re = re.compile(rb'"continue":"([^"]*)"')

    async def passes() -> tuple[list[float], int, int]:
        async with aiohttp.ClientSession() as session:
            before, _ = _processes.memory_kib("self")
            times, count = [], 0
            for _ in range(PASSES):
                start = time.perf_counter()
                token, count = "", 0
                while True:
                    params = {"limit": str(PAGE), **({"continue": token} if token else {})}
                    async with session.get(url, params=params) as resp:
                        body = await resp.read()
                    count += body.count(b'"uid":')
                    found = token_re.search(body, 0, 2048)  # list metadata comes first
                    token = found.group(1).decode() if found else ""
                    if not token:
                        break
                times.append(time.perf_counter() - start)
            return times, count, before

    return asyncio.run(passes())


def child(which: str, plural: str, kubeconfig: Path) -> None:
    lister = {
        "switchboard": _list_with_switchboard,
        "kubernetes": _list_with_kubernetes,
        "http": _fetch_only,
    }[which]
    times, count, before = lister(kubeconfig, plural)
    _, peak = _processes.memory_kib("self")
    print(json.dumps({"times": times, "count": count, "before_kib": before, "peak_kib": peak}))


@dataclass(frozen=True)
class Figures:
    times: list[float]
    count: int
    before_kib: int
    peak_kib: int

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def listing_mib(self) -> float:
        return (self.peak_kib - self.before_kib) / 1024


def measure(which: str, plural: str, kubeconfig: Path) -> Figures:
    result = subprocess.run(
        [sys.executable, "-m", "bench.client_list", "--child", which, plural, str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=CHILD_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"the {which} client failed listing {plural}:\n{result.stderr[-2000:]}")
    return Figures(**json.loads(result.stdout.strip().splitlines()[-1]))


# ---- the Services and EndpointSlices -------------------------------------------------------


def service(i: int) -> dict[str, object]:
    return {
        "metadata": {"name": f"svc-{i:05d}", "labels": {"app": f"app-{i % 100}"}},
        "spec": {
            "selector": {"app": f"app-{i}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def endpoint_slice(i: int) -> dict[str, object]:
    # Addresses are only data here: nothing is ever sent to them.
    return {
        "metadata": {
            "name": f"svc-{i:05d}-a1b2c",
            "labels": {
                "kubernetes.io/service-name": f"svc-{i:05d}",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.{(i >> 8) & 255}.{i & 255}.{e + 1}"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node-{e % 3}",
                "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": f"p-{i}-{e}"},
            }
            for e in range(ENDPOINTS_PER_SLICE)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


async def create_objects(kubeconfig: Path, count: int) -> float:
    from switchboard.api import kinds
    from switchboard.client import rest

    work = iter(
        [(kinds.SERVICES, service(i)) for i in range(count)]
        + [(kinds.ENDPOINTSLICES, endpoint_slice(i)) for i in range(count)]
    )
    async with rest.Client.from_kubeconfig(kubeconfig) as client:
        await client.create(kinds.NAMESPACES, None, {"metadata": {"name": NAMESPACE}})

        async def worker() -> None:
            for kind, obj in work:
                await client.create(kind, NAMESPACE, obj)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start


def run(work: Path, count: int) -> None:
    with _processes.running_apiserver(work) as apiserver:
        kubeconfig = apiserver.kubeconfig
        created = asyncio.run(create_objects(kubeconfig, count))
        print(
            f"  for information: created {count} services and {count} endpointslices"
            f" in {created:.1f} s",
            flush=True,
        )
        for plural, what in (
            ("services", f"{count} services"),
            ("endpointslices", f"{count} endpointslices ({count * ENDPOINTS_PER_SLICE} endpoints)"),
        ):
            figures = {w: measure(w, plural, kubeconfig) for w in (*CLIENTS, "http")}
            report(what, count, figures)


def report(what: str, count: int, figures: dict[str, Figures]) -> None:
    for which in CLIENTS:
        if figures[which].count != count:
            raise BenchError(
                f"the {which} client listed {figures[which].count} objects, not {count}"
            )
    ours, peer, fetch = (figures[w].best for w in (*CLIENTS, "http"))
    print(
        f"list {what}: switchboard client {ours:.2f} s"
        f" | kubernetes client {peer:.2f} s | ratio {ours / peer:.2f}x (switchboard / kubernetes)",
        flush=True,
    )
    print(
        f"  for information: fetching the same pages without parsing them takes {fetch:.2f} s,"
        f" so the client's own share is switchboard {max(ours - fetch, 0):.2f} s"
        f" | kubernetes {max(peer - fetch, 0):.2f} s",
        flush=True,
    )
    ours_mib, peer_mib = (figures[w].listing_mib for w in CLIENTS)
    print(
        f"  memory to list {what} (peak minus before):"
        f" switchboard client {ours_mib:.0f} MiB | kubernetes client {peer_mib:.0f} MiB"
        f" | ratio {ours_mib / peer_mib:.2f}x (switchboard / kubernetes)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run client_list", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--services", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument(
        "--child", nargs=3, metavar=("CLIENT", "PLURAL", "KUBECONFIG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as work:
        try:
            run(Path(work), args.services)
        except (BenchError, _processes.ProcessError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"client_list: could not measure: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
