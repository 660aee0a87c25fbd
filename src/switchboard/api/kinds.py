"""The resource kinds the apiserver serves, as data.

Each `ResourceKind` names a kind the way discovery does (group, version,
plural, singular, short names) and says where its objects live in the store.
Everything kind-specific that is not data (defaulting, validation, table
columns) is looked up by `ResourceKind.gvk` in the module that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceKind:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "log", "exec", "binding"
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Kinds served from another kind's storage: events.k8s.io/v1 Events are v1 Events.
    storage_group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gvk(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.kind)

    @property
    def storage_prefix(self) -> str:
        """Store key prefix for this kind, ending in '/'."""
        group = self.group if self.storage_group is None else self.storage_group
        return f"/registry/{group or 'core'}/{self.plural}/"

    def key(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        """Store prefix for a list: all namespaces when `namespace` is None or empty."""
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


_ALL = ("all",)

KINDS: tuple[ResourceKind, ...] = (
    ResourceKind(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        False,
        ("ns",),
        ("status", "finalize"),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceKind(
        "", "v1", "Pod", "pods", "pod", True, ("po",), ("status", "log", "exec", "binding"), _ALL
    ),
    ResourceKind("", "v1", "Service", "services", "service", True, ("svc",), ("status",), _ALL),
    ResourceKind("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    ResourceKind("", "v1", "Node", "nodes", "node", False, ("no",), ("status",)),
    ResourceKind("", "v1", "Event", "events", "event", True, ("ev",)),
    ResourceKind(
        "events.k8s.io", "v1", "Event", "events", "event", True, ("ev",), storage_group=""
    ),
    ResourceKind(
        "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True
    ),
    ResourceKind(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        True,
        ("deploy",),
        ("status", "scale"),
        _ALL,
    ),
    ResourceKind(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        True,
        ("rs",),
        ("status", "scale"),
        _ALL,
    ),
    ResourceKind("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
)


def find(group: str, version: str, plural: str) -> ResourceKind | None:
    for k in KINDS:
        if k.group == group and k.version == version and k.plural == plural:
            return k
    return None


def by_gvk(group: str, version: str, kind: str) -> ResourceKind | None:
    for k in KINDS:
        if k.group == group and k.version == version and k.kind == kind:
            return k
    return None


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs served, core first, in a stable order."""
    seen: list[tuple[str, str]] = []
    for k in KINDS:
        gv = (k.group, k.version)
        if gv not in seen:
            seen.append(gv)
    return seen


def _must(group: str, version: str, kind: str) -> ResourceKind:
    found = by_gvk(group, version, kind)
    assert found is not None, kind
    return found


NAMESPACES = _must("", "v1", "Namespace")
PODS = _must("", "v1", "Pod")
SERVICES = _must("", "v1", "Service")
ENDPOINTS = _must("", "v1", "Endpoints")
NODES = _must("", "v1", "Node")
EVENTS = _must("", "v1", "Event")
ENDPOINTSLICES = _must("discovery.k8s.io", "v1", "EndpointSlice")
DEPLOYMENTS = _must("apps", "v1", "Deployment")
REPLICASETS = _must("apps", "v1", "ReplicaSet")
LEASES = _must("coordination.k8s.io", "v1", "Lease")
