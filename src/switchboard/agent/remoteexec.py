"""One command run with its streams on a remote command WebSocket (v4/v5 channels).

`run` starts the command and pumps its stdout and stderr into frames as they
come, writes stdin frames to it (v5's close signal closes its stdin), and
returns its Status once it has exited and its output has been sent; or None
if the client went away first, in which case the command's process group is
killed. Output still held by a child of the command after it exited is
waited for two seconds at most.

The command runs in a session of its own. With a TTY it runs on a
pseudo-terminal that is its controlling terminal (through util-linux's
`setsid --ctty`, since a preexec_fn is not safe in a process with threads),
so ^C reaches it as SIGINT; its output, stdout and stderr alike, goes out on
the stdout channel, and resize frames set the terminal's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import termios
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from switchboard.api import remotecommand as rc

_CHUNK = 32 * 1024  # bytes read and framed at a time, as client-go buffers them
_DRAIN_GRACE = 2.0  # seconds to wait for output after the command exited (a child may hold it)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Streams:
    """Which streams the client asked for, and whether it speaks v5 (the close signal)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    v5: bool

    def first_output(self) -> int:
        """The lowest channel the server writes: an empty frame on it says the streams are up."""
        return rc.STDOUT if self.stdout else rc.STDERR if self.stderr else rc.ERROR


async def run(
    ws: web.WebSocketResponse, argv: list[str], env: dict[str, str], streams: Streams
) -> dict[str, Any] | None:
    """Run argv with its streams on ws; its Status, or None if the client went away."""
    terminal = _Terminal() if streams.tty else None
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    try:
        if terminal is not None:
            # setsid makes the command a session leader and the terminal its controlling one,
            # so ^C reaches it as SIGINT; a preexec_fn could do the same, but not safely in
            # a process with threads.
            proc = await asyncio.create_subprocess_exec(
                *("setsid", "--ctty", "--wait", *argv),
                env=env,
                stdin=terminal.slave,
                stdout=terminal.slave,
                stderr=terminal.slave,
            )
            terminal.started()
        else:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=pipe if streams.stdin else devnull,
                stdout=pipe if streams.stdout else devnull,
                stderr=pipe if streams.stderr else devnull,
                start_new_session=True,  # one process group, killed whole if the client leaves
            )
    except OSError as exc:
        if terminal is not None:
            terminal.release()
        return rc.failure(f"Internal error occurred: error executing command in container: {exc}")
    stdin: _Input
    if terminal is not None:
        pumps = [asyncio.create_task(terminal.pump(ws))]
        stdin = terminal
    else:
        pumps = [
            asyncio.create_task(_pump(stream, ws, channel))
            for stream, channel in ((proc.stdout, rc.STDOUT), (proc.stderr, rc.STDERR))
            if stream is not None
        ]
        stdin = _PipeInput(proc.stdin)
    reader = asyncio.create_task(_read_input(ws, stdin, streams.v5))
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
        return rc.success() if code == 0 else rc.exit_code(code)
    finally:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not yet a group of its own (setsid had not run)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for task in (*pumps, reader, exited):
            task.cancel()
        await asyncio.gather(*pumps, reader, exited, return_exceptions=True)
        if terminal is not None:
            terminal.release()


async def _pump(stream: asyncio.StreamReader, ws: web.WebSocketResponse, channel: int) -> None:
    with contextlib.suppress(ConnectionResetError):
        while chunk := await stream.read(_CHUNK):
            await ws.send_bytes(rc.frame(channel, chunk))


class _Input(Protocol):
    """Where the client's stdin and terminal size frames go."""

    async def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def resize(self, data: bytes) -> None: ...


class _PipeInput:
    def __init__(self, pipe: asyncio.StreamWriter | None) -> None:
        self.pipe = pipe

    async def write(self, data: bytes) -> None:
        if self.pipe is None or self.pipe.is_closing():
            return
        try:
            self.pipe.write(data)
            await self.pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.pipe.close()  # the command stopped reading; later input is dropped

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()

    def resize(self, data: bytes) -> None:
        pass  # a pipe has no size


class _Terminal:
    """The pseudo-terminal of a command run with tty=true; the agent holds the master side.

    Output (stdout and stderr alike, as on any terminal) goes out on the stdout channel.
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)
        self._slave_open = True

    def started(self) -> None:
        # Only the command holds the slave side now, so reads end (EIO) when it is gone.
        os.close(self.slave)
        self._slave_open = False

    def release(self) -> None:
        if self._slave_open:
            os.close(self.slave)
            self._slave_open = False
        with contextlib.suppress(OSError):
            os.close(self.master)

    async def pump(self, ws: web.WebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    chunk = os.read(self.master, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # EIO: nothing holds the terminal any more
                if not chunk:
                    return
                await ws.send_bytes(rc.frame(rc.STDOUT, chunk))
        except ConnectionResetError:
            pass
        finally:
            loop.remove_reader(self.master)

    async def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data) :]
            except BlockingIOError:
                await asyncio.sleep(0.01)  # the terminal's input buffer is full
            except OSError:
                return

    def close(self) -> None:
        # A terminal has no end of input; ^D is what ends it for a program reading lines.
        with contextlib.suppress(OSError):
            os.write(self.master, b"\x04")

    def resize(self, data: bytes) -> None:
        try:
            size = json.loads(data)
            packed = struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, packed)
        except (ValueError, KeyError, TypeError, OSError, struct.error):
            log.debug("ignored a malformed terminal size: %r", data)


async def _read_input(ws: web.WebSocketResponse, stdin: _Input, v5: bool) -> None:
    """Feed stdin and resize frames to the command until the client closes the connection."""
    while True:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        if msg.type is not WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == rc.STDIN:
            await stdin.write(data)
        elif channel == rc.RESIZE:
            stdin.resize(data)
        elif channel == rc.CLOSE and v5 and data[:1] == bytes((rc.STDIN,)):
            stdin.close()
