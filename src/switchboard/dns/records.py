"""The cluster zone as an in-memory index: Services and EndpointSlices in, RRsets out.

Pure: no I/O, no clock, no event loop. `watch.py` feeds it objects as the
informers see them; `server.py` asks it `lookup(qname, qtype)`.

How it stays cheap to query and to change
-----------------------------------------
Each Service contributes a set of records, `(owner, type, value)` triples
computed from the Service and the EndpointSlices labelled with its name.
When either changes, the Service's set is computed again and only the
difference is applied:

    set_service / set_slice ─► records of that one Service ─► diff with its old set
        ─► reference counts per (owner, type, value) ─► rebuild the RRsets that changed

so a change costs the size of one Service, not of the zone. Values are
reference-counted because two Services may contribute the same one (two
headless Services selecting one pod both publish its PTR). RRsets are built
when they change, never when they are asked for: a lookup is a dict hit on
the owner name, held as a tuple of lower-cased labels — all names compare
case-insensitively, as the specification demands.

Which names exist (NOERROR with no data, "NODATA") and which do not
(NXDOMAIN) follows RFC 8020: a name exists if it owns records or if a name
below it does (`svc.<zone>`, `<ns>.svc.<zone>`, `_tcp.<svc>.<ns>.svc.<zone>`).
Negative answers carry the zone's SOA in the authority section (RFC 2308).

The records, per the specification (kubernetes/dns docs/specification.md):

- `dns-version.<zone>. TXT "1.0.1"`; the apex has SOA and NS (`ns.dns.<zone>.`,
  whose A records are the kube-dns Service's cluster IPs when it exists).
- ClusterIP Service: A/AAAA `<svc>.<ns>.svc.<zone>.` per cluster IP, PTR for
  each cluster IP, SRV `_<port>._<proto>.<svc>.<ns>.svc.<zone>.` per named port
  pointing at the service name. NodePort and LoadBalancer Services are
  ClusterIP Services here.
- Headless Service: A/AAAA on the service name per ready endpoint (every
  endpoint with publishNotReadyAddresses); no ready endpoint, no name
  (NXDOMAIN). Each endpoint also gets `<hostname>.<svc>.<ns>.svc.<zone>.`
  and the PTR of its address pointing there; the hostname is the endpoint's
  `hostname`, else its address with dashes for dots or colons (as CoreDNS
  does: 10.244.1.5 → `10-244-1-5`). SRV per endpoint and named port, with
  the EndpointSlice's port number: for a headless Service clients connect to
  the pod itself, so the pod's port is the one that works.
- ExternalName: CNAME to `spec.externalName`. A chain that stays in the zone
  is followed here; one that leaves it is reported in `Answer.external_target`
  so the server can resolve the rest upstream.
- Pods: `<a-b-c-d>.<ns>.pod.<zone>.` → A a.b.c.d (IPv6 with dashes for
  colons → AAAA), computed from the name alone, as kube-dns did.

Until `mark_synced()` (every informer has listed once) in-zone questions get
SERVFAIL: an empty index then means "not known yet", and a NXDOMAIN would be
cached by the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset

SCHEMA_VERSION = "1.0.1"
DEFAULT_ZONE = "cluster.local"
DEFAULT_TTL = 5  # CoreDNS's kubernetes plugin default: changes reach clients within seconds
DNS_SERVICE = "kube-system/kube-dns"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TOLERATE_UNREADY = "service.alpha.kubernetes.io/tolerate-unready-endpoints"
MAX_CNAME_CHAIN = 8

IN = dns.rdataclass.IN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
CNAME = dns.rdatatype.CNAME
NS = dns.rdatatype.NS
PTR = dns.rdatatype.PTR
SOA = dns.rdatatype.SOA
SRV = dns.rdatatype.SRV
TXT = dns.rdatatype.TXT
ANY = dns.rdatatype.ANY

Key = tuple[bytes, ...]
"""A name as its lower-cased labels, root label (b"") last: the index's dict key."""

_Record = tuple[Key, int, Hashable]
_STATIC = ""  # the contributor key of the zone's own records (apex, dns-version)


def key_of(name: dns.name.Name) -> Key:
    return tuple(map(bytes.lower, name.labels))


@dataclass(frozen=True, slots=True)
class Answer:
    """What the zone says about one question. The server renders it."""

    rcode: int
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    external_target: dns.name.Name | None = None
    """Set when a CNAME chain leaves the zone: the name still to be resolved."""


