"""The agent's HTTP API: the part of the kubelet's that the apiserver calls for logs and exec.

    GET /containerLogs/{namespace}/{pod}/{container}
        ?follow=&previous=&tailLines=&timestamps=&limitBytes=&sinceSeconds=&sinceTime=
    GET /exec/{namespace}/{pod}/{container}?command=…&command=…&stdin=&stdout=&stderr=&tty=
        (upgraded to WebSocket, subprotocol v5.channel.k8s.io or v4.channel.k8s.io)
    GET /healthz

Paths and parameters are the kubelet's (the kubelet's own `input`, `output`
and `error` are read as stdin, stdout and stderr), on the kubelet's port
10250 by default, so the apiserver reaches a node's agent the way Kubernetes
reaches a kubelet: the Node's InternalIP and status.daemonEndpoints.
Errors before a stream starts are plain text with the kubelet's status codes
and words; the apiserver turns them into a Status.

The pods themselves belong to the pod runtime, seen here only through the
`PodRuntime` protocol: where a container's output is appended, and the argv
and environment that run a command inside its pod.

Logs. The log is a plain file of the container's output, without a time on
each line, so two options are approximations: `timestamps` stamps each line
already in the file with the file's modification time (when its last line
was written; no line is younger) and each line appended later with the time
it was read; `sinceSeconds`/`sinceTime` keep the lines already in the file
only when that modification time is inside the window. `follow` polls the
file (every 0.1 s) and ends when the client goes away or when the runtime no
longer names this file as the container's log (replaced, truncated or gone:
the container ended and its log moved on), after the last bytes are sent.

Exec. The upgrade happens first and every later failure reaches the client
as a Status on the error channel, as Kubernetes' own stream translator does:
kubectl then prints it instead of retrying over SPDY. The command runs in a
session of its own; stdout and stderr are pumped into frames as they come,
stdin frames are written to it (v5's close signal closes its stdin); when it
exits, its remaining output is sent, then the Status (exit code), then the
WebSocket close. A client that goes away kills the command's process group.
No TTY is allocated yet: `tty=true` gets a Status saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from aiohttp import WSMsgType, web

from switchboard.api import remotecommand as rc

DEFAULT_PORT = 10250
_POLL_INTERVAL = 0.1  # seconds between looks at a followed log file
_CHUNK = 32 * 1024  # bytes read and framed at a time, as client-go buffers them
_MAX_MESSAGE = 4 * 1024 * 1024
_DRAIN_GRACE = 2.0  # seconds to wait for output after the command exited (a child may hold it)
log = logging.getLogger(__name__)


class PodRuntime(Protocol):
    """What this API needs of the pod runtime.

    Both raise LookupError when the agent runs no such pod or container.
    """

    def log_path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> Path | None:
        """The file the container's stdout and stderr are appended to (`previous`: the one of
        its last terminated instance); None if it has none (not started, never restarted)."""
        ...

    def exec_argv(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and whole environment that run `command` inside the pod."""
        ...


RUNTIME_KEY = web.AppKey("runtime", PodRuntime)


def build(runtime: PodRuntime) -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", _container_logs)
    app.router.add_get("/exec/{namespace}/{pod}/{container}", _exec)
    app.router.add_get("/healthz", _healthz)
    return app


