"""Probes: a container's startup, liveness and readiness checks, as the kubelet runs them.

`run_probe` makes one attempt: `httpGet` (2xx and 3xx succeed), `tcpSocket`
(a connection succeeds) or `exec` (exit code 0 succeeds), each bounded by
`timeoutSeconds`. Checks are made *from the pod's own network namespace*
against the pod's IP: the agent may live in a namespace that cannot reach
pods at all (a lab node's namespace is not the one the agent runs in), and
a pod can always reach itself. A socket is made inside the pod's namespace
by a short-lived thread that enters it and ends (the namespace of a thread
is its own, so the agent's other threads never move), and then used from
the event loop like any other. `exec` runs the command through the
runtime's `exec_argv`, in the container's namespaces with its environment.

`ContainerProbes` runs the probes of one container *instance*; a restarted
container gets a new one. Timing and thresholds follow the kubelet's
prober workers:

- nothing is probed before `initialDelaySeconds` after the container
  started, then every `periodSeconds`;
- liveness and readiness wait until the startup probe has succeeded once;
- readiness starts as not ready and flips after `successThreshold`
  consecutive successes or `failureThreshold` consecutive failures;
- `failureThreshold` consecutive liveness or startup failures call
  `on_failed`, which kills the container (the pod's restart policy decides
  whether it comes back); that worker then ends with its instance.

Every failed attempt is reported through `on_unhealthy` (the kubelet's
"Unhealthy" events); `on_change` is called whenever `ready` or `started`
changes, so the agent rewrites the pod's status. gRPC probes are not
supported and always fail, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pyroute2 import netns as _netns

from switchboard.api.kinds import Obj

log = logging.getLogger(__name__)

ProbeKind = Literal["startup", "liveness", "readiness"]
USER_AGENT = "kube-probe/1.33"
_MAX_OUTPUT = 10 * 1024  # kubelet keeps the first 10 KiB of an exec probe's output
ExecArgv = Callable[[Sequence[str]], tuple[list[str], dict[str, str]]]


@dataclass(frozen=True, slots=True)
class HttpGet:
    port: int | str
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TcpSocket:
    port: int | str
    host: str = ""


@dataclass(frozen=True, slots=True)
class Exec:
    command: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsupported:
    what: str


Handler = HttpGet | TcpSocket | Exec | Unsupported


@dataclass(frozen=True, slots=True)
class Probe:
    kind: ProbeKind
    handler: Handler
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None  # the probe's own terminationGracePeriodSeconds

    @classmethod
    def of(cls, container: Obj, kind: ProbeKind) -> Probe | None:
        """The container's probe of this kind, with Kubernetes' defaults; None if it has none."""
        spec = container.get(f"{kind}Probe")
        if not isinstance(spec, dict):
            return None
        handler: Handler
        if isinstance(spec.get("httpGet"), dict):
            get = spec["httpGet"]
            handler = HttpGet(
                port=get.get("port", 80),
                path=str(get.get("path") or "/"),
                scheme=str(get.get("scheme") or "HTTP").upper(),
                host=str(get.get("host") or ""),
                headers=tuple(
                    (str(h.get("name", "")), str(h.get("value", "")))
                    for h in get.get("httpHeaders") or []
                ),
            )
        elif isinstance(spec.get("tcpSocket"), dict):
            tcp = spec["tcpSocket"]
            handler = TcpSocket(port=tcp.get("port", 0), host=str(tcp.get("host") or ""))
        elif isinstance(spec.get("exec"), dict):
            handler = Exec(tuple(str(c) for c in spec["exec"].get("command") or []))
        else:
            handler = Unsupported("grpc" if "grpc" in spec else "no handler")
        grace = spec.get("terminationGracePeriodSeconds")
        return cls(
            kind=kind,
            handler=handler,
            initial_delay=float(spec.get("initialDelaySeconds") or 0),
            period=float(spec.get("periodSeconds") or 10),
            timeout=float(spec.get("timeoutSeconds") or 1),
            success_threshold=int(spec.get("successThreshold") or 1),
            failure_threshold=int(spec.get("failureThreshold") or 3),
            termination_grace=float(grace) if grace is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Target:
    """Where a container's probes go: its pod's IP, from inside its pod's network namespace."""

    pod_ip: str
    netns: str | None  # a name under /var/run/netns; None: the agent's own namespace
    exec_argv: ExecArgv


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    message: str = ""


