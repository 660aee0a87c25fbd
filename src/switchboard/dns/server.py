"""The DNS wire: UDP and TCP listeners on asyncio, dnspython for the format.

One `Server` answers from a `records.Zone` on every address it is given.
What happens to a packet, in order:

    UDP datagram ─► per-client token bucket ─► over: drop (every `slip`-th: TC=1, no data)
                 ─► wire cache hit (same bytes after the ID, same zone generation) ─► send
                 ─► parse ─► malformed: FORMERR (header only); a response: dropped
                 ─► client outside the allowed CIDRs: REFUSED
                 ─► zone.lookup ─► render, truncating to the client's UDP size (TC=1)
                 ─► not the zone's name: forward to an upstream, or REFUSED without one
    TCP stream  ─► same, without the bucket and the cache; many queries per connection

Design points:

- Never an open resolver. Only clients inside `allowed_cidrs` (the node's
  pod CIDR and addresses) get answers or forwarding; everyone else gets
  REFUSED, and nothing is forwarded without upstreams.
- Not an amplifier. UDP answers are bounded per client by a token bucket
  (`rate`/s, `burst`); over the limit answers are dropped, and every
  `slip`-th one is replaced by an empty truncated answer, so a real client
  retries over TCP (where a spoofed source cannot follow) — BIND's response
  rate limiting. UDP answers never exceed 512 octets without EDNS0, or
  min(the client's EDNS0 size, `udp_payload`) with it (1232 by default,
  the DNS flag day 2020 size that avoids IP fragmentation).
- Never crashes, never stalls. Every datagram and every TCP connection is
  handled under a guard that logs (rate-limited) and carries on. TCP
  connections are capped in number and idle time, upstream queries in
  number and time. Malformed queries get FORMERR built from the header
  alone, with no parse of anything else.
- Fast where it matters. Most traffic is the same few questions (every pod
  resolves the same Services, each with up to five search suffixes), so a
  rendered answer is cached by the query's bytes after the ID, until the
  zone's generation changes; a hit costs one dict look-up and one sendto.
  The UDP socket is read directly from the event loop's reader callback,
  draining many datagrams per wake-up rather than one per loop iteration.

Answers are case-preserving in effect: the answer's owner name is
compressed against the question, so the client sees its own spelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from switchboard.dns import records

SocketFactory = Callable[[int, int], socket.socket]  # (family, type) → a new socket

log = logging.getLogger(__name__)

DEFAULT_ALLOWED = ("127.0.0.0/8", "::1/128")
DEFAULT_RATE = 1000.0
DEFAULT_BURST = 2000.0
_HEADER = 12
_MAX_UDP = 65535
_BATCH = 64  # datagrams read per readable event before yielding to the loop
_ALLOWED_CACHE_SIZE = 65536
_BUCKETS_MAX = 65536


@dataclass(frozen=True, slots=True)
class Options:
    upstreams: tuple[tuple[str, int], ...] = ()
    """Resolvers for names outside the zone, as (IP, port); empty: REFUSED."""
    allowed_cidrs: tuple[str, ...] = DEFAULT_ALLOWED
    """Clients that get answers; all others get REFUSED. Empty: nobody."""
    rate: float = DEFAULT_RATE
    """UDP answers per second per client; 0 turns the limit off."""
    burst: float = DEFAULT_BURST
    slip: int = 2
    udp_payload: int = 1232
    upstream_timeout: float = 2.0
    max_forwards: int = 256
    max_tcp_connections: int = 256
    tcp_idle_timeout: float = 10.0
    cache_size: int = 16384
    """Rendered UDP answers kept by query bytes; 0 turns the wire cache off."""


@dataclass(slots=True)
class Stats:
    """Counters for tests and metrics; plain ints, bumped on the hot path."""

    queries: int = 0
    cache_hits: int = 0
    formerr: int = 0
    refused: int = 0
    rate_limited: int = 0
    dropped: int = 0
    forwarded: int = 0
    servfail: int = 0
    truncated: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Forward:
    """A question the zone does not own, or a CNAME chain that left it."""

    query: dns.message.Message
    wire: bytes
    max_size: int
    tcp: bool
    partial: records.Answer | None = None  # the in-zone part of a chased CNAME chain


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class _RateLimiter:
    """Token buckets per client address; full buckets are forgotten when the table grows."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, client: str, now: float) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _BUCKETS_MAX:
                self._sweep(now)
            self._buckets[client] = _Bucket(self.burst - 1.0, now)
            return True
        tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return True
        bucket.tokens = tokens
        return False

    def _sweep(self, now: float) -> None:
        full = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b.stamp >= full]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= _BUCKETS_MAX:  # all busy: an attack from many sources
            self._buckets.clear()


