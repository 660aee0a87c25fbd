"""Watch streams read as lightly as a client can: a process of their own, raw sockets, epoll.

Used by api_store to time a watch fan-out. The figure there is "from the
PATCH's acknowledgement until every watch stream has received the event's
bytes"; streams read by aiohttp in the benchmark's own process add that
client's machinery (a task wake-up and a readline per stream, all on the
process that also sends the PATCH) to what is meant to be the server's cost.
Here the streams are read by a process that does nothing else: one epoll
loop over plain sockets that reads every ready stream, stamping each read
with CLOCK_MONOTONIC (`time.monotonic`, comparable across processes) as it
returns, and only then de-chunks the bytes; an event counts as arrived at
the stamp of the read that completed its line. Nothing is parsed while
timing: the event's resourceVersion is found by a byte search. Every line is kept, and
once the parent says `stop` every line of every stream is parsed as JSON and
checked (one well-formed event per line; resourceVersions strictly rising;
every stream saw the same events), so a stream that got a broken or
reordered event fails the run.

    python -m bench._watch_streams HOST PORT PATH COUNT

stdout, one line each: `ready` once all COUNT streams answered 200;
`have RV T` when the last stream got the event at resourceVersion RV, at
monotonic time T; `done EVENTS` after `stop` (or end of input) on stdin once
the check passed, `error MESSAGE` if it did not. `open_watchers` starts the
process from the benchmark and `Watchers` reads what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import sys
import time
from collections.abc import AsyncIterator

import orjson
import yarl

_RV = b'"resourceVersion":"'
_READ = 1 << 16
_SETUP_SECONDS = 30.0
_EVENT_SECONDS = 10.0


class _Stream:
    """One watch response: chunked bytes in, complete event lines out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw = b""  # bytes read but not yet de-chunked
        self.body = b""  # de-chunked bytes not yet ending in a newline
        self.lines: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        """The event lines `data` completes."""
        raw = self.raw + data
        pos = 0
        while True:
            end = raw.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(raw[pos:end], 16)
            if size == 0:
                raise RuntimeError("the server ended a watch stream")
            if len(raw) < end + 2 + size + 2:
                break
            self.body += raw[end + 2 : end + 2 + size]
            pos = end + 2 + size + 2
        self.raw = raw[pos:]
        if b"\n" not in self.body:
            return []
        *complete, self.body = self.body.split(b"\n")
        self.lines += complete
        return complete


class WatchError(Exception):
    """The watch streams failed: one did not open, broke, or carried a bad event."""


class Watchers:
    """The watch streams, read by a process of their own (see bench/_watch_streams.py)."""

    def __init__(self, process: asyncio.subprocess.Process, count: int) -> None:
        self._process = process
        self._count = count
        self._have: dict[str, float] = {}

    async def _line(self) -> str:
        assert self._process.stdout is not None
        line = (await self._process.stdout.readline()).decode().strip()
        if not line or line.startswith("error"):
            raise WatchError(f"the watch streams failed: {line or 'the process ended'}")
        return line

    async def ready(self) -> None:
        line = await asyncio.wait_for(self._line(), timeout=_SETUP_SECONDS)
        if line != "ready":
            raise WatchError(f"the watch streams said {line!r} instead of ready")

    async def all_have(self, rv: str) -> float:
        """Wait until every stream has the event at `rv`; the monotonic time the last one got it."""
        deadline = time.monotonic() + _EVENT_SECONDS
        while rv not in self._have:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WatchError(f"not all {self._count} watchers saw resourceVersion {rv}")
            try:
                line = await asyncio.wait_for(self._line(), timeout=left)
            except TimeoutError:
                continue
            _, got, at = line.split()
            self._have[got] = float(at)
        return self._have[rv]

    async def check(self, events: int) -> None:
        """Stop the streams; every one must have seen exactly `events` well-formed events."""
        assert self._process.stdin is not None
        self._process.stdin.write(b"stop\n")
        await self._process.stdin.drain()
        while True:
            line = await asyncio.wait_for(self._line(), timeout=_SETUP_SECONDS)
            if line.startswith("done"):
                break
        if int(line.split()[1]) != events:
            raise WatchError(f"the watch streams saw {line.split()[1]} events, not {events}")


