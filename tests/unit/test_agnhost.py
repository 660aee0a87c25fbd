"""The built-in agnhost image: which containers run it, and netexec answering as agnhost does.

netexec runs in-process on loopback ports with a fake hostname and a fake
process exit, so /exit, /shutdown and SIGTERM are observed as the exit code
they ask for. The `pause` modes and the command line run as real processes;
none of them opens a socket.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from switchboard.agent import agnhost, netexec

LOOPBACK = "127.0.0.1"
PYTHON_AGNHOST = [sys.executable, "-m", "switchboard.agent.agnhost"]


# -- which containers run the built-in image ------------------------------------


@pytest.mark.parametrize(
    ("image", "command", "args", "expected"),
    [
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            [],
            ["netexec", "--http-port=8080"],
            ["netexec", "--http-port=8080"],
        ),
        (
            "registry.k8s.io/e2e-test-images/agnhost:2.39",
            ["/agnhost", "serve-hostname"],
            ["--port", "9376"],
            ["serve-hostname", "--port", "9376"],
        ),
        ("registry.k8s.io/e2e-test-images/agnhost:2.53", [], [], ["pause"]),
        ("k8s.gcr.io/e2e-test-images/agnhost:2.32", ["agnhost", "pause"], [], ["pause"]),
        (
            "registry.k8s.io/e2e-test-images/agnhost@sha256:" + "ab" * 32,
            [],
            ["netexec"],
            ["netexec"],
        ),
        ("registry.k8s.io/e2e-test-images/agnhost", [], ["pause"], ["pause"]),
        ("registry.k8s.io/pause:3.10", [], [], ["pause-image"]),
        ("k8s.gcr.io/pause:3.2", ["/pause"], [], ["pause-image"]),
    ],
)
def test_a_built_in_image_runs_this_module_with_the_containers_arguments(
    image: str, command: list[str], args: list[str], expected: list[str]
) -> None:
    assert agnhost.builtin_command(image, args, command) == [*PYTHON_AGNHOST, *expected]


def test_a_shell_command_in_an_agnhost_container_runs_as_it_is() -> None:
    command = ["/bin/sh", "-c", "echo hi"]
    image = "registry.k8s.io/e2e-test-images/agnhost:2.53"
    assert agnhost.builtin_command(image, [], command) == command


@pytest.mark.parametrize(
    "image",
    ["nginx:1.27", "docker.io/library/busybox", "example.com/e2e-test-images/agnhost:2.53"],
)
def test_other_images_are_not_built_in(image: str) -> None:
    assert agnhost.builtin_command(image, ["netexec"], []) is None


# -- netexec over HTTP ------------------------------------------------------------


class Exits:
    """Stands in for ending the process: records each exit code asked for."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = asyncio.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


@pytest.fixture
def exits() -> Exits:
    return Exits()


async def start_netexec(exits: Exits, **options: object) -> netexec.Netexec:
    settings = {"http_port": 0, "udp_port": 0, "udp_listen_addresses": (LOOPBACK,), **options}
    server = netexec.Netexec(
        netexec.NetexecOptions(**settings),  # type: ignore[arg-type]
        hostname=lambda: "pod-b",
        exit=exits,
        listen_host=LOOPBACK,
    )
    await server.start()
    return server


@pytest.fixture
async def server(exits: Exits) -> AsyncIterator[netexec.Netexec]:
    running = await start_netexec(exits)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(http: aiohttp.ClientSession, server: netexec.Netexec, path: str) -> tuple[int, str]:
    async with http.get(f"http://{LOOPBACK}:{server.http_port}{path}") as reply:
        return reply.status, await reply.text()


@pytest.mark.parametrize("path", ["/hostname", "/hostName"])
async def test_hostname_answers_the_pods_hostname(
    server: netexec.Netexec, http: aiohttp.ClientSession, path: str
) -> None:
    assert await get(http, server, path) == (200, "pod-b")


