"""A container's log, read for the agent's containerLogs endpoint: tail, limit, times, follow.

The log is a plain file of the container's output, appended to by the pod
runtime, without a time on each line; so two options are approximations.
`timestamps` stamps each line already in the file with the file's
modification time (when its last line was written: no line is younger) and
each line appended later with the time it was read. `sinceSeconds` and
`sinceTime` keep the lines already in the file only when that modification
time is inside the window. Timestamps count toward `limitBytes`, as the
kubelet counts them.

`follow` polls the file every 0.1 s and ends when the client goes away or
when the file is no longer the container's current log (replaced, truncated
or gone: the container ended and its log moved on), after one last read for
what was written before it moved on. Whoever serves the stream says which,
through the two callables `stream` takes; this module knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from switchboard.api import remotecommand as rc

POLL_INTERVAL = 0.1  # seconds between looks at a followed log file
_CHUNK = 32 * 1024


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: float | None = None  # a Unix time: drop what is older


def log_options(query: Mapping[str, str], now: float) -> LogOptions:
    """LogOptions from the query; ValueError naming the parameter if one is malformed."""

    def number(name: str, least: int) -> int | None:
        raw = query.get(name)
        if raw in (None, ""):
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}: {raw!r} is not an integer") from None
        if value < least:
            raise ValueError(f"{name}: must be at least {least}, not {value}")
        return value

    since: float | None = None
    seconds = number("sinceSeconds", 1)
    if seconds is not None:
        since = now - seconds
    elif query.get("sinceTime"):
        try:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ValueError(f"sinceTime: {query['sinceTime']!r} is not an RFC 3339 time") from None
    return LogOptions(
        follow=rc.flag(query.get("follow")),
        previous=rc.flag(query.get("previous")),
        timestamps=rc.flag(query.get("timestamps")),
        tail_lines=number("tailLines", 0),
        limit_bytes=number("limitBytes", 1),
        since=since,
    )


def tail_offset(f: IO[bytes], size: int, lines: int) -> int:
    """Where the last `lines` lines of the first `size` bytes of f begin.

    A last line without its newline counts as a line; reads backwards in blocks.
    """
    if lines == 0:
        return size
    end = size
    if end > 0:
        f.seek(end - 1)
        if f.read(1) == b"\n":
            end -= 1  # the final newline ends the last line; it does not start one
    remaining = lines
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        block = f.read(end - start)
        at = len(block)
        while (at := block.rfind(b"\n", 0, at)) >= 0:
            remaining -= 1
            if remaining == 0:
                return start + at + 1
        end = start
    return 0


def rfc3339_nano(unix: float) -> bytes:
    """The kubelet's timestamp: RFC 3339 in UTC with nine fractional digits."""
    ns = int(unix * 1e9)
    whole = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ns % 1_000_000_000:09d}Z".encode()


class Stamper:
    """Puts `<timestamp> ` before each line, across chunks that split lines anywhere."""

    def __init__(self) -> None:
        self.at_line_start = True

    def stamp(self, chunk: bytes, when: float) -> bytes:
        prefix = rfc3339_nano(when) + b" "
        parts = chunk.split(b"\n")
        out: list[bytes] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not part:
                break  # the chunk ended with a newline
            if self.at_line_start:
                out.append(prefix)
            out.append(part)
            if not last:
                out.append(b"\n")
            self.at_line_start = not last
        return b"".join(out)


async def stream(
    f: IO[bytes],
    opts: LogOptions,
    write: Callable[[bytes], Awaitable[object]],
    *,
    still_current: Callable[[], bool],
    client_gone: Callable[[], bool],
) -> None:
    """Write the log in f as opts ask; with follow, until the log or its client goes away."""
    held = os.fstat(f.fileno())
    written_before = held.st_mtime  # no line already in the file is younger
    start = 0
    if opts.since is not None and written_before < opts.since:
        start = held.st_size
    elif opts.tail_lines is not None:
        start = await asyncio.to_thread(tail_offset, f, held.st_size, opts.tail_lines)
    f.seek(start)
    stamper = Stamper()
    budget = opts.limit_bytes
    history = held.st_size - start  # bytes that were in the file when the request came
    ending = False
    while True:
        chunk = await asyncio.to_thread(f.read, _CHUNK)
        if chunk:
            when = written_before if history > 0 else time.time()
            history -= len(chunk)
            if opts.timestamps:
                chunk = stamper.stamp(chunk, when)
            if budget is not None:
                chunk = chunk[:budget]
                budget -= len(chunk)
            await write(chunk)
            if budget == 0:
                return
            continue
        if ending or not opts.follow or client_gone():
            return
        if not still_current():
            ending = True  # one more read for what was written before it moved on
            continue
        await asyncio.sleep(POLL_INTERVAL)
