"""The floor under a watch fan-out: the same event written to the same streams by a bare loop.

For information beside api_store's watch figure. A plain asyncio server in
the benchmark's process answers each watch with a chunked 200 and nothing
else; to send an event it frames the line once and writes it to every
connection's transport in a loop, which is all a fan-out must do. The
streams are read by the same reader process as the apiserver's
(bench/_watch_streams.py), and the time is taken from just before the first
write until the last stream has the bytes. What the apiserver takes beyond
this is the API layer's own share of its fan-out.
"""

from __future__ import annotations

import asyncio
import time

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


class BareFanout:
    """A server that only holds watch streams open and writes lines to all of them."""

    def __init__(self) -> None:
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_ANSWER)
        self._writers.append(writer)

    def send(self, line: bytes) -> float:
        """Write `line` as one chunk to every stream; the monotonic time the writes began."""
        chunk = b"%x\r\n%b\r\n" % (len(line), line)
        began = time.monotonic()
        for writer in self._writers:
            writer.write(chunk)
        return began

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
