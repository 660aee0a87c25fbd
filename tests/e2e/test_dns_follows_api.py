"""The cluster DNS follows the real apiserver: write through the API, ask over DNS.

The apiserver runs as its own process (the `server` fixture); `switchboard dns`
runs in this test's event loop through `dns.main.run`, on 127.0.0.1 with a
port the kernel picks, watching Services and EndpointSlices. Only the
apiserver runs, no controllers, so Services are selectorless and the tests
write their EndpointSlices themselves, as a controller would.

Each test measures the time from the write's acknowledgement until a DNS
answer shows it (asking every 2 ms) and asserts a generous bound; the
measured figures are printed (`pytest -s`) and summarised at module end.
When `dig` is installed, every record form is also checked with it, over UDP
and TCP, as a person would.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from switchboard.api import kinds
from switchboard.client import rest
from switchboard.dns import main as dns_main
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

DIG = shutil.which("dig")
BOUND = 2.0  # seconds; the target is 0.1 s, the bound leaves room for a busy machine
LATENCIES: dict[str, list[float]] = {}

Obj = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def _report_latencies() -> Iterator[None]:
    yield
    for what, values in sorted(LATENCIES.items()):
        print(
            f"\ndns follows api: {what}: n={len(values)}, "
            f"median {statistics.median(values) * 1e3:.1f} ms, max {max(values) * 1e3:.1f} ms"
        )


@pytest.fixture
async def client(server: Server) -> AsyncIterator[rest.Client]:
    async with rest.Client.from_kubeconfig(server.kubeconfig) as c:
        yield c


@pytest.fixture
async def dns_port(server: Server) -> AsyncIterator[int]:
    bound: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        dns_main.run(server.kubeconfig, [("127.0.0.1", 0)], on_listening=bound.set_result)
    )
    try:
        port = (await asyncio.wait_for(bound, 10))[0][1]
        # in-zone names are SERVFAIL until the informers have listed: wait for that
        deadline = time.monotonic() + 10
        while (await ask(port, "dns-version.cluster.local", "TXT")).rcode() != dns.rcode.NOERROR:
            assert time.monotonic() < deadline, "the DNS server never synced with the apiserver"
            await asyncio.sleep(0.02)
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ask(port: int, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)


def values(msg: dns.message.Message, rdtype: str) -> set[str]:
    want = dns.rdatatype.RdataType.make(rdtype)
    return {rd.to_text() for rrset in msg.answer if rrset.rdtype == want for rd in rrset}


async def until(
    what: str,
    port: int,
    name: str,
    rdtype: str,
    done: Callable[[dns.message.Message], bool],
    *,
    tcp: bool = False,
) -> float:
    """Ask every 2 ms until `done(answer)`; the seconds it took, recorded under `what`."""
    start = time.monotonic()
    while True:
        reply = await ask(port, name, rdtype, tcp=tcp)
        if done(reply):
            took = time.monotonic() - start
            LATENCIES.setdefault(what, []).append(took)
            print(f"{what}: {took * 1e3:.1f} ms")
            return took
        assert time.monotonic() - start < BOUND, f"{what}: DNS still says {reply}"
        await asyncio.sleep(0.002)


def service_body(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def slice_body(name: str, service: str, endpoints: list[Obj], ports: list[Obj]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


async def test_cluster_ip_service_is_answered_as_soon_as_it_is_created_and_gone_when_deleted(
    client: rest.Client, namespace: str, dns_port: int
) -> None:
    name = f"web.{namespace}.svc.cluster.local"
    assert (await ask(dns_port, name)).rcode() == dns.rcode.NXDOMAIN
    created = await client.create(
        kinds.SERVICES,
        namespace,
        service_body("web", ports=[{"name": "http", "port": 80, "targetPort": 8080}]),
    )
    ip = created["spec"]["clusterIP"]
    await until("service created → A", dns_port, name, "A", lambda r: values(r, "A") == {ip})
    srv = await ask(dns_port, f"_http._tcp.{name}", "SRV")
    assert values(srv, "SRV") == {f"0 100 80 {name}."}
    reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    assert values(await ask(dns_port, reverse, "PTR"), "PTR") == {f"{name}."}
    await client.delete(kinds.SERVICES, namespace, "web")
    await until(
        "service deleted → NXDOMAIN",
        dns_port,
        name,
        "A",
        lambda r: r.rcode() == dns.rcode.NXDOMAIN,
    )


async def test_headless_service_follows_its_endpoint_slices(
    client: rest.Client, namespace: str, dns_port: int
) -> None:
    name = f"db.{namespace}.svc.cluster.local"
    await client.create(
        kinds.SERVICES,
        namespace,
        service_body("db", clusterIP="None", ports=[{"name": "pg", "port": 5432}]),
    )
    pg = [{"name": "pg", "port": 5432, "protocol": "TCP"}]
    endpoints = [
        {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.1.6"], "conditions": {"ready": True}},
    ]
    await client.create(kinds.ENDPOINTSLICES, namespace, slice_body("db-1", "db", endpoints, pg))
    both = {"10.244.1.5", "10.244.1.6"}
    await until("slice created → A", dns_port, name, "A", lambda r: values(r, "A") == both)
    assert values(await ask(dns_port, f"db-0.{name}"), "A") == {"10.244.1.5"}
    srv = await ask(dns_port, f"_pg._tcp.{name}", "SRV")
    assert {rd.split()[-1] for rd in values(srv, "SRV")} == {f"db-0.{name}.", f"10-244-1-6.{name}."}

    endpoints[1]["conditions"] = {"ready": False}
    await client.patch(
        kinds.ENDPOINTSLICES, namespace, "db-1", {"endpoints": endpoints}, patch_type="merge"
    )
    await until(
        "endpoint not ready → gone",
        dns_port,
        name,
        "A",
        lambda r: values(r, "A") == {"10.244.1.5"},
    )
    await client.delete(kinds.ENDPOINTSLICES, namespace, "db-1")
    await until(
        "last slice deleted → NXDOMAIN",
        dns_port,
        name,
        "A",
        lambda r: r.rcode() == dns.rcode.NXDOMAIN,
    )


async def test_external_name_service_becomes_a_cname(
    client: rest.Client, namespace: str, dns_port: int
) -> None:
    name = f"ext.{namespace}.svc.cluster.local"
    await client.create(
        kinds.SERVICES,
        namespace,
        service_body("ext", type="ExternalName", externalName="www.example.com"),
    )
    await until(
        "ExternalName created → CNAME",
        dns_port,
        name,
        "A",
        lambda r: values(r, "CNAME") == {"www.example.com."},
    )


async def dig(port: int, *args: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        DIG or "dig",
        "@127.0.0.1",
        "-p",
        str(port),
        "+short",
        "+time=2",
        "+tries=1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return sorted(out.decode().split("\n")[:-1])


@pytest.mark.skipif(DIG is None, reason="dig (dnsutils) is not installed")
async def test_every_record_form_with_dig(
    client: rest.Client, namespace: str, dns_port: int
) -> None:
    ns = namespace
    web = await client.create(
        kinds.SERVICES, ns, service_body("web", ports=[{"name": "http", "port": 80}])
    )
    ip = web["spec"]["clusterIP"]
    await client.create(
        kinds.SERVICES,
        ns,
        service_body("pets", clusterIP="None", ports=[{"name": "web", "port": 80}]),
    )
    endpoints = [
        {"addresses": [f"10.244.2.{i}"], "hostname": f"pet-{i}", "conditions": {"ready": True}}
        for i in range(1, 61)
    ]  # 60 pets: too many for a 512-octet UDP answer, so dig must retry over TCP
    web_port = [{"name": "web", "port": 80, "protocol": "TCP"}]
    await client.create(kinds.ENDPOINTSLICES, ns, slice_body("pets-1", "pets", endpoints, web_port))
    await client.create(
        kinds.SERVICES, ns, service_body("ext", type="ExternalName", externalName="example.org")
    )
    pets = f"pets.{ns}.svc.cluster.local"
    await until(
        "60 endpoints → A over TCP",
        dns_port,
        pets,
        "A",
        lambda r: len(values(r, "A")) == 60,
        tcp=True,
    )

    assert await dig(dns_port, f"web.{ns}.svc.cluster.local", "A") == [ip]
    assert await dig(dns_port, f"WEB.{ns.upper()}.SVC.cluster.local", "A") == [ip]
    assert await dig(dns_port, f"_http._tcp.web.{ns}.svc.cluster.local", "SRV") == [
        f"0 100 80 web.{ns}.svc.cluster.local."
    ]
    assert await dig(dns_port, "-x", ip) == [f"web.{ns}.svc.cluster.local."]
    assert await dig(dns_port, f"pet-7.{pets}", "A") == ["10.244.2.7"]
    assert await dig(dns_port, "-x", "10.244.2.7") == [f"pet-7.{pets}."]
    assert len(await dig(dns_port, "+noedns", pets, "A")) == 60  # TC, then TCP
    assert len(await dig(dns_port, "+tcp", f"_web._tcp.{pets}", "SRV")) == 60
    assert await dig(dns_port, f"ext.{ns}.svc.cluster.local", "CNAME") == ["example.org."]
    assert await dig(dns_port, f"10-244-9-9.{ns}.pod.cluster.local", "A") == ["10.244.9.9"]
    assert await dig(dns_port, "dns-version.cluster.local", "TXT") == ['"1.0.1"']
    status = await dig(dns_port, "+noshort", "+noall", "+comments", f"nope.{ns}.svc.cluster.local")
    assert any("status: NXDOMAIN" in line for line in status)
    outside = await dig(dns_port, "+noshort", "+noall", "+comments", "example.com")
    assert any("status: REFUSED" in line for line in outside)
