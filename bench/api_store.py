"""API layer against storage: create, list and watch 10,000 Services, and raw SQLite doing the same.

Target (docs/DESIGN): the API layer costs at most 3x what storage costs.

Switchboard runs as its own process (`switchboard apiserver --port 0`) and is
driven over loopback HTTP from this process with aiohttp, 32 requests in
flight, so its store can group-commit as it would under real load. The peer
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
- list: every Service, paged with limit=500 and `continue`, as a client
  reads it (parsing each page for its continue token), against a SELECT over
  the same rows paged by key. Each side's best of three passes, alternating.
- watch: 100 watch streams on services; one Service is patched and the time
  from the PATCH being acknowledged until all 100 streams have the event is
  compared with the time SQLite takes for that write itself (a kine update:
  read the latest row, append its successor, commit). That is: what it costs
  the API to tell 100 watchers about a write, against what the write costs.
  The median of 20 rounds, each followed by its raw write; the event can
  reach watchers before the client reads its acknowledgement, so the figure
  is never below zero.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml

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


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server process, in KiB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@contextlib.contextmanager
def running_server(data_dir: Path) -> Iterator[Server]:
    """Start `switchboard apiserver` on a free loopback port; stop it by its pid on the way out."""
    kubeconfig = data_dir / "kubeconfig"
    log = data_dir / "apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "apiserver",
                "--data-dir",
                str(data_dir),
                "--bind-address",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not kubeconfig.exists():
            if process.poll() is not None:
                raise BenchError(f"the apiserver exited {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the apiserver wrote no kubeconfig in {START_SECONDS:.0f} s")
            time.sleep(0.02)
        config = yaml.safe_load(kubeconfig.read_text())
        yield Server(process, config["clusters"][0]["cluster"]["server"], log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                print(
                    f"note: the apiserver had not stopped {STOP_SECONDS:.0f} s after SIGTERM,"
                    " so it was killed",
                    file=sys.stderr,
                )


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


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
class Listed:
    seconds: float
    pages: int
    items: int
    parse_seconds: float  # of `seconds`, the client's own JSON parsing
    revision: str


async def list_services(session: aiohttp.ClientSession, base: str) -> Listed:
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/services"
    token = ""
    pages = items = 0
    parse = 0.0
    revision = ""
    started = time.perf_counter()
    while True:
        params = {"limit": str(PAGE)}
        if token:
            params["continue"] = token
        async with session.get(url, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {url} answered {resp.status}: {body[:300]!r}")
        parsing = time.perf_counter()
        page = orjson.loads(body)
        parse += time.perf_counter() - parsing
        pages += 1
        items += len(page["items"])
        revision = revision or page["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    return Listed(time.perf_counter() - started, pages, items, parse, revision)


@dataclass
class Watchers:
    """Open watch streams, recording when each event (by resourceVersion) reached each one."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None

    def record(self, line: bytes, at: float) -> None:
        event = orjson.loads(line)
        if event["type"] == "ERROR":
            raise BenchError(f"a watch stream ended with an error: {event['object']}")
        if event["type"] == "BOOKMARK":
            return
        rv = event["object"]["metadata"]["resourceVersion"]
        times = self.arrivals.setdefault(rv, [])
        times.append(at)
        if len(times) == WATCHERS:
            self.progress.set()

    async def all_have(self, rv: str) -> float:
        """Wait until every watcher has the event at `rv`; return when the last one got it."""
        deadline = time.monotonic() + EVENT_SECONDS
        while len(self.arrivals.get(rv, ())) < WATCHERS:
            if self.failure is not None:
                raise BenchError(f"a watcher failed: {self.failure!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                got = len(self.arrivals.get(rv, ()))
                raise BenchError(f"only {got} of {WATCHERS} watchers saw resourceVersion {rv}")
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), timeout=left)
        return max(self.arrivals[rv])


@contextlib.asynccontextmanager
async def open_watchers(base: str, revision: str) -> AsyncIterator[Watchers]:
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/services"
    params = {"watch": "true", "resourceVersion": revision}
    watchers = Watchers()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_SECONDS)
    ready: asyncio.Queue[None] = asyncio.Queue()

    async def watch(session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(url, params=params) as resp:
                if resp.status != 200:
                    raise BenchError(f"watch {url} answered {resp.status}")
                ready.put_nowait(None)
                while line := await resp.content.readline():
                    watchers.record(line, time.perf_counter())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            watchers.failure = exc
            watchers.progress.set()
            ready.put_nowait(None)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(watch(session)) for _ in range(WATCHERS)]
        try:
            for _ in range(WATCHERS):
                await asyncio.wait_for(ready.get(), timeout=REQUEST_SECONDS)
            if watchers.failure is not None:
                raise BenchError(f"a watch did not open: {watchers.failure!r}")
            yield watchers
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Delivery:
    after_ack: float  # from the acknowledgement until the last watcher had the event
    round_trip: float  # from sending the PATCH until its acknowledgement
    to_all: float  # from sending the PATCH until the last watcher had the event
    stored: bytes  # the new value, as the server stored it


async def patch_and_deliver(
    session: aiohttp.ClientSession, base: str, watchers: Watchers, round_: int
) -> Delivery:
    url = f"{base}/api/v1/namespaces/{NAMESPACE}/services/{service_name(0)}"
    headers = {"Content-Type": "application/merge-patch+json"}
    patch = orjson.dumps({"metadata": {"annotations": {"bench/round": str(round_)}}})
    sent = time.perf_counter()
    async with session.patch(url, data=patch, headers=headers) as resp:
        body = await resp.read()
        acked = time.perf_counter()
        if resp.status != 200:
            raise BenchError(f"PATCH {url} answered {resp.status}: {body[:300]!r}")
    last = await watchers.all_have(orjson.loads(body)["metadata"]["resourceVersion"])
    return Delivery(max(last - acked, 0.0), acked - sent, last - sent, stored_form(body)[1])


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
                listed.append(await list_services(session, server.url))
                raw_lists.append(raw_list(per_insert_db))
            best = min(listed, key=lambda pass_: pass_.seconds)
            raw_best, raw_rows = min(raw_lists)
            if best.items != count or raw_rows != count:
                raise BenchError(
                    f"the lists returned {best.items} Services and {raw_rows} rows, not {count}"
                )
            print(
                f"list {count} services (limit={PAGE}, {best.pages} pages, best of {LIST_PASSES}):"
                f" switchboard {_ms(best.seconds)}"
                f" | raw sqlite SELECT paged by key {_ms(raw_best)}"
                f" | {_ratio(best.seconds, raw_best)}"
            )
            print(
                f"  for information: of switchboard's time, {_ms(best.parse_seconds)} is this"
                " client parsing the JSON pages"
            )

            deliveries, raw_writes = [], []
            async with open_watchers(server.url, best.revision) as watchers:
                for round_ in range(ROUNDS):
                    delivery = await patch_and_deliver(session, server.url, watchers, round_)
                    deliveries.append(delivery)
                    raw_writes.append(raw_update(per_insert_db, service_name(0), delivery.stored))
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
            _, peak = server.memory_kib()
            print(
                f"server memory: RSS {rss / 1024:.0f} MiB after {count} creates,"
                f" peak {peak / 1024:.0f} MiB over the run"
            )


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
            asyncio.run(asyncio.wait_for(run(Path(work), args.services), BUDGET_SECONDS))
        except TimeoutError:
            print(f"api_store: did not finish within {BUDGET_SECONDS:.0f} s", file=sys.stderr)
            return 1
        except (BenchError, aiohttp.ClientError, sqlite3.Error) as exc:
            print(f"api_store: could not measure: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