async def start(runtime: PodRuntime, host: str, port: int = DEFAULT_PORT) -> web.AppRunner:
    """Serve the API on host:port until `await runner.cleanup()`; port 0 picks a free one."""
    runner = web.AppRunner(build(runtime), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner started by `start` listens on."""
    port: int = runner.addresses[0][1]
    return port


async def _healthz(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _text_error(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n")


# ---- logs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: float | None = None  # a Unix time: drop what is older


def log_options(query: Any, now: float) -> LogOptions:
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


class _Stamper:
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


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _container_logs(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME_KEY]
    namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    try:
        opts = log_options(request.query, time.time())
    except ValueError as exc:
        return _text_error(400, str(exc))
    try:
        path = runtime.log_path(namespace, pod, container, previous=opts.previous)
        f = None if path is None else await asyncio.to_thread(path.open, "rb")
    except LookupError:
        return _text_error(404, f'container "{container}" not found in pod "{namespace}/{pod}"')
    except FileNotFoundError:
        f = None
    if f is None:
        if opts.previous:
            return _text_error(
                400, f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        return _text_error(400, f'container "{container}" in pod "{pod}" is not available')

    def still_current() -> bool:
        try:
            now = runtime.log_path(namespace, pod, container)
            if now is None:
                return False
            named, held = now.stat(), os.fstat(f.fileno())
        except (LookupError, OSError):
            return False
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino) and (
            held.st_size >= f.tell()
        )

    with f:
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await _stream_log(request, resp, f, opts, None if opts.previous else still_current)
            await resp.write_eof()
    return resp


async def _stream_log(
    request: web.Request,
    resp: web.StreamResponse,
    f: IO[bytes],
    opts: LogOptions,
    still_current: Callable[[], bool] | None,
) -> None:
    held = os.fstat(f.fileno())
    written_before = held.st_mtime  # no line already in the file is younger
    start = 0
    if opts.since is not None and written_before < opts.since:
        start = held.st_size
    elif opts.tail_lines is not None:
        start = await asyncio.to_thread(tail_offset, f, held.st_size, opts.tail_lines)
    f.seek(start)
    stamper = _Stamper()
    budget = opts.limit_bytes
    history = held.st_size - start  # bytes that were in the file when the request came

    async def send(chunk: bytes, when: float) -> bool:
        """Write a chunk; False once limitBytes is reached."""
        nonlocal budget
        if opts.timestamps:
            chunk = stamper.stamp(chunk, when)
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        await resp.write(chunk)
        return budget != 0

    ending = False
    while True:
        chunk = await asyncio.to_thread(f.read, _CHUNK)
        if chunk:
            when = written_before if history > 0 else time.time()
            history -= len(chunk)
            if not await send(chunk, when):
                return
            continue
        if ending or not opts.follow or still_current is None or _client_gone(request):
            return
        if not still_current():
            ending = True  # one more read for what was written before it moved on
            continue
        await asyncio.sleep(_POLL_INTERVAL)


# ---- exec -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ExecRequest:
    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    protocol: str


async def _exec(request: web.Request) -> web.StreamResponse:
    q = request.query
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    protocol = rc.negotiate(offered)
    match = request.match_info
    ex = _ExecRequest(
        namespace=match["namespace"],
        pod=match["pod"],
        container=match["container"],
        command=q.getall("command", []),
        stdin=rc.flag(q.get("stdin", q.get("input"))),
        stdout=rc.flag(q.get("stdout", q.get("output"))),
        stderr=rc.flag(q.get("stderr", q.get("error"))),
        tty=rc.flag(q.get("tty")),
        protocol=protocol or "",
    )
    if not ex.command:
        return _text_error(400, "you must specify at least one command for the container")
    if not (ex.stdin or ex.stdout or ex.stderr):
        return _text_error(400, "you must specify at least 1 of stdin, stdout, stderr")
    ws = web.WebSocketResponse(protocols=(ex.protocol,), max_msg_size=_MAX_MESSAGE)
    if not ws.can_prepare(request).ok:
        return _text_error(400, "Upgrade request required: exec is served over WebSocket only")
    if protocol is None:
        return _text_error(400, rc.unsupported_protocols(offered))
    await ws.prepare(request)
    try:
        # An empty frame on the lowest output channel tells the client the streams are up.
        first = rc.STDOUT if ex.stdout else rc.STDERR if ex.stderr else rc.ERROR
        await ws.send_bytes(rc.frame(first))
        status = await _run(ws, request.app[RUNTIME_KEY], ex)
        if status is not None:
            await ws.send_bytes(rc.frame(rc.ERROR, json.dumps(status).encode()))
    except ConnectionResetError:
        pass
    finally:
        await ws.close()
    return ws


async def _run(ws: web.WebSocketResponse, runtime: PodRuntime, ex: _ExecRequest) -> Any:
    """Run the command with its streams on ws; its Status, or None if the client went away."""
    if ex.tty:
        return rc.failure(
            "this node's agent cannot allocate a TTY yet; run kubectl exec without -t",
            "BadRequest",
            400,
        )
    try:
        argv, env = runtime.exec_argv(ex.namespace, ex.pod, ex.container, ex.command)
    except LookupError:
        return rc.failure(
            f'container not found ("{ex.container}") in pod "{ex.namespace}/{ex.pod}"',
            "NotFound",
            404,
        )
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=pipe if ex.stdin else devnull,
            stdout=pipe if ex.stdout else devnull,
            stderr=pipe if ex.stderr else devnull,
            start_new_session=True,  # one process group, killed whole if the client leaves
        )
    except OSError as exc:
        return rc.failure(f"Internal error occurred: error executing command in container: {exc}")
    pumps = [
        asyncio.create_task(_pump(stream, ws, channel))
        for stream, channel in ((proc.stdout, rc.STDOUT), (proc.stderr, rc.STDERR))
        if stream is not None
    ]
    reader = asyncio.create_task(_read_input(ws, proc, ex.protocol == rc.PROTOCOL_V5))
    exited = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait((exited, reader), return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            return None  # the client went away: the finally kills the command
        if pumps:
            await asyncio.wait(pumps, timeout=_DRAIN_GRACE)
        code = exited.result()
        if code < 0:
            code = 128 - code  # killed by a signal: the shell's convention
        return rc.success() if code == 0 else rc.exit_code(min(code, 255))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for task in (*pumps, reader, exited):
            task.cancel()
        await asyncio.gather(*pumps, reader, exited, return_exceptions=True)


async def _pump(stream: asyncio.StreamReader, ws: web.WebSocketResponse, channel: int) -> None:
    with contextlib.suppress(ConnectionResetError):
        while chunk := await stream.read(_CHUNK):
            await ws.send_bytes(rc.frame(channel, chunk))


async def _read_input(
    ws: web.WebSocketResponse, proc: asyncio.subprocess.Process, v5: bool
) -> None:
    """Feed stdin frames to the command until the client closes the connection."""
    stdin = proc.stdin
    while True:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        if msg.type is not WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == rc.STDIN and stdin is not None and not stdin.is_closing():
            try:
                stdin.write(data)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                stdin.close()  # the command stopped reading; later input is dropped
        elif channel == rc.CLOSE and v5 and data[:1] == bytes((rc.STDIN,)) and stdin is not None:
            stdin.close()
        # RESIZE (4) is for a TTY, which is not allocated; anything else is ignored.