@dataclass(slots=True)
class _LogLimiter:
    """At most one log line per kind per interval, so a packet flood cannot flood the log."""

    interval: float = 10.0
    last: dict[str, float] = field(default_factory=dict)

    def ready(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self.last.get(kind, -self.interval) < self.interval:
            return False
        self.last[kind] = now
        return True


class Server:
    """A DNS server for one zone on any number of (address, port) pairs, UDP and TCP."""

    def __init__(
        self,
        zone: records.Zone,
        options: Options | None = None,
        *,
        make_socket: SocketFactory = socket.socket,
    ) -> None:
        # The one seam for where the listening sockets live: a node's DNS listens in the
        # node's network namespace while its API client stays in the agent's.
        self._make_socket = make_socket
        self.zone = zone
        self.options = options = options or Options()
        self.stats = Stats()
        self._networks = tuple(_network(c) for c in options.allowed_cidrs)
        for host, port in options.upstreams:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"upstream {host!r} is not an IP address; give resolvers by address"
                ) from None
            if not 0 < port < 65536:
                raise ValueError(f"upstream {host}:{port} has no valid port")
        self._allowed: dict[str, bool] = {}
        self._limiter = _RateLimiter(options.rate, options.burst) if options.rate > 0 else None
        self._cache: dict[bytes, bytes] = {}
        self._cache_generation = -1
        self._slips = 0
        self._forwards = 0
        self._tcp_connections = 0
        self._recursion = bool(options.upstreams)
        self._log = _LogLimiter()
        self._sockets: list[socket.socket] = []
        self._tcp_servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, listen: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen on every (address, port), UDP and TCP; port 0 picks one free for both."""
        self._loop = loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        try:
            for host, port in listen:
                udp, tcp = await self._bind(host, port)
                self._sockets.append(udp)
                self._tcp_servers.append(tcp)
                loop.add_reader(udp.fileno(), self._readable, udp)
                bound.append((host, int(udp.getsockname()[1])))
        except BaseException:
            await self.close()
            raise
        return bound

    async def _bind(self, host: str, port: int) -> tuple[socket.socket, asyncio.Server]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(20):
            udp = self._make_socket(family, socket.SOCK_DGRAM)
            tcp_sock: socket.socket | None = None
            try:
                udp.setblocking(False)
                with contextlib.suppress(OSError):
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                udp.bind((host, port))
                actual = int(udp.getsockname()[1])
                tcp_sock = self._make_socket(family, socket.SOCK_STREAM)
                tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp_sock.bind((host, actual))
                tcp = await asyncio.start_server(self._tcp_client, sock=tcp_sock, backlog=256)
            except OSError:
                udp.close()
                if tcp_sock is not None:
                    tcp_sock.close()
                if port != 0 or attempt == 19:
                    raise
                continue  # the TCP side of a picked port was taken: pick another
            return udp, tcp
        raise OSError(f"no free port on {host} for both UDP and TCP")

    async def close(self) -> None:
        loop = self._loop
        for sock in self._sockets:
            if loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        for tcp in self._tcp_servers:
            tcp.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for tcp in self._tcp_servers:
            with contextlib.suppress(Exception):
                await tcp.wait_closed()
        self._tcp_servers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- UDP -------------------------------------------------------------------------------

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                data, addr = sock.recvfrom(_MAX_UDP)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. an ICMP error queued on the socket; the next read goes on
            try:
                self._datagram(data, addr, sock)
            except Exception:
                self.stats.errors += 1
                if self._log.ready("udp"):
                    log.exception("dns: a datagram from %s could not be handled", addr[0])

    def _datagram(self, data: bytes, addr: tuple[str, int], sock: socket.socket) -> None:
        stats = self.stats
        stats.queries += 1
        client = addr[0]
        allowed = self._allowed.get(client)
        if allowed is None:
            allowed = self._check_client(client)
        if self._limiter is not None and not self._limiter.allow(client, time.monotonic()):
            stats.rate_limited += 1
            self._slip(data, addr, sock)
            return
        if self._cache_generation != self.zone.generation:
            self._cache.clear()
            self._cache_generation = self.zone.generation
        if allowed:
            cached = self._cache.get(data[2:])
            if cached is not None:
                stats.cache_hits += 1
                _send(sock, data[:2] + cached, addr)
                return
        result = self._local(data, allowed, tcp=False)
        if isinstance(result, bytes):
            _send(sock, result, addr)
        elif result is not None:
            self._spawn(self._forward_udp(result, addr, sock))

    async def _forward_udp(
        self, forward: _Forward, addr: tuple[str, int], sock: socket.socket
    ) -> None:
        wire = await self._forward(forward)
        if sock.fileno() >= 0:
            _send(sock, wire, addr)

    def _slip(self, data: bytes, addr: tuple[str, int], sock: socket.socket) -> None:
        slip = self.options.slip
        if slip <= 0:
            return
        self._slips += 1
        if self._slips % slip:
            return
        try:
            query = dns.message.from_wire(data, question_only=True)
            if query.flags & dns.flags.QR or len(query.question) != 1:
                return
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            _send(sock, response.to_wire(max_size=512), addr)
        except Exception:
            return  # a slip is a courtesy; a packet that cannot have one gets nothing

    # ---- TCP -------------------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        options = self.options
        if self._tcp_connections >= options.max_tcp_connections:
            writer.close()
            return
        self._tcp_connections += 1
        self._writers.add(writer)
        try:
            peer = writer.get_extra_info("peername")
            client = str(peer[0]) if peer else ""
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), options.tcp_idle_timeout)
                size = int.from_bytes(head, "big")
                data = await asyncio.wait_for(reader.readexactly(size), options.tcp_idle_timeout)
                self.stats.queries += 1
                wire = await self.handle(data, client, tcp=True)
                if wire is None:
                    if size < _HEADER:
                        return  # not even a header: nothing sensible can follow on this stream
                    continue
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await asyncio.wait_for(writer.drain(), options.tcp_idle_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        except Exception:
            self.stats.errors += 1
            if self._log.ready("tcp"):
                log.exception("dns: a TCP connection failed")
        finally:
            self._tcp_connections -= 1
            self._writers.discard(writer)
            writer.close()

    # ---- answering -------------------------------------------------------------------------

    async def handle(self, wire: bytes, client: str, *, tcp: bool = False) -> bytes | None:
        """The answer to one query from `client`, or None when it gets none (no rate limit)."""
        try:
            allowed = self._allowed.get(client)
            if allowed is None:
                allowed = self._check_client(client)
            result = self._local(wire, allowed, tcp=tcp)
            if result is None or isinstance(result, bytes):
                return result
            return await self._forward(result)
        except Exception:
            self.stats.errors += 1
            if self._log.ready("handle"):
                log.exception("dns: a query from %s could not be handled", client)
            return _header_only(wire, dns.rcode.SERVFAIL)

    def _local(self, data: bytes, allowed: bool, *, tcp: bool) -> bytes | _Forward | None:
        """Everything that needs no upstream; a `_Forward` for what does."""
        if len(data) < _HEADER:
            self.stats.dropped += 1
            return None
        flags = (data[2] << 8) | data[3]
        if flags & dns.flags.QR:
            self.stats.dropped += 1
            return None  # a response: answering it could start a loop between servers
        if (flags >> 11) & 0xF != dns.opcode.QUERY:
            return _header_only(data, dns.rcode.NOTIMP)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            self.stats.formerr += 1
            return _header_only(data, dns.rcode.FORMERR)
        if len(query.question) != 1:
            self.stats.formerr += 1
            return _header_only(data, dns.rcode.FORMERR)
        max_size = _MAX_UDP if tcp else self._udp_size(query)
        if query.edns > 0:
            return self._rcode(query, dns.rcode.BADVERS, max_size)
        if not allowed:
            self.stats.refused += 1
            return self._rcode(query, dns.rcode.REFUSED, max_size)
        question = query.question[0]
        rdtype = question.rdtype
        if question.rdclass != dns.rdataclass.IN or rdtype in _REFUSED_TYPES:
            self.stats.refused += 1
            return self._rcode(query, dns.rcode.REFUSED, max_size)
        if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
            self.stats.formerr += 1
            return self._rcode(query, dns.rcode.FORMERR, max_size)
        answer = self.zone.lookup(question.name, rdtype)
        recurse = self._recursion and bool(query.flags & dns.flags.RD)
        if answer is None:
            if recurse:
                return _Forward(query, data, max_size, tcp)
            self.stats.refused += 1
            wire = self._rcode(query, dns.rcode.REFUSED, max_size)
        elif answer.external_target is not None and recurse:
            return _Forward(query, data, max_size, tcp, answer)
        else:
            wire = self._render(query, answer, max_size)
        if not tcp and self.options.cache_size:
            if len(self._cache) >= self.options.cache_size:
                self._cache.clear()
            self._cache[data[2:]] = wire[2:]
        return wire

    def _render(self, query: dns.message.Message, answer: records.Answer, max_size: int) -> bytes:
        response = dns.message.make_response(
            query, recursion_available=self._recursion, our_payload=self.options.udp_payload
        )
        if answer.authoritative:
            response.flags |= dns.flags.AA
        response.set_rcode(dns.rcode.Rcode(answer.rcode))
        response.answer = list(answer.answer)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        return self._fit(response, max_size)

    def _rcode(self, query: dns.message.Message, rcode: int, max_size: int) -> bytes:
        response = dns.message.make_response(
            query, recursion_available=self._recursion, our_payload=self.options.udp_payload
        )
        response.set_rcode(dns.rcode.Rcode(rcode))
        return self._fit(response, max_size)

    def _fit(self, response: dns.message.Message, max_size: int) -> bytes:
        """The wire form within `max_size`: without the additional section, else TC=1 and empty."""
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            pass
        if response.additional:
            response.additional = []  # optional data (RFC 2181 §9): no TC for leaving it out
            try:
                return response.to_wire(max_size=max_size)
            except dns.exception.TooBig:
                pass
        self.stats.truncated += 1
        response.answer = []
        response.authority = []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=max_size)

    def _udp_size(self, query: dns.message.Message) -> int:
        if query.edns < 0:
            return 512
        return max(512, min(query.payload, self.options.udp_payload))

    def _check_client(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client.partition("%")[0])
        except ValueError:
            allowed = False
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            allowed = any(address in network for network in self._networks)
        if len(self._allowed) >= _ALLOWED_CACHE_SIZE:
            self._allowed.clear()
        self._allowed[client] = allowed
        return allowed

    # ---- forwarding ------------------------------------------------------------------------

    async def _forward(self, forward: _Forward) -> bytes:
        query = forward.query
        if self._forwards >= self.options.max_forwards:
            self.stats.servfail += 1
            return self._rcode(query, dns.rcode.SERVFAIL, forward.max_size)
        self._forwards += 1
        self.stats.forwarded += 1
        try:
            if forward.partial is not None:
                return await self._chase(forward, forward.partial)
            outgoing = dns.message.from_wire(forward.wire)
            reply = await self._ask_upstreams(outgoing, forward.tcp)
            if reply is None:
                self.stats.servfail += 1
                return self._rcode(query, dns.rcode.SERVFAIL, forward.max_size)
            reply.id = query.id
            if query.edns >= 0:
                reply.use_edns(0, 0, self.options.udp_payload)
            else:
                reply.use_edns(False)
            return self._fit(reply, forward.max_size)
        finally:
            self._forwards -= 1

    async def _chase(self, forward: _Forward, partial: records.Answer) -> bytes:
        """Resolve the out-of-zone end of a CNAME chain upstream and append what it says."""
        assert partial.external_target is not None
        question = forward.query.question[0]
        outgoing = dns.message.make_query(partial.external_target, question.rdtype)
        reply = await self._ask_upstreams(outgoing, forward.tcp)
        answer = partial
        if reply is not None and reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            answer = records.Answer(
                reply.rcode(),
                (*partial.answer, *reply.answer),
                tuple(reply.authority) if reply.rcode() == dns.rcode.NXDOMAIN else (),
            )
        return self._render(forward.query, answer, forward.max_size)

    async def _ask_upstreams(
        self, outgoing: dns.message.Message, tcp: bool
    ) -> dns.message.Message | None:
        timeout = self.options.upstream_timeout
        for host, port in self.options.upstreams:
            outgoing.id = secrets.randbits(16)  # never the client's ID: spoofing guards rely on it
            try:
                if tcp:
                    return await dns.asyncquery.tcp(outgoing, host, timeout=timeout, port=port)
                return await dns.asyncquery.udp(
                    outgoing, host, timeout=timeout, port=port, ignore_unexpected=True
                )
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                if self._log.ready(f"upstream {host}"):
                    log.warning("dns: upstream %s:%d failed: %s", host, port, exc)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_REFUSED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ValueError(
            f"allowed client range {cidr!r} is not a CIDR like 10.244.0.0/16"
        ) from None


def _send(sock: socket.socket, wire: bytes, addr: tuple[str, int]) -> None:
    try:
        sock.sendto(wire, addr)
    except OSError:
        return  # a full buffer or a vanished client: UDP may lose an answer


def _header_only(data: bytes, rcode: int) -> bytes:
    """An answer of just a header: for queries too broken to echo anything else of."""
    flags = (data[2] << 8) | data[3]
    # QR set; opcode and RD copied; TC, AA, RA clear; Z clear; RCODE.
    out = dns.flags.QR | (flags & (0x7800 | dns.flags.RD)) | (int(rcode) & 0xF)
    return data[:2] + out.to_bytes(2, "big") + bytes(8)
