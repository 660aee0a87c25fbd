"""nftables syncs: Switchboard's element-driven ruleset against kube-proxy's ruleset shape.

Targets (DESIGN, "Performance targets"): a full sync of 10,000 Services x 3
endpoints >= 30x faster than the peer and <= 0.5 s; 5,000 x 50 >= 30x
faster; one endpoint change at 10,000 Services applied in <= 10 ms.

The same Services on both sides, as the peer script lays them out: Service
i has ClusterIP 10.96.0.0/12 + i + 1, port 80/TCP, and the first 2,768 a
NodePort 30000 + i; endpoints are numbered through 10.128.0.0/9 on port 8080.
Each side loads into a fresh network namespace made for it, in the same run:

- switchboard: `DataPlane.sync` through libnftables in-process, as the agent
  runs it: the state built from the model objects and the table handed to
  nft in pieces while the rest is built (`ruleset.FullSync`), all timed; the
  model objects themselves are made before the clock starts (the agent's
  change tracker makes them as events arrive). Best of `--passes`. The same
  work one step after the other (`ProxyState.build`, `ruleset.full`, one
  `apply`) is timed too, to show what each step costs.
- peer: the script ``../shared/baselines/kubeproxy_ruleset.py`` (beside the
  repository) writes kube-proxy's nftables shape -- a chain per Service port
  and per endpoint -- and ``nft -f`` loads it; only the load is timed. One
  pass: it takes minutes at 5,000 x 50.
- one change: at 10,000 x 3, one endpoint of a random Service is replaced,
  `--changes` times; each is `ProxyState.update` + `ruleset.diff` + apply of
  that one transaction. The peer figure is its full resync (kube-proxy's
  answer to a change under this shape, as the DESIGN table says).

Endpoints count as remote (a multi-node cluster seen from one node), so
the hairpin set holds only local pods: none here.

Run with `bench/run nft_sync` (root: it makes network namespaces; nothing
is sent anywhere). Every namespace it makes is removed, also on failure. It
exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import ipaddress
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from pyroute2 import netns

from switchboard.proxy import dataplane, model, nft, ruleset

SERVICE_BASE = int(ipaddress.ip_address("10.96.0.1"))
ENDPOINT_BASE = int(ipaddress.ip_address("10.128.0.1"))
NODE_PORTS = 2768
PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "kubeproxy_ruleset.py"
PREFIX = f"sbb-{secrets.token_hex(3)}-"

Services = dict[model.ServicePortName, ruleset.Desired]


def services_like_the_peer(count: int, endpoints: int) -> Services:
    """The peer script's Services and endpoints, as the proxy's input."""
    found: Services = {}
    for s in range(count):
        name = model.ServicePortName(f"ns{s % 100}", f"svc{s}", "http", "TCP")
        info = model.ServicePortInfo(
            name,
            str(ipaddress.ip_address(SERVICE_BASE + s)),
            80,
            node_port=30000 + s if s < NODE_PORTS else 0,
        )
        eps = tuple(
            model.Endpoint(str(ipaddress.ip_address(ENDPOINT_BASE + s * endpoints + e)), 8080)
            for e in range(endpoints)
        )
        found[name] = (info, eps)
    return found


@contextlib.contextmanager
def namespace(suffix: str) -> Iterator[str]:
    name = f"{PREFIX}{suffix}"
    netns.create(name)
    try:
        yield name
    finally:
        with contextlib.suppress(OSError):
            netns.remove(name)


def load_peer(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("kubeproxy_ruleset", path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"the peer script {path} is missing; pass --peer-script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_full_sync(peer: ModuleType, count: int, endpoints: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as script:
        script.write(peer.render(count, endpoints))
        script.flush()
        with namespace(f"peer-{count}x{endpoints}") as ns:
            started = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", script.name], check=True)
            return time.perf_counter() - started


def switchboard_full_sync(services: Services, passes: int) -> tuple[float, float]:
    """Best of `passes`, each in a fresh namespace: (sync time, Python's CPU time in it).

    The sync is the data plane's (`DataPlane.sync`): the state built and the
    table written in pieces that libnftables reads while the rest is built.
    """
    config = ruleset.ProxyConfig(pod_cidrs=("10.128.0.0/9",))
    best = (float("inf"), 0.0)
    for n in range(passes):
        with namespace(f"full-{n}") as ns, nft.LibNftables(ns) as backend:
            plane = dataplane.DataPlane(backend, config)
            gc.collect()
            started, python_started = time.perf_counter(), time.thread_time()
            plane.sync(services)
            total, python = time.perf_counter() - started, time.thread_time() - python_started
            del plane  # freed before the next pass's clock starts
        best = min(best, (total, python))
    return best


def switchboard_steps(services: Services, passes: int) -> tuple[float, float, float]:
    """The same work one step after the other, best of `passes`: (build, render, apply).

    Not what the data plane runs; it shows what each step costs on its own.
    """
    config = ruleset.ProxyConfig(pod_cidrs=("10.128.0.0/9",))
    best = (float("inf"), 0.0, 0.0)
    for n in range(passes):
        with namespace(f"steps-{n}") as ns, nft.LibNftables(ns) as backend:
            gc.collect()
            started = time.perf_counter()
            state = ruleset.ProxyState.build(config, services)
            built = time.perf_counter()
            text = str(ruleset.full(state))
            rendered = time.perf_counter()
            backend.apply(text)
            applied = time.perf_counter()
            del state, text  # freed before the next pass's clock starts
        steps = (built - started, rendered - built, applied - rendered)
        if sum(steps) < sum(best):
            best = steps
    return best


def one_change(services: Services, changes: int) -> tuple[list[float], list[float], float]:
    """(diff times, apply times) of `changes` single-endpoint changes, and one via the nft tool."""
    config = ruleset.ProxyConfig(pod_cidrs=("10.128.0.0/9",))
    rng = random.Random(7)
    names = list(services)
    diff_times, apply_times = [], []
    with namespace("change") as ns, nft.LibNftables(ns) as backend:
        state = ruleset.ProxyState.build(config, services)
        backend.apply(str(ruleset.full(state)))
        current = dict(services)
        for n in range(changes + 1):
            name = rng.choice(names)
            info, endpoints = current[name]
            replaced = (*endpoints[1:], model.Endpoint(f"10.0.{n // 250}.{n % 250 + 1}", 8080))
            started = time.perf_counter()
            following = state.update({name: (info, replaced)})
            text = str(ruleset.diff(state, following))
            diffed = time.perf_counter()
            backend.apply(text)
            applied = time.perf_counter()
            state = following
            current[name] = (info, replaced)
            if n:  # the first warms libnftables' cache of the table
                diff_times.append(diffed - started)
                apply_times.append(applied - diffed)
        name = names[0]
        info, endpoints = current[name]
        following = state.update({name: (info, endpoints[1:])})
        command = nft.NftCommand(ns)
        text = str(ruleset.diff(state, following))
        started = time.perf_counter()
        command.apply(text)
        tool = time.perf_counter() - started
    return diff_times, apply_times, tool


def verdict(ratio_or_value: float, target: float, at_least: bool) -> str:
    met = ratio_or_value >= target if at_least else ratio_or_value <= target
    return "met" if met else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3, help="Switchboard passes per size")
    parser.add_argument("--changes", type=int, default=50, help="single-endpoint changes")
    parser.add_argument("--peer-script", type=Path, default=PEER_SCRIPT)
    parser.add_argument(
        "--sizes",
        default="10000x3,5000x50",
        help="comma-separated SERVICESxENDPOINTS for the full syncs",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("nft_sync: could not measure: it needs root to make network namespaces")
        return 1
    try:
        peer = load_peer(args.peer_script)
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} as the run began")
        peer_times: dict[tuple[int, int], float] = {}
        for size in args.sizes.split(","):
            count, endpoints = (int(x) for x in size.split("x"))
            services = services_like_the_peer(count, endpoints)
            total, python = switchboard_full_sync(services, args.passes)
            build, render, apply = switchboard_steps(services, args.passes)
            peer_time = peer_times[(count, endpoints)] = peer_full_sync(peer, count, endpoints)
            ratio = peer_time / total
            label = f"full sync {count:,} services x {endpoints} endpoints"
            print(
                f"{label}: switchboard {total:.3f} s | peer {peer_time:.2f} s | ratio "
                f"{ratio:.0f}x (target >= 30x): {verdict(ratio, 30, True)}"
                + (
                    f" | absolute target <= 0.5 s: {verdict(total, 0.5, False)}"
                    if (count, endpoints) == (10000, 3)
                    else ""
                )
            )
            print(
                f"{label}, switchboard: Python's CPU time in the sync {python:.3f} s; the steps "
                f"one after the other: build {build:.3f} s, render {render:.3f} s, "
                f"apply {apply:.3f} s (total {build + render + apply:.3f} s)"
            )
        if args.changes:
            services = services_like_the_peer(10000, 3)
            if (10000, 3) not in peer_times:
                peer_times[(10000, 3)] = peer_full_sync(peer, 10000, 3)
            diffs, applies, tool = one_change(services, args.changes)
            totals = sorted(d + a for d, a in zip(diffs, applies, strict=True))
            median = statistics.median(totals)
            worst = totals[-1]
            peer_time = peer_times[(10000, 3)]
            print(
                f"one endpoint change at 10,000 services (median of {len(totals)}): switchboard "
                f"{median * 1000:.2f} ms | peer (full resync) {peer_time:.2f} s | ratio "
                f"{peer_time / median:,.0f}x (target <= 10 ms applied): "
                f"{verdict(median, 0.010, False)}"
            )
            diff_ms = statistics.median(diffs) * 1000
            apply_ms = statistics.median(applies) * 1000
            print(
                f"one endpoint change, switchboard split: update+diff {diff_ms:.2f} ms, apply "
                f"{apply_ms:.2f} ms (median); worst total {worst * 1000:.2f} ms; the same change "
                f"through the nft tool instead of libnftables: {tool * 1000:.1f} ms"
            )
    except (OSError, subprocess.CalledProcessError, nft.NftError) as exc:
        print(f"nft_sync: could not measure: {exc}", file=sys.stderr)
        return 1
    finally:
        for leftover in (n for n in netns.listnetns() if n.startswith(PREFIX)):
            with contextlib.suppress(OSError):
                netns.remove(leftover)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
