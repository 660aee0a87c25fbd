"""What the server says about itself: /version and API discovery, as JSON-ready dicts.

Everything here is derived from `switchboard.api.kinds.KINDS`; nothing does
I/O, so the HTTP layer only chooses which function answers which path and
with which media type.

Discovery comes in two shapes and kubectl accepts either:

- the classic one: `/api` (APIVersions), `/apis` (APIGroupList),
  `/apis/<group>` (APIGroup) and one `/api/v1` or `/apis/<g>/<v>`
  APIResourceList per group-version, which costs kubectl one request each;
- the aggregated one (`apidiscovery.k8s.io`, APIGroupDiscoveryList), all
  resources of `/api` or of `/apis` in one answer. kubectl asks for it in the
  Accept header of `/api` and `/apis`: up to 1.29 as `v=v2beta1` only, from
  1.30 `v=v2` first and `v=v2beta1` second. The two versions have the same
  shape; `negotiate_aggregated` picks the one to answer with, and the response
  Content-Type must be that media type, parameters included, or client-go
  reads the body as the classic shape.

Subresources are uniform across kinds (`status` is the parent kind with get,
patch and update; `scale` is an autoscaling/v1 Scale), so their discovery
facts live in `_SUBRESOURCES` here rather than in each kind.
"""

from __future__ import annotations

import base64
import hashlib
import platform
from dataclasses import dataclass
from typing import Any, Literal

from switchboard import __version__
from switchboard.api import kinds
from switchboard.api.kinds import ResourceKind

KUBERNETES_MAJOR = 1
KUBERNETES_MINOR = 33
GIT_VERSION = f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-switchboard"

_DISCOVERY_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")  # preference order


def aggregated_media_type(version: str) -> str:
    """`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`."""
    return f"application/json;g={_DISCOVERY_GROUP};v={version};as=APIGroupDiscoveryList"


Json = dict[str, Any]

# ---- /version ------------------------------------------------------------------------------

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def version_info() -> Json:
    """The /version body. kubectl's dispatcher picks `kubectl.1.<minor>` from it."""
    machine = platform.machine().lower()
    return {
        "major": str(KUBERNETES_MAJOR),
        "minor": str(KUBERNETES_MINOR),
        "emulationMajor": str(KUBERNETES_MAJOR),
        "emulationMinor": str(KUBERNETES_MINOR),
        "minCompatibilityMajor": str(KUBERNETES_MAJOR),
        "minCompatibilityMinor": str(KUBERNETES_MINOR - 1),
        "gitVersion": GIT_VERSION,
        "gitCommit": f"switchboard-{__version__}",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": f"{platform.system().lower()}/{_GOARCH.get(machine, machine)}",
    }


# ---- subresources --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subresource:
    """How a subresource shows in discovery; `gvk` None means the parent's kind."""

    gvk: tuple[str, str, str] | None
    verbs: tuple[str, ...]


_SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource(None, ("get", "patch", "update")),
    "scale": Subresource(("autoscaling", "v1", "Scale"), ("get", "patch", "update")),
    "log": Subresource(None, ("get",)),
    "exec": Subresource(("", "v1", "PodExecOptions"), ("create", "get")),
    "binding": Subresource(("", "v1", "Binding"), ("create",)),
    "finalize": Subresource(None, ("update",)),
}


def subresource(kind: ResourceKind, name: str) -> Subresource:
    """Discovery facts of `kind`'s subresource `name` (response kind resolved)."""
    sub = _SUBRESOURCES[name]
    return Subresource(sub.gvk or kind.gvk, sub.verbs)


def storage_version_hash(kind: ResourceKind) -> str:
    """Kubernetes' opaque storage token: base64 of the first 8 bytes of sha256("g/v/Kind")."""
    group = kind.group if kind.storage_group is None else kind.storage_group
    digest = hashlib.sha256(f"{group}/{kind.version}/{kind.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


# ---- classic discovery ---------------------------------------------------------------------


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _groups() -> list[str]:
    """Named groups in served order (the core group "" excluded)."""
    seen: list[str] = []
    for group, _ in kinds.group_versions():
        if group and group not in seen:
            seen.append(group)
    return seen


def _versions(group: str) -> list[str]:
    return [v for g, v in kinds.group_versions() if g == group]


def core_versions(server_address: str | None = None) -> Json:
    """The /api body (APIVersions)."""
    cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}] if server_address else []
    return {
        "kind": "APIVersions",
        "versions": _versions(""),
        "serverAddressByClientCIDRs": cidrs,
    }


