"""The agent's logs and exec API (kubeletapi, containerlogs, remoteexec), served in-process on
loopback over a fake pod runtime."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from switchboard.agent import containerlogs, kubeletapi

V5 = "v5.channel.k8s.io"
Client = TestClient[web.Request, web.Application]


class FakeRuntime:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.known = {("ns", "web", "app"), ("ns", "web", "crashed")}

    def log_path(
        self, namespace: str, pod: str, container: str, previous: bool = False
    ) -> Path | None:
        if (namespace, pod, container) not in self.known:
            raise LookupError(container)
        path = self.root / (f"{container}.previous.log" if previous else f"{container}.log")
        return path if path.exists() else None

    def exec_argv(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        if (namespace, pod, container) not in self.known:
            raise LookupError(container)
        if container == "crashed":
            raise RuntimeError(f'container "{container}" in pod "{pod}" is not running')
        return command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Client]:
    async with TestClient(TestServer(kubeletapi.build(FakeRuntime(tmp_path)))) as client:
        yield client


def write_log(tmp_path: Path, text: str, name: str = "app.log") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def exec_frames(
    agent: Client,
    query: str,
    stdin: bytes | None = None,
) -> dict[int, bytes]:
    """Run one exec session; the bytes received on each channel."""
    received: dict[int, bytes] = {}
    async with agent.ws_connect(f"/exec/ns/web/app?{query}", protocols=(V5,)) as ws:
        if stdin is not None:
            await ws.send_bytes(b"\x00" + stdin)
            await ws.send_bytes(b"\xff\x00")  # v5: stdin is done
        async for msg in ws:
            received[msg.data[0]] = received.get(msg.data[0], b"") + msg.data[1:]
    return received


# ---- the pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),  # a last line without its newline is a line
        (b"a\nb\n", 5, b"a\nb\n"),
        (b"a\nb\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail_offset_finds_where_the_last_lines_begin(
    text: bytes, lines: int, expected: bytes
) -> None:
    f = io.BytesIO(text)

    assert text[containerlogs.tail_offset(f, len(text), lines) :] == expected


def test_tail_offset_crosses_read_blocks() -> None:
    text = b"".join(b"x" * 1000 + b"\n" for _ in range(300))

    offset = containerlogs.tail_offset(io.BytesIO(text), len(text), 150)

    assert offset == 150 * 1001


def test_timestamps_go_before_each_line_across_chunks() -> None:
    stamper = containerlogs.Stamper()
    when = 0.5

    out = stamper.stamp(b"one\ntw", when) + stamper.stamp(b"o\nthree\n", when)

    stamp = b"1970-01-01T00:00:00.500000000Z "
    assert out == stamp + b"one\n" + stamp + b"two\n" + stamp + b"three\n"


def test_log_options_name_the_malformed_parameter() -> None:
    with pytest.raises(ValueError, match="tailLines"):
        containerlogs.log_options({"tailLines": "ten"}, 0.0)
    with pytest.raises(ValueError, match="limitBytes"):
        containerlogs.log_options({"limitBytes": "0"}, 0.0)


# ---- logs ---------------------------------------------------------------------------------


async def test_logs_of_an_unknown_container_are_not_found(agent: Client) -> None:
    resp = await agent.get("/containerLogs/ns/web/nope")

    assert resp.status == 404
    assert await resp.text() == 'container "nope" not found in pod "ns/web"\n'


async def test_logs_of_a_container_without_a_log_are_refused(agent: Client) -> None:
    resp = await agent.get("/containerLogs/ns/web/app")

    assert resp.status == 400
    assert await resp.text() == 'container "app" in pod "web" is not available\n'


async def test_logs_since_a_time_after_the_last_write_are_empty(
    agent: Client,
    tmp_path: Path,
) -> None:
    path = write_log(tmp_path, "old line\n")
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))

    recent = await agent.get("/containerLogs/ns/web/app?sinceSeconds=60")
    older = await agent.get("/containerLogs/ns/web/app?sinceSeconds=7200")

    assert await recent.text() == ""
    assert await older.text() == "old line\n"


async def test_logs_follow_ends_at_the_byte_limit(
    agent: Client,
    tmp_path: Path,
) -> None:
    write_log(tmp_path, "abc")

    resp = await agent.get("/containerLogs/ns/web/app?follow=true&limitBytes=5")
    with (tmp_path / "app.log").open("a") as f:
        f.write("defgh\n")

    assert await resp.text() == "abcde"


async def test_logs_timestamps_count_toward_the_byte_limit(
    agent: Client,
    tmp_path: Path,
) -> None:
    write_log(tmp_path, "line\n")

    resp = await agent.get("/containerLogs/ns/web/app?timestamps=true&limitBytes=10")

    assert len(await resp.read()) == 10


# ---- exec ---------------------------------------------------------------------------------


async def test_exec_without_a_known_subprotocol_is_refused_before_the_upgrade(
    agent: Client,
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await agent.ws_connect("/exec/ns/web/app?command=true&stdout=1", protocols=("chat",))

    assert refused.value.status == 400


async def test_exec_without_an_upgrade_is_refused(agent: Client) -> None:
    resp = await agent.get("/exec/ns/web/app?command=true&stdout=1")

    assert resp.status == 400
    assert "Upgrade request required" in await resp.text()


async def test_exec_runs_the_command_with_stdin_until_the_close_signal(
    agent: Client,
) -> None:
    received = await exec_frames(agent, "command=cat&stdin=1&stdout=1&stderr=1", b"piped\n")

    assert received[1] == b"piped\n"
    assert json.loads(received[3])["status"] == "Success"


async def test_exec_reads_the_kubelets_parameter_names(
    agent: Client,
) -> None:
    received = await exec_frames(agent, "command=sh&command=-c&command=echo err >%262&error=1")

    assert received[2] == b"err\n"


async def test_exec_of_a_command_killed_by_a_signal_reports_128_plus_the_signal(
    agent: Client,
) -> None:
    received = await exec_frames(agent, "command=sh&command=-c&command=kill -9 $$&stdout=1")

    status = json.loads(received[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "137"}]


async def test_exec_of_a_missing_program_is_an_internal_error(
    agent: Client,
) -> None:
    received = await exec_frames(agent, "command=no-such-program-here&stdout=1")

    status = json.loads(received[3])
    assert (status["reason"], status["code"]) == ("InternalError", 500)
    assert "no-such-program-here" in status["message"]


async def test_exec_with_a_tty_runs_the_command_on_its_controlling_terminal(
    agent: Client,
) -> None:
    script = "test -t 0 && test -t 1 && echo terminal; ps -o tty= -p $$ | grep -q pts && echo ctty"
    query = urlencode(
        {"command": ["sh", "-c", script], "stdin": 1, "stdout": 1, "tty": 1}, doseq=True
    )
    received = await exec_frames(agent, query, b"")

    assert received[1].replace(b"\r\n", b"\n") == b"terminal\nctty\n"
    assert json.loads(received[3])["status"] == "Success"


async def test_exec_with_a_tty_takes_the_size_the_client_sends(agent: Client) -> None:
    received: dict[int, bytes] = {}
    url = "/exec/ns/web/app?command=sh&command=-c&command=read go; stty size&stdin=1&stdout=1&tty=1"
    async with agent.ws_connect(url, protocols=(V5,)) as ws:
        await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
        await ws.send_bytes(b"\x00go\n")
        async for msg in ws:
            received[msg.data[0]] = received.get(msg.data[0], b"") + msg.data[1:]

    assert received[1].splitlines()[-1] == b"40 100"


async def test_exec_with_stdin_only_still_reports_the_exit_code(agent: Client) -> None:
    query = urlencode({"command": ["sh", "-c", "read line; exit 7"], "stdin": 1}, doseq=True)

    received = await exec_frames(agent, query, b"one line\n")

    assert json.loads(received[3])["details"]["causes"][0]["message"] == "7"


async def test_exec_refused_by_the_runtime_reports_its_reason(agent: Client) -> None:
    async with agent.ws_connect(
        "/exec/ns/web/crashed?command=true&stdout=1", protocols=(V5,)
    ) as ws:
        frames = [msg.data async for msg in ws]

    status = json.loads(frames[-1][1:])
    assert frames[-1][0] == 3
    assert status["message"] == 'container "crashed" in pod "web" is not running'
