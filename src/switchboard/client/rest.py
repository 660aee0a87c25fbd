"""The async REST client: one aiohttp session, JSON dicts in and out.

Every component except the apiserver talks to the API through this class, so
it works against Switchboard's apiserver and a real Kubernetes API server
alike. Objects are plain dicts exactly as they travel on the wire; resources
are `api.kinds.ResourceKind` values (`kinds.PODS`, `kinds.SERVICES`, …).

Why a thin client of our own rather than the official `kubernetes` package:
that package is synchronous and turns every object into generated model
classes, which costs far more than the request itself at 10,000 Services
(docs/architecture.md has the measurement). Here a response body is parsed
once by orjson and handed over as dicts.

The boundary rules:
- a non-2xx answer becomes `errors.from_status(code, Status)` — the server's
  own Status body when it sent one, otherwise one made up from the HTTP code;
- anything that stops a request or a stream from completing (refused
  connection, reset, timeout, a body that is not JSON) is `TransportError`;
- a watch is one JSON object per line; an ERROR event raises the error it
  carries (`Gone` for 410), and a line that is not a known event raises
  `TransportError` instead of being skipped.

The aiohttp session is created lazily on the first request, so a Client can
be built outside an event loop (in `main`, from a kubeconfig) and used inside
one. Call `close()` (or use `async with`) when done.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote

import aiohttp
import orjson

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.client import errors, kubeconfig

PatchType = Literal["merge", "strategic", "json"]
WatchType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_WATCH_TYPES: frozenset[str] = frozenset(("ADDED", "MODIFIED", "DELETED", "BOOKMARK"))
# The Kubernetes reason client-go gives an error answer that carried no Status body.
_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# A watch that sees no byte for longer than the server promised to keep it open
# is dead (a silent network partition); this margin covers a slow last bookmark.
_WATCH_READ_MARGIN = 30.0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: WatchType
    object: Obj


def resource_path(
    kind: ResourceKind, namespace: str | None, name: str = "", subresource: str = ""
) -> str:
    """The URL path of a collection, an object, or an object's subresource."""
    path = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    elif kind.namespaced and name:
        raise ValueError(f"{kind.plural} are namespaced: name the namespace of {name!r}")
    path += f"/{kind.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    elif subresource:
        raise ValueError(f"subresource {subresource!r} needs an object name")
    return path