# -- one attempt ------------------------------------------------------------------------


async def run_probe(probe: Probe, target: Target, container: Obj) -> Outcome:
    """One attempt of `probe` against the container; never raises."""
    handler = probe.handler
    try:
        if isinstance(handler, HttpGet):
            return await _http_get(handler, probe.timeout, target, container)
        if isinstance(handler, TcpSocket):
            return await _tcp_socket(handler, probe.timeout, target, container)
        if isinstance(handler, Exec):
            return await _exec(handler, probe.timeout, target)
        return Outcome(False, f"{handler.what} probes are not supported by this node")
    except Exception as exc:  # a probe that cannot even be tried is a failed probe
        log.debug("probe error", exc_info=True)
        return Outcome(False, f"probe error: {exc}")


def resolve_port(port: int | str, container: Obj) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        number = int(port)
        return number if 0 < number < 65536 else None
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry.get("containerPort", 0)) or None
    return None


async def _http_get(get: HttpGet, limit: float, target: Target, container: Obj) -> Outcome:
    port = resolve_port(get.port, container)
    host = get.host or target.pod_ip
    scheme = "https" if get.scheme == "HTTPS" else "http"
    path = get.path if get.path.startswith("/") else "/" + get.path
    url = f"{scheme}://{_join(host, port or get.port)}{path}"
    if port is None:
        return Outcome(False, f'Get "{url}": port {get.port!r} is not one of the container\'s')
    headers = {"Host": _join(host, port), "User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update({name: value for name, value in get.headers if name})
    headers["Connection"] = "close"
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        async with asyncio.timeout(limit):
            sock = await _connect(target.netns, host, port)
            context = _insecure_tls() if scheme == "https" else None
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=host if context else None
            )
            try:
                writer.write((request + "\r\n").encode("latin-1"))
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        return Outcome(
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
            "headers)",
        )
    except (OSError, ssl.SSLError) as exc:
        return Outcome(False, f'Get "{url}": {_dial_error(host, port, exc)}')
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return Outcome(False, f'Get "{url}": malformed HTTP response {status_line[:80]!r}')
    code = int(parts[1])
    if 200 <= code < 400:
        return Outcome(True)
    return Outcome(False, f"HTTP probe failed with statuscode: {code}")


async def _tcp_socket(tcp: TcpSocket, limit: float, target: Target, container: Obj) -> Outcome:
    port = resolve_port(tcp.port, container)
    host = tcp.host or target.pod_ip
    if port is None:
        return Outcome(False, f"port {tcp.port!r} is not one of the container's")
    try:
        async with asyncio.timeout(limit):
            sock = await _connect(target.netns, host, port)
    except TimeoutError:
        return Outcome(False, f"dial tcp {_join(host, port)}: i/o timeout")
    except OSError as exc:
        return Outcome(False, _dial_error(host, port, exc))
    sock.close()
    return Outcome(True)


async def _exec(command: Exec, limit: float, target: Target) -> Outcome:
    if not command.command:
        return Outcome(False, "exec probe has no command")
    argv, env = target.exec_argv(command.command)
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        if process.returncode is None:  # not reaped, so its pid is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: what it started
        await process.wait()
        return Outcome(False, f"command {list(command.command)!r} timed out")
    text = output[:_MAX_OUTPUT].decode("utf-8", "replace")
    if process.returncode == 0:
        return Outcome(True, text)
    return Outcome(False, text or f"command exited with {process.returncode}")


