"""agnhost's netexec mode: the HTTP, UDP and SCTP test server of Kubernetes' e2e tests.

Run through `python -m switchboard.agent.agnhost netexec [flags]`; this
module is the server itself, following agnhost's source
(kubernetes/kubernetes test/images/agnhost/netexec) endpoint by endpoint:

- HTTP on --http-port (8080, HTTPS with --tls-cert-file): / (the time),
  /clientip ("ip:port" of the peer), /dial (requests from here to
  host:port over http, udp or sctp, answered as JSON), /echo?msg=&code=,
  /exit?code=&timeout=&wait=, /header, /healthz (200 once the UDP or SCTP
  server is up, else 412), /readyz (503 after SIGTERM), /hostname and
  /hostName, /redirect, /shell?cmd= (`/bin/sh -c`, JSON {"output", "error"})
  and /shutdown. Every other path answers as / does, like Go's ServeMux.
  /upload is refused: it writes into the image's filesystem, which a pod
  here does not have. --http-override answers every request as that path.
- UDP on --udp-port (8081; -1 turns it off) and --udp-listen-addresses:
  "hostname", "echo <msg>" and "clientip", case-folded as agnhost does.
- SCTP on --sctp-port when given, the same three commands.
- SIGTERM: /readyz fails at once and the process exits 0 after
  --delay-shutdown seconds, so endpoint removal can be watched.

The server is one asyncio program on aiohttp's low-level server, so every
path reaches one dispatcher. Its side effects that reach outside the
program (the hostname, ending the process) are constructor arguments:
tests run it in-process on loopback with a fake exit.

The hostname is the pod's: the HOSTNAME variable a container runtime sets
to the pod name, else the kernel's (agnhost answers os.Hostname()).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, cast

import aiohttp
from aiohttp import web
from yarl import URL

_DIAL_TIMEOUT = 5.0
_START = time.monotonic()
log = logging.getLogger("agnhost")


def pod_hostname() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


def exit_process(code: int) -> NoReturn:
    """Exit at once, as Go's os.Exit does: no cleanup, buffered output flushed."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def join_host_port(address: tuple[Any, ...]) -> str:
    """ "ip:port" as Go prints a peer, "[ip]:port" for IPv6, IPv4-mapped unmapped."""
    host, port = str(address[0]), address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def go_json(value: object) -> str:
    """JSON as Go's json.Marshal writes it: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_INTEGER = re.compile(r"[-+]?[0-9]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as "1m30s" or "250ms"; "" and "0" are zero."""
    if text in ("", "0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * total


def _go_now() -> str:
    now = datetime.now().astimezone()
    fraction = f"{now.microsecond:06d}000".rstrip("0")
    stamp = now.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "")
    return f"{stamp} {now.strftime('%z %Z')} m=+{time.monotonic() - _START:.9f}"


class DatagramAnswerer(asyncio.DatagramProtocol):
    """A UDP endpoint that hands each datagram to `answer` and sends back what it returns."""

    def __init__(self, answer: Callable[[bytes, tuple[str, int]], bytes | None]) -> None:
        self._answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._answer(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def udp_socket(address: str, port: int) -> socket.socket:
    """A bound UDP socket; "" binds every address, IPv4 and IPv6 on one socket when it can."""
    if address == "":
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:
            address = "0.0.0.0"  # no IPv6 in this kernel
        else:
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("::", port))
                return sock
            except OSError:
                sock.close()
                address = "0.0.0.0"  # no IPv6 in this namespace
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


def text_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(text=body, status=status, headers=headers, content_type="text/plain")


@dataclass(frozen=True, slots=True)
class NetexecOptions:
    http_port: int = 8080
    udp_port: int = 8081
    sctp_port: int = -1
    delay_shutdown: int = 0
    http_override: str = ""
    udp_listen_addresses: tuple[str, ...] = ("",)
    tls_cert_file: str = ""
    tls_private_key_file: str = ""


_Peer = tuple[int, tuple[Any, ...]]  # address family, socket address
_Handler = Callable[[web.BaseRequest, Mapping[str, str]], Awaitable[web.StreamResponse]]