def object_key(obj: Obj) -> str:
    """ "namespace/name", or "name" for cluster-scoped objects: the informer cache key."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


class Client:
    """Async Kubernetes API client. Raises `client.errors` exceptions."""

    def __init__(
        self,
        config: kubeconfig.ClusterConfig,
        *,
        user_agent: str = "switchboard/0.1",
        max_connections: int = 100,
        request_timeout: float = 60.0,
    ) -> None:
        self.config = config
        self.user_agent = user_agent
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=10)
        # Built now so a bad certificate fails at construction, not on the first request.
        self._ssl = kubeconfig.ssl_context(config)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, context: str | None = None) -> Client:
        return cls(kubeconfig.load(path, context=context))

    @classmethod
    def for_server(cls, server: str) -> Client:
        """A client for a plain-http server with no credentials (tests, loopback)."""
        return cls(kubeconfig.ClusterConfig(server=server.rstrip("/")))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # ---- verbs ---------------------------------------------------------------------------

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, *, subresource: str = ""
    ) -> Obj:
        return await self._request("GET", resource_path(kind, namespace, name, subresource))

    async def list(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        """One page; `list_all` follows `metadata.continue`."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        if resource_version:
            params["resourceVersion"] = resource_version
        return await self._request("GET", resource_path(kind, namespace), params=params)

    async def list_all(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
    ) -> tuple[builtins.list[Obj], str]:
        """Every item across pages, and the list's resourceVersion.

        Items get `apiVersion` and `kind` filled in (a list's items carry
        neither on a real API server), so they look like watched objects.
        If the continue token expires halfway (410), the whole list is read
        again in one request, as client-go's pager does.
        """
        items: builtins.list[Obj] = []
        token = ""
        resource_version = ""
        while True:
            try:
                page = await self.list(
                    kind,
                    namespace,
                    label_selector=label_selector,
                    field_selector=field_selector,
                    limit=page_size,
                    continue_token=token,
                )
            except errors.Gone:
                if not token:
                    raise
                page = await self.list(
                    kind, namespace, label_selector=label_selector, field_selector=field_selector
                )
                items = []
                resource_version = ""
                token = ""
            meta = page.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion", ""))
            items.extend(page.get("items") or [])
            token = str(meta.get("continue") or "")
            if not token:
                break
        for item in items:
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items, resource_version

    async def create(
        self,
        kind: ResourceKind,
        namespace: str | None,
        obj: Obj,
        *,
        subresource: str = "",
        name: str = "",
    ) -> Obj:
        """POST; with `subresource` (e.g. "binding") POST to NAME/SUBRESOURCE."""
        if subresource:
            name = name or str((obj.get("metadata") or {}).get("name", ""))
            path = resource_path(kind, namespace, name, subresource)
        else:
            path = resource_path(kind, namespace)
        return await self._request("POST", path, body=obj)

    async def update(self, kind: ResourceKind, obj: Obj, *, subresource: str = "") -> Obj:
        """PUT the object (namespace and name from its metadata)."""
        meta = obj.get("metadata") or {}
        path = resource_path(kind, meta.get("namespace"), str(meta.get("name", "")), subresource)
        return await self._request("PUT", path, body=obj)

    async def patch(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> Obj:
        return await self._request(
            "PATCH",
            resource_path(kind, namespace, name, subresource),
            body=body,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> Obj:
        """DELETE; the answer is the object (possibly still terminating) or a Status."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        return await self._request("DELETE", resource_path(kind, namespace, name), body=options)

    async def watch(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int = 300,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream events; raises errors.Gone when the resourceVersion is too old.

        The stream ends normally when the server closes it (at
        `timeout_seconds`); the caller resumes from the last resourceVersion
        it saw. Close the iterator (`contextlib.aclosing`) when stopping early,
        so the connection is released at once rather than at garbage collection.
        """
        params = {"watch": "true", "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        path = resource_path(kind, namespace)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=timeout_seconds + _WATCH_READ_MARGIN
        )
        try:
            async with self._session_now().get(
                self.config.server + path,
                params=params,
                headers=self._headers(),
                timeout=timeout,
                server_hostname=self.config.tls_server_name or None,
            ) as resp:
                if resp.status >= 400:
                    raise _api_error(resp.status, await resp.read(), resp.reason)
                buf = bytearray()
                async for chunk in resp.content.iter_any():
                    buf.extend(chunk)
                    start = 0
                    while (end := buf.find(b"\n", start)) >= 0:
                        line = buf[start:end]
                        start = end + 1
                        if line.strip():
                            yield _watch_event(line)
                    del buf[:start]
                if buf.strip():
                    yield _watch_event(buf)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.TransportError(f"watch {path}: {_describe(exc)}") from exc

    # ---- plumbing ------------------------------------------------------------------------

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ssl=self._ssl if self._ssl is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, json_serialize=_dumps_str
            )
        return self._session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = None if body is None else orjson.dumps(body)
        try:
            async with self._session_now().request(
                method,
                self.config.server + path,
                params=params,
                data=data,
                headers=self._headers(content_type if data is not None else None),
                server_hostname=self.config.tls_server_name or None,
            ) as resp:
                raw = await resp.read()
                code, reason = resp.status, resp.reason
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.TransportError(f"{method} {path}: {_describe(exc)}") from exc
        if code >= 400:
            raise _api_error(code, raw, reason)
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.TransportError(
                f"{method} {path}: the server answered {code} with a body that is not JSON"
            ) from exc
        if not isinstance(decoded, dict):
            raise errors.TransportError(
                f"{method} {path}: the server answered {code} with JSON that is not an object"
            )
        return cast(Obj, decoded)


def _watch_event(line: bytes | bytearray) -> WatchEvent:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise errors.TransportError(
            f"watch stream sent a line that is not JSON: {bytes(line[:200])!r}"
        ) from exc
    type_ = doc.get("type") if isinstance(doc, dict) else None
    obj = doc.get("object") if isinstance(doc, dict) else None
    if type_ == "ERROR" and isinstance(obj, dict):
        code = obj.get("code")
        raise errors.from_status(code if isinstance(code, int) else 500, obj)
    if type_ not in _WATCH_TYPES or not isinstance(obj, dict):
        raise errors.TransportError(
            f"watch stream sent something that is not a watch event: {bytes(line[:200])!r}"
        )
    return WatchEvent(cast(WatchType, type_), obj)


def _api_error(code: int, raw: bytes, http_reason: str | None) -> errors.APIError:
    try:
        doc = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return errors.from_status(code, doc)
    text = raw.decode(errors="replace").strip()[:500]
    status: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": _REASONS.get(code, "Unknown"),
        "message": text or http_reason or f"the server answered HTTP {code}",
    }
    return errors.from_status(code, status)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()
