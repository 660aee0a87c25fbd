"""HTTP handlers for resource paths: verbs in, registry calls out.

This module owns the HTTP half of a resource request — query parameters,
bodies, content negotiation (JSON, YAML, protobuf in; JSON or a server-side
Table out), field validation, subresources — and leaves object semantics to
the registry. Watch streams live in `watchstream`.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from switchboard.api import patch, schema, selectors
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, paths, podproxy, reads, status, tables, watchstream
from switchboard.apiserver.paths import Target
from switchboard.apiserver.reads import ListOptions
from switchboard.apiserver.registry import DeleteOptions, Registry

MAX_BODY_BYTES = 3 * 1024 * 1024  # Kubernetes' request size limit
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)

_PATCH_ERROR_REASONS = {413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid"}
_GOT_AT = ("", "status", "scale")  # subresources whose GET takes a resourceVersion


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def json_response(body: Any, code: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=codec.dumps(body), status=code, content_type="application/json")
    for w in warnings or []:
        # A quoted-string, with quotes, backslashes and control characters escaped: a field
        # name in a warning is the client's text, and a raw newline cannot go in a header.
        # JSON leaves DEL as it is, and a header may not hold it either.
        quoted = codec.dumps(w).decode().replace("\x7f", "\\u007f")
        resp.headers.add("Warning", "299 - " + quoted)
    return resp


def list_options(
    query: Mapping[str, str], kind: ResourceKind, *, watch: bool = False
) -> ListOptions:
    """The query's ListOptions, refused (400, or 422 as ValidateListOptions) if malformed."""
    label = field = None
    try:
        if query.get("labelSelector"):
            label = selectors.parse_label_selector(query["labelSelector"])
        if query.get("fieldSelector"):
            field = selectors.field_selector_for(
                query["fieldSelector"], group=kind.group, kind=kind.kind
            )
    except ValueError as exc:
        raise status.bad_request(str(exc)) from exc
    try:
        limit = int(query.get("limit", "0") or 0)
    except ValueError as exc:
        raise status.bad_request(f"invalid limit: {query.get('limit')}") from exc
    if limit >= 2**63:  # an int64, as in Kubernetes; the store cannot take more either
        raise status.bad_request(f"invalid limit: {query.get('limit')}")
    opts = ListOptions(
        label_selector=label,
        field_selector=field,
        limit=max(0, limit),
        continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        resource_version_match=query.get("resourceVersionMatch", ""),
        # Go decodes any value but "false" and "0" as true; sent at all, it is set.
        send_initial_events=(
            paths.query_flag(query, "sendInitialEvents") if "sendInitialEvents" in query else None
        ),
    )
    reads.check_options(opts, watch=watch)
    return opts


def without_nulls(value: Any) -> Any:
    """`value` without null object fields: Go's decoder leaves a field read as null unset.

    Defaulting and validation can then take a field to be absent or of its type, as
    `"spec": null` is in Kubernetes. Null list items stay, for validation to reject.
    """
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def include_object(query: Mapping[str, str]) -> str:
    value = query.get("includeObject", "Metadata") or "Metadata"
    if value not in tables.INCLUDE_OBJECT:
        raise status.bad_request(
            f'includeObject: Unsupported value: "{value}": supported values: '
            '"None", "Metadata", "Object"'
        )
    return value


def _dry_run(query: Mapping[str, str]) -> bool:
    value = query.get("dryRun", "")
    if value not in ("", "All"):
        raise status.bad_request(f'Invalid dry run value: "{value}"; supported values: "All"')
    return value == "All"


def _field_validation(query: Mapping[str, str]) -> schema.Mode:
    try:
        return schema.parse_mode(query.get("fieldValidation"))
    except ValueError as exc:
        raise status.bad_request(str(exc)) from exc