async def _connect(netns: str | None, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await _socket_in(netns, family)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _socket_in(netns: str | None, family: int) -> socket.socket:
    """A TCP socket of network namespace `netns`, made by a thread that enters it and ends."""
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    made: asyncio.Future[socket.socket] = loop.create_future()

    def settle(sock: socket.socket | None, error: BaseException | None) -> None:
        if made.done():
            if sock is not None:
                sock.close()  # nobody waits for it any more
        elif sock is not None:
            made.set_result(sock)
        else:
            made.set_exception(error or OSError("no socket"))

    def make() -> None:
        try:
            _netns.setns(netns, flags=0)
            sock = socket.socket(family, socket.SOCK_STREAM)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, sock, None)

    threading.Thread(target=make, name=f"probe-socket-{netns}", daemon=True).start()
    return await made


def _insecure_tls() -> ssl.SSLContext:
    # The kubelet does not verify a probed pod's certificate either.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _join(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_error(host: str, port: int, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        text = os.strerror(exc.errno).lower()
        if exc.errno == errno.ECONNREFUSED:
            text = "connection refused"
        return f"dial tcp {_join(host, port)}: connect: {text}"
    return f"dial tcp {_join(host, port)}: {exc}"


# -- the probes of one container instance ----------------------------------------------


class ContainerProbes:
    """Startup, liveness and readiness workers of one container instance."""

    def __init__(
        self,
        container: Obj,
        target: Target,
        *,
        container_id: str,
        started_at: float,
        on_change: Callable[[], None],
        on_failed: Callable[[Probe, str], None],
        on_unhealthy: Callable[[Probe, str], None],
        reported_ready: bool = False,
    ) -> None:
        """`reported_ready`: the pod's status already says this very container instance is
        ready (an agent restarted beside it). It stays ready until its readiness probe
        fails, so that a restart of the agent does not pull it from its Services.
        """
        self.container = container
        self.target = target
        self.container_id = container_id
        self.started_at = started_at  # wall clock
        self.startup = Probe.of(container, "startup")
        self.liveness = Probe.of(container, "liveness")
        self.readiness = Probe.of(container, "readiness")
        self._on_change = on_change
        self._on_failed = on_failed
        self._on_unhealthy = on_unhealthy
        self._started = self.startup is None or reported_ready
        self._ready = self.readiness is None or reported_ready
        self._startup_done = asyncio.Event()
        if self._started:
            self._startup_done.set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def started(self) -> bool:
        """The startup probe has succeeded (or there is none)."""
        return self._started

    @property
    def ready(self) -> bool:
        """Started, and the readiness probe (if any) says ready."""
        return self._started and self._ready

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for probe in (self.startup, self.liveness, self.readiness):
            if probe is not None:
                self._tasks.append(loop.create_task(self._work(probe)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # gather, not `suppress(CancelledError)`: that would swallow a cancel of the caller too.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _work(self, probe: Probe) -> None:
        if probe.kind != "startup":
            await self._startup_done.wait()
        loop = asyncio.get_running_loop()
        delay = self.started_at + probe.initial_delay - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        successes = failures = 0
        next_at = loop.time()
        while True:
            outcome = await run_probe(probe, self.target, self.container)
            if outcome.success:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                self._on_unhealthy(probe, outcome.message)
            if probe.kind == "readiness":
                if outcome.success and successes >= probe.success_threshold and not self._ready:
                    self._ready = True
                    self._on_change()
                elif not outcome.success and failures >= probe.failure_threshold and self._ready:
                    self._ready = False
                    self._on_change()
            elif outcome.success and probe.kind == "startup":
                self._started = True
                self._startup_done.set()
                self._on_change()
                return
            elif failures >= probe.failure_threshold:
                self._on_failed(probe, outcome.message)
                return
            next_at += probe.period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
