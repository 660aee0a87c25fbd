"""API layer against storage: create, list and watch 10,000 Services, and raw SQLite doing the same.

Target (docs/DESIGN): the API layer costs at most 3x what storage costs.

Switchboard runs as its own process (`switchboard apiserver --port 0`) and is
driven over loopback HTTP: creates and patches from this process with
aiohttp, 32 requests in flight, so its store can group-commit as it would
under real load; lists and watches by the lightest clients that still
receive every byte (bench/_list_pages.py, bench/_watch_streams.py), so that
what is timed is the server's work, not a client library's. The peer
runs here, in the same run, on the same filesystem: SQLite with WAL and
synchronous=FULL, writing the same JSON into a table shaped like k3s's kine
(`id` is the revision; name, created, deleted, create_revision,
prev_revision, lease, value, old_value; UNIQUE (name, prev_revision)). Real
kine keeps four more indexes on that table; leaving them out makes the peer
cheaper, so the ratios here are if anything unkind to Switchboard.

The machines this runs on are shared and their disks busy, so each figure
interleaves the two sides (Switchboard a slice, then the peer the same
slice, and again) instead of running one after the other: a stretch of
contention then lands on both.

Figures:

- create: 10,000 POSTs of a Service with a selector and one port, in ten
  slices, against one INSERT per transaction (each acknowledged write durable
  on its own, like an acknowledged POST) of the JSON the server stored. All
  10,000 in one transaction is printed for information: storage with no
  per-write durability at all. Whether the server gave the Services a
  ClusterIP is printed too.
- list: every Service, paged with limit=500 and `continue`, against a
  SELECT over the same rows paged by key that fetches each row's bytes. The
  figure is the server's cost to deliver the pages: the client, one
  keep-alive connection in this process, receives each page's bytes whole
  and takes the continue token from the list's metadata without parsing the
  items, as the SELECT does not parse its values either. Afterwards every
  page is parsed, to check that all 10,000 Services came and to print what
  parsing them costs a client (not part of the ratio). Each side's best of
  three passes, alternating.
- watch: 100 watch streams on services; one Service is patched and the time
  from the PATCH being acknowledged until all 100 streams have received the
  event's bytes is compared with the time SQLite takes for that write itself
  (a kine update: read the latest row, append its successor, commit). That
  is: what it costs the API to tell 100 watchers about a write, against what
  the write costs. The streams are read by a separate process that does
  nothing else (bench/_watch_streams.py: plain sockets, one epoll loop,
  CLOCK_MONOTONIC timestamps), so the figure is the server's and the
  kernel's, not a client library's; every event line is parsed and checked
  once the rounds are over. The median of 20 rounds, each followed by its
  raw write; the event can reach watchers before the client reads its
  acknowledgement, so the figure is never below zero.
- RSS of the server process after the creates, and its peak.

Run with `bench/run api_store` (or `bench/run api_store -- --services 2000`
for a quick look). It exits non-zero only if it could not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import _bare_fanout, _list_pages, _processes, _watch_streams

TARGET = 3.0
CONCURRENCY = 32
PAGE = 500
WATCHERS = 100
ROUNDS = 20
SLICES = 10
LIST_PASSES = 3
NAMESPACE = "bench-api-store"  # its own, so the list holds exactly the Services made here
BUDGET_SECONDS = 240.0  # the whole run; well inside the five minutes a benchmark may take
START_SECONDS = 30.0
STOP_SECONDS = 5.0
REQUEST_SECONDS = 30.0
EVENT_SECONDS = 10.0

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
    " value, old_value) VALUES (?, ?, 0, ?, ?, 0, ?, ?)"
)
_KEY_PREFIX = f"/registry/services/specs/{NAMESPACE}/"


class BenchError(Exception):
    """The benchmark could not measure: a request failed or the server misbehaved."""


# ---- the server under test -----------------------------------------------------------------


@contextlib.contextmanager
def running_server(data_dir: Path) -> Iterator[_processes.Apiserver]:
    """The apiserver (bench/_processes.py); its failing to start is this benchmark's BenchError."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                _processes.running_apiserver(data_dir, START_SECONDS, STOP_SECONDS)
            )
        except _processes.ProcessError as exc:
            raise BenchError(str(exc)) from exc
        yield server


