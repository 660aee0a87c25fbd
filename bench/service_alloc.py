"""ClusterIP allocation as a /16 fills up, beside a plain SQLite insert of the same Services.

Target (the Services issue): the cost of an allocation stays flat as the
service CIDR fills; it must not grow with fullness. Kubernetes' own bitmap
scans bit by bit from a random offset, so its cost climbs as free bits get
rare; Switchboard's skips full 64-bit words and full 4096-value blocks.

Everything runs in this process. 60,000 Services get a ClusterIP in
10.96.0.0/16 (65,534 usable addresses), and the time is taken per 10% of
the range's fullness (0-10%, ..., 80-90%, and 90-92% where the run stops):

- alloc: `IPAllocator.allocate_next`, the random start and forward scan
  over the bitmap that every Service create without a clusterIP runs;
- raw sqlite insert: the same Service objects, already encoded as JSON with
  their addresses, inserted into a kine-shaped table (the shape Switchboard's
  store and k3s use), WAL with synchronous=FULL, each bucket in one
  transaction. That is the bare cost of storing the object, with no
  per-write commit and no encoding, so the ratio is if anything unkind to
  the allocator.

One more line gives the whole allocation step a Service create runs in the
apiserver (`ServiceAllocations.allocate_create`: IP families settled,
address taken, written into the object, transaction committed) over the
same fill, first and last bucket. Each figure is the best of the passes
(default 7), each pass from an empty allocator and an empty database, with
the garbage collector off while it is timed. As with timeit, the slower
passes measure other processes on the machine rather than the code, and the
last bucket is short (about 1,400 allocations), so one interruption would
swing it. The last line is the flatness: last bucket over first bucket.

Run with `bench/run service_alloc` (or `bench/run service_alloc -- --passes 1`
for a quick look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from switchboard.allocators import errors
from switchboard.allocators import service as alloc
from switchboard.allocators.ipallocator import IPAllocator
from switchboard.allocators.portallocator import PortAllocator
from switchboard.api import service as svc_rules

CIDR = "10.96.0.0/16"
COUNT = 60_000
PASSES = 7
TARGET = 1.5  # last bucket / first bucket
NAMESPACE = "default"

_KINE = """
CREATE TABLE kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER,
    deleted INTEGER,
    create_revision INTEGER,
    prev_revision INTEGER,
    lease INTEGER,
    value BLOB,
    old_value BLOB
);
CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision);
"""
_KINE_INSERT = (
    "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease,"
    " value, old_value) VALUES (?, 1, 0, 0, 0, 0, ?, NULL)"
)


class BenchError(Exception):
    """The benchmark could not measure."""


@dataclass(frozen=True)
class Bucket:
    """Allocations number `start` to `stop` (exclusive): the range from `low`% to `high`% full."""

    low: int
    high: int
    start: int
    stop: int

    @property
    def label(self) -> str:
        return f"{self.low}-{self.high}% full"

    def __len__(self) -> int:
        return self.stop - self.start


def buckets(size: int, count: int) -> list[Bucket]:
    """Cut `count` allocations into 10% steps of fullness of a range of `size`."""
    out = []
    for tenth in range(10):
        start, stop = size * tenth // 10, min(size * (tenth + 1) // 10, count)
        if start >= stop:
            break
        high = (tenth + 1) * 10 if stop == size * (tenth + 1) // 10 else round(100 * stop / size)
        out.append(Bucket(tenth * 10, high, start, stop))
    return out


def service_object(i: int) -> dict[str, object]:
    """A Service as a client would create it: a selector and one port, no clusterIP."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i:05d}",
            "namespace": NAMESPACE,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"app": f"app-{i:05d}"},
        },
        "spec": {"selector": {"app": f"app-{i:05d}"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _ns_per_item(started: int, items: int) -> float:
    return (time.perf_counter_ns() - started) / items


# ---- the three measurements, one pass each --------------------------------------------------


def allocator_pass(bounds: Sequence[Bucket], seed: int) -> tuple[list[float], list[str]]:
    """ns per `allocate_next` for each bucket, and the addresses handed out in order."""
    allocator = IPAllocator(CIDR, rng=random.Random(seed))
    take = allocator.allocate_next
    taken: list[str] = []
    per_bucket = []
    for bucket in bounds:
        started = time.perf_counter_ns()
        chunk = [take() for _ in range(len(bucket))]
        per_bucket.append(_ns_per_item(started, len(bucket)))
        taken += chunk
    if len(set(taken)) != len(taken):
        raise BenchError("the allocator handed out an address twice")
    return per_bucket, taken


def allocate_create_pass(bounds: Sequence[Bucket], seed: int) -> list[float]:
    """ns per `ServiceAllocations.allocate_create` on defaulted Services, per bucket."""
    allocations = alloc.ServiceAllocations(
        IPAllocator(CIDR, rng=random.Random(seed)), PortAllocator()
    )
    per_bucket = []
    for bucket in bounds:
        objects = []
        for i in range(bucket.start, bucket.stop):
            obj = service_object(i)
            svc_rules.default(obj)
            svc_rules.prepare_create(obj)
            objects.append(obj)
        started = time.perf_counter_ns()
        for obj in objects:
            txn, errs = allocations.allocate_create(obj)
            if errs:
                raise BenchError(f"allocate_create refused a Service: {errs[0]}")
            txn.commit()
        per_bucket.append(_ns_per_item(started, len(bucket)))
    return per_bucket


def sqlite_pass(
    bounds: Sequence[Bucket], rows: Sequence[tuple[str, bytes]], path: Path
) -> list[float]:
    """ns per INSERT of the encoded Services, one transaction per bucket."""
    per_bucket = []
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_KINE)
        for bucket in bounds:
            chunk = rows[bucket.start : bucket.stop]
            started = time.perf_counter_ns()
            db.execute("BEGIN")
            db.executemany(_KINE_INSERT, chunk)
            db.execute("COMMIT")
            per_bucket.append(_ns_per_item(started, len(bucket)))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return per_bucket


def encoded_rows(taken: Sequence[str]) -> list[tuple[str, bytes]]:
    """The stored form of each Service with the address it was given."""
    rows = []
    for i, ip in enumerate(taken):
        obj = service_object(i)
        svc_rules.default(obj)
        spec = obj["spec"]
        assert isinstance(spec, dict)
        spec.update(
            clusterIP=ip, clusterIPs=[ip], ipFamilyPolicy="SingleStack", ipFamilies=["IPv4"]
        )
        obj["status"] = {"loadBalancer": {}}
        rows.append((f"/registry/services/specs/{NAMESPACE}/svc-{i:05d}", orjson.dumps(obj)))
    return rows


# ---- the run --------------------------------------------------------------------------------


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f} us"


