"""Cluster DNS: every record form of the specification, and the server's wire behaviour.

Questions are dnspython messages. Most go through `Server.handle` in-process;
the transport tests use real UDP and TCP sockets on 127.0.0.1 with ports the
kernel picks. Names outside the zone go to a fake upstream run here on
127.0.0.1; nothing in this file sends a packet anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from switchboard.dns import main as dns_main
from switchboard.dns import records, resolvconf, server

ZONE = "cluster.local"


def service(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint_slice(
    name: str,
    service_name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {records.SERVICE_NAME_LABEL: service_name},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports or [],
    }


def ep(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if hostname:
        out["hostname"] = hostname
    return out


def populated_zone(origin: str = ZONE) -> records.Zone:
    zone = records.Zone(origin)
    zone.set_service(
        service(
            "web",
            clusterIP="10.96.0.10",
            clusterIPs=["10.96.0.10", "fd00:96::10"],
            ports=[
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        )
    )
    zone.set_service(service("plain", clusterIP="10.96.0.11", ports=[{"port": 8080}]))
    zone.set_service(
        service("db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "targetPort": 15432}])
    )
    zone.set_slice(
        endpoint_slice(
            "db-1",
            "db",
            [
                ep("10.244.1.5", hostname="db-0"),
                ep("10.244.1.6"),
                ep("10.244.1.7", ready=False),
                ep("10.244.1.8", ready=None),
            ],
            ports=[{"name": "pg", "port": 15432, "protocol": "TCP"}],
        )
    )
    zone.set_service(service("empty", clusterIP="None"))
    zone.set_slice(endpoint_slice("empty-1", "empty", [ep("10.244.2.1", ready=False)]))
    zone.set_service(
        service("warm", clusterIP="None", publishNotReadyAddresses=True, ports=[{"port": 1}])
    )
    zone.set_slice(endpoint_slice("warm-1", "warm", [ep("10.244.3.1", ready=False)]))
    zone.set_service(service("six", clusterIP="None"))
    zone.set_slice(endpoint_slice("six-1", "six", [ep("fd00:244::5")], address_type="IPv6"))
    zone.set_service(service("ext", type="ExternalName", externalName="www.example.com."))
    zone.set_service(
        service("alias", type="ExternalName", externalName="web.default.svc.cluster.local")
    )
    zone.set_service(service("kube-dns", "kube-system", clusterIP="10.96.0.53"))
    zone.mark_synced()
    return zone


def query(
    name: str,
    rdtype: str = "A",
    *,
    edns: int = -1,
    payload: int = 1232,
    rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN,
) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, rdclass, use_edns=edns, payload=payload)


async def ask(
    srv: server.Server, q: dns.message.Message, client: str = "127.0.0.1", tcp: bool = False
) -> dns.message.Message:
    wire = await srv.handle(q.to_wire(), client, tcp=tcp)
    assert wire is not None
    return dns.message.from_wire(wire)


def rdatas(msg: dns.message.Message, rdtype: int | str) -> set[str]:
    want = dns.rdatatype.RdataType.make(rdtype)
    return {rd.to_text() for rrset in msg.answer if rrset.rdtype == want for rd in rrset}


@pytest.fixture
def zone() -> records.Zone:
    return populated_zone()


@pytest.fixture
def srv(zone: records.Zone) -> server.Server:
    return server.Server(zone, server.Options(rate=0))


# ---- the specification's records -------------------------------------------------------------


async def test_schema_version_is_a_txt_record(srv: server.Server) -> None:
    reply = await ask(srv, query("dns-version.cluster.local", "TXT"))
    assert rdatas(reply, "TXT") == {'"1.0.1"'}
    assert reply.flags & dns.flags.AA


async def test_cluster_ip_service_has_an_a_record(srv: server.Server) -> None:
    reply = await ask(srv, query("web.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert rdatas(reply, "A") == {"10.96.0.10"}
    assert reply.answer[0].ttl == records.DEFAULT_TTL


async def test_dual_stack_service_has_an_aaaa_record(srv: server.Server) -> None:
    reply = await ask(srv, query("web.default.svc.cluster.local", "AAAA"))
    assert rdatas(reply, "AAAA") == {"fd00:96::10"}


async def test_named_port_has_an_srv_record_pointing_at_the_service(srv: server.Server) -> None:
    reply = await ask(srv, query("_http._tcp.web.default.svc.cluster.local", "SRV"))
    assert rdatas(reply, "SRV") == {"0 100 80 web.default.svc.cluster.local."}
    extra = {rd.to_text() for rrset in reply.additional for rd in rrset}
    assert {"10.96.0.10", "fd00:96::10"} <= extra
    udp = await ask(srv, query("_dns._udp.web.default.svc.cluster.local", "SRV"))
    assert rdatas(udp, "SRV") == {"0 100 53 web.default.svc.cluster.local."}


async def test_unnamed_port_has_no_srv_record(srv: server.Server) -> None:
    reply = await ask(srv, query("plain.default.svc.cluster.local", "A"))
    assert rdatas(reply, "A") == {"10.96.0.11"}
    for name in (
        "_tcp.plain.default.svc.cluster.local",
        "_8080._tcp.plain.default.svc.cluster.local",
    ):
        reply = await ask(srv, query(name, "SRV"))
        assert not reply.answer


async def test_cluster_ip_has_a_ptr_record(srv: server.Server) -> None:
    reply = await ask(srv, query("10.0.96.10.in-addr.arpa", "PTR"))
    assert rdatas(reply, "PTR") == {"web.default.svc.cluster.local."}
    reply = await ask(srv, query(dns.reversename.from_address("fd00:96::10").to_text(), "PTR"))
    assert rdatas(reply, "PTR") == {"web.default.svc.cluster.local."}


async def test_headless_service_has_an_a_record_per_ready_endpoint(srv: server.Server) -> None:
    reply = await ask(srv, query("db.default.svc.cluster.local", "A"))
    # not-ready 10.244.1.7 is left out; a readiness nobody reported counts as ready
    assert rdatas(reply, "A") == {"10.244.1.5", "10.244.1.6", "10.244.1.8"}


async def test_headless_endpoint_hostname_names_its_address(srv: server.Server) -> None:
    named = await ask(srv, query("db-0.db.default.svc.cluster.local", "A"))
    assert rdatas(named, "A") == {"10.244.1.5"}
    generated = await ask(srv, query("10-244-1-6.db.default.svc.cluster.local", "A"))
    assert rdatas(generated, "A") == {"10.244.1.6"}
    unready = await ask(srv, query("10-244-1-7.db.default.svc.cluster.local", "A"))
    assert unready.rcode() == dns.rcode.NXDOMAIN


async def test_headless_srv_record_per_endpoint_and_named_port(srv: server.Server) -> None:
    reply = await ask(srv, query("_pg._tcp.db.default.svc.cluster.local", "SRV"))
    targets = {rd.target.to_text(): rd.port for rrset in reply.answer for rd in rrset}
    assert targets == {
        "db-0.db.default.svc.cluster.local.": 15432,
        "10-244-1-6.db.default.svc.cluster.local.": 15432,
        "10-244-1-8.db.default.svc.cluster.local.": 15432,
    }
    glue = {rrset.name.to_text() for rrset in reply.additional}
    assert "db-0.db.default.svc.cluster.local." in glue


async def test_headless_endpoint_has_a_ptr_record_to_its_hostname(srv: server.Server) -> None:
    named = await ask(srv, query("5.1.244.10.in-addr.arpa", "PTR"))
    assert rdatas(named, "PTR") == {"db-0.db.default.svc.cluster.local."}
    generated = await ask(srv, query("6.1.244.10.in-addr.arpa", "PTR"))
    assert rdatas(generated, "PTR") == {"10-244-1-6.db.default.svc.cluster.local."}


async def test_headless_service_without_ready_endpoints_is_nxdomain(srv: server.Server) -> None:
    reply = await ask(srv, query("empty.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA


async def test_publish_not_ready_addresses_publishes_unready_endpoints(srv: server.Server) -> None:
    reply = await ask(srv, query("warm.default.svc.cluster.local", "A"))
    assert rdatas(reply, "A") == {"10.244.3.1"}


async def test_headless_ipv6_endpoints_get_aaaa_records(srv: server.Server) -> None:
    reply = await ask(srv, query("six.default.svc.cluster.local", "AAAA"))
    assert rdatas(reply, "AAAA") == {"fd00:244::5"}
    host = await ask(srv, query("fd00-244--5.six.default.svc.cluster.local", "AAAA"))
    assert rdatas(host, "AAAA") == {"fd00:244::5"}


async def test_external_name_service_is_a_cname(srv: server.Server) -> None:
    reply = await ask(srv, query("ext.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert rdatas(reply, "CNAME") == {"www.example.com."}


async def test_cname_chain_inside_the_zone_is_followed(srv: server.Server) -> None:
    reply = await ask(srv, query("alias.default.svc.cluster.local", "A"))
    assert rdatas(reply, "CNAME") == {"web.default.svc.cluster.local."}
    assert rdatas(reply, "A") == {"10.96.0.10"}


async def test_pod_name_resolves_to_the_address_it_spells(srv: server.Server) -> None:
    v4 = await ask(srv, query("10-244-1-9.default.pod.cluster.local", "A"))
    assert rdatas(v4, "A") == {"10.244.1.9"}
    v6 = await ask(srv, query("fd00-244--9.other.pod.cluster.local", "AAAA"))
    assert rdatas(v6, "AAAA") == {"fd00:244::9"}
    nodata = await ask(srv, query("10-244-1-9.default.pod.cluster.local", "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    bad = await ask(srv, query("10-244-1-999.default.pod.cluster.local", "A"))
    assert bad.rcode() == dns.rcode.NXDOMAIN


async def test_apex_has_soa_and_ns_with_the_dns_service_as_glue(srv: server.Server) -> None:
    soa = await ask(srv, query("cluster.local", "SOA"))
    assert soa.answer[0].rdtype == dns.rdatatype.SOA
    ns = await ask(srv, query("cluster.local", "NS"))
    assert rdatas(ns, "NS") == {"ns.dns.cluster.local."}
    assert {rd.to_text() for rrset in ns.additional for rd in rrset} == {"10.96.0.53"}


async def test_names_are_case_insensitive(srv: server.Server) -> None:
    reply = await ask(srv, query("Web.DEFAULT.Svc.Cluster.Local", "A"))
    assert rdatas(reply, "A") == {"10.96.0.10"}
    assert reply.question[0].name.to_text() == "Web.DEFAULT.Svc.Cluster.Local."
    srv_reply = await ask(srv, query("_HTTP._TCP.web.default.svc.CLUSTER.local", "SRV"))
    assert len(srv_reply.answer[0]) == 1


async def test_unknown_name_in_the_zone_is_nxdomain_with_soa(srv: server.Server) -> None:
    reply = await ask(srv, query("nope.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
    assert reply.flags & dns.flags.AA


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("plain.default.svc.cluster.local", "AAAA"),  # IPv4-only service
        ("default.svc.cluster.local", "A"),  # a namespace with services
        ("svc.cluster.local", "A"),
        ("_tcp.web.default.svc.cluster.local", "SRV"),
        ("default.pod.cluster.local", "A"),
    ],
)
async def test_existing_name_without_that_type_is_nodata_with_soa(
    srv: server.Server, name: str, rdtype: str
) -> None:
    reply = await ask(srv, query(name, rdtype))
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


# ---- following changes --------------------------------------------------------------------------


async def test_answers_follow_service_updates_and_deletes(
    zone: records.Zone, srv: server.Server
) -> None:
    zone.set_service(service("web", clusterIP="10.96.0.99"))
    reply = await ask(srv, query("web.default.svc.cluster.local", "A"))
    assert rdatas(reply, "A") == {"10.96.0.99"}
    gone_ptr = await ask(srv, query("10.0.96.10.in-addr.arpa", "PTR"))
    assert gone_ptr.rcode() == dns.rcode.REFUSED  # no longer ours, and no upstream
    zone.delete_service("default", "web")
    reply = await ask(srv, query("web.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_answers_follow_endpoint_slice_changes(
    zone: records.Zone, srv: server.Server
) -> None:
    zone.set_slice(endpoint_slice("db-1", "db", [ep("10.244.1.50")]))
    reply = await ask(srv, query("db.default.svc.cluster.local", "A"))
    assert rdatas(reply, "A") == {"10.244.1.50"}
    zone.set_slice(endpoint_slice("db-2", "db", [ep("10.244.1.51")]))
    reply = await ask(srv, query("db.default.svc.cluster.local", "A"))
    assert rdatas(reply, "A") == {"10.244.1.50", "10.244.1.51"}
    zone.delete_slice("default", "db-1")
    zone.delete_slice("default", "db-2")
    reply = await ask(srv, query("db.default.svc.cluster.local", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_a_slice_seen_before_its_service_counts_once_the_service_arrives() -> None:
    zone = records.Zone()
    zone.mark_synced()
    zone.set_slice(endpoint_slice("late-1", "late", [ep("10.244.9.1")]))
    srv = server.Server(zone, server.Options(rate=0))
    assert (await ask(srv, query("late.default.svc.cluster.local"))).rcode() == dns.rcode.NXDOMAIN
    zone.set_service(service("late", clusterIP="None"))
    reply = await ask(srv, query("late.default.svc.cluster.local"))
    assert rdatas(reply, "A") == {"10.244.9.1"}


async def test_an_address_shared_by_two_services_keeps_both_ptr_records() -> None:
    zone = records.Zone()
    zone.mark_synced()
    for name in ("a", "b"):
        zone.set_service(service(name, clusterIP="None"))
        zone.set_slice(endpoint_slice(f"{name}-1", name, [ep("10.244.0.7", hostname="p")]))
    srv = server.Server(zone, server.Options(rate=0))
    reply = await ask(srv, query("7.0.244.10.in-addr.arpa", "PTR"))
    assert rdatas(reply, "PTR") == {
        "p.a.default.svc.cluster.local.",
        "p.b.default.svc.cluster.local.",
    }
    zone.delete_service("default", "a")
    reply = await ask(srv, query("7.0.244.10.in-addr.arpa", "PTR"))
    assert rdatas(reply, "PTR") == {"p.b.default.svc.cluster.local."}


async def test_zone_answers_servfail_until_the_informers_have_synced() -> None:
    zone = records.Zone()
    srv = server.Server(zone, server.Options(rate=0))
    reply = await ask(srv, query("web.default.svc.cluster.local"))
    assert reply.rcode() == dns.rcode.SERVFAIL
    zone.mark_synced()
    reply = await ask(srv, query("web.default.svc.cluster.local"))
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_the_zone_name_is_configurable() -> None:
    zone = populated_zone("corp.internal")
    srv = server.Server(zone, server.Options(rate=0))
    reply = await ask(srv, query("web.default.svc.corp.internal"))
    assert rdatas(reply, "A") == {"10.96.0.10"}
    txt = await ask(srv, query("dns-version.corp.internal", "TXT"))
    assert rdatas(txt, "TXT") == {'"1.0.1"'}
    other = await ask(srv, query("web.default.svc.cluster.local"))
    assert other.rcode() == dns.rcode.REFUSED


def test_malformed_objects_publish_nothing_and_raise_nothing() -> None:
    zone = records.Zone()
    zone.mark_synced()
    zone.set_service({"metadata": {"namespace": "x", "name": "y"}, "spec": {"clusterIP": "bogus"}})
    zone.set_service(
        {"metadata": {"namespace": "x", "name": "z" * 70}, "spec": {"clusterIP": "1.2.3.4"}}
    )
    zone.set_service(
        {
            "metadata": {"namespace": "x", "name": "p"},
            "spec": {
                "clusterIP": "1.2.3.5",
                "ports": [{"name": 5}, "x", {"name": "ok", "port": 70000}],
            },
        }
    )
    zone.set_slice(
        {
            "metadata": {
                "namespace": "x",
                "name": "s",
                "labels": {records.SERVICE_NAME_LABEL: "y"},
            },
            "addressType": "IPv4",
            "endpoints": ["junk", {"addresses": ["nope"]}],
        }
    )
    zone.set_service(
        {
            "metadata": {"namespace": "x", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "a..b"},
        }
    )
    answer = zone.lookup(dns.name.from_text("p.x.svc.cluster.local"), dns.rdatatype.A)
    assert answer is not None and answer.answer[0][0].to_text() == "1.2.3.5"


# ---- the wire ---------------------------------------------------------------------------------


class FakeUpstream:
    """A resolver on 127.0.0.1 that answers every A question with 192.0.2.1 (UDP and TCP)."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def answer(self, wire: bytes) -> bytes:
        q = dns.message.from_wire(wire)
        self.questions.append(q.question[0].name.to_text())
        r = dns.message.make_response(q, recursion_available=True)
        name = q.question[0].name
        if name.labels[0] == b"missing":
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
        return r.to_wire()

    async def __aenter__(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        upstream = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(upstream.answer(data), addr)  # type: ignore[attr-defined]

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    out = upstream.answer(await reader.readexactly(size))
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
            writer.close()

        # The kernel picks a free UDP port; the same number may be taken for TCP by
        # anything else on this machine, so a few picks are tried.
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(client, "127.0.0.1", port)
            except OSError:
                transport.close()
                if attempt == 19:
                    raise
                continue
            self._udp, self.port = transport, port
            break
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._udp is not None and self._tcp is not None
        self._udp.close()
        self._tcp.close()
        await self._tcp.wait_closed()


@contextlib.asynccontextmanager
async def listening(
    zone: records.Zone, options: server.Options | None = None
) -> AsyncIterator[tuple[server.Server, int]]:
    srv = server.Server(zone, options or server.Options(rate=0))
    bound = await srv.start([("127.0.0.1", 0)])
    try:
        yield srv, bound[0][1]
    finally:
        await srv.close()


def big_zone() -> records.Zone:
    zone = populated_zone()
    zone.set_service(service("big", clusterIP="None"))
    zone.set_slice(
        endpoint_slice("big-1", "big", [ep(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(200)])
    )
    return zone


async def test_udp_and_tcp_answer_on_the_same_port(zone: records.Zone) -> None:
    async with listening(zone) as (_, port):
        q = query("web.default.svc.cluster.local")
        udp = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        tcp = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert rdatas(udp, "A") == rdatas(tcp, "A") == {"10.96.0.10"}


async def test_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    async with listening(big_zone()) as (_, port):
        name = "big.default.svc.cluster.local"
        plain = await dns.asyncquery.udp(query(name), "127.0.0.1", port=port, timeout=2)
        assert plain.flags & dns.flags.TC and not plain.answer
        assert len(plain.to_wire()) <= 512
        edns = await dns.asyncquery.udp(query(name, edns=0), "127.0.0.1", port=port, timeout=2)
        assert edns.flags & dns.flags.TC
        tcp = await dns.asyncquery.tcp(query(name), "127.0.0.1", port=port, timeout=2)
        assert not tcp.flags & dns.flags.TC
        assert len(rdatas(tcp, "A")) == 200
        fallback, used_tcp = await dns.asyncquery.udp_with_fallback(
            query(name, edns=0), "127.0.0.1", port=port, timeout=2
        )
        assert used_tcp and len(rdatas(fallback, "A")) == 200


async def test_edns0_payload_size_bounds_the_udp_answer(zone: records.Zone) -> None:
    zone.set_service(service("mid", clusterIP="None"))
    zone.set_slice(endpoint_slice("mid-1", "mid", [ep(f"10.244.7.{i}") for i in range(1, 61)]))
    srv = server.Server(zone, server.Options(rate=0))
    name = "mid.default.svc.cluster.local"  # 60 A records: about 1 KB
    small = await srv.handle(query(name, edns=0, payload=512).to_wire(), "127.0.0.1")
    assert small is not None and len(small) <= 512
    assert dns.message.from_wire(small).flags & dns.flags.TC
    roomy = await ask(srv, query(name, edns=0, payload=4096))
    assert len(rdatas(roomy, "A")) == 60 and not roomy.flags & dns.flags.TC
    assert roomy.edns == 0 and roomy.payload == 1232  # what we advertise
    tiny = await srv.handle(query(name, edns=0, payload=100).to_wire(), "127.0.0.1")
    assert tiny is not None and len(tiny) <= 512  # below 512 counts as 512 (RFC 6891)


async def test_srv_glue_is_dropped_before_the_answer_is_truncated(zone: records.Zone) -> None:
    zone.set_service(service("pets", clusterIP="None"))
    zone.set_slice(
        endpoint_slice(
            "pets-1",
            "pets",
            [ep(f"10.244.8.{i}", hostname=f"pet-{i}") for i in range(1, 16)],
            ports=[{"name": "web", "port": 80, "protocol": "TCP"}],
        )
    )
    srv = server.Server(zone, server.Options(rate=0))
    # SRV targets are never compressed (RFC 2782): 15 of them fill most of 1232 octets
    reply = await ask(srv, query("_web._tcp.pets.default.svc.cluster.local", "SRV", edns=0))
    assert len(reply.answer[0]) == 15
    assert not reply.additional and not reply.flags & dns.flags.TC


async def test_unsupported_edns_version_gets_badvers(srv: server.Server) -> None:
    reply = await ask(srv, query("web.default.svc.cluster.local", edns=1))
    assert reply.rcode() == dns.rcode.BADVERS


async def test_malformed_queries_get_formerr(srv: server.Server) -> None:
    good = query("web.default.svc.cluster.local").to_wire()
    two_questions = good[:4] + b"\x00\x02" + good[6:]
    cut = good[:-3]
    garbage = good[:12] + b"\xff" * 20
    for wire in (two_questions, cut, garbage, good[:4] + b"\x00\x00" + good[6:12]):
        answer = await srv.handle(wire, "127.0.0.1")
        assert answer is not None
        msg = dns.message.from_wire(answer)
        assert msg.rcode() == dns.rcode.FORMERR
        assert msg.id == int.from_bytes(good[:2], "big")


async def test_short_packets_and_responses_get_nothing(srv: server.Server) -> None:
    assert await srv.handle(b"\x12\x34\x01", "127.0.0.1") is None
    response = dns.message.make_response(query("web.default.svc.cluster.local"))
    assert await srv.handle(response.to_wire(), "127.0.0.1") is None


async def test_other_opcodes_classes_and_zone_transfers_are_refused_or_notimp(
    srv: server.Server,
) -> None:
    notify = query("cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert (await ask(srv, notify)).rcode() == dns.rcode.NOTIMP
    chaos = query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert (await ask(srv, chaos)).rcode() == dns.rcode.REFUSED
    axfr = query("cluster.local", "AXFR")
    assert (await ask(srv, axfr, tcp=True)).rcode() == dns.rcode.REFUSED


async def test_names_outside_the_zone_are_refused_without_upstreams(srv: server.Server) -> None:
    reply = await ask(srv, query("example.com"))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.RA
    unknown_ptr = await ask(srv, query("9.9.9.9.in-addr.arpa", "PTR"))
    assert unknown_ptr.rcode() == dns.rcode.REFUSED


async def test_names_outside_the_zone_are_forwarded_to_upstreams(zone: records.Zone) -> None:
    async with FakeUpstream() as upstream:
        options = server.Options(rate=0, upstreams=(("127.0.0.1", upstream.port),))
        srv = server.Server(zone, options)
        reply = await ask(srv, query("example.com"))
        assert rdatas(reply, "A") == {"192.0.2.1"}
        assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
        over_tcp = await ask(srv, query("example.org"), tcp=True)
        assert rdatas(over_tcp, "A") == {"192.0.2.1"}
        missing = await ask(srv, query("missing.example.com"))
        assert missing.rcode() == dns.rcode.NXDOMAIN
        assert upstream.questions == ["example.com.", "example.org.", "missing.example.com."]
        in_zone = await ask(srv, query("nope.default.svc.cluster.local"))
        assert in_zone.rcode() == dns.rcode.NXDOMAIN
        assert len(upstream.questions) == 3  # the zone's own names never leave the node


async def test_external_name_target_is_resolved_upstream(zone: records.Zone) -> None:
    async with FakeUpstream() as upstream:
        options = server.Options(rate=0, upstreams=(("127.0.0.1", upstream.port),))
        srv = server.Server(zone, options)
        reply = await ask(srv, query("ext.default.svc.cluster.local"))
        assert rdatas(reply, "CNAME") == {"www.example.com."}
        assert rdatas(reply, "A") == {"192.0.2.1"}
        assert upstream.questions == ["www.example.com."]


async def test_upstream_that_does_not_answer_gives_servfail(zone: records.Zone) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        options = server.Options(rate=0, upstreams=(("127.0.0.1", port),), upstream_timeout=0.2)
        srv = server.Server(zone, options)
        reply = await ask(srv, query("example.com"))
        assert reply.rcode() == dns.rcode.SERVFAIL


async def test_clients_outside_the_allowed_cidrs_are_refused(zone: records.Zone) -> None:
    async with FakeUpstream() as upstream:
        options = server.Options(
            rate=0,
            upstreams=(("127.0.0.1", upstream.port),),
            allowed_cidrs=("10.244.0.0/16", "127.0.0.1/32"),
        )
        srv = server.Server(zone, options)
        for client in ("192.0.2.7", "10.245.0.1", "2001:db8::1", "not-an-address"):
            for name in ("web.default.svc.cluster.local", "example.com"):
                reply = await ask(srv, query(name), client=client)
                assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
        assert upstream.questions == []
        pod = await ask(srv, query("web.default.svc.cluster.local"), client="10.244.3.3")
        assert rdatas(pod, "A") == {"10.96.0.10"}
        mapped = await ask(srv, query("web.default.svc.cluster.local"), client="::ffff:10.244.3.3")
        assert rdatas(mapped, "A") == {"10.96.0.10"}


async def test_udp_answers_per_client_are_rate_limited(zone: records.Zone) -> None:
    options = server.Options(rate=5, burst=10, slip=2)
    async with listening(zone, options) as (srv, port):
        wire = query("web.default.svc.cluster.local").to_wire()
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            started = loop.time()
            for _ in range(100):
                sock.sendto(wire, ("127.0.0.1", port))
            answers: list[dns.message.Message] = []
            quiet_since = loop.time()
            while loop.time() - quiet_since < 0.3 and loop.time() - started < 5:
                try:
                    answers.append(dns.message.from_wire(sock.recv(4096)))
                    quiet_since = loop.time()
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            elapsed = loop.time() - started
        full = [a for a in answers if a.answer]
        slipped = [a for a in answers if a.flags & dns.flags.TC]
        # the burst, plus what the bucket refilled while the 100 queries were handled
        assert 10 <= len(full) <= 10 + 5 * elapsed + 1
        assert slipped and all(not a.answer for a in slipped)
        assert len(slipped) <= (100 - len(full)) // 2 + 1
        assert srv.stats.rate_limited == 100 - len(full)


async def test_garbage_does_not_stop_the_server(zone: records.Zone) -> None:
    async with listening(zone) as (srv, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for blob in (b"", b"\x00", b"\xff" * 12, b"\x00" * 4000, bytes(range(256)) * 3):
                sock.sendto(blob, ("127.0.0.1", port))
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x05hello\xff\xff" + b"\x00" * 100)  # then claims 64 KiB and stalls
        await writer.drain()
        q = query("web.default.svc.cluster.local")
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        assert rdatas(reply, "A") == {"10.96.0.10"}
        reply = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert rdatas(reply, "A") == {"10.96.0.10"}
        writer.close()
        assert srv.stats.errors == 0


async def test_tcp_connection_carries_several_queries(zone: records.Zone) -> None:
    async with listening(zone) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        names = ["web.default.svc.cluster.local", "db.default.svc.cluster.local"]
        for name in names:
            wire = query(name).to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        got = []
        for _ in names:
            size = int.from_bytes(await reader.readexactly(2), "big")
            got.append(dns.message.from_wire(await reader.readexactly(size)))
        writer.close()
        assert rdatas(got[0], "A") == {"10.96.0.10"}
        assert len(rdatas(got[1], "A")) == 3


async def test_idle_tcp_connections_are_closed(zone: records.Zone) -> None:
    async with listening(zone, server.Options(rate=0, tcp_idle_timeout=0.2)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


async def test_wire_cache_never_serves_a_stale_answer(zone: records.Zone) -> None:
    async with listening(zone) as (srv, port):
        q = query("web.default.svc.cluster.local")
        for _ in range(3):
            reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        assert srv.stats.cache_hits >= 2
        zone.set_service(service("web", clusterIP="10.96.0.77"))
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        assert rdatas(reply, "A") == {"10.96.0.77"}
        assert reply.id == q.id


# ---- resolv.conf and the command line ---------------------------------------------------------


def test_cluster_first_resolv_conf() -> None:
    text = resolvconf.render("shop", "cluster.local", ["10.244.1.1"])
    assert text == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.244.1.1\n"
        "options ndots:5\n"
    )


def test_pod_dns_policy_and_dns_config_are_honoured() -> None:
    host = resolvconf.parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    pod: dict[str, Any] = {"metadata": {"namespace": "shop", "name": "p"}, "spec": {}}
    first = resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=["10.244.1.1"], host=host)
    assert first.nameservers == ("10.244.1.1",)
    assert first.searches[-1] == "corp.example" and first.options == ("ndots:5",)
    pod["spec"] = {"hostNetwork": True}
    assert (
        resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=["10.244.1.1"], host=host) == host
    )
    pod["spec"] = {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    hostnet = resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=["10.244.1.1"], host=host)
    assert hostnet.nameservers == ("10.244.1.1",)
    pod["spec"] = {
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": ["192.0.2.1"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    }
    none = resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=["10.244.1.1"], host=host)
    assert none == resolvconf.ResolvConf(("192.0.2.1",), ("a.example",), ("ndots:2", "edns0"))
    pod["spec"] = {"dnsConfig": {"options": [{"name": "ndots", "value": "1"}], "searches": ["x"]}}
    merged = resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=["10.244.1.1"])
    assert merged.options == ("ndots:1",) and merged.searches[0] == "x"


def test_resolv_conf_limits_are_kept() -> None:
    pod = {
        "metadata": {"namespace": "n", "name": "p"},
        "spec": {
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": [f"192.0.2.{i}" for i in range(5)],
                "searches": [f"s{i}.example" for i in range(40)],
            },
        },
    }
    conf = resolvconf.for_pod(pod, zone="cluster.local", cluster_dns=[])
    assert len(conf.nameservers) == 3 and len(conf.searches) == 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:1053", ("127.0.0.1", 1053)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("fd00::1", ("fd00::1", 53)),
    ],
)
def test_listen_and_upstream_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert dns_main.parse_address(text, 53) == expected


def test_dns_command_line_is_added_to_a_parser() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    dns_main.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["dns", "--kubeconfig", "k", "--listen", "127.0.0.1:1053", "--upstream", "192.0.2.1"]
    )
    assert args.listen == [("127.0.0.1", 1053)] and args.upstream == [("192.0.2.1", 53)]
    assert callable(args.func)


def test_bad_allowed_ranges_and_upstreams_are_named() -> None:
    with pytest.raises(ValueError, match="not a CIDR"):
        server.Server(records.Zone(), server.Options(allowed_cidrs=("10.244.0.0/33",)))
    with pytest.raises(ValueError, match="not an IP address"):
        server.Server(records.Zone(), server.Options(upstreams=(("dns.example", 53),)))
