"""The OpenAPI the server publishes: /openapi/v3 and one document per group-version.

What kubectl does with it (1.27 to 1.33, `apply` and `create -f` with the
default `--validate=strict`): it fetches `/openapi/v3`, follows the
`serverRelativeURL` of the object's group-version, and looks for a PATCH
operation whose `x-kubernetes-group-version-kind` is the object's kind and
whose parameters include `fieldValidation`. If it finds one, the server is
trusted to validate: kubectl skips its own schema check and sends
`?fieldValidation=Strict`, and `switchboard.api.schema.check` does the work.
So the documents below carry, per served resource, the list, read, create,
replace, patch and delete operations with the query parameters Kubernetes
documents, and `components.schemas` built from `schema.json`, named as in
Kubernetes (`io.k8s.api.apps.v1.Deployment`) and tagged with
`x-kubernetes-group-version-kind`, which `kubectl explain` reads.

Two deliberate choices:

- PATCH request bodies do not list `application/strategic-merge-patch+json`
  and schemas carry no `x-kubernetes-patch-merge-key`. When `kubectl apply`
  updates an object it computes a strategic merge patch from OpenAPI only if
  the PATCH operation lists that media type; otherwise it uses the patch
  metadata compiled into it for built-in kinds, which is Kubernetes' own and
  cannot drift from the server's merge keys. The server still accepts
  strategic merge patches (kubectl sends them either way).
- The OpenAPI v2 document (`/openapi/v2`, asked for as protobuf) is a
  valid but empty `openapi_v2.Document`: its version and title, no paths, no
  definitions (`v2_document_protobuf`). kubectl 1.27 and 1.28 build their
  validator from it before consulting v3 and abort `apply` with "the server
  could not find the requested resource" if it is missing (a 404 only makes
  them try the pre-1.10 `/swagger-2.0.0.pb-v1`). An empty document satisfies
  them and says nothing: the v3 documents then tell every kubectl that the
  server validates. kubectl 1.29+ fetch v2 only as a fallback (validation
  when v3 cannot answer; apply's patch computation when v3 offers no
  strategic merge patch), and with no schema in it they use their built-in
  knowledge, exactly as they would after a 404.

`v3_document_json` is what the HTTP layer should serve: its bytes are what
`v3_hash` digests, so the `hash` in each `serverRelativeURL` changes exactly
when the document does, and clients may cache a document by its URL.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any

from switchboard.api import kinds, schema
from switchboard.api.kinds import ResourceKind
from switchboard.apiserver import discovery

Json = dict[str, Any]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_STATUS = f"{_META}.Status"
_DELETE_OPTIONS = f"{_META}.DeleteOptions"
_LIST_META = f"{_META}.ListMeta"
_PATCH = f"{_META}.Patch"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_TIME = f"{_META}.Time"
_MICRO_TIME = f"{_META}.MicroTime"

# Named scalar schemas, as Kubernetes publishes them.
_SCALARS: dict[str, Json] = {
    _QUANTITY: {
        "description": "A fixed-point number: '<number><suffix>', such as 100m, 1.5Gi or 2e3.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    _INT_OR_STRING: {
        "description": "An int32 or a string; in a port, a name stands for a number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    _TIME: {
        "description": "A timestamp in RFC 3339 form, to the second.",
        "format": "date-time",
        "type": "string",
    },
    _MICRO_TIME: {
        "description": "A timestamp in RFC 3339 form, to the microsecond.",
        "format": "date-time",
        "type": "string",
    },
    _PATCH: {
        "description": "The body of a PATCH request, in the media type its Content-Type names.",
        "type": "object",
    },
}

_PATCH_MEDIA_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


# ---- components ----------------------------------------------------------------------------


def _field(spec: schema.FieldSchema) -> Json:
    kind = spec["type"]
    out: Json
    if kind == "object" and "ref" in spec:
        out = _ref(spec["ref"])
    elif kind == "object":
        out = {"type": "object"}
    elif kind == "array":
        out = {"type": "array", "items": _field(spec["items"])}
    elif kind == "map":
        out = {"type": "object", "additionalProperties": _field(spec["values"])}
    elif kind == "integer":
        out = {"type": "integer", "format": spec.get("format", "int64")}
    elif kind == "number":
        out = {"type": "number", "format": "double"}
    elif kind == "quantity":
        out = _ref(_QUANTITY)
    elif kind == "int-or-string":
        out = _ref(_INT_OR_STRING)
    elif kind == "date-time":
        out = _ref(_MICRO_TIME if spec.get("format") == "micro" else _TIME)
    else:
        out = {"type": kind}
    if "description" in spec:
        if "$ref" in out:  # OpenAPI 3.0 ignores siblings of $ref
            out = {"allOf": [out]}
        out["description"] = spec["description"]
    return out


def _component(name: str, gvks: list[Json]) -> Json:
    definition = schema.definitions()[name]
    out: Json = {
        "description": definition["description"],
        "type": "object",
        "properties": {k: _field(v) for k, v in definition["properties"].items()},
    }
    if "required" in definition:
        out["required"] = list(definition["required"])
    if gvks:
        out["x-kubernetes-group-version-kind"] = gvks
    return out


def _references(spec: schema.FieldSchema) -> list[str]:
    if "ref" in spec:
        return [spec["ref"]]
    if "items" in spec:
        return _references(spec["items"])
    if "values" in spec:
        return _references(spec["values"])
    return []


def _closure(roots: list[str]) -> list[str]:
    defs = schema.definitions()
    seen: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for spec in defs[name]["properties"].values():
            todo.extend(_references(spec))
    return seen


def _gvks_by_definition() -> dict[str, list[Json]]:
    out: dict[str, list[Json]] = {}
    for entry in schema.kinds():
        gvk = {"group": entry["group"], "version": entry["version"], "kind": entry["kind"]}
        out.setdefault(entry["definition"], []).append(gvk)
    return out


def _list_component(kind: ResourceKind, item: str) -> Json:
    return {
        "description": f"{kind.kind}List is a list of {kind.kind} objects.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "The list's API version."},
            "items": {"type": "array", "items": _ref(item), "description": "The objects."},
            "kind": {"type": "string", "description": "The list's kind."},
            "metadata": {"allOf": [_ref(_LIST_META)], "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [
            {"group": kind.group, "version": kind.version, "kind": f"{kind.kind}List"}
        ],
    }


def _definition(group: str, version: str, kind: str) -> str:
    return schema.definition_name(kind, f"{group}/{version}" if group else version)


# ---- paths ---------------------------------------------------------------------------------


def _param(name: str, where: str, description: str, **schema_: Any) -> Json:
    param: Json = {
        "name": name,
        "in": where,
        "description": description,
        "schema": schema_ or {"type": "string"},
    }
    if where == "path":
        param["required"] = True
    return param


_PRETTY = _param("pretty", "query", "If 'true', the output is pretty printed.")
_DRY_RUN = _param(
    "dryRun", "query", "When present (the only value is All), changes are not persisted."
)
_FIELD_MANAGER = _param(
    "fieldManager", "query", "A name for the actor making these changes, for managedFields."
)
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "query",
    "How the server treats unknown and duplicate fields in the request body:"
    " Ignore drops them silently, Warn (the default) drops them and answers with a"
    " Warning header for each, Strict fails the request with a BadRequest naming"
    " them all.",
)
_FORCE = _param(
    "force",
    "query",
    "Force is for apply requests only: take over conflicting fields.",
    type="boolean",
)
_LIST_PARAMS = [
    _param("allowWatchBookmarks", "query", "Ask for BOOKMARK events in a watch.", type="boolean"),
    _param("continue", "query", "The continue token of the previous page."),
    _param("fieldSelector", "query", "Restrict the list by fields, such as metadata.name=x."),
    _param("labelSelector", "query", "Restrict the list by labels, such as app=web."),
    _param("limit", "query", "The most items to return in one page.", type="integer"),
    _param("resourceVersion", "query", "The resourceVersion the list or watch starts from."),
    _param("resourceVersionMatch", "query", "How resourceVersion applies to a list."),
    _param("sendInitialEvents", "query", "Start a watch with the current state.", type="boolean"),
    _param("timeoutSeconds", "query", "Close a list or watch after this long.", type="integer"),
    _param("watch", "query", "Stream changes instead of listing.", type="boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _param("gracePeriodSeconds", "query", "Seconds before deletion.", type="integer"),
    _param("propagationPolicy", "query", "Orphan, Background or Foreground."),
]


def _json_content(name: str) -> Json:
    return {"application/json": {"schema": _ref(name)}, "application/yaml": {"schema": _ref(name)}}


def _responses(code: str, name: str, *more: str) -> Json:
    out: Json = {code: {"description": _REASONS[code], "content": _json_content(name)}}
    for extra in more:
        out[extra] = {"description": _REASONS[extra], "content": _json_content(name)}
    out["401"] = {"description": "Unauthorized"}
    return out


_REASONS = {"200": "OK", "201": "Created", "202": "Accepted"}


def _camel_gv(group: str, version: str) -> str:
    name = group.split(".")[0] if group else "core"
    return name[:1].upper() + name[1:] + version[:1].upper() + version[1:]


class _Operations:
    """Builds the path items of one resource; all parameters sit on the operations."""

    def __init__(self, kind: ResourceKind) -> None:
        self.kind = kind
        self.gv = _camel_gv(kind.group, kind.version)
        self.tag = f"{kind.group.split('.')[0] if kind.group else 'core'}_{kind.version}"
        self.definition = _definition(kind.group, kind.version, kind.kind)
        self.list_definition = f"{self.definition}List"

    def op(
        self,
        action: str,
        operation_id: str,
        gvk: tuple[str, str, str],
        params: list[Json],
        responses: Json,
        body: Json | None = None,
    ) -> Json:
        out: Json = {
            "tags": [self.tag],
            "description": f"{action} {gvk[2]}"
            + (f" of a {self.kind.kind}" if gvk[2] != self.kind.kind else ""),
            "operationId": operation_id,
            "parameters": params,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {
                "group": gvk[0],
                "version": gvk[1],
                "kind": gvk[2],
            },
        }
        if body is not None:
            out["requestBody"] = body
        return out

    def paths(self) -> dict[str, Json]:
        kind = self.kind
        prefix = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        scoped = "Namespaced" if kind.namespaced else ""
        ns_params = [_param("namespace", "path", "object name and auth scope")] if scoped else []
        name_param = _param("name", "path", f"name of the {kind.kind}")
        collection = (
            f"{prefix}/namespaces/{{namespace}}/{kind.plural}"
            if kind.namespaced
            else f"{prefix}/{kind.plural}"
        )
        item = f"{collection}/{{name}}"
        verbs = set(kind.verbs)
        gvk = kind.gvk
        out: dict[str, Json] = {}

        path: Json = {}
        if "list" in verbs:
            path["get"] = self.op(
                "list",
                f"list{self.gv}{scoped}{kind.kind}",
                gvk,
                [*ns_params, _PRETTY, *_LIST_PARAMS],
                _responses("200", self.list_definition),
            )
        if "create" in verbs:
            path["post"] = self.op(
                "post",
                f"create{self.gv}{scoped}{kind.kind}",
                gvk,
                [*ns_params, _PRETTY, _DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                _responses("200", self.definition, "201", "202"),
                {"content": {"*/*": {"schema": _ref(self.definition)}}, "required": True},
            )
        if "deletecollection" in verbs:
            path["delete"] = self.op(
                "deletecollection",
                f"deleteCollection{self.gv}{scoped}{kind.kind}",
                gvk,
                [*ns_params, _PRETTY, *_DELETE_PARAMS, *_LIST_PARAMS],
                _responses("200", _STATUS),
                {"content": {"*/*": {"schema": _ref(_DELETE_OPTIONS)}}},
            )
        if path:
            out[collection] = path

        out[item] = self.item_path(
            "", gvk, [name_param, *ns_params], verbs, self.definition, delete=True
        )

        if kind.namespaced and "list" in verbs:
            out[f"{prefix}/{kind.plural}"] = {
                "get": self.op(
                    "list",
                    f"list{self.gv}{kind.kind}ForAllNamespaces",
                    gvk,
                    [_PRETTY, *_LIST_PARAMS],
                    _responses("200", self.list_definition),
                )
            }

        for name in kind.subresources:
            sub = discovery.subresource(kind, name)
            assert sub.gvk is not None
            params = [name_param, *ns_params]
            suffix = name[:1].upper() + name[1:]
            if name in ("log", "exec"):
                out[f"{item}/{name}"] = self.stream_path(name, suffix, sub.gvk, params, sub.verbs)
                continue
            sub_definition = _definition(*sub.gvk)
            out[f"{item}/{name}"] = self.item_path(
                suffix, sub.gvk, params, set(sub.verbs), sub_definition, delete=False
            )
        return out

    def item_path(
        self,
        suffix: str,
        gvk: tuple[str, str, str],
        params: list[Json],
        verbs: set[str],
        definition: str,
        *,
        delete: bool,
    ) -> Json:
        kind = self.kind
        scoped = "Namespaced" if kind.namespaced else ""
        name = f"{self.gv}{scoped}{kind.kind}{suffix}"
        write = [_PRETTY, _DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
        body = {"content": {"*/*": {"schema": _ref(definition)}}, "required": True}
        path: Json = {}
        if "get" in verbs:
            path["get"] = self.op(
                "get", f"read{name}", gvk, [*params, _PRETTY], _responses("200", definition)
            )
        if "update" in verbs:
            path["put"] = self.op(
                "put",
                f"replace{name}",
                gvk,
                [*params, *write],
                _responses("200", definition, "201"),
                body,
            )
        if "patch" in verbs:
            patch_body = {
                "content": {media: {"schema": _ref(_PATCH)} for media in _PATCH_MEDIA_TYPES},
                "required": True,
            }
            path["patch"] = self.op(
                "patch",
                f"patch{name}",
                gvk,
                [*params, *write, _FORCE],
                _responses("200", definition, "201"),
                patch_body,
            )
        if "create" in verbs:
            path["post"] = self.op(
                "post",
                f"create{name}",
                gvk,
                [*params, *write],
                _responses("200", definition, "201", "202"),
                body,
            )
        if delete and "delete" in verbs:
            path["delete"] = self.op(
                "delete",
                f"delete{name}",
                gvk,
                [*params, _PRETTY, *_DELETE_PARAMS],
                _responses("200", _STATUS, "202"),
                {"content": {"*/*": {"schema": _ref(_DELETE_OPTIONS)}}},
            )
        return path

    def stream_path(
        self,
        name: str,
        suffix: str,
        gvk: tuple[str, str, str],
        params: list[Json],
        verbs: tuple[str, ...],
    ) -> Json:
        scoped = "Namespaced" if self.kind.namespaced else ""
        text = {"200": {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}}}
        if name == "log":
            log_params = [
                _param("container", "query", "The container to read from."),
                _param("follow", "query", "Stream the log as it grows.", type="boolean"),
                _param("previous", "query", "The previous instance's log.", type="boolean"),
                _param("tailLines", "query", "Only the last lines.", type="integer"),
                _param("timestamps", "query", "Prefix each line with its time.", type="boolean"),
            ]
            return {
                "get": self.op(
                    "get",
                    f"read{self.gv}{scoped}{self.kind.kind}{suffix}",
                    gvk,
                    [*params, *log_params],
                    text,
                )
            }
        exec_params = [
            _param("command", "query", "The command to run, one argument per parameter."),
            _param("container", "query", "The container to run it in."),
            _param("stdin", "query", "Attach standard input.", type="boolean"),
            _param("stdout", "query", "Attach standard output.", type="boolean"),
            _param("stderr", "query", "Attach standard error.", type="boolean"),
            _param("tty", "query", "Allocate a terminal.", type="boolean"),
        ]
        methods = {"get": "get", "create": "post"}
        return {
            methods[verb]: self.op(
                "connect",
                f"connect{methods[verb].capitalize()}{self.gv}{scoped}{self.kind.kind}{suffix}",
                gvk,
                [*params, *exec_params],
                text,
            )
            for verb in verbs
        }


# ---- documents -----------------------------------------------------------------------------


def _path_of(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def _documents() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for group, version in kinds.group_versions():
        out[_path_of(group, version)] = _serialize(_build(group, version))
    return out


def _serialize(doc: Json) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _build(group: str, version: str) -> Json:
    served = [k for k in kinds.KINDS if k.group == group and k.version == version]
    roots: list[str] = [_STATUS, _DELETE_OPTIONS, _LIST_META]
    paths: dict[str, Json] = {}
    for kind in served:
        roots.append(_definition(kind.group, kind.version, kind.kind))
        for name in kind.subresources:
            sub = discovery.subresource(kind, name)
            assert sub.gvk is not None
            if name not in ("log", "exec"):
                roots.append(_definition(*sub.gvk))
        paths.update(_Operations(kind).paths())
    gvks = _gvks_by_definition()
    components: dict[str, Json] = {
        name: _component(name, gvks.get(name, [])) for name in _closure(roots)
    }
    for kind in served:
        item = _definition(kind.group, kind.version, kind.kind)
        components[f"{item}List"] = _list_component(kind, item)
    components.update(copy.deepcopy(_SCALARS))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": discovery.GIT_VERSION},
        "paths": paths,
        "components": {"schemas": components},
    }


def _normalize(path: str) -> str:
    path = path.split("?", 1)[0].strip("/")
    return path.removeprefix("openapi/v3/").removeprefix("openapi/v3").strip("/")


def v3_document_json(path: str) -> bytes | None:
    """The serialized document for `apis/apps/v1` (or `/openapi/v3/apis/apps/v1?hash=…`)."""
    return _documents().get(_normalize(path))


def v3_document(path: str) -> Json | None:
    """The OpenAPI 3.0 document of one group-version, or None if it is not served."""
    data = v3_document_json(path)
    return None if data is None else dict(json.loads(data))


def v3_hash(path: str) -> str:
    """A stable digest of the document at `path` (uppercase hex SHA-512, as Kubernetes)."""
    data = v3_document_json(path)
    if data is None:
        raise KeyError(f"no OpenAPI v3 document at {path}")
    return hashlib.sha512(data).hexdigest().upper()


# kubectl asks for `...spec.v2@v1.0+protobuf`, but Go's mime parser rejects the "@"
# in a response Content-Type; Kubernetes answers with this spelling instead.
V2_MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _protobuf_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    out = bytearray([number << 3 | 2])
    size = len(payload)
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


def v2_document_protobuf() -> bytes:
    """The /openapi/v2 body: an openapi_v2.Document with `swagger` and `info` only."""
    info = _protobuf_field(1, b"Kubernetes") + _protobuf_field(2, discovery.GIT_VERSION.encode())
    return _protobuf_field(1, b"2.0") + _protobuf_field(2, info)


def v3_root() -> Json:
    """The /openapi/v3 body: each group-version's document URL, with its hash."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={v3_hash(path)}"}
            for path in _documents()
        }
    }
