"""Which lists a strategic merge patch merges, and by which key, for each kind served.

Kubernetes reads this from struct tags on the Go types: a list field tagged
`patchStrategy:"merge" patchMergeKey:"name"` is merged item by item, matching
items on `name`; `patchStrategy:"merge"` without a key marks a list of
scalars merged as a set (finalizers); every other list is atomic and a patch
replaces it whole. This module is those tags, transcribed as data from
k8s.io/api (core/v1, apps/v1, discovery/v1, coordination/v1, events/v1) and
metav1.ObjectMeta, and composed the way the types nest: a `Struct` names the
fields of one Go type that matter to merging, a `ListMerge` says how one list
merges and, for lists of objects, the `Struct` of its items.

Only what changes merging is written down. A map field absent here merges
key by key (the default for objects and map[string]string alike); a list
field absent here is atomic. `retainKeys` strategies are not recorded: they
only steer how a client computes a patch, while the server honours a
`$retainKeys` directive wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ListMerge:
    """A list merged by `key` (lists of objects), or as a set of scalars when `key` is None."""

    key: str | None
    item: Struct | None = None


@dataclass(frozen=True, slots=True)
class Struct:
    """The fields of one type that merge other than by default, by JSON name."""

    fields: Mapping[str, Struct | ListMerge] = field(default_factory=dict)

    def child(self, name: str) -> Struct:
        """The schema of an object-valued field; fields not listed merge by default."""
        found = self.fields.get(name)
        return found if isinstance(found, Struct) else EMPTY

    def list_merge(self, name: str) -> ListMerge | None:
        """How the list-valued field `name` merges, or None when a patch replaces it."""
        found = self.fields.get(name)
        return found if isinstance(found, ListMerge) else None


EMPTY = Struct(MappingProxyType({}))


def _struct(**fields: Struct | ListMerge) -> Struct:
    return Struct(MappingProxyType(fields))


OBJECT_META = _struct(
    finalizers=ListMerge(None),
    ownerReferences=ListMerge("uid"),
)

# Container and EphemeralContainerCommon carry the same tags. envFrom,
# resizePolicy and resources.claims have none.
CONTAINER = _struct(
    ports=ListMerge("containerPort"),
    env=ListMerge("name"),
    volumeMounts=ListMerge("mountPath"),
    volumeDevices=ListMerge("devicePath"),
)

# tolerations, readinessGates and dnsConfig lists are atomic.
POD_SPEC = _struct(
    volumes=ListMerge("name"),
    initContainers=ListMerge("name", CONTAINER),
    containers=ListMerge("name", CONTAINER),
    ephemeralContainers=ListMerge("name", CONTAINER),
    imagePullSecrets=ListMerge("name"),
    hostAliases=ListMerge("ip"),
    topologySpreadConstraints=ListMerge("topologyKey"),
    schedulingGates=ListMerge("name"),
    resourceClaims=ListMerge("name"),
)

# containerStatuses and friends are atomic.
POD_STATUS = _struct(
    conditions=ListMerge("type"),
    podIPs=ListMerge("ip"),
    hostIPs=ListMerge("ip"),
    resourceClaimStatuses=ListMerge("name"),
)

POD_TEMPLATE_SPEC = _struct(metadata=OBJECT_META, spec=POD_SPEC)

_CONDITIONS_BY_TYPE = _struct(conditions=ListMerge("type"))

# Service ports merge on `port` alone, so TCP and UDP on one port number
# collide in a strategic merge patch: the same limitation as Kubernetes.
SERVICE = _struct(
    metadata=OBJECT_META,
    spec=_struct(ports=ListMerge("port")),
    status=_CONDITIONS_BY_TYPE,
)

# taints are atomic; podCIDRs is a set of scalars.
NODE = _struct(
    metadata=OBJECT_META,
    spec=_struct(podCIDRs=ListMerge(None)),
    status=_struct(conditions=ListMerge("type"), addresses=ListMerge("type")),
)

# spec.finalizers of a Namespace is atomic, unlike metadata.finalizers.
NAMESPACE = _struct(metadata=OBJECT_META, status=_CONDITIONS_BY_TYPE)

POD = _struct(metadata=OBJECT_META, spec=POD_SPEC, status=POD_STATUS)

WORKLOAD = _struct(
    metadata=OBJECT_META,
    spec=_struct(template=POD_TEMPLATE_SPEC),
    status=_CONDITIONS_BY_TYPE,
)

# Endpoints.subsets, EndpointSlice endpoints/ports, Events and Leases have no
# merge lists at all: only their metadata merges specially.
METADATA_ONLY = _struct(metadata=OBJECT_META)

_KINDS: Mapping[str, Struct] = MappingProxyType(
    {
        "Pod": POD,
        "Service": SERVICE,
        "Endpoints": METADATA_ONLY,
        "Node": NODE,
        "Namespace": NAMESPACE,
        "Event": METADATA_ONLY,
        "EndpointSlice": METADATA_ONLY,
        "Deployment": WORKLOAD,
        "ReplicaSet": WORKLOAD,
        "Lease": METADATA_ONLY,
    }
)


def schema_for(kind: str) -> Struct:
    """The merge schema of a kind; unknown kinds (Scale, …) merge only their metadata specially."""
    return _KINDS.get(kind, METADATA_ONLY)


def merge_lists(kind: str) -> dict[tuple[str, ...], str | None]:
    """Every merged list of a kind by field path, with its merge key (None for scalar sets).

    `merge_lists("Deployment")[("spec", "template", "spec", "containers")] == "name"`.
    """
    return dict(_walk(schema_for(kind), ()))


def _walk(struct: Struct, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str | None]]:
    for name, entry in struct.fields.items():
        if isinstance(entry, ListMerge):
            yield (*path, name), entry.key
            if entry.item is not None:
                yield from _walk(entry.item, (*path, name))
        else:
            yield from _walk(entry, (*path, name))