# ---- what is written ------------------------------------------------------------------------


def service_name(index: int) -> str:
    return f"bench-{index:05d}"


def service(index: int) -> dict[str, object]:
    name = service_name(index)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name, "bench": "api-store"}},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        },
    }


def stored_form(response: bytes) -> tuple[str, bytes]:
    """(name, value) as the server stored it: its answer without metadata.resourceVersion."""
    obj = orjson.loads(response)
    del obj["metadata"]["resourceVersion"]
    return obj["metadata"]["name"], orjson.dumps(obj)


# ---- Switchboard over HTTP ------------------------------------------------------------------


async def create_namespace(session: aiohttp.ClientSession, base: str) -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    headers = {"Content-Type": "application/json"}
    async with session.post(f"{base}/api/v1/namespaces", data=body, headers=headers) as resp:
        if resp.status != 201:
            raise BenchError(f"creating namespace {NAMESPACE} answered {resp.status}")


@dataclass
class Created:
    seconds: float
    stored: list[tuple[str, bytes]]
    cluster_ips: int


async def create_services(session: aiohttp.ClientSession, base: str, indices: range) -> Created:
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/services"
    bodies = [orjson.dumps(service(i)) for i in indices]
    answers: list[bytes] = [b""] * len(bodies)
    pending = iter(range(len(bodies)))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    async def worker() -> None:
        for i in pending:
            async with session.post(url, data=bodies[i], headers=headers) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise BenchError(f"POST {url} answered {resp.status}: {body[:300]!r}")
            answers[i] = body

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    cluster_ips = sum(1 for a in answers if orjson.loads(a)["spec"].get("clusterIP"))
    return Created(seconds, [stored_form(a) for a in answers], cluster_ips)


@dataclass
class Delivery:
    after_ack: float  # from the acknowledgement until the last watcher had the event
    round_trip: float  # from sending the PATCH until its acknowledgement
    to_all: float  # from sending the PATCH until the last watcher had the event
    stored: bytes  # the new value, as the server stored it


async def patch_and_deliver(
    session: aiohttp.ClientSession, base: str, watchers: _watch_streams.Watchers, round_: int
) -> Delivery:
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/services/{service_name(0)}"
    headers = {"Content-Type": "application/merge-patch+json"}
    patch = orjson.dumps({"metadata": {"annotations": {"bench/round": str(round_)}}})
    # CLOCK_MONOTONIC, as the watcher process stamps its arrivals.
    sent = time.monotonic()
    async with session.patch(url, data=patch, headers=headers) as resp:
        body = await resp.read()
        acked = time.monotonic()
        if resp.status != 200:
            raise BenchError(f"PATCH {url} answered {resp.status}: {body[:300]!r}")
    last = await watchers.all_have(orjson.loads(body)["metadata"]["resourceVersion"])
    return Delivery(max(last - acked, 0.0), acked - sent, last - sent, stored_form(body)[1])


async def bare_fanout(stored: bytes) -> float:
    """The median time a bare loop takes to get one event to every stream (bench/_bare_fanout)."""
    server = _bare_fanout.BareFanout()
    await server.start()
    obj = orjson.loads(stored)
    times = []
    try:
        async with _watch_streams.open_watchers(
            f"http://127.0.0.1:{server.port}", "/watch", WATCHERS
        ) as watchers:
            for round_ in range(1, ROUNDS + 1):
                obj["metadata"]["resourceVersion"] = str(round_)
                began = server.send(orjson.dumps({"type": "MODIFIED", "object": obj}) + b"\n")
                times.append(await watchers.all_have(str(round_)) - began)
            await watchers.check(ROUNDS)
    finally:
        await server.close()
    return statistics.median(times)


# ---- the peer: raw SQLite -------------------------------------------------------------------