@dataclass
class Netexec:
    """agnhost's netexec: HTTP, UDP and SCTP servers answering test requests."""

    options: NetexecOptions
    hostname: Callable[[], str] = pod_hostname
    exit: Callable[[int], object] = exit_process
    listen_host: str | None = None  # HTTP bind address; None is every address, as agnhost
    http_port: int = field(init=False, default=0)
    udp_ports: list[int] = field(init=False, default_factory=list)
    ready: bool = field(init=False, default=False)
    terminating: bool = field(init=False, default=False)
    _runner: web.ServerRunner | None = field(init=False, default=None)
    _closers: list[Callable[[], object]] = field(init=False, default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self.options.udp_listen_addresses if self.options.udp_port != -1 else ():
            sock = udp_socket(address, self.options.udp_port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: DatagramAnswerer(self._udp_answer), sock=sock
            )
            self._closers.append(transport.close)
            self.udp_ports.append(sock.getsockname()[1])
            log.info("Started UDP server on port %s %d", address, self.options.udp_port)
            self.ready = True
        if self.options.sctp_port != -1:
            await self._start_sctp()
        ssl_context = None
        if self.options.tls_cert_file:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(
                self.options.tls_cert_file, self.options.tls_private_key_file or None
            )
        self._runner = web.ServerRunner(web.Server(self._dispatch), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.listen_host, self.options.http_port, ssl_context=ssl_context
        )
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        log.info("Started HTTP server on port %d", self.options.http_port)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for closer in self._closers:
            closer()
        if self._runner is not None:
            await self._runner.cleanup()

    def terminate(self) -> None:
        """SIGTERM: fail readiness, then exit 0 after --delay-shutdown seconds."""
        self.terminating = True
        self._spawn(self._exit_after(self.options.delay_shutdown, 0))

    # -- UDP and SCTP --------------------------------------------------------

    def _udp_answer(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        received = data.decode("utf-8", "surrogateescape").strip().lower()
        if received == "hostname":
            reply = self.hostname()
        elif received.startswith("echo "):
            reply = received.split(" ", 1)[1]
        elif received == "clientip":
            reply = join_host_port(peer)
        else:
            if received:
                log.info("Unknown UDP command received from %s: %s", peer, received)
            return None
        return reply.encode("utf-8", "surrogateescape")

    async def _start_sctp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", self.options.sctp_port))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(1024)
            reply = self._udp_answer(data, writer.get_extra_info("peername"))
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, sock=sock)
        self._closers.append(server.close)
        log.info("Started SCTP server")
        self.ready = True

    # -- HTTP ----------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path, query = request.path, request.query
        if self.options.http_override:
            override = URL(self.options.http_override)
            path, query = override.path, override.query
        form = {key: query.getone(key) for key in query}
        if request.method in ("POST", "PUT", "PATCH") and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            body = await request.post()
            form.update({key: str(body.getone(key)) for key in body})
        handler = self._routes().get(path, self._root)
        return await handler(request, form)

    def _routes(self) -> dict[str, _Handler]:
        return {
            "/clientip": self._clientip,
            "/dial": self._dial,
            "/echo": self._echo,
            "/exit": self._exit,
            "/header": self._header,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/hostname": self._hostname,
            "/hostName": self._hostname,
            "/redirect": self._redirect,
            "/shell": self._shell,
            "/shutdown": self._shutdown,
            "/upload": self._upload,
        }

    async def _root(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        return text_response(f"NOW: {_go_now()}")

    async def _clientip(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        assert request.transport is not None
        return text_response(join_host_port(request.transport.get_extra_info("peername")))

    async def _hostname(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        return text_response(self.hostname())

    async def _echo(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        msg, code = form.get("msg", ""), form.get("code", "")
        if not code:
            return text_response(msg)
        if not _INTEGER.fullmatch(code):
            return text_response(
                f"argument 'code' must be an integer or empty, got {json.dumps(code)}\n"
            )
        return text_response(msg, status=int(code))

    async def _header(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        key = form.get("key", "")
        if key:
            return text_response(request.headers.get(key, ""))
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            canonical = "-".join(part.capitalize() for part in name.split("-"))
            if canonical != "Host":  # Go moves Host out of the header map
                headers.setdefault(canonical, []).append(value)
        return text_response(go_json(headers))

    async def _healthz(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        return text_response("", status=200 if self.ready else 412)

    async def _readyz(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        if self.terminating:
            return text_response("shutting down", status=503)
        return text_response("ok") if self.ready else text_response("", status=412)

    async def _redirect(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        location, code = form.get("location", ""), form.get("code", "")
        if code and not _INTEGER.fullmatch(code):
            return text_response(
                f"argument 'code' must be an integer or empty, got {json.dumps(code)}\n"
            )
        return text_response("", status=int(code) if code else 302, headers={"Location": location})

    async def _shell(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        command = form.get("shellCommand") or form.get("cmd", "")
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        stdout, _ = await process.communicate()
        output: dict[str, str] = {}
        if stdout:
            output["output"] = stdout.decode("utf-8", "replace")
        if process.returncode:
            code = process.returncode
            output["error"] = (
                f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            )
        return text_response(go_json(output))

    async def _exit(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        parsed: list[float] = []
        for name in ("timeout", "wait"):
            value = form.get(name, "")
            try:
                parsed.append(parse_go_duration(value))
            except ValueError:
                return text_response(
                    f"argument '{name}' must be a valid golang duration or empty, "
                    f"got {json.dumps(value)}\n"
                )
        timeout, wait = parsed
        code_text = form.get("code", "")
        if code_text and not _INTEGER.fullmatch(code_text):
            quoted = json.dumps(code_text)
            return text_response(
                f"argument 'code' must be an integer [0-127] or empty, got {quoted}\n"
            )
        code = int(code_text or "0")
        log.info("Will begin shutdown in %ss, allowing %ss, then exit %d", wait, timeout, code)
        await asyncio.sleep(wait)
        if timeout == 0:
            self.exit(code)
        else:
            self._spawn(self._graceful_exit(timeout, code))
        return text_response("")

    async def _shutdown(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        self.exit(0)
        return text_response("")

    async def _upload(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        return text_response(go_json({"error": "Unable to upload file: not supported here."}), 501)

    async def _dial(self, request: web.BaseRequest, form: Mapping[str, str]) -> web.Response:
        host, port = form.get("host", ""), form.get("port", "")
        payload, protocol = form.get("request", ""), form.get("protocol", "").lower()
        try:
            tries = int(form.get("tries") or "1")
        except ValueError as exc:
            return text_response(f"tries parameter is invalid. {exc}\n", 400)
        if not payload:
            return text_response("request parameter not specified.\n", 400)
        dialers = {"": self._dial_http, "http": self._dial_http, "udp": _dial_udp}
        if protocol not in dialers and protocol != "sctp":
            return text_response(f"unsupported protocol. {protocol}\n", 400)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, int(port))
        except (OSError, ValueError) as exc:
            return text_response(f"host and/or port param are invalid. {exc}\n", 400)
        peer: _Peer = (int(infos[0][0]), infos[0][4])
        target = join_host_port(peer[1])
        dialer = dialers.get(protocol, _dial_sctp)
        responses: list[str] = []
        errors: list[str] = []
        response = ""
        for _ in range(tries):
            try:
                response = await dialer(payload, target, peer)
                responses.append(response)
            except Exception as exc:  # every failure is reported back to the caller
                response = ""
                errors.append(str(exc) or type(exc).__name__)
        output: dict[str, list[str]] = {}
        if response:  # agnhost reports responses only when the last try answered
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return text_response(go_json(output))

    async def _dial_http(self, payload: str, target: str, _: _Peer) -> str:
        # A fresh connection per try, as agnhost's fresh transport, so a
        # Service can pick a different endpoint each time.
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=_DIAL_TIMEOUT)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(f"http://{target}/{payload}") as reply,
        ):
            return await reply.text(errors="replace")

    # -- exiting -------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _exit_after(self, seconds: float, code: int) -> None:
        if seconds > 0:
            log.info("Sleeping %s seconds before terminating...", seconds)
            await asyncio.sleep(seconds)
        self.exit(code)

    async def _graceful_exit(self, grace: float, code: int) -> None:
        await asyncio.sleep(0)  # let the /exit response go out first
        # Stop listening and let open requests finish, for `grace` seconds at most.
        with contextlib.suppress(TimeoutError):
            if self._runner is not None:
                await asyncio.wait_for(self._runner.cleanup(), grace)
        self.exit(code)


async def _dial_udp(payload: str, target: str, peer: _Peer) -> str:
    return await _dial_socket("udp", socket.SOCK_DGRAM, 0, 2048, payload, peer)


async def _dial_sctp(payload: str, target: str, peer: _Peer) -> str:
    return await _dial_socket("sctp", socket.SOCK_STREAM, socket.IPPROTO_SCTP, 1024, payload, peer)


async def _dial_socket(
    name: str, kind: int, proto: int, size: int, payload: str, peer: _Peer
) -> str:
    """Send `payload` on a fresh socket and return the one reply, as agnhost's dialers do."""
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(peer[0], kind, proto)
    except OSError as exc:
        raise OSError(f"{name} dial failed. err:{exc}") from exc
    with sock:
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, peer[1]), _DIAL_TIMEOUT)
            await loop.sock_sendall(sock, payload.encode())
        except (OSError, TimeoutError) as exc:
            raise OSError(f"{name} connection write failed. err:{exc or 'timeout'}") from exc
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, size), _DIAL_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise OSError(
                f"reading from {name} connection failed. err:'{exc or 'timeout'}'"
            ) from exc
    if not data:
        raise OSError(f"reading from {name} connection failed. err:'empty reply'")
    return data.decode("utf-8", "replace")
