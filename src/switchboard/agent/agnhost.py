"""The agnhost test image, built in: Kubernetes' own test pods run unchanged.

Kubernetes' e2e tests, and most Service examples, run
`registry.k8s.io/e2e-test-images/agnhost:<tag>`, one Go binary whose first
argument picks a mode. Switchboard runs pods as processes, not images, so
`builtin_command` turns a container of that image into a command line that
runs this module, in the pod's network namespace like any pod process:

    python -m switchboard.agent.agnhost <mode> [--flag=value ...]

Modes, with agnhost's own flags and behaviour (kubernetes/kubernetes
test/images/agnhost):

- `netexec`: HTTP/UDP/SCTP test server, see `switchboard.agent.netexec`.
- `serve-hostname`: the hostname over HTTP, or raw TCP and UDP
  (--tcp --udp --http=false), on --port (9376); after SIGTERM it keeps
  serving for 60 s, waiting to be deleted.
- `pause`: sleeps until SIGINT (exits 1) or SIGTERM (exits 2), after
  --delay-shutdown seconds, as agnhost's pause does.
- `pause-image`: what `registry.k8s.io/pause` maps to; its /pause exits 0
  on either signal.

Other agnhost modes fail the container with agnhost's own "unknown
command" error, so an unsupported test shows up at once.

Which argv a container runs follows Kubernetes: `command` replaces the
image's ENTRYPOINT (/agnhost), `args` its CMD (pause). A command that is
not the image's binary (`sh -c ...` in an agnhost container) is returned
unchanged and runs as any pod process does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

# aiohttp and switchboard.agent.netexec are imported inside the modes that
# serve, so that a pause container starts in a fraction of the time.

MODULE = "switchboard.agent.agnhost"
AGNHOST_REPOSITORIES = frozenset(
    {
        "registry.k8s.io/e2e-test-images/agnhost",
        "k8s.gcr.io/e2e-test-images/agnhost",
        "gcr.io/kubernetes-e2e-test-images/agnhost",
    }
)
PAUSE_REPOSITORIES = frozenset({"registry.k8s.io/pause", "k8s.gcr.io/pause"})
_AGNHOST_ENTRYPOINT = ["/agnhost"]
_AGNHOST_CMD = ["pause"]  # the image's CMD
_AGNHOST_BINARIES = frozenset({"agnhost", "agnhost-2"})  # the image links agnhost-2 to it
_PAUSE_ENTRYPOINT = ["/pause"]
log = logging.getLogger("agnhost")


def image_repository(image: str) -> str:
    """The image reference without its tag or digest."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def builtin_command(image: str, args: list[str], command: list[str]) -> list[str] | None:
    """The argv that runs a container of a built-in image here; None for other images.

    `command` and `args` combine with the image's ENTRYPOINT and CMD as
    Kubernetes combines them. A command that is not the image's binary
    (`sh -c ...` in an agnhost container) is returned as it is.
    """
    repository = image_repository(image)
    if repository in AGNHOST_REPOSITORIES:
        argv = _container_argv(_AGNHOST_ENTRYPOINT, _AGNHOST_CMD, command, args)
        if os.path.basename(argv[0]) in _AGNHOST_BINARIES:
            return [sys.executable, "-m", MODULE, *argv[1:]]
        return argv
    if repository in PAUSE_REPOSITORIES:
        argv = _container_argv(_PAUSE_ENTRYPOINT, [], command, args)
        if os.path.basename(argv[0]) == "pause":
            return [sys.executable, "-m", MODULE, "pause-image"]
        return argv
    return None


def _container_argv(
    entrypoint: list[str], cmd: list[str], command: list[str], args: list[str]
) -> list[str]:
    if command:
        return [*command, *args]
    return [*entrypoint, *(args or cmd)]


# -- serve-hostname ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServeHostnameOptions:
    tcp: bool = False
    udp: bool = False
    http: bool = True
    close: bool = False
    port: int = 9376


