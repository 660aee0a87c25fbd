"""Cluster DNS: queries per second and p99 latency, against dnsmasq serving the same names.

Target (DESIGN, "Performance targets", and the DNS issue): at least 0.5 of
dnsmasq's queries per second, and p99 latency at most 2 ms at half load.

What runs, all on 127.0.0.1, in one run:

- Switchboard: `dns.server.Server` over a `dns.records.Zone` holding N
  ClusterIP Services (default 1,000), in a child process of its own. The
  zone is filled directly rather than through an apiserver: the benchmark
  is about answering, and the watch path has its own end-to-end test. The
  per-client rate limit is on, set above the benchmark's rate, so its cost
  is in the figures.
- The same server with its wire cache turned off, for information: what a
  query costs when every answer is parsed and rendered by dnspython.
- dnsmasq, with no upstream and no /etc/hosts, serving the same N names
  from a hosts file with the same addresses.

dnsperf sends A questions for the N names, cycling through them, from one
process with several client sockets (`-c`, default 8) and up to `-q`
(default 500) queries outstanding, for `--seconds` per run. The servers
take turns, in alternating order, for `--rounds` rounds; each figure is the
median of its rounds. Then both are driven at half of Switchboard's
measured rate (`-Q`, one client socket, 100 outstanding) with per-query
output (`-v`), alternating for the same rounds; p50/p99 are read from every
answered query's latency, and each figure is the median over the rounds.
For information the same is done at a light, fixed rate (`--light-qps`,
10,000 by default: a busy node's pods).

The machine has few CPUs and dnsperf shares them with the server measured,
so a server that outruns dnsperf shows dnsperf's limit, not its own; the
ratio is what means something.

Run with `bench/run dns_qps` (or `bench/run dns_qps -- --seconds 3 --rounds 1`
for a quick look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import _processes

TARGET_RATIO = 0.5
TARGET_P99_MS = 2.0
NAMESPACE = "default"
STOP_SECONDS = 10.0


def service_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def service_name(i: int, zone: str) -> str:
    return f"svc-{i}.{NAMESPACE}.svc.{zone}"


# ---- the Switchboard side, as a child process ---------------------------------------------------


async def _serve(services: int, zone_name: str, cache: bool) -> None:
    from switchboard.dns import records, server

    zone = records.Zone(zone_name)
    for i in range(services):
        zone.set_service(
            {
                "metadata": {"namespace": NAMESPACE, "name": f"svc-{i}"},
                "spec": {"clusterIP": service_ip(i), "ports": [{"name": "http", "port": 80}]},
            }
        )
    zone.mark_synced()
    options = server.Options(
        rate=10_000_000.0, burst=10_000_000.0, cache_size=16384 if cache else 0
    )
    dns_server = server.Server(zone, options)
    port = (await dns_server.start([("127.0.0.1", 0)]))[0][1]
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await dns_server.close()


@contextlib.contextmanager
def switchboard(services: int, zone: str, cache: bool) -> Iterator[int]:
    cmd = [sys.executable, "-m", "bench.dns_qps", "--serve", "--services", str(services)]
    cmd += ["--zone", zone] + ([] if cache else ["--no-cache"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the Switchboard DNS child did not start (exit {proc.poll()})")
        yield int(line)
    finally:
        _processes.stop(proc, STOP_SECONDS)


# ---- the dnsmasq side --------------------------------------------------------------------------


def _free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


@contextlib.contextmanager
def dnsmasq(binary: str, hosts: Path, workdir: Path) -> Iterator[int]:
    port = _free_port()
    cmd = [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-poll",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        "--pid-file",
        f"--log-facility={workdir / 'dnsmasq.log'}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_answering(port, proc)
        yield port
    finally:
        _processes.stop(proc, STOP_SECONDS)


def _wait_answering(port: int, proc: subprocess.Popen[bytes]) -> None:
    probe = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        for _ in range(100):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited {proc.returncode}: {err.strip()}")
            sock.sendto(probe, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                if sock.recv(512)[:2] == b"\x12\x34":
                    return
    raise RuntimeError("dnsmasq did not answer within 10 s")


# ---- dnsperf -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    qps: float
    sent: int
    lost: int
    noerror: float  # share of answers that were NOERROR, in percent


@dataclass(frozen=True)
class Latency:
    target_qps: float
    qps: float
    p50_ms: float
    p99_ms: float
    answered: int
    lost: int


def dnsperf(
    binary: str,
    port: int,
    queries: Path,
    seconds: float,
    clients: int,
    outstanding: int,
    *extra: str,
) -> str:
    cmd = [binary, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds)]
    cmd += ["-c", str(clients), "-q", str(outstanding), *extra]
    with tempfile.TemporaryFile("w+") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=seconds + 60)
        out.seek(0)
        return out.read()


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"dnsperf printed no {pattern!r}:\n{text[-2000:]}")
    return float(found.group(1))


def summary(text: str) -> Run:
    noerror = re.search(r"NOERROR \d+ \(([\d.]+)%\)", text)
    return Run(
        qps=_number(r"Queries per second:\s+([\d.]+)", text),
        sent=int(_number(r"Queries sent:\s+(\d+)", text)),
        lost=int(_number(r"Queries lost:\s+(\d+)", text)),
        noerror=float(noerror.group(1)) if noerror else 0.0,
    )


def latency(text: str, target: float) -> Latency:
    samples = sorted(
        float(line.rsplit(None, 1)[1])
        for line in text.splitlines()
        if line.startswith("> NOERROR ")
    )
    if not samples:
        raise RuntimeError(f"dnsperf -v printed no answered queries:\n{text[-2000:]}")
    run = summary(text)

    def pick(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3

    return Latency(target, run.qps, pick(0.50), pick(0.99), len(samples), run.lost)


# ---- the run -----------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    dnsperf_bin, dnsmasq_bin = shutil.which("dnsperf"), shutil.which("dnsmasq")
    if dnsperf_bin is None or dnsmasq_bin is None:
        print("dns_qps: needs dnsperf and dnsmasq (scripts/install installs them)", file=sys.stderr)
        return 1
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} as the run began")
    print(
        f"workload: {args.services} ClusterIP Services, A questions cycling over their names; "
        f"dnsperf -c {args.clients} -q {args.outstanding}, {args.seconds:g} s per run, "
        f"{args.rounds} rounds"
    )
    with tempfile.TemporaryDirectory(prefix="dns-qps-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # dnsmasq reads the hosts file after dropping to nobody
        hosts = work / "hosts"
        hosts.write_text(
            "".join(f"{service_ip(i)} {service_name(i, args.zone)}\n" for i in range(args.services))
        )
        hosts.chmod(0o644)
        queries = work / "queries"
        queries.write_text(
            "".join(f"{service_name(i, args.zone)} A\n" for i in range(args.services))
        )
        with (
            switchboard(args.services, args.zone, cache=True) as sb_port,
            switchboard(args.services, args.zone, cache=False) as cold_port,
            dnsmasq(dnsmasq_bin, hosts, work) as dm_port,
        ):
            ports = {"switchboard": sb_port, "dnsmasq": dm_port, "switchboard, no cache": cold_port}
            runs: dict[str, list[Run]] = {name: [] for name in ports}
            for round_ in range(args.rounds):
                order = list(ports) if round_ % 2 == 0 else list(reversed(ports))
                for name in order:
                    text = dnsperf(
                        dnsperf_bin,
                        ports[name],
                        queries,
                        args.seconds,
                        args.clients,
                        args.outstanding,
                    )
                    runs[name].append(summary(text))
            qps = {name: statistics.median(r.qps for r in rs) for name, rs in runs.items()}
            target = qps["switchboard"] / 2
            lats: dict[str, list[Latency]] = {"switchboard": [], "dnsmasq": []}
            light: dict[str, list[Latency]] = {"switchboard": [], "dnsmasq": []}
            for round_ in range(args.rounds):
                order = list(lats) if round_ % 2 == 0 else list(reversed(lats))
                for name in order:
                    if args.light_qps:
                        text = dnsperf(
                            dnsperf_bin,
                            ports[name],
                            queries,
                            args.seconds,
                            1,
                            100,
                            "-Q",
                            str(args.light_qps),
                            "-v",
                        )
                        light[name].append(latency(text, args.light_qps))
                    text = dnsperf(
                        dnsperf_bin,
                        ports[name],
                        queries,
                        args.seconds,
                        1,
                        100,
                        "-Q",
                        str(int(target)),
                        "-v",
                    )
                    lats[name].append(latency(text, target))

    for name, rs in runs.items():
        rounds = ", ".join(f"{r.qps:,.0f}" for r in rs)
        lost = sum(r.lost for r in rs)
        noerror = min(r.noerror for r in rs)
        print(
            f"{name} qps: {qps[name]:,.0f} (rounds: {rounds}; lost {lost}; NOERROR {noerror:.2f}%)"
        )
    ratio = qps["switchboard"] / qps["dnsmasq"]
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"qps ratio switchboard/dnsmasq: {ratio:.2f} (target >= {TARGET_RATIO}): {verdict}")
    cold = qps["switchboard, no cache"] / qps["dnsmasq"]
    print(f"qps ratio switchboard without its answer cache/dnsmasq: {cold:.2f} (information)")
    for name, ls in lats.items():
        print(_latency_line(f"{name} p99 at half load ({target:,.0f} qps)", ls, name))
    for name, ls in light.items():
        if ls:
            print(_latency_line(f"{name} p99 at {args.light_qps:,} qps", ls, "information"))
    print(f"load average as the run ended: {os.getloadavg()[0]:.1f}")
    return 0


def _latency_line(what: str, runs: list[Latency], role: str) -> str:
    p99 = statistics.median(lat.p99_ms for lat in runs)
    p50 = statistics.median(lat.p50_ms for lat in runs)
    rounds = ", ".join(f"{lat.p99_ms:.2f}" for lat in runs)
    lost = sum(lat.lost for lat in runs)
    verdict = "met" if p99 <= TARGET_P99_MS else "MISSED"
    note = f" (target <= {TARGET_P99_MS:g} ms): {verdict}" if role == "switchboard" else ""
    return f"{what}: {p99:.2f} ms (rounds: {rounds} ms; p50 {p50:.3f} ms; lost {lost}){note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run dns_qps", description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--zone", default="cluster.local")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outstanding", type=int, default=500)
    parser.add_argument(
        "--light-qps", type=int, default=10_000, help="also measure p99 at this rate (0: skip)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.services, args.zone, cache=not args.no_cache))
        return 0
    try:
        return bench(args)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"dns_qps: could not measure: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
