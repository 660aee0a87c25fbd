"""Parse a Kubernetes resource URL into what it addresses.

    /api/v1/namespaces/NS/services/NAME/status
    └prefix┘└gv┘       └ns┘└plural┘ └name┘└sub┘

The namespace object itself lives at /api/v1/namespaces/NAME, with its own
subresources (status, finalize), which is why `namespaces/X/status` is a
subresource and `namespaces/X/pods` is a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.api import kinds
from switchboard.api.kinds import ResourceKind
from switchboard.apiserver import status

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True, slots=True)
class Target:
    kind: ResourceKind
    namespace: str | None  # None: all namespaces (lists) or a cluster-scoped kind
    name: str  # "" for collections
    subresource: str  # "" for the object itself
    legacy_watch: bool = False  # /api/v1/watch/... paths


def parse(path: str) -> Target | None:
    """Return the target of a resource path, None if the path is not a resource path.

    Raises a 404 APIError for a well-formed path naming a resource that is not served.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    legacy_watch = False
    if rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
        if not rest:
            return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    plural, rest = rest[0], rest[1:]
    kind = kinds.find(group, version, plural)
    if kind is None:
        raise status.APIError(
            404, "NotFound", "the server could not find the requested resource", {}
        )
    if namespace is not None and not kind.namespaced:
        raise status.APIError(
            404, "NotFound", "the server could not find the requested resource", {}
        )
    name = rest[0] if rest else ""
    sub = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2 or (sub and sub not in kind.subresources):
        raise status.APIError(
            404, "NotFound", "the server could not find the requested resource", {}
        )
    return Target(kind, namespace, name, sub, legacy_watch)


def query_flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as Kubernetes decodes one: given, and not "0" or "false".

    (apimachinery's Convert_Slice_string_To_bool: "false" in any case; so
    `?watch=yes` and a bare `?watch=` are true.)
    """
    value = query.get(name)
    return value is not None and value != "0" and value.lower() != "false"