async def serve_hostname(options: ServeHostnameOptions) -> None:
    """agnhost's serve-hostname: the hostname to every HTTP request, TCP connection or datagram."""
    if options.http and (options.tcp or options.udp):
        raise _Fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
    from aiohttp import web

    from switchboard.agent import netexec

    hostname = netexec.pod_hostname()
    loop = asyncio.get_running_loop()
    if options.tcp:

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            log.info(
                "TCP request from %s", netexec.join_host_port(writer.get_extra_info("peername"))
            )
            writer.write(hostname.encode())
            await writer.drain()
            writer.close()

        await asyncio.start_server(answer, port=options.port)
    if options.udp:
        await loop.create_datagram_endpoint(
            lambda: netexec.DatagramAnswerer(lambda data, peer: hostname.encode()),
            sock=netexec.udp_socket("", options.port),
        )
    if options.http:
        headers = {"Connection": "close"} if options.close else None

        async def respond(request: web.BaseRequest) -> web.StreamResponse:
            return netexec.text_response(hostname, headers=headers)

        runner = web.ServerRunner(web.Server(respond), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, None, options.port).start()
    log.info("Serving on port %d.", options.port)
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    await terminated.wait()
    log.info("Shutting down after receiving signal: terminated.")
    log.info("Awaiting pod deletion.")
    await asyncio.sleep(60)


# -- pause -------------------------------------------------------------------------


def pause(delay_shutdown: int, exit_codes: Mapping[int, int]) -> int:
    """Sleep until SIGINT or SIGTERM; the exit code `exit_codes` gives that signal."""
    # Blocked before saying so, so a signal sent on seeing "Paused" is never lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, set(exit_codes))
    print("Paused", flush=True)
    received = signal.sigwait(set(exit_codes))
    if delay_shutdown > 0:
        print(f"Sleeping {delay_shutdown} seconds before exit ...", flush=True)
        time.sleep(delay_shutdown)
    code = exit_codes[received]
    print(f"exiting {code}", flush=True)
    return code


# -- command line --------------------------------------------------------------------


class _Fatal(Exception):
    """What agnhost would log.Fatal: printed, then exit 1."""


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Fatal(message)


def _go_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _parser(mode: str) -> _FlagParser:
    parser = _FlagParser(prog=f"agnhost {mode}", allow_abbrev=False)
    if mode == "netexec":
        parser.add_argument("--http-port", type=int, default=8080)
        parser.add_argument("--udp-port", type=int, default=8081)
        parser.add_argument("--sctp-port", type=int, default=-1)
        parser.add_argument("--delay-shutdown", type=int, default=0)
        parser.add_argument("--http-override", default="")
        parser.add_argument("--udp-listen-addresses", default="")
        parser.add_argument("--tls-cert-file", default="")
        parser.add_argument("--tls-private-key-file", default="")
    elif mode == "serve-hostname":
        for flag, default in (
            ("--tcp", False),
            ("--udp", False),
            ("--http", True),
            ("--close", False),
        ):
            parser.add_argument(flag, type=_go_bool, nargs="?", const=True, default=default)
        parser.add_argument("--port", type=int, default=9376)
    elif mode == "pause":
        parser.add_argument("--delay-shutdown", type=int, default=0)
    return parser


async def _run_netexec(flags: argparse.Namespace) -> None:
    from switchboard.agent import netexec

    addresses = {a.strip() for a in flags.udp_listen_addresses.split(",") if a.strip()}
    options = netexec.NetexecOptions(
        **{**vars(flags), "udp_listen_addresses": tuple(sorted(addresses)) or ("",)}
    )
    server = netexec.Netexec(options)
    await server.start()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.terminate)
    await asyncio.Event().wait()  # until /exit, /shutdown or SIGTERM ends the process


_MODES = ("netexec", "pause", "serve-hostname", "pause-image")
_USAGE = (
    "Usage: agnhost <mode> [flags]\n\nModes built into Switchboard: "
    + ", ".join(_MODES)
    + ".\nFlags are agnhost's own, e.g. netexec --http-port=8080 --udp-port=8081.\n"
)


def main(argv: list[str] | None = None) -> int:
    """Run one agnhost mode; the process's exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%Y/%m/%d %H:%M:%S"
    )
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0
    mode, flags = arguments[0], arguments[1:]
    if mode not in _MODES:
        sys.stderr.write(f'Error: unknown command "{mode}" for "agnhost"\n')
        return 1
    # Go leaves SIGINT at its default, which ends the process there and then.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        parsed = _parser(mode).parse_args(flags)
        if mode == "pause":
            return pause(parsed.delay_shutdown, {signal.SIGINT: 1, signal.SIGTERM: 2})
        if mode == "pause-image":
            if flags:
                raise _Fatal(f"unexpected arguments {flags}")
            return pause(0, {signal.SIGINT: 0, signal.SIGTERM: 0})
        if mode == "serve-hostname":
            asyncio.run(serve_hostname(ServeHostnameOptions(**vars(parsed))))
            return 0
        asyncio.run(_run_netexec(parsed))
        return 0
    except (_Fatal, OSError, ssl.SSLError) as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