async def test_clientip_answers_the_callers_address_and_port(server: netexec.Netexec) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, server.http_port)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = await reader.read()
    writer.close()
    assert reply.endswith(f"\r\n\r\n{LOOPBACK}:{local_port}".encode())


async def test_echo_returns_the_message_with_the_status_asked_for(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    assert await get(http, server, "/echo?msg=hello%20there") == (200, "hello there")
    assert await get(http, server, "/echo?msg=gone&code=404") == (404, "gone")


async def test_echo_takes_its_message_from_a_posted_form_as_well(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    url = f"http://{LOOPBACK}:{server.http_port}/echo"
    async with http.post(url, data={"msg": "posted"}) as reply:
        assert await reply.text() == "posted"


async def test_shell_runs_the_command_and_answers_its_output_as_json(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, server, "/shell?cmd=echo%20%27%3Cok%3E%27")
    assert status == 200
    assert body == '{"output":"\\u003cok\\u003e\\n"}'  # Go's json escapes < and >
    _, failed = await get(http, server, "/shell?cmd=echo%20oops%3B%20exit%203")
    assert json.loads(failed) == {"output": "oops\n", "error": "exit status 3"}


async def test_healthz_is_ok_once_the_udp_server_listens(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    assert (await get(http, server, "/healthz"))[0] == 200


async def test_healthz_fails_when_neither_udp_nor_sctp_serves(
    exits: Exits, http: aiohttp.ClientSession
) -> None:
    server = await start_netexec(exits, udp_port=-1)
    try:
        assert (await get(http, server, "/healthz"))[0] == 412
        assert server.udp_ports == []
    finally:
        await server.close()


async def test_sigterm_fails_readiness_and_exits_zero_after_the_shutdown_delay(
    server: netexec.Netexec, http: aiohttp.ClientSession, exits: Exits
) -> None:
    assert await get(http, server, "/readyz") == (200, "ok")
    server.terminate()
    assert await get(http, server, "/readyz") == (503, "shutting down")
    await asyncio.wait_for(exits.called.wait(), 5)
    assert exits.codes == [0]


async def test_exit_ends_the_process_at_once_with_the_code_asked_for(
    server: netexec.Netexec, http: aiohttp.ClientSession, exits: Exits
) -> None:
    await get(http, server, "/exit?code=3")
    assert exits.codes == [3]


async def test_exit_with_a_timeout_answers_first_then_shuts_down_gracefully(
    server: netexec.Netexec, http: aiohttp.ClientSession, exits: Exits
) -> None:
    assert await get(http, server, "/exit?code=4&timeout=2s") == (200, "")
    await asyncio.wait_for(exits.called.wait(), 5)
    assert exits.codes == [4]


async def test_exit_rejects_a_timeout_that_is_not_a_go_duration(
    server: netexec.Netexec, http: aiohttp.ClientSession, exits: Exits
) -> None:
    _, body = await get(http, server, "/exit?timeout=soon")
    assert body == "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n"
    assert exits.codes == []


async def test_shutdown_ends_the_process_with_zero(
    server: netexec.Netexec, http: aiohttp.ClientSession, exits: Exits
) -> None:
    await get(http, server, "/shutdown")
    assert exits.codes == [0]


async def test_any_other_path_answers_the_current_time(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, server, "/no/such/path")
    assert status == 200
    assert body.startswith("NOW: 2")


async def test_http_override_answers_every_request_as_the_override_path(
    exits: Exits, http: aiohttp.ClientSession
) -> None:
    server = await start_netexec(exits, http_override="/echo?msg=always")
    try:
        assert await get(http, server, "/hostname") == (200, "always")
    finally:
        await server.close()


async def test_header_answers_one_request_header_or_all_of_them(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    url = f"http://{LOOPBACK}:{server.http_port}/header"
    async with http.get(url, params={"key": "X-Probe"}, headers={"x-probe": "1"}) as reply:
        assert await reply.text() == "1"
    async with http.get(url, headers={"x-probe": "2"}) as reply:
        headers = json.loads(await reply.text())
    assert headers["X-Probe"] == ["2"]
    assert "Host" not in headers


async def test_dial_asks_a_target_over_http_and_udp_and_collects_the_answers(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    http_dial = f"/dial?host={LOOPBACK}&port={server.http_port}&request=hostname&tries=2"
    assert await get(http, server, http_dial) == (200, '{"responses":["pod-b","pod-b"]}')
    udp_dial = f"/dial?host={LOOPBACK}&port={server.udp_ports[0]}&request=echo%20hi&protocol=udp"
    assert await get(http, server, udp_dial) == (200, '{"responses":["hi"]}')


async def test_dial_reports_a_target_that_does_not_answer_as_an_error(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    closed = await asyncio.start_server(lambda r, w: w.close(), LOOPBACK, 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    status, body = await get(http, server, f"/dial?host={LOOPBACK}&port={port}&request=hostname")
    assert status == 200
    assert list(json.loads(body)) == ["errors"]


async def test_dial_without_a_request_is_a_bad_request(
    server: netexec.Netexec, http: aiohttp.ClientSession
) -> None:
    status, _ = await get(http, server, f"/dial?host={LOOPBACK}&port=1")
    assert status == 400


# -- netexec over UDP ---------------------------------------------------------------


class Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def udp_exchange(port: int, message: bytes, wait: float = 5) -> tuple[bytes | None, int]:
    """Send one datagram to the server; its reply (None if none came) and our own port."""
    transport, replies = await asyncio.get_running_loop().create_datagram_endpoint(
        Replies, remote_addr=(LOOPBACK, port)
    )
    try:
        transport.sendto(message)
        own_port = transport.get_extra_info("sockname")[1]
        try:
            return await asyncio.wait_for(replies.queue.get(), wait), own_port
        except TimeoutError:
            return None, own_port
    finally:
        transport.close()


async def test_udp_answers_hostname_echo_and_clientip_as_agnhost_does(
    server: netexec.Netexec,
) -> None:
    port = server.udp_ports[0]
    assert (await udp_exchange(port, b"hostname\n"))[0] == b"pod-b"
    assert (await udp_exchange(port, b"echo Hello"))[0] == b"hello"  # agnhost lowercases
    reply, own_port = await udp_exchange(port, b"CLIENTIP")
    assert reply == f"{LOOPBACK}:{own_port}".encode()


async def test_udp_does_not_answer_an_unknown_command(server: netexec.Netexec) -> None:
    assert (await udp_exchange(server.udp_ports[0], b"what", wait=0.3))[0] is None


# -- helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("", 0.0), ("0", 0.0), ("30s", 30.0), ("1m30s", 90.0), ("250ms", 0.25), ("1.5h", 5400.0)],
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert netexec.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "soon", "1x", "s"])
def test_malformed_go_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        netexec.parse_go_duration(text)


# -- the modes as processes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "sent", "code"),
    [
        ("pause", signal.SIGTERM, 2),
        ("pause", signal.SIGINT, 1),
        ("pause-image", signal.SIGTERM, 0),
        ("pause-image", signal.SIGINT, 0),
    ],
)
def test_pause_sleeps_until_a_signal_and_exits_with_the_code_of_its_image(
    mode: str, sent: signal.Signals, code: int
) -> None:
    with subprocess.Popen(
        [*PYTHON_AGNHOST, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "Paused\n"  # signals are handled from here on
            process.send_signal(sent)
            assert process.wait(timeout=10) == code
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_an_unknown_mode_fails_as_agnhost_does() -> None:
    done = subprocess.run(
        [*PYTHON_AGNHOST, "porter"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert 'unknown command "porter" for "agnhost"' in done.stderr


def test_an_unknown_flag_fails_before_anything_listens() -> None:
    done = subprocess.run(
        [*PYTHON_AGNHOST, "netexec", "--http-prot=80"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "--http-prot=80" in done.stderr