@contextlib.asynccontextmanager
async def open_watchers(base: str, path: str, count: int) -> AsyncIterator[Watchers]:
    """`count` watch streams on `path` of the server at `base`, read by a process of their own."""
    url = yarl.URL(base)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._watch_streams",
        str(url.host),
        str(url.port),
        path,
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        watchers = Watchers(process, count)
        await watchers.ready()
        yield watchers
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def _resource_version(line: bytes) -> bytes | None:
    """The resourceVersion of an event line found by a byte search; None for a bookmark.

    The first resourceVersion in a line is its object's: nothing else in a Service has one.
    """
    if line.startswith(b'{"type":"BOOKMARK"'):
        return None
    start = line.find(_RV)
    if start < 0:
        return None
    start += len(_RV)
    return line[start : line.index(b'"', start)]


def _open(host: str, port: int, path: str) -> _Stream:
    sock = socket.create_connection((host, port), timeout=_SETUP_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(_READ)
        if not data:
            raise RuntimeError("the server closed a watch before answering")
        head += data
    head, _, rest = head.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"a watch was answered {status.decode(errors='replace')}")
    if b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError("a watch was not answered with a chunked stream")
    sock.setblocking(False)
    stream = _Stream(sock)
    stream.feed(rest)
    return stream


def _check(streams: list[_Stream]) -> int:
    """Parse every line of every stream; the number of events each saw."""
    seen: list[list[str]] = []
    for stream in streams:
        rvs: list[str] = []
        for line in stream.lines:
            event = orjson.loads(line)
            if event["type"] == "ERROR":
                raise RuntimeError(f"a watch stream carried an error: {event['object']}")
            if event["type"] not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                raise RuntimeError(f"a watch stream carried an event of type {event['type']!r}")
            if event["type"] == "BOOKMARK":
                continue
            rv = event["object"]["metadata"]["resourceVersion"]
            if _resource_version(line) != rv.encode():
                raise RuntimeError(f"the byte search found another resourceVersion than {rv}")
            if rvs and int(rv) <= int(rvs[-1]):
                raise RuntimeError(f"a watch stream went from resourceVersion {rvs[-1]} to {rv}")
            rvs.append(rv)
        seen.append(rvs)
    if any(rvs != seen[0] for rvs in seen):
        raise RuntimeError("the watch streams did not all see the same events")
    return len(seen[0])


def main() -> int:
    host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    streams = [_open(host, port, path) for _ in range(count)]
    by_fd = {stream.sock.fileno(): stream for stream in streams}
    stdin = sys.stdin.fileno()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    poll = select.epoll()
    for fd in by_fd:
        poll.register(fd, select.EPOLLIN)
    poll.register(stdin, select.EPOLLIN)
    arrivals: dict[bytes, list[float]] = {}
    stopping = False
    while not stopping:
        # Read every ready stream first, each stamped as its recv returns, then parse:
        # parsing one stream's bytes must not delay reading the next.
        got: list[tuple[_Stream, bytes, float]] = []
        for fd, _ in poll.poll():
            if fd == stdin:
                stopping = True  # `stop`, or the parent went away
                continue
            stream = by_fd[fd]
            try:
                data = stream.sock.recv(_READ)
            except BlockingIOError:
                continue
            got.append((stream, data, time.monotonic()))
        for stream, data, at in got:
            if not data:
                raise RuntimeError("the server closed a watch stream")
            for line in stream.feed(data):
                rv = _resource_version(line)
                if rv is None:
                    continue
                times = arrivals.setdefault(rv, [])
                times.append(at)
                if len(times) == count:
                    out.write(f"have {rv.decode()} {max(times)!r}\n")
                    out.flush()
    try:
        events = _check(streams)
    except (RuntimeError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        out.write(f"error {exc}\n")
        return 1
    out.write(f"done {events}\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, ValueError) as exc:
        sys.stdout.write(f"error {exc}\n")
        sys.stdout.flush()
        os._exit(1)