def run(work: Path, count: int, passes: int) -> None:
    size = IPAllocator(CIDR).size
    if not 0 < count <= size:
        raise BenchError(f"--count must be between 1 and {size}, the usable addresses of {CIDR}")
    bounds = buckets(size, count)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} as the run began")
    print(f"allocating {count:,} ClusterIPs in {CIDR} ({size:,} usable), best of {passes} passes")
    allocs: list[list[float]] = []
    creates: list[list[float]] = []
    inserts: list[list[float]] = []
    for n in range(passes):
        gc.collect()
        gc.disable()  # as timeit does: a collection would land in whichever bucket it hit
        try:
            per_bucket, taken = allocator_pass(bounds, seed=n)
            allocs.append(per_bucket)
            creates.append(allocate_create_pass(bounds, seed=n))
            inserts.append(sqlite_pass(bounds, encoded_rows(taken), work / f"kine-{n}.db"))
        finally:
            gc.enable()
    alloc_ns = [min(p[i] for p in allocs) for i in range(len(bounds))]
    create_ns = [min(p[i] for p in creates) for i in range(len(bounds))]
    insert_ns = [min(p[i] for p in inserts) for i in range(len(bounds))]

    for bucket, ours, peer in zip(bounds, alloc_ns, insert_ns, strict=True):
        print(
            f"alloc {bucket.label}: {_us(ours)}/alloc | raw sqlite insert {_us(peer)} "
            f"| ratio {ours / peer:.2f}x"
        )
    whole = sum(c * len(b) for c, b in zip(create_ns, bounds, strict=True)) / count
    peer_whole = sum(p * len(b) for p, b in zip(insert_ns, bounds, strict=True)) / count
    print(
        f"allocate_create (a Service create's whole allocation step), whole fill: "
        f"{_us(whole)}/service, {bounds[0].label} {_us(create_ns[0])}, "
        f"{bounds[-1].label} {_us(create_ns[-1])} | raw sqlite insert {_us(peer_whole)} "
        f"| ratio {whole / peer_whole:.2f}x"
    )
    flat = alloc_ns[-1] / alloc_ns[0]
    verdict = "met" if flat <= TARGET else "MISSED"
    print(
        f"flatness: alloc {bounds[-1].label} / {bounds[0].label} = {flat:.2f}x "
        f"(allocate_create {create_ns[-1] / create_ns[0]:.2f}x) (target <= {TARGET:g}x): {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run service_alloc", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--count", type=int, default=COUNT, help=f"allocations (default {COUNT})")
    parser.add_argument("--passes", type=int, default=PASSES, help=f"passes (default {PASSES})")
    parser.add_argument(
        "--dir", type=Path, default=None, help="put the databases here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-", dir=args.dir) as work:
        try:
            run(Path(work), args.count, args.passes)
        except (BenchError, errors.AllocatorError, sqlite3.Error) as exc:
            print(f"service_alloc: could not measure: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
