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
Refusals before a stream starts are plain text with the kubelet's status
codes and words; the apiserver turns them into a Status.

The pods belong to the pod runtime, seen here only through the `PodRuntime`
protocol: where a container's output is appended, and the argv and
environment that run a command inside its pod. This module is the HTTP
surface; reading a log is `containerlogs`, running a command on WebSocket
channels is `remoteexec`.

For exec the upgrade happens first, and every later failure (a container the
runtime does not run, a command that cannot start) reaches the client as a
Status on the error channel, as Kubernetes' own stream translator does it:
kubectl prints it instead of retrying over SPDY.

    runner = await kubeletapi.start(runtime, node_ip)      # port 10250
    ...
    await runner.cleanup()   # streams still open are cut after a few seconds
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from switchboard.agent import containerlogs, remoteexec
from switchboard.api import remotecommand as rc

DEFAULT_PORT = 10250
_MAX_MESSAGE = 4 * 1024 * 1024


class PodRuntime(Protocol):
    """What this API needs of the pod runtime.

    Both may raise LookupError when the agent runs no such pod or container; the
    message of any other exception from `exec_argv` is shown to the client.
    """

    def log_path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> Path | None:
        """The file the container's stdout and stderr are appended to (`previous`: the one of
        its last terminated instance); None if it has none (not started, never restarted).

        Each instance of a container writes a new file (a new inode, e.g. the old one renamed
        to the previous log and a new one made): that is how a followed log learns that the
        container it follows has ended.
        """
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
    # Handlers still streaming at shutdown are cancelled after a few seconds: that ends
    # their commands and closes their log files.
    runner = web.AppRunner(
        build(runtime), handle_signals=False, access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def start_on_socket(runtime: PodRuntime, sock: socket.socket) -> web.AppRunner:
    """Like `start`, on a socket the caller bound and made listen (e.g. in a node namespace)."""
    runner = web.AppRunner(
        build(runtime), handle_signals=False, access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner started by `start` listens on."""
    port: int = runner.addresses[0][1]
    return port


async def _healthz(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _text_error(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n")


async def _container_logs(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME_KEY]
    namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    try:
        opts = containerlogs.log_options(request.query, time.time())
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
        """Whether the runtime still names f as the log of the running container."""
        if opts.previous:
            return False  # the log of an ended container does not go on
        try:
            now = runtime.log_path(namespace, pod, container)
            if now is None:
                return False
            named, held = now.stat(), os.fstat(f.fileno())
        except (LookupError, OSError):
            return False
        same_file = (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
        return same_file and held.st_size >= f.tell()

    with f:
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await containerlogs.stream(
                f,
                opts,
                resp.write,
                still_current=still_current,
                client_gone=lambda: request.transport is None or request.transport.is_closing(),
            )
            await resp.write_eof()
    return resp


async def _exec(request: web.Request) -> web.StreamResponse:
    q = request.query
    namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    command = q.getall("command", [])
    ws = web.WebSocketResponse(protocols=rc.PROTOCOLS, max_msg_size=_MAX_MESSAGE)
    ready = ws.can_prepare(request)  # the client's first subprotocol that this side speaks
    streams = remoteexec.Streams(
        stdin=rc.flag(q.get("stdin", q.get("input"))),
        stdout=rc.flag(q.get("stdout", q.get("output"))),
        stderr=rc.flag(q.get("stderr", q.get("error"))),
        tty=rc.flag(q.get("tty")),
        v5=ready.protocol == rc.PROTOCOL_V5,
    )
    if not command:
        return _text_error(400, "you must specify at least one command for the container")
    if not (streams.stdin or streams.stdout or streams.stderr):
        return _text_error(400, "you must specify at least 1 of stdin, stdout, stderr")
    if not ready.ok:
        return _text_error(400, "Upgrade request required: exec is served over WebSocket only")
    if not ready.protocol:
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        return _text_error(400, rc.unsupported_protocols(offered))
    await ws.prepare(request)
    try:
        await ws.send_bytes(rc.frame(streams.first_output()))
        status: dict[str, Any] | None
        try:
            argv, env = request.app[RUNTIME_KEY].exec_argv(namespace, pod, container, command)
        except LookupError:
            status = rc.failure(
                f'container not found ("{container}") in pod "{namespace}/{pod}"', "NotFound", 404
            )
        except Exception as exc:  # the runtime's own refusal ("… is not running"), said as is
            status = rc.failure(str(exc) or type(exc).__name__)
        else:
            status = await remoteexec.run(ws, argv, env, streams)
        if status is not None:
            await ws.send_bytes(rc.frame(rc.ERROR, json.dumps(status).encode()))
    except ConnectionResetError:
        pass
    finally:
        await ws.close()
    return ws