def _kine(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise BenchError(f"SQLite would not use WAL here (got {mode!r}); use a local filesystem")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(_KINE)
    return db


def raw_creates(db: sqlite3.Connection, rows: list[tuple[str, bytes]], per_insert: bool) -> float:
    """Insert every row as a kine create; one transaction each, or all in one."""
    started = time.perf_counter()
    if not per_insert:
        db.execute("BEGIN IMMEDIATE")
    for name, value in rows:
        if per_insert:
            db.execute("BEGIN IMMEDIATE")
        # As kine does, a create stores create_revision 0: it is the row's own id.
        db.execute(_KINE_INSERT, (_KEY_PREFIX + name, 1, 0, 0, value, None))
        if per_insert:
            db.execute("COMMIT")
    if not per_insert:
        db.execute("COMMIT")
    return time.perf_counter() - started


def raw_list(db: sqlite3.Connection) -> tuple[float, int]:
    """Every live row under the prefix, `PAGE` at a time by key; (seconds, rows)."""
    end = _KEY_PREFIX[:-1] + chr(ord(_KEY_PREFIX[-1]) + 1)
    started = time.perf_counter()
    last, count = _KEY_PREFIX, 0
    while True:
        rows = db.execute(
            "SELECT name, value, create_revision, id FROM kine"
            " WHERE name > ? AND name < ? AND NOT deleted ORDER BY name LIMIT ?",
            (last, end, PAGE),
        ).fetchall()
        count += len(rows)
        if len(rows) < PAGE:
            break
        last = rows[-1][0]
    return time.perf_counter() - started, count


def raw_update(db: sqlite3.Connection, name: str, value: bytes) -> float:
    """One kine update of `name`, committed on its own; its seconds."""
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    prev_id, create_revision, old = db.execute(
        "SELECT id, create_revision, value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1",
        (_KEY_PREFIX + name,),
    ).fetchone()
    create_revision = create_revision or prev_id
    db.execute(_KINE_INSERT, (_KEY_PREFIX + name, 0, create_revision, prev_id, value, old))
    db.execute("COMMIT")
    return time.perf_counter() - started


# ---- the run --------------------------------------------------------------------------------


def _ratio(ours: float, peer: float) -> str:
    ratio = ours / peer if peer > 0 else float("inf")
    verdict = "met" if ratio <= TARGET else "MISSED"
    return f"ratio {ratio:.1f}x (target <= {TARGET:g}x): {verdict}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run(work: Path, count: int) -> None:
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} as the run began")
    server_dir = work / "apiserver"
    server_dir.mkdir()
    with running_server(server_dir) as server:
        timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await create_namespace(session, server.url)
            per_insert_db = _kine(work / "kine-per-insert.db")
            ours = peer = 0.0
            ratios, stored, cluster_ips = [], [], 0
            for slice_ in range(SLICES):
                indices = range(slice_ * count // SLICES, (slice_ + 1) * count // SLICES)
                created = await create_services(session, server.url, indices)
                raw = raw_creates(per_insert_db, created.stored, per_insert=True)
                ours, peer = ours + created.seconds, peer + raw
                ratios.append(created.seconds / raw)
                stored += created.stored
                cluster_ips += created.cluster_ips
            rss, _ = server.memory_kib()
            batched_db = _kine(work / "kine-batched.db")
            raw_batched = raw_creates(batched_db, stored, per_insert=False)
            batched_db.close()
            print(
                f"create {count} services ({CONCURRENCY} in flight):"
                f" switchboard {ours:.2f} s ({count / ours:.0f}/s)"
                f" | raw sqlite, one transaction per insert {peer:.2f} s ({count / peer:.0f}/s)"
                f" | {_ratio(ours, peer)}"
            )
            print(
                f"  for information: the {SLICES} slices' ratios ran from {min(ratios):.1f}x"
                f" to {max(ratios):.1f}x; raw sqlite, all {count} inserts in one transaction"
                f" {raw_batched:.2f} s ({count / raw_batched:.0f}/s);"
                f" Services the server gave a ClusterIP: {cluster_ips} of {count}"
            )

            listed, raw_lists = [], []
            for _ in range(LIST_PASSES):
                path = f"/api/v1/namespaces/{NAMESPACE}/services"
                listed.append(_list_pages.list_pages(server.url, path, PAGE))
                raw_lists.append(raw_list(per_insert_db))
            best = min(listed, key=lambda pass_: pass_.seconds)
            raw_best, raw_rows = min(raw_lists)
            for pass_ in listed:
                if pass_.items != count or raw_rows != count:
                    raise BenchError(
                        f"the lists returned {pass_.items} Services and {raw_rows} rows,"
                        f" not {count}"
                    )
            print(
                f"list {count} services (limit={PAGE}, {best.pages} pages, best of {LIST_PASSES}):"
                f" switchboard {_ms(best.seconds)}"
                f" | raw sqlite SELECT paged by key {_ms(raw_best)}"
                f" | {_ratio(best.seconds, raw_best)}"
            )
            print(
                f"  for information: parsing every item of those pages as JSON takes this client"
                f" another {_ms(best.parse_seconds)}, done after the clock stopped"
            )

            deliveries, raw_writes = [], []
            path = f"/api/v1/namespaces/{NAMESPACE}/services?watch=true"
            async with _watch_streams.open_watchers(
                server.url, f"{path}&resourceVersion={best.revision}", WATCHERS
            ) as watchers:
                for round_ in range(ROUNDS):
                    delivery = await patch_and_deliver(session, server.url, watchers, round_)
                    deliveries.append(delivery)
                    raw_writes.append(raw_update(per_insert_db, service_name(0), delivery.stored))
                await watchers.check(ROUNDS)
            per_insert_db.close()
            after_ack = statistics.median(d.after_ack for d in deliveries)
            raw_write = statistics.median(raw_writes)
            print(
                f"watch fan-out to {WATCHERS} watchers (median of {ROUNDS} updates):"
                f" switchboard {_ms(after_ack)} from the PATCH's acknowledgement until all"
                f" {WATCHERS} had the event | raw sqlite, the update itself {_ms(raw_write)}"
                f" | {_ratio(after_ack, raw_write)}"
            )
            round_trip = statistics.median(d.round_trip for d in deliveries)
            to_all = [d.to_all for d in deliveries]
            print(
                f"  for information: PATCH round trip {_ms(round_trip)}, PATCH sent until all"
                f" {WATCHERS} had the event {_ms(statistics.median(to_all))} (median),"
                f" worst round {_ms(max(to_all))}"
            )
            floor = await bare_fanout(deliveries[-1].stored)
            print(
                f"  for information: the same event written to {WATCHERS} streams by a bare"
                f" loop of socket writes, read the same way: {_ms(floor)} (median of {ROUNDS});"
                " the rest of the fan-out above is the API layer's"
            )
            _, peak = server.memory_kib()
            print(
                f"server memory: RSS {rss / 1024:.0f} MiB after {count} creates,"
                f" peak {peak / 1024:.0f} MiB over the run"
            )


class _OverBudget(Exception):
    pass


async def _within_budget(work: Coroutine[Any, Any, None]) -> None:
    # A request's own timeout is a TimeoutError too: told apart, it says what hung.
    try:
        async with asyncio.timeout(BUDGET_SECONDS):
            try:
                await work
            except TimeoutError as exc:
                raise BenchError(f"a request or read timed out: {exc!r}") from exc
    except TimeoutError as exc:
        raise _OverBudget from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run api_store", description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="put the databases here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    if args.services < PAGE:
        parser.error(f"--services must be at least {PAGE} so the list has pages")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # A SIGTERM unwinds like Ctrl-C, so the server is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-", dir=args.dir) as work:
        try:
            asyncio.run(_within_budget(run(Path(work), args.services)))
        except _OverBudget:
            print(f"api_store: did not finish within {BUDGET_SECONDS:.0f} s", file=sys.stderr)
            return 1
        except (
            BenchError,
            _watch_streams.WatchError,
            _list_pages.ListError,
            aiohttp.ClientError,
            OSError,
            sqlite3.Error,
        ) as exc:
            print(f"api_store: could not measure: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
