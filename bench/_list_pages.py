"""A paged list read as lightly as a client can: one keep-alive HTTP/1.1 connection, raw bytes.

Used by api_store to time listing against a raw SQLite SELECT. The SELECT
hands back each row's bytes and parses nothing, so the list is read the same
way: each page's body is received whole into a buffer of its Content-Length,
and only the list's metadata (for the continue token) is parsed. A client
library would add its own machinery (aiohttp's response objects and stream
readers, in the benchmark's own process) to what is meant to be the server's
cost. Every page is parsed afterwards, to check the items and to say what
parsing them would cost a client.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import orjson

_HEAD_LIMIT = 1 << 16


class ListError(Exception):
    """The list could not be read: a failed request or a malformed answer."""


class PageReader:
    """GETs over one connection, each answer's body returned whole (Content-Length only)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host = f"{parts.hostname}:{parts.port}"
        self._sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rest = b""  # bytes read past the previous answer (none, as answers are awaited)

    def close(self) -> None:
        self._sock.close()

    def get(self, target: str) -> bytearray:
        request = f"GET {target} HTTP/1.1\r\nHost: {self._host}\r\nAccept: application/json\r\n\r\n"
        self._sock.sendall(request.encode())
        head = self._rest
        while b"\r\n\r\n" not in head:
            data = self._sock.recv(_HEAD_LIMIT)
            if not data or len(head) > _HEAD_LIMIT:
                raise ListError(f"GET {target}: the server closed or sent no headers")
            head += data
        head, _, start = head.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ListError(f"GET {target}: the answer has no Content-Length")
        body = bytearray(length)
        view = memoryview(body)
        got = min(len(start), length)
        view[:got] = start[:got]
        self._rest = start[got:]
        while got < length:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise ListError(f"GET {target}: the server closed mid-answer")
            got += n
        if status[1] != b"200":
            raise ListError(f"GET {target} answered {status[1].decode()}: {bytes(body[:300])!r}")
        return body


def list_metadata(body: bytes | bytearray) -> dict[str, object]:
    """A list's metadata without parsing its items.

    Kubernetes writes a list's metadata before its items (Go encodes ListMeta's
    struct field first), so the bytes up to `"items"` close into a small
    document; a body in another order is parsed whole.
    """
    end = body.find(b',"items":')
    if end >= 0:
        head = orjson.loads(body[:end] + b"}")
        if isinstance(head, dict) and isinstance(head.get("metadata"), dict):
            return head["metadata"]  # type: ignore[no-any-return]
    meta = orjson.loads(body)["metadata"]
    assert isinstance(meta, dict)
    return meta


@dataclass
class Listed:
    seconds: float
    pages: int
    items: int
    parse_seconds: float  # not in `seconds`: parsing every item of every page afterwards
    revision: str


def list_pages(url: str, path: str, limit: int) -> Listed:
    """Every page of the list at `path`, following `continue`; the items parsed afterwards."""
    reader = PageReader(url)
    try:
        bodies: list[bytearray] = []
        token = revision = ""
        started = time.perf_counter()
        while True:
            target = f"{path}?limit={limit}"
            if token:
                target += f"&continue={quote(token)}"
            body = reader.get(target)
            bodies.append(body)
            meta = list_metadata(body)
            revision = revision or str(meta["resourceVersion"])
            token = str(meta.get("continue") or "")
            if not token:
                break
        seconds = time.perf_counter() - started
    finally:
        reader.close()
    parsing = time.perf_counter()
    items = sum(len(orjson.loads(body)["items"]) for body in bodies)
    parse = time.perf_counter() - parsing
    return Listed(seconds, len(bodies), items, parse, revision)
