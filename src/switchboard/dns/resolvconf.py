"""A pod's /etc/resolv.conf, by kubelet's rules (pkg/kubelet/network/dns).

    dnsPolicy ClusterFirst (default) ─► search <ns>.svc.<zone> svc.<zone> <zone> + node's,
                                        nameserver <node's DNS>, options ndots:5
              ClusterFirstWithHostNet ─► the same, also for hostNetwork pods
              ClusterFirst + hostNetwork, or Default ─► the node's own resolv.conf
              None ─► nothing but spec.dnsConfig
    then spec.dnsConfig is merged in: its nameservers after, its searches
    before, its options overriding options of the same name.

ndots:5 makes every name with fewer than five dots try the search list
first, which is what lets `web` and `web.other` resolve; the zone's
negative answers are cheap because the server caches them on the wire.

Limits as kubelet: at most 3 nameservers, 32 search domains and 2048
characters of search list; what is over is left out (with a warning in the
log, where kubelet records an event).

`nameservers(text)` reads the node's resolv.conf for the upstreams that the
DNS server forwards to; loopback entries are left out by the caller when
they would point back at the node's own stub (systemd-resolved's 127.0.0.53).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
DEFAULT_OPTIONS = ("ndots:5",)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines: list[str] = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines.extend(f"nameserver {server}" for server in self.nameservers)
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse(text: str) -> ResolvConf:
    """The nameserver, search (or domain) and options lines of a resolv.conf."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        word, rest = fields[0], fields[1:]
        if word == "nameserver" and rest:
            nameservers.append(rest[0])
        elif word in ("search", "domain"):
            searches = list(rest)  # the last search or domain line wins, as in glibc
        elif word == "options":
            options.extend(rest)
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def nameservers(text: str) -> list[str]:
    return list(parse(text).nameservers)


def cluster_searches(namespace: str, zone: str) -> tuple[str, ...]:
    zone = zone.strip(".")
    return (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)


def render(namespace: str, zone: str, nameserver_addresses: Sequence[str]) -> str:
    """The ClusterFirst resolv.conf of a pod in `namespace`."""
    return ResolvConf(
        tuple(nameserver_addresses[:MAX_NAMESERVERS]),
        cluster_searches(namespace, zone),
        DEFAULT_OPTIONS,
    ).render()


def for_pod(
    pod: Mapping[str, Any],
    *,
    zone: str,
    cluster_dns: Sequence[str],
    host: ResolvConf | None = None,
) -> ResolvConf:
    """The resolv.conf kubelet would give `pod`; `host` is the node's own."""
    host = host or ResolvConf()
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = spec.get("hostNetwork") is True
    if policy == "None":
        base = ResolvConf()
    elif (
        policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)
    ) and cluster_dns:
        base = ResolvConf(
            tuple(cluster_dns),
            cluster_searches(namespace, zone) + host.searches,
            DEFAULT_OPTIONS,
        )
    else:
        if policy != "Default" and not cluster_dns:
            log.warning(
                "dns: no cluster DNS address; pod %s/%s gets the node's resolv.conf",
                namespace,
                meta.get("name"),
            )
        base = host
    config = spec.get("dnsConfig") or {}
    merged = ResolvConf(
        _unique((*base.nameservers, *_strings(config.get("nameservers")))),
        _unique((*_strings(config.get("searches")), *base.searches)),
        _merge_options(base.options, config.get("options")),
    )
    return _within_limits(merged, f"{namespace}/{meta.get('name')}")


def _within_limits(conf: ResolvConf, pod: str) -> ResolvConf:
    servers = conf.nameservers[:MAX_NAMESERVERS]
    searches: list[str] = []
    chars = 0
    for search in conf.searches[:MAX_SEARCHES]:
        if chars + len(search) + (1 if searches else 0) > MAX_SEARCH_CHARS:
            break
        chars += len(search) + (1 if searches else 0)
        searches.append(search)
    if len(servers) < len(conf.nameservers) or len(searches) < len(conf.searches):
        log.warning(
            "dns: pod %s asks for more nameservers or search domains than resolv.conf "
            "allows (%d, %d and %d characters); the rest are left out",
            pod,
            MAX_NAMESERVERS,
            MAX_SEARCHES,
            MAX_SEARCH_CHARS,
        )
    return ResolvConf(servers, tuple(searches), conf.options)


def _merge_options(base: Iterable[str], extra: Any) -> tuple[str, ...]:
    """Options by name, later ones (the pod's dnsConfig) replacing earlier ones."""
    merged: dict[str, str] = {}
    for option in base:
        merged[option.split(":", 1)[0]] = option
    for option in extra or ():
        if not isinstance(option, Mapping) or not isinstance(option.get("name"), str):
            continue
        name = option["name"]
        value = option.get("value")
        merged[name] = f"{name}:{value}" if value not in (None, "") else name
    return tuple(merged.values())


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value or () if isinstance(v, str) and v)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
