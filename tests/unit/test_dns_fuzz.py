"""Hostile input never crashes or stalls the DNS server.

Three sources of packets:
- random bytes, which must get FORMERR (or NOTIMP, for a header that asks
  for another opcode) or nothing — unless they happen to be a valid query;
- valid queries mutated (bytes flipped, cut, spliced, counts rewritten),
  which must get a well-formed answer to the same ID, or nothing;
- the corpus in fixtures/dns_corpus/: packets that once mattered, each
  named for what it must get (`formerr-…`, `drop-…`, `notimp-…`,
  `badvers-…`, `refused-…`, `answer-…`), replayed in-process and over UDP.

Every check also asserts the server's guard caught nothing: a packet that
reaches the catch-all handler is a bug even if the server survives it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.dns import records, server

CORPUS = Path(__file__).parent / "fixtures" / "dns_corpus"
NAMES = [
    "web.default.svc.cluster.local",
    "db.default.svc.cluster.local",
    "_http._tcp.web.default.svc.cluster.local",
    "db-0.db.default.svc.cluster.local",
    "ext.default.svc.cluster.local",
    "10-244-1-5.default.pod.cluster.local",
    "dns-version.cluster.local",
    "10.0.96.10.in-addr.arpa",
    "example.com",
    "cluster.local",
]
TYPES = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "ANY", "MX", "TYPE65280"]
LOCAL_RCODES = {
    dns.rcode.NOERROR,
    dns.rcode.NXDOMAIN,
    dns.rcode.REFUSED,
    dns.rcode.FORMERR,
    dns.rcode.NOTIMP,
    dns.rcode.BADVERS,
}


def make_zone() -> records.Zone:
    zone = records.Zone()
    zone.set_service(
        {
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]},
        }
    )
    zone.set_service(
        {
            "metadata": {"namespace": "default", "name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        }
    )
    zone.set_slice(
        {
            "metadata": {
                "namespace": "default",
                "name": "db-1",
                "labels": {records.SERVICE_NAME_LABEL: "db"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.244.1.{i}"], "hostname": f"db-{i}"} for i in range(1, 40)
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        }
    )
    zone.set_service(
        {
            "metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "www.example.com"},
        }
    )
    zone.mark_synced()
    return zone


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def srv() -> server.Server:
    return server.Server(make_zone(), server.Options(rate=0))


def answer(loop: asyncio.AbstractEventLoop, srv: server.Server, wire: bytes) -> bytes | None:
    errors = srv.stats.errors
    out = loop.run_until_complete(srv.handle(wire, "127.0.0.1"))
    assert srv.stats.errors == errors, "a packet reached the server's catch-all guard"
    return out


def is_valid_query(wire: bytes) -> bool:
    try:
        msg = dns.message.from_wire(wire)
    except Exception:
        return False
    return not msg.flags & dns.flags.QR and msg.opcode() == dns.opcode.QUERY


def check_reply(query: bytes, reply: bytes | None) -> dns.message.Message | None:
    """A reply, if any, parses, is a response, carries the query's ID and fits UDP."""
    if reply is None:
        return None
    assert len(query) >= 12
    assert len(reply) <= 1232
    msg = dns.message.from_wire(reply)
    assert msg.flags & dns.flags.QR
    assert msg.id == int.from_bytes(query[:2], "big")
    assert msg.rcode() in LOCAL_RCODES
    return msg


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
def test_random_bytes_get_formerr_or_nothing(
    loop: asyncio.AbstractEventLoop, srv: server.Server, data: bytes
) -> None:
    msg = check_reply(data, reply := answer(loop, srv, data))
    if msg is None or is_valid_query(data):
        return
    opcode = (data[2] >> 3) & 0xF
    expected = dns.rcode.FORMERR if opcode == dns.opcode.QUERY else dns.rcode.NOTIMP
    assert msg.rcode() == expected, reply


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    q = dns.message.make_query(
        name,
        draw(st.sampled_from(TYPES)),
        use_edns=draw(st.sampled_from([-1, 0])),
        payload=draw(st.integers(0, 65535)),
        want_dnssec=draw(st.booleans()),
    )
    q.id = draw(st.integers(0, 65535))
    return q.to_wire()


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(valid_queries()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "splice", "count", "pointer"]))
        at = draw(st.integers(0, max(len(wire) - 1, 0)))
        if kind == "flip" and wire:
            wire[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del wire[at:]
        elif kind == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "splice":
            end = draw(st.integers(at, len(wire)))
            wire[at:at] = wire[at:end]
        elif kind == "count" and len(wire) >= 12:
            section = draw(st.integers(0, 3))
            struct.pack_into(">H", wire, 4 + 2 * section, draw(st.integers(0, 65535)))
        elif kind == "pointer" and len(wire) >= 14:
            struct.pack_into(">H", wire, at if at <= len(wire) - 2 else 12, 0xC000 | at)
    return bytes(wire)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_queries())
def test_mutated_queries_get_a_well_formed_answer_or_nothing(
    loop: asyncio.AbstractEventLoop, srv: server.Server, data: bytes
) -> None:
    check_reply(data, answer(loop, srv, data))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(valid_queries())
def test_valid_queries_are_answered(
    loop: asyncio.AbstractEventLoop, srv: server.Server, data: bytes
) -> None:
    msg = check_reply(data, answer(loop, srv, data))
    assert msg is not None
    assert msg.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


EXPECTED = {
    "formerr": {dns.rcode.FORMERR},
    "notimp": {dns.rcode.NOTIMP},
    "badvers": {dns.rcode.BADVERS},
    "refused": {dns.rcode.REFUSED},
    "answer": {dns.rcode.NOERROR, dns.rcode.NXDOMAIN},
}


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_corpus_packet_gets_what_its_name_says(
    loop: asyncio.AbstractEventLoop, srv: server.Server, path: Path
) -> None:
    data = path.read_bytes()
    kind = path.stem.split("-", 1)[0]
    reply = answer(loop, srv, data)
    if kind == "drop":
        assert reply is None
        return
    msg = check_reply(data, reply)
    assert msg is not None
    assert msg.rcode() in EXPECTED[kind]


def test_corpus_is_not_empty() -> None:
    assert len(corpus()) >= 20


def test_corpus_over_udp_leaves_the_server_answering(loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        srv = server.Server(make_zone(), server.Options(rate=0))
        port = (await srv.start([("127.0.0.1", 0)]))[0][1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for path in corpus():
                    sock.sendto(path.read_bytes(), ("127.0.0.1", port))
                sock.setblocking(False)
                probe = dns.message.make_query("web.default.svc.cluster.local", "A")
                sock.sendto(probe.to_wire(), ("127.0.0.1", port))
                deadline = asyncio.get_running_loop().time() + 2
                while True:
                    assert asyncio.get_running_loop().time() < deadline, "no answer to the probe"
                    try:
                        reply = dns.message.from_wire(sock.recv(65535))
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
                        continue
                    if reply.id == probe.id and reply.answer:
                        break
            assert srv.stats.errors == 0
        finally:
            await srv.close()

    loop.run_until_complete(run())