@dataclass(frozen=True, slots=True)
class _Port:
    name: bytes  # "_http", lower case
    proto: bytes  # "_tcp"
    number: int


@dataclass(frozen=True, slots=True)
class _Service:
    kind: Literal["cluster", "headless", "external", "none"]
    ips: tuple[str, ...]
    ports: tuple[_Port, ...]
    external: Key | None
    publish_not_ready: bool


@dataclass(frozen=True, slots=True)
class _Endpoint:
    ip: str
    ready: bool
    hostname: bytes | None


@dataclass(frozen=True, slots=True)
class _Slice:
    endpoints: tuple[_Endpoint, ...]
    ports: tuple[_Port, ...]


class Zone:
    """The records of one cluster zone, kept current per Service."""

    def __init__(
        self,
        origin: str = DEFAULT_ZONE,
        *,
        ttl: int = DEFAULT_TTL,
        dns_service: str = DNS_SERVICE,
        serial: int = 1,
    ) -> None:
        try:
            self.origin = dns.name.from_text(origin.strip().rstrip(".") + ".")
        except dns.exception.DNSException as exc:
            raise ValueError(f"zone {origin!r} is not a DNS name: {exc}") from exc
        if self.origin == dns.name.root:
            raise ValueError("the cluster zone cannot be the root; use e.g. cluster.local")
        self.ttl = ttl
        self.dns_service = dns_service
        self.generation = 0
        """Bumped on every change of any answer; the server's wire cache keys on it."""
        self.synced = False
        self._origin_key = key_of(self.origin)
        self._origin_len = len(self._origin_key)
        self._services: dict[str, _Service] = {}
        self._slices: dict[str, dict[str, _Slice]] = {}  # service key → slice name → slice
        self._slice_owner: dict[str, str] = {}  # "ns/slice" → service key
        self._contrib: dict[str, frozenset[_Record]] = {}
        self._values: dict[tuple[Key, int], dict[Hashable, int]] = {}
        self._rrsets: dict[Key, dict[int, dns.rrset.RRset]] = {}
        self._nodes: dict[Key, int] = {}
        self._ns_key = (b"ns", b"dns", *self._origin_key)
        mname = dns.name.Name(self._ns_key)
        rname = dns.name.Name((b"hostmaster", *self._origin_key))
        soa = dns.rdtypes.ANY.SOA.SOA(IN, SOA, mname, rname, serial, 7200, 1800, 86400, ttl)  # type: ignore[no-untyped-call]
        self._soa = dns.rrset.from_rdata_list(self.origin, ttl, [soa])
        self._apply(
            _STATIC,
            frozenset(
                {
                    (self._origin_key, SOA, "soa"),
                    (self._origin_key, NS, self._ns_key),
                    ((b"dns-version", *self._origin_key), TXT, SCHEMA_VERSION),
                    # svc.<zone> and pod.<zone> exist even in an empty cluster
                    ((b"svc", *self._origin_key), _EXISTS, None),
                    ((b"pod", *self._origin_key), _EXISTS, None),
                }
            ),
        )

    def __repr__(self) -> str:
        return f"<Zone {self.origin}: {len(self._services)} services, {len(self._rrsets)} names>"

    # ---- feeding ---------------------------------------------------------------------------

    def mark_synced(self) -> None:
        """Every informer has listed once: from now on an absent name is NXDOMAIN."""
        if not self.synced:
            self.synced = True
            self.generation += 1

    def set_service(self, service: Mapping[str, Any]) -> None:
        meta = service.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        self._services[key] = _parse_service(service)
        self._refresh(key)

    def delete_service(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        if self._services.pop(key, None) is not None:
            self._refresh(key)

    def set_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        meta = endpoint_slice.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        slice_key = f"{namespace}/{meta.get('name', '')}"
        service_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not isinstance(service_name, str) or not service_name:
            self.delete_slice(namespace, str(meta.get("name", "")))
            return
        owner = f"{namespace}/{service_name}"
        previous = self._slice_owner.get(slice_key)
        if previous is not None and previous != owner:
            self._drop_slice(previous, slice_key)
        self._slice_owner[slice_key] = owner
        self._slices.setdefault(owner, {})[slice_key] = _parse_slice(endpoint_slice)
        self._refresh(owner)

    def delete_slice(self, namespace: str, name: str) -> None:
        slice_key = f"{namespace}/{name}"
        owner = self._slice_owner.pop(slice_key, None)
        if owner is not None:
            self._drop_slice(owner, slice_key)

    def _drop_slice(self, owner: str, slice_key: str) -> None:
        slices = self._slices.get(owner, {})
        slices.pop(slice_key, None)
        if not slices:
            self._slices.pop(owner, None)
        self._refresh(owner)

    # ---- answering -------------------------------------------------------------------------

    def is_inside(self, qname: dns.name.Name) -> bool:
        return key_of(qname)[-self._origin_len :] == self._origin_key

    def lookup(self, qname: dns.name.Name, rdtype: int) -> Answer | None:
        """The answer for (qname, IN, rdtype), or None when the name is not this zone's."""
        return self._lookup(key_of(qname), rdtype, 0)

    def _lookup(self, key: Key, rdtype: int, depth: int) -> Answer | None:
        origin_len = self._origin_len
        if len(key) < origin_len or key[-origin_len:] != self._origin_key:
            types = self._rrsets.get(key)  # a PTR name this zone publishes, or nothing of ours
            return None if types is None else self._answer_at(types, rdtype, depth, None)
        if not self.synced:
            return Answer(dns.rcode.SERVFAIL, authoritative=False)
        types = self._rrsets.get(key)
        if types is not None:
            return self._answer_at(types, rdtype, depth, self._soa)
        relative = key[: len(key) - origin_len]
        if len(relative) == 3 and relative[2] == b"pod":
            return self._pod(key, relative[0], rdtype)
        if key in self._nodes or (len(relative) == 2 and relative[1] == b"pod"):
            return Answer(dns.rcode.NOERROR, authority=(self._soa,))
        return Answer(dns.rcode.NXDOMAIN, authority=(self._soa,))

    def _answer_at(
        self,
        types: dict[int, dns.rrset.RRset],
        rdtype: int,
        depth: int,
        soa: dns.rrset.RRset | None,
    ) -> Answer:
        rrset = types.get(rdtype)
        if rrset is not None:
            return Answer(dns.rcode.NOERROR, (rrset,), additional=self._additional(rrset))
        if rdtype == ANY and types:
            return Answer(dns.rcode.NOERROR, tuple(types.values()))
        cname = types.get(CNAME)
        if cname is None:
            return Answer(dns.rcode.NOERROR, authority=(soa,) if soa is not None else ())
        target: dns.name.Name = cname[0].target
        rest = self._lookup(key_of(target), rdtype, depth + 1) if depth < MAX_CNAME_CHAIN else None
        if rest is None:
            outside = depth < MAX_CNAME_CHAIN and not self.is_inside(target)
            return Answer(dns.rcode.NOERROR, (cname,), external_target=target if outside else None)
        return Answer(
            rest.rcode,
            (cname, *rest.answer),
            rest.authority,
            rest.additional,
            rest.authoritative,
            rest.external_target,
        )

    def _additional(self, rrset: dns.rrset.RRset) -> tuple[dns.rrset.RRset, ...]:
        """Addresses of SRV targets and of the apex NS, when this zone has them."""
        if rrset.rdtype not in (SRV, NS):
            return ()
        targets: list[dns.name.Name] = [rd.target for rd in rrset]
        extra: list[dns.rrset.RRset] = []
        seen: set[Key] = set()
        for target in targets:
            tkey = key_of(target)
            if tkey in seen:
                continue
            seen.add(tkey)
            types = self._rrsets.get(tkey)
            if types is not None:
                extra.extend(types[t] for t in (A, AAAA) if t in types)
        return tuple(extra)

    def _pod(self, key: Key, label: bytes, rdtype: int) -> Answer:
        address = _pod_address(label)
        if address is None:
            return Answer(dns.rcode.NXDOMAIN, authority=(self._soa,))
        want = A if address.version == 4 else AAAA
        if rdtype not in (want, ANY):
            return Answer(dns.rcode.NOERROR, authority=(self._soa,))
        rdata = _rdata(want, str(address), 1)
        return Answer(
            dns.rcode.NOERROR, (dns.rrset.from_rdata_list(dns.name.Name(key), self.ttl, [rdata]),)
        )

    # ---- computing a Service's records -----------------------------------------------------

    def _refresh(self, service_key: str) -> None:
        service = self._services.get(service_key)
        records = (
            frozenset()
            if service is None
            else self._records(service_key, service, self._slices.get(service_key, {}).values())
        )
        self._apply(service_key, records)

    def _records(
        self, service_key: str, service: _Service, slices: Iterable[_Slice]
    ) -> frozenset[_Record]:
        namespace, _, name = service_key.partition("/")
        ns_label, name_label = _label(namespace), _label(name)
        if ns_label is None or name_label is None:
            return frozenset()
        base: Key = (name_label, ns_label, b"svc", *self._origin_key)
        out: set[_Record] = set()
        if service.kind == "cluster":
            for ip in service.ips:
                out.add((base, _address_type(ip), ip))
                out.add((_reverse(ip), PTR, base))
                if service_key == self.dns_service:
                    out.add((self._ns_key, _address_type(ip), ip))
            for port in service.ports:
                out.add(((port.name, port.proto, *base), SRV, (port.number, base)))
        elif service.kind == "external" and service.external is not None:
            out.add((base, CNAME, service.external))
        elif service.kind == "headless":
            for endpoint_slice in slices:
                for endpoint in endpoint_slice.endpoints:
                    if not (endpoint.ready or service.publish_not_ready):
                        continue
                    host: Key = (endpoint.hostname or _dashed(endpoint.ip), *base)
                    rdtype = _address_type(endpoint.ip)
                    out.add((base, rdtype, endpoint.ip))
                    out.add((host, rdtype, endpoint.ip))
                    out.add((_reverse(endpoint.ip), PTR, host))
                    for port in endpoint_slice.ports:
                        out.add(((port.name, port.proto, *base), SRV, (port.number, host)))
        return frozenset(r for r in out if _fits(r))

    # ---- applying a difference -------------------------------------------------------------

    def _apply(self, contributor: str, new: frozenset[_Record]) -> None:
        old = self._contrib.get(contributor, frozenset())
        if new == old:
            return
        touched: set[tuple[Key, int]] = set()
        for owner, rdtype, value in old - new:
            values = self._values[(owner, rdtype)]
            count = values[value] - 1
            if count:
                values[value] = count
            else:
                del values[value]
                touched.add((owner, rdtype))
        for owner, rdtype, value in new - old:
            values = self._values.setdefault((owner, rdtype), {})
            count = values.get(value, 0)
            values[value] = count + 1
            if not count:
                touched.add((owner, rdtype))
        if new:
            self._contrib[contributor] = new
        else:
            self._contrib.pop(contributor, None)
        for owner, rdtype in touched:
            self._rebuild(owner, rdtype)
        self.generation += 1

    def _rebuild(self, owner: Key, rdtype: int) -> None:
        values = self._values.get((owner, rdtype))
        types = self._rrsets.get(owner)
        if not values:
            self._values.pop((owner, rdtype), None)
            if types is not None:
                types.pop(rdtype, None)
                if not types:
                    del self._rrsets[owner]
                    self._unref(owner)
            return
        if types is None:
            types = self._rrsets[owner] = {}
            self._ref(owner)
        if rdtype == _EXISTS:
            return  # marks the name as existing; it owns no data
        if rdtype == SOA:
            types[SOA] = self._soa
            return
        rdatas = [_rdata(rdtype, value, len(values)) for value in values]
        types[rdtype] = dns.rrset.from_rdata_list(dns.name.Name(owner), self.ttl, rdatas)

    def _ref(self, owner: Key) -> None:
        for suffix in self._suffixes(owner):
            self._nodes[suffix] = self._nodes.get(suffix, 0) + 1

    def _unref(self, owner: Key) -> None:
        for suffix in self._suffixes(owner):
            count = self._nodes[suffix] - 1
            if count:
                self._nodes[suffix] = count
            else:
                del self._nodes[suffix]

    def _suffixes(self, owner: Key) -> Iterable[Key]:
        if owner[-self._origin_len :] != self._origin_key:
            return (owner,)  # reverse names: only the name itself exists for us
        return (owner[i:] for i in range(len(owner) - self._origin_len + 1))


_EXISTS = -1  # a pseudo type: "this name exists", for empty non-terminals with no child yet


def _rdata(rdtype: int, value: Any, count: int) -> dns.rdata.Rdata:
    # The rdata classes' constructors are unannotated in dnspython; from_text would
    # type-check but parses text, which costs more than the whole rest of a rebuild.
    if rdtype == A:
        return dns.rdtypes.IN.A.A(IN, A, value)  # type: ignore[no-untyped-call]
    if rdtype == AAAA:
        return dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, value)  # type: ignore[no-untyped-call]
    if rdtype == PTR:
        return dns.rdtypes.ANY.PTR.PTR(IN, PTR, dns.name.Name(value))  # type: ignore[no-untyped-call]
    if rdtype == CNAME:
        return dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, dns.name.Name(value))  # type: ignore[no-untyped-call]
    if rdtype == NS:
        return dns.rdtypes.ANY.NS.NS(IN, NS, dns.name.Name(value))  # type: ignore[no-untyped-call]
    if rdtype == SRV:
        port, target = value
        # Equal weights summing to about 100, as CoreDNS: clients spread load evenly.
        weight = max(1, 100 // count)
        return dns.rdtypes.IN.SRV.SRV(IN, SRV, 0, weight, port, dns.name.Name(target))  # type: ignore[no-untyped-call]
    if rdtype == TXT:
        return dns.rdtypes.ANY.TXT.TXT(IN, TXT, [value])
    raise ValueError(f"records of type {rdtype} are not kept here")


# ---- reading Kubernetes objects (defensively: a bad field drops the record, never raises) -----


def _parse_service(service: Mapping[str, Any]) -> _Service:
    spec = service.get("spec") or {}
    meta = service.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    publish = spec.get("publishNotReadyAddresses") is True or (
        isinstance(annotations, Mapping) and annotations.get(TOLERATE_UNREADY) == "true"
    )
    ports = tuple(p for p in map(_port, spec.get("ports") or ()) if p is not None)
    if spec.get("type") == "ExternalName":
        target = _external_name(spec.get("externalName"))
        return _Service("external", (), (), target, publish)
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if ips and ips[0] == "None":
        return _Service("headless", (), ports, None, publish)
    addresses = tuple(a for a in map(_address, ips) if a is not None)
    return _Service("cluster" if addresses else "none", addresses, ports, None, publish)


def _parse_slice(endpoint_slice: Mapping[str, Any]) -> _Slice:
    if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
        return _Slice((), ())  # FQDN slices name no addresses a DNS record could carry
    endpoints: list[_Endpoint] = []
    for endpoint in endpoint_slice.get("endpoints") or ():
        if not isinstance(endpoint, Mapping):
            continue
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False  # unknown (nil) counts as ready
        hostname = endpoint.get("hostname")
        label = _label(hostname) if isinstance(hostname, str) and hostname else None
        for raw in endpoint.get("addresses") or ():
            address = _address(raw)
            if address is not None:
                endpoints.append(_Endpoint(address, ready, label))
    ports = tuple(p for p in map(_port, endpoint_slice.get("ports") or ()) if p is not None)
    return _Slice(tuple(endpoints), ports)


def _port(port: Any) -> _Port | None:
    """A named port (unnamed ones get no SRV record); None when it cannot make one."""
    if not isinstance(port, Mapping):
        return None
    name, number = port.get("name"), port.get("port")
    protocol = port.get("protocol") or "TCP"
    if not isinstance(name, str) or not name or not isinstance(protocol, str):
        return None
    if not isinstance(number, int) or not 0 < number < 65536:
        return None
    name_label, proto_label = _label("_" + name), _label("_" + protocol)
    if name_label is None or proto_label is None:
        return None
    return _Port(name_label, proto_label, number)


def _address(raw: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(raw)) if isinstance(raw, str) else None
    except ValueError:
        return None


def _external_name(raw: Any) -> Key | None:
    if not isinstance(raw, str) or not raw.strip(".").strip():
        return None
    try:
        name = dns.name.from_text(raw.strip().rstrip(".") + ".")
    except dns.exception.DNSException:
        return None
    return key_of(name)


def _label(text: str) -> bytes | None:
    try:
        label = text.lower().encode("ascii")
    except UnicodeError:
        return None
    return label if 0 < len(label) <= 63 else None


def _fits(record: _Record) -> bool:
    """Whether every name in the record is within DNS's 255-octet limit."""
    owner, _, value = record
    target = value[1] if isinstance(value, tuple) and len(value) == 2 else value
    names = (owner, target) if isinstance(target, tuple) else (owner,)
    return all(sum(len(label) + 1 for label in name) <= 255 for name in names)


def _address_type(ip: str) -> int:
    return AAAA if ":" in ip else A


def _dashed(ip: str) -> bytes:
    return ip.replace(".", "-").replace(":", "-").encode()


def _reverse(ip: str) -> Key:
    return key_of(dns.reversename.from_address(ip))


def _pod_address(label: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        text = label.decode("ascii")
    except UnicodeError:
        return None
    try:
        parts = text.split("-")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return ipaddress.IPv4Address(".".join(parts))
        return ipaddress.IPv6Address(text.replace("-", ":"))
    except ValueError:
        return None
