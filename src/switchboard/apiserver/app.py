"""The aiohttp application: routing, error mapping, metrics, and the non-resource paths.

Every request passes one middleware that turns `status.APIError` (and any
unexpected exception) into a Kubernetes Status body and counts the request.
Resource paths go to `resources.Resources`; everything the server says
about itself (version, discovery, OpenAPI, health, metrics) is served here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from switchboard.apiserver import discovery, openapi, paths, status
from switchboard.apiserver.metrics import Metrics, verb_of
from switchboard.apiserver.registry import Registry
from switchboard.apiserver.resources import Resources, json_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REGISTRY_KEY = web.AppKey("registry", Registry)
METRICS_KEY = web.AppKey("metrics_obj", Metrics)


def _error_response(err: status.APIError) -> web.Response:
    resp = json_response(err.status(), err.code)
    # As Kubernetes' ErrorNegotiated: client-go reads the header, not the body's field.
    retry_after = (err.details or {}).get("retryAfterSeconds")
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics: Metrics = request.app[METRICS_KEY]
    started = time.perf_counter()
    target: paths.Target | None = request.get("target")
    code = 500
    try:
        resp = await handler(request)
        code = resp.status
        return resp
    except status.APIError as err:
        code = err.code
        return _error_response(err)
    except web.HTTPException as exc:
        code = exc.status
        raise
    except Exception as exc:  # the last line of defence: never a traceback to the client
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return _error_response(status.internal(type(exc).__name__))
    finally:
        target = request.get("target")
        if target is not None:
            watch = target.legacy_watch or paths.query_flag(request.query, "watch")
            verb = verb_of(request.method, bool(target.name), watch)
            metrics.requests.labels(verb, target.kind.plural, target.subresource, str(code)).inc()
            if not watch:
                metrics.latency.labels(verb, target.kind.plural).observe(
                    time.perf_counter() - started
                )


def build(registry: Registry, *, bookmark_interval: float = 60.0) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=4 * 1024 * 1024)
    metrics = Metrics()
    app[REGISTRY_KEY] = registry
    app[METRICS_KEY] = metrics
    # Plain string keys so watchstream (which must not import app) can read them.
    app["metrics"] = metrics
    app["bookmark_interval"] = bookmark_interval
    resources = Resources(registry)

    async def version(_: web.Request) -> web.StreamResponse:
        return json_response(discovery.version_info())

    async def health(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def metrics_handler(_: web.Request) -> web.StreamResponse:
        metrics.revision.set(await registry.store.current_revision())
        return web.Response(body=metrics.render(), content_type="text/plain")

    async def api_root(request: web.Request) -> web.StreamResponse:
        aggregated = discovery.negotiate_aggregated(request.headers.get("Accept", ""))
        if aggregated:
            body = discovery.aggregated("core", discovery.aggregated_version(aggregated))
            return _with_media_type(json_response(body), aggregated)
        return json_response(discovery.core_versions())

    async def apis_root(request: web.Request) -> web.StreamResponse:
        aggregated = discovery.negotiate_aggregated(request.headers.get("Accept", ""))
        if aggregated:
            body = discovery.aggregated("apis", discovery.aggregated_version(aggregated))
            return _with_media_type(json_response(body), aggregated)
        return json_response(discovery.group_list())

    async def openapi_v3(request: web.Request) -> web.StreamResponse:
        rest = request.match_info.get("rest", "")
        if not rest:
            return json_response(openapi.v3_root())
        doc = openapi.v3_document(rest)
        if doc is None:
            raise status.APIError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return json_response(doc)

    async def openapi_v2(_: web.Request) -> web.StreamResponse:
        # kubectl 1.27 and 1.28 stop when this is missing; an empty document satisfies them.
        resp = web.Response(body=openapi.v2_document_protobuf())
        resp.headers["Content-Type"] = openapi.V2_MEDIA_TYPE
        return resp

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if parts == ["api"]:
            return await api_root(request)
        if parts == ["apis"]:
            return await apis_root(request)
        if len(parts) == 2 and parts[0] == "api":
            found = discovery.resource_list("", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.resource_list(parts[1], parts[2])
        else:
            target = paths.parse(path)
            if target is None:
                raise status.APIError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            request["target"] = target
            return await resources.handle(request, target)
        if found is None:
            raise status.APIError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return json_response(found)

    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    for probe in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(probe, health)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi/v3", openapi_v3)
    app.router.add_get("/openapi/v3/{rest:.+}", openapi_v3)
    app.router.add_get("/openapi/v2", openapi_v2)
    # [\s\S], not ".": a name may hold an encoded newline, and it must still get a Status.
    app.router.add_route("*", r"/api{tail:[\s\S]*}", dispatch)
    return app


def _with_media_type(resp: web.Response, media_type: str) -> web.Response:
    # aiohttp's content_type setter drops parameters; set the header whole.
    resp.headers["Content-Type"] = media_type
    return resp
