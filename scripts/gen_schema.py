"""Generate `src/switchboard/api/schema.json` from the official `kubernetes` Python client.

Run at development time, after changing the served kinds or upgrading the
client (a dev dependency):

    python scripts/gen_schema.py            # rewrite schema.json
    python scripts/gen_schema.py --check    # exit 1 if schema.json is stale

The client's generated models carry, per type, `openapi_types` (field ->
Python type name), `attribute_map` (field -> JSON name) and pydantic field
info (required-ness, description, whether an `object` is an IntOrString).
That is most of Kubernetes' OpenAPI, but three facts were lost on the way to
Python and are restored here from small tables:

- integer width: Go's int64 fields (`_INT64_FIELDS`); every other integer
  is an int32, as in the Kubernetes API conventions;
- `resource.Quantity` fields, which the client types as plain strings
  (`_QUANTITY_FIELDS`);
- `metav1.MicroTime` fields, which the client types as datetimes like
  `metav1.Time` (`_MICRO_TIME_FIELDS`).

Definition names follow Kubernetes' OpenAPI (`io.k8s.api.core.v1.Service`).
The client drops the Go package from most class names (`V1ServicePort`), so a
type takes the package of the first root it is reachable from, meta roots
first, then the served kinds in `kinds.KINDS` order (core first), with
`_PACKAGE_OVERRIDES` for the few shared types first met from another group.

The output format is described in `switchboard.api.schema`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

from kubernetes.client import models

from switchboard.api import kinds

OUT = Path(__file__).resolve().parent.parent / "src" / "switchboard" / "api" / "schema.json"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_CORE = "io.k8s.api.core.v1"

# Roots in the apimachinery meta package, claimed before any kind.
_META_ROOTS = (
    "V1ObjectMeta",
    "V1ListMeta",
    "V1Status",
    "V1DeleteOptions",
    "V1LabelSelector",
    "V1Condition",
)

# Kinds that are not served as resources but travel as request or response
# bodies of served resources' subresources and verbs.
_EXTRA_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("autoscaling", "v1", "Scale", "V1Scale"),
    ("", "v1", "Binding", "V1Binding"),
    ("", "v1", "Status", "V1Status"),
    ("", "v1", "DeleteOptions", "V1DeleteOptions"),
)

# Shared core types that a non-core kind reaches before any core kind does.
_PACKAGE_OVERRIDES = {"V1PodTemplateSpec": _CORE}

# Go int64 fields, by JSON name (these names mean int64 wherever they occur
# in the served kinds) or by "Type.field".
_INT64_FIELDS = frozenset(
    {
        "activeDeadlineSeconds",
        "deletionGracePeriodSeconds",
        "expirationSeconds",
        "fsGroup",
        "generation",
        "gid",
        "gracePeriodSeconds",
        "observedGeneration",
        "remainingItemCount",
        "runAsGroup",
        "runAsUser",
        "sizeBytes",
        "supplementalGroups",
        "terminationGracePeriodSeconds",
        "tolerationSeconds",
        "uid",
        "user",
        "defaultUser",
        "NodeSwapStatus.capacity",
        "SleepAction.seconds",
    }
)

_QUANTITY_FIELDS = frozenset(
    {
        "ContainerStatus.allocatedResources",
        "EmptyDirVolumeSource.sizeLimit",
        "NodeAllocatableMappedResources.quantity",
        "NodeAllocatableOverheadResources.perContainer",
        "NodeAllocatableOverheadResources.perPod",
        "NodeStatus.allocatable",
        "NodeStatus.capacity",
        "PodSpec.overhead",
        "PodStatus.allocatedResources",
        "ResourceFieldSelector.divisor",
        "ResourceRequirements.limits",
        "ResourceRequirements.requests",
        "VolumeResourceRequirements.limits",
        "VolumeResourceRequirements.requests",
    }
)

_MICRO_TIME_FIELDS = frozenset(
    {
        "Event.eventTime",
        "EventSeries.lastObservedTime",
        "LeaseSpec.acquireTime",
        "LeaseSpec.renewTime",
    }
)

_PREFIXES = {"Core": "core", "Events": "events", "Discovery": "discovery", "Apps": "apps"}
_CLASS_NAME = re.compile(
    r"^(?P<prefix>[A-Z][a-z]+)?(?P<version>V\d+(?:(?:alpha|beta)\d+)?)(?P<name>[A-Z]\w*)$"
)


def _go_name(cls_name: str) -> str:
    m = _CLASS_NAME.match(cls_name)
    if m is None:
        raise SystemExit(f"unexpected model class name {cls_name}")
    return m["name"]


def _prefixed_package(cls_name: str) -> str | None:
    m = _CLASS_NAME.match(cls_name)
    assert m is not None
    prefix = m["prefix"]
    if prefix is None:
        return None
    group = _PREFIXES.get(prefix)
    if group is None:
        raise SystemExit(f"add {prefix!r} to _PREFIXES for {cls_name}")
    return f"io.k8s.api.{group}.{m['version'].lower()}"


def _package_of_group(group: str, version: str) -> str:
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}"


def _model_class_for(group: str, version: str, kind: str) -> str:
    """The client's class for a kind: `CoreV1Event` when the name collides, else `V1Pod`."""
    prefix = {v: k for k, v in _PREFIXES.items()}.get(group.split(".")[0] if group else "core")
    candidates = [f"{prefix}{version.capitalize()}{kind}"] if prefix else []
    candidates.append(f"{version.capitalize()}{kind}")
    for name in candidates:
        if hasattr(models, name):
            return name
    raise SystemExit(f"no model class for {group}/{version} {kind} (tried {candidates})")