class Resources:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        kind = target.kind
        if target.legacy_watch or (method == "GET" and paths.query_flag(request.query, "watch")):
            name_field = target.name or None
            include_object(request.query)  # reject a bad value before the stream starts
            return await watchstream.serve(
                request,
                self.registry,
                kind,
                target.namespace,
                list_options(request.query, kind, watch=True),
                name=name_field,
            )
        namespace = target.namespace or ""
        if kind.namespaced and target.name and target.namespace is None:
            raise status.APIError(
                404, "NotFound", "the server could not find the requested resource", {}
            )
        if method == "GET":
            if not target.name:
                return await self._list(request, kind, target.namespace)
            return await self._get(request, target)
        if method == "POST":
            if target.subresource == "binding":
                return await self._bind(request, target)
            if target.subresource == "exec":  # SPDY clients POST; podproxy tells them what to use
                return await self._get(request, target)
            if target.name:
                raise status.method_not_allowed(
                    "the server does not allow this method on the requested resource"
                )
            if kind.namespaced and target.namespace is None:
                raise status.APIError(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
            return await self._create(request, kind, namespace)
        if method == "PUT" and target.name:
            return await self._update(request, target)
        if method == "PATCH" and target.name:
            return await self._patch(request, target)
        if method == "DELETE":
            if target.name:
                return await self._delete(request, target)
            return await self._delete_collection(request, kind, target.namespace)
        raise status.method_not_allowed(
            "the server does not allow this method on the requested resource"
        )

    # ---- reads ---------------------------------------------------------------------------

    async def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        # GetOptions.resourceVersion: for the object and its status and scale, not its log.
        rv = request.query.get("resourceVersion", "") if target.subresource in _GOT_AT else ""
        obj = await self.registry.get(target.kind, target.namespace or "", target.name, rv)
        if target.subresource == "scale":
            return json_response(to_scale(obj))
        if target.subresource == "log":
            return await podproxy.log(request, self.registry, obj)
        if target.subresource == "exec":
            return await podproxy.exec_(request, self.registry, obj)
        if wants_table(request) and not target.subresource:
            return json_response(
                tables.table(
                    target.kind,
                    [obj],
                    now=datetime.now(UTC),
                    list_meta={"resourceVersion": obj["metadata"]["resourceVersion"]},
                    include_object=include_object(request.query),
                )
            )
        return json_response(obj)

    async def _list(
        self, request: web.Request, kind: ResourceKind, namespace: str | None
    ) -> web.StreamResponse:
        opts = list_options(request.query, kind)
        if not wants_table(request) and self.registry.serves_encoded(kind, opts):
            body = await self.registry.list_encoded(kind, namespace, opts)
            return web.Response(body=body, content_type="application/json")
        result = await self.registry.list(kind, namespace, opts)
        if wants_table(request):
            return json_response(
                tables.table(
                    kind,
                    result["items"],
                    now=datetime.now(UTC),
                    list_meta=result["metadata"],
                    include_object=include_object(request.query),
                )
            )
        return json_response(result)

    # ---- writes --------------------------------------------------------------------------

    async def _read_object(
        self, request: web.Request, kind: ResourceKind, expect_kind: str | None = None
    ) -> tuple[Obj, list[str]]:
        body = await _body(request)
        content_type = request.headers.get("Content-Type", "application/json")
        obj = codec.parse_body(body, content_type)
        if not isinstance(obj, dict):
            raise status.bad_request(
                schema.decode_error_message(
                    kind.kind, kind.api_version, "the request body must be a JSON object"
                )
            )
        expect_kind = expect_kind or kind.kind
        api_version = kind.api_version if expect_kind == kind.kind else "autoscaling/v1"
        got_kind, got_version = obj.get("kind"), obj.get("apiVersion")
        if got_kind not in (None, "", expect_kind) or got_version not in (None, "", api_version):
            raise status.bad_request(
                f"the API version in the data ({got_version}) does not match the expected API "
                f"version ({api_version})"
                if got_version not in (None, "", api_version)
                else f"the kind in the data ({got_kind}) does not match the expected kind "
                f"({expect_kind})"
            )
        warnings: list[str] = []
        if codec.media_type(content_type) != codec.PROTOBUF:
            mode = _field_validation(request.query)
            # The URL's version, not the body's: an events.k8s.io Event may omit apiVersion.
            errors, warnings = schema.check(
                expect_kind, obj, mode, api_version=api_version, raw=body
            )
            if errors:
                raise status.bad_request(
                    schema.decode_error_message(expect_kind, api_version, "; ".join(errors))
                )
            obj = schema.without_unknown(expect_kind, obj, api_version=api_version)
        return without_nulls(obj), warnings

    async def _create(
        self, request: web.Request, kind: ResourceKind, namespace: str
    ) -> web.StreamResponse:
        obj, warnings = await self._read_object(request, kind)
        meta = obj.get("metadata") or {}
        if (
            kind.namespaced
            and isinstance(meta, dict)
            and meta.get("namespace")
            not in (
                None,
                "",
                namespace,
            )
        ):
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        created = await self.registry.create(kind, namespace, obj, dry_run=_dry_run(request.query))
        return json_response(created, 201, warnings)

    async def _update(self, request: web.Request, target: Target) -> web.StreamResponse:
        kind = target.kind
        if target.subresource == "scale":
            scale, warnings = await self._read_object(request, kind, "Scale")
            return await self._write_scale(request, target, lambda _: scale, warnings)
        obj, warnings = await self._read_object(request, kind)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}

        def replace(current: Obj) -> Obj:
            new = copy.deepcopy(obj)
            if target.subresource == "finalize":
                current["spec"] = new.get("spec", {})
                current["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
                return current
            return new

        updated = await self.registry.update(
            kind,
            target.namespace or "",
            target.name,
            replace,
            subresource="status" if target.subresource == "status" else "",
            dry_run=_dry_run(request.query),
        )
        return json_response(updated, 200, warnings)

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        content_type = codec.media_type(request.headers.get("Content-Type", ""))
        if content_type not in _PATCH_TYPES:
            raise status.unsupported_media_type(content_type)
        body = await _body(request)
        codec.check_json_shape(body)
        mode = _field_validation(request.query)
        warnings: list[str] = []
        kind = target.kind

        def apply(current: Obj, kind_name: str) -> Obj:
            try:
                patched = patch.apply_patch(kind_name, current, body, content_type)
            except patch.PatchError as exc:
                # 422 for a patch that does not apply, 413 for a JSON patch of too many
                # operations, 415 for one of a type not served.
                reason = _PATCH_ERROR_REASONS.get(exc.status, "BadRequest")
                raise status.APIError(exc.status, reason, str(exc)) from exc
            except RecursionError as exc:
                # JSON patch copies can nest a value inside itself, one level per operation.
                raise status.bad_request("the patched object nests too deeply") from exc
            if not isinstance(patched, dict):
                raise status.bad_request("the patch must produce a JSON object")
            codec.check_shape(patched, sys.maxsize, "the patched object")
            errors, warns = schema.check(kind_name, patched, mode)
            if errors:
                raise status.bad_request(
                    schema.decode_error_message(kind_name, kind.api_version, "; ".join(errors))
                )
            warnings[:] = warns
            result: Obj = without_nulls(schema.without_unknown(kind_name, patched))
            return result

        if target.subresource == "scale":
            return await self._write_scale(
                request, target, lambda scale: apply(scale, "Scale"), warnings
            )
        updated = await self.registry.update(
            kind,
            target.namespace or "",
            target.name,
            lambda current: apply(current, kind.kind),
            subresource="status" if target.subresource == "status" else "",
            dry_run=_dry_run(request.query),
        )
        return json_response(updated, 200, warnings)

    async def _write_scale(
        self,
        request: web.Request,
        target: Target,
        new_scale: Any,
        warnings: list[str],
    ) -> web.StreamResponse:
        def mutate(current: Obj) -> Obj:
            scale = new_scale(to_scale(current))
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise status.bad_request("spec.replicas must be an integer")
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            current.setdefault("spec", {})["replicas"] = replicas
            current["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
            return current

        updated = await self.registry.update(
            target.kind,
            target.namespace or "",
            target.name,
            mutate,
            dry_run=_dry_run(request.query),
        )
        return json_response(to_scale(updated), 200, warnings)

    async def _bind(self, request: web.Request, target: Target) -> web.StreamResponse:
        body = codec.parse_body(
            await _body(request), request.headers.get("Content-Type", "application/json")
        )
        target_ref = body.get("target") if isinstance(body, dict) else None
        node = target_ref.get("name") if isinstance(target_ref, dict) else None
        if not node or not isinstance(node, str):
            raise status.bad_request("a Binding needs target.name, the node to bind to")
        name = target.name or ((body.get("metadata") or {}).get("name", ""))

        def bind(pod: Obj) -> Obj:
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise status.APIError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                    f'already assigned to node "{spec["nodeName"]}"',
                )
            spec["nodeName"] = node
            # As Kubernetes' binding does: the pod is now scheduled, whatever it said before.
            conditions = [
                c
                for c in (pod.setdefault("status", {}).get("conditions") or [])
                if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": codec.now()}
            )
            pod["status"]["conditions"] = conditions
            return pod

        await self.registry.update(
            target.kind, target.namespace or "", name, bind, subresource="binding"
        )
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            201,
        )

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        opts = await _delete_options(request)
        obj = await self.registry.delete(target.kind, target.namespace or "", target.name, opts)
        return json_response(obj, 200)

    async def _delete_collection(
        self, request: web.Request, kind: ResourceKind, namespace: str | None
    ) -> web.StreamResponse:
        opts = await _delete_options(request)
        listed = await self.registry.list(kind, namespace, list_options(request.query, kind))
        deleted: list[Obj] = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                deleted.append(
                    await self.registry.delete(kind, meta.get("namespace", ""), meta["name"], opts)
                )
            except status.APIError as exc:
                if exc.code != 404:
                    raise
        return json_response(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": listed["metadata"]["resourceVersion"]},
                "items": deleted,
            }
        )


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise status.too_large(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise status.too_large(MAX_BODY_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


async def _delete_options(request: web.Request) -> DeleteOptions:
    body = await _body(request)
    data: dict[str, Any] = {}
    if body.strip():
        parsed = codec.parse_body(body, request.headers.get("Content-Type", "application/json"))
        if not isinstance(parsed, dict):
            raise status.bad_request("DeleteOptions must be a JSON object")
        data = parsed
    q = request.query
    grace: Any = q.get("gracePeriodSeconds", data.get("gracePeriodSeconds"))
    try:
        grace_value = None if grace is None else int(grace)
    except (TypeError, ValueError) as exc:
        raise status.bad_request(f"gracePeriodSeconds must be an integer, not {grace!r}") from exc
    policy = q.get("propagationPolicy", data.get("propagationPolicy"))
    if q.get("orphanDependents", str(data.get("orphanDependents", ""))).lower() == "true":
        policy = policy or "Orphan"
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise status.bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Background", "Foreground", "Orphan"'
        )
    pre = data.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise status.bad_request("DeleteOptions.preconditions must be a JSON object")
    dry = q.get("dryRun") == "All" or data.get("dryRun") == ["All"]
    return DeleteOptions(
        grace_period_seconds=grace_value,
        propagation_policy=policy,
        preconditions_uid=pre.get("uid"),
        preconditions_rv=pre.get("resourceVersion"),
        dry_run=dry,
    )


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": selectors.selector_string(sel) if isinstance(sel, dict) else "",
        },
    }