def _group_entry(group: str) -> Json:
    versions = [{"groupVersion": _gv(group, v), "version": v} for v in _versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> Json:
    """The /apis body (APIGroupList)."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g) for g in _groups()],
    }


def group(name: str) -> Json | None:
    """The /apis/<group> body (APIGroup), or None when the group is not served."""
    if not name or name not in _groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(name)}


def _served(group: str, version: str) -> list[ResourceKind]:
    return [k for k in kinds.KINDS if k.group == group and k.version == version]


def resource_list(group: str, version: str) -> Json | None:
    """The /api/v1 or /apis/<group>/<version> body (APIResourceList), or None if not served."""
    served = _served(group, version)
    if not served:
        return None
    resources: list[Json] = []
    for kind in served:
        entry: Json = {
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": list(kind.verbs),
        }
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        if kind.categories:
            entry["categories"] = list(kind.categories)
        entry["storageVersionHash"] = storage_version_hash(kind)
        resources.append(entry)
        for name in kind.subresources:
            sub = subresource(kind, name)
            assert sub.gvk is not None
            sub_group, sub_version, sub_kind = sub.gvk
            sub_entry: Json = {"name": f"{kind.plural}/{name}", "singularName": ""}
            sub_entry["namespaced"] = kind.namespaced
            if (sub_group, sub_version) != (group, version):
                sub_entry["group"] = sub_group
                sub_entry["version"] = sub_version
            sub_entry["kind"] = sub_kind
            sub_entry["verbs"] = list(sub.verbs)
            resources.append(sub_entry)
    resources.sort(key=lambda r: str(r["name"]))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _gv(group, version),
        "resources": resources,
    }


# ---- aggregated discovery ------------------------------------------------------------------


def negotiate_aggregated(accept_header: str) -> str | None:
    """The aggregated-discovery media type to answer with, or None for the classic shape.

    Honours the client's order and q-values among the JSON variants we
    serve; a protobuf-only request for the aggregated list gets the classic
    shape, which every client still understands.
    """
    offered: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_header.split(",")):
        fields = [f.strip() for f in item.split(";")]
        media = fields[0].lower()
        params: dict[str, str] = {}
        for f in fields[1:]:
            key, _, value = f.partition("=")
            params[key.strip().lower()] = value.strip()
        if media != "application/json" or params.get("g") != _DISCOVERY_GROUP:
            continue
        if params.get("as") != "APIGroupDiscoveryList":
            continue
        version = params.get("v", "")
        if version not in AGGREGATED_VERSIONS:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            continue
        if quality > 0:
            offered.append((-quality, index, version))
    if not offered:
        return None
    return aggregated_media_type(min(offered)[2])


def aggregated_version(media_type: str) -> str:
    """The apidiscovery version named by a media type from `negotiate_aggregated`."""
    for version in AGGREGATED_VERSIONS:
        if media_type == aggregated_media_type(version):
            return version
    raise ValueError(f"not an aggregated discovery media type: {media_type}")


def _gvk(gvk: tuple[str, str, str]) -> Json:
    return {"group": gvk[0], "version": gvk[1], "kind": gvk[2]}


def _resource_discovery(kind: ResourceKind) -> Json:
    entry: Json = {
        "resource": kind.plural,
        "responseKind": _gvk(kind.gvk),
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    subresources = []
    for name in kind.subresources:
        sub = subresource(kind, name)
        assert sub.gvk is not None
        subresources.append(
            {"subresource": name, "responseKind": _gvk(sub.gvk), "verbs": list(sub.verbs)}
        )
    if subresources:
        entry["subresources"] = subresources
    return entry


def _group_discovery(group: str) -> Json:
    metadata: Json = {"creationTimestamp": None}
    if group:
        metadata["name"] = group
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": version,
                "resources": [_resource_discovery(k) for k in _served(group, version)],
                "freshness": "Current",
            }
            for version in _versions(group)
        ],
    }


def aggregated(kind: Literal["core", "apis"], version: str = "v2") -> Json:
    """The aggregated /api ("core") or /apis body, an APIGroupDiscoveryList."""
    if version not in AGGREGATED_VERSIONS:
        raise ValueError(f"unsupported apidiscovery version {version!r}")
    groups = [""] if kind == "core" else _groups()
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{_DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": [_group_discovery(g) for g in groups],
    }