def _referenced(type_name: str) -> list[str]:
    return [t for t in re.findall(r"[A-Z]\w+", type_name) if t not in ("List", "Dict")]


def _closure(root: str) -> list[str]:
    seen: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for type_name in getattr(models, name).openapi_types.values():
            todo.extend(t for t in _referenced(type_name) if hasattr(models, t))
    return seen


def _field_info(cls: Any, json_name: str) -> Any:
    for attr, info in cls.model_fields.items():
        if (info.serialization_alias or attr) == json_name:
            return info
    raise SystemExit(f"{cls.__name__}: no pydantic field for {json_name}")


def _is_int_or_string(annotation: Any) -> bool:
    args = {a for a in typing.get_args(annotation) if a is not type(None)}
    flat: set[Any] = set()
    for a in args:
        flat.add(typing.get_origin(a) or a)
        if typing.get_origin(a) is typing.Annotated:
            flat.add(typing.get_args(a)[0])
    return int in flat and str in flat


def _field_schema(
    type_name: str, owner: str, json_name: str, info: Any, names: dict[str, str]
) -> dict[str, Any]:
    key = f"{owner}.{json_name}"
    if type_name.startswith("List["):
        inner = _field_schema(type_name[5:-1], owner, json_name, info, names)
        return {"type": "array", "items": inner}
    if type_name.startswith("Dict[str, "):
        inner = _field_schema(type_name[10:-1], owner, json_name, info, names)
        return {"type": "map", "values": inner}
    if type_name == "str":
        return {"type": "quantity"} if key in _QUANTITY_FIELDS else {"type": "string"}
    if type_name == "int":
        wide = json_name in _INT64_FIELDS or key in _INT64_FIELDS
        return {"type": "integer", "format": "int64" if wide else "int32"}
    if type_name == "float":
        return {"type": "number", "format": "double"}
    if type_name == "bool":
        return {"type": "boolean"}
    if type_name == "datetime":
        if key in _MICRO_TIME_FIELDS:
            return {"type": "date-time", "format": "micro"}
        return {"type": "date-time"}
    if type_name == "object":
        if _is_int_or_string(info.annotation):
            return {"type": "int-or-string"}
        return {"type": "object"}
    if type_name in names:
        return {"type": "object", "ref": names[type_name]}
    raise SystemExit(f"{key}: unsupported client type {type_name!r}")


def _description(cls: Any) -> str:
    doc = (cls.__doc__ or "").split("Attributes:")[0]
    return " ".join(doc.split())


def generate() -> dict[str, Any]:
    served: list[tuple[str, str, str, str]] = [
        (k.group, k.version, k.kind, _model_class_for(k.group, k.version, k.kind))
        for k in kinds.KINDS
    ]
    roots: list[tuple[str, str]] = [(r, _META) for r in _META_ROOTS]
    roots += [(cls, _package_of_group(g, v)) for g, v, _, cls in [*served, *_EXTRA_KINDS]]

    # Definition name of every reachable model class.
    names: dict[str, str] = {}
    for root, package in roots:
        for cls_name in _closure(root):
            if cls_name in names:
                continue
            pkg = _prefixed_package(cls_name) or _PACKAGE_OVERRIDES.get(cls_name, package)
            names[cls_name] = f"{pkg}.{_go_name(cls_name)}"
    if len(set(names.values())) != len(names):
        raise SystemExit("two client classes map to one definition name")

    definitions: dict[str, Any] = {}
    for cls_name, def_name in sorted(names.items(), key=lambda item: item[1]):
        cls = getattr(models, cls_name)
        owner = _go_name(cls_name)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for attr, type_name in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            info = _field_info(cls, json_name)
            field = _field_schema(type_name, owner, json_name, info, names)
            if info.description:
                field["description"] = " ".join(info.description.split())
            properties[json_name] = field
            if info.is_required():
                required.append(json_name)
        definition: dict[str, Any] = {"description": _description(cls), "properties": properties}
        if required:
            definition["required"] = sorted(required)
        definitions[def_name] = definition

    kind_index = [
        {"group": g, "version": v, "kind": k, "definition": names[cls]}
        for g, v, k, cls in [*served, *_EXTRA_KINDS]
    ]
    return {
        "generator": "scripts/gen_schema.py",
        "source": f"kubernetes Python client {_client_version()}",
        "kinds": kind_index,
        "definitions": definitions,
    }


def _client_version() -> str:
    import kubernetes

    version = getattr(kubernetes, "__version__", "unknown")
    return version if isinstance(version, str) else "unknown"


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if schema.json is stale")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.name} is stale: run python scripts/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.name}: {len(json.loads(text)['definitions'])} definitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
