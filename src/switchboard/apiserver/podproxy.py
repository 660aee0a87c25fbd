"""pods/NAME/log and pods/NAME/exec: checked here, then served by the agent on the pod's node.

The apiserver does what Kubernetes' does before it hands such a request to a
kubelet, and words its refusals the same way: the pod must exist, the
container must be one of the pod's (or, left out, the pod's only one), and
the pod must be bound to a node. The node's agent is found as Kubernetes
finds a kubelet: the Node's InternalIP (else ExternalIP, else Hostname
address) and status.daemonEndpoints.kubeletEndpoint.Port (10250 if unset).

log: the agent's answer is streamed through as it comes, chunk by chunk, so
`kubectl logs -f` sees each line when the container writes it; the stream
ends when the agent ends it or the client goes away. A pod on no node yet has
an empty log, as in Kubernetes. The agent's plain-text refusals become a
Status the way Kubernetes maps a kubelet's (400 BadRequest, 404 NotFound,
500 InternalError).

exec: only over WebSocket (GET with an Upgrade; kubectl sends POST only for
SPDY, which is refused with a Status saying which kubectl to use). The
subprotocol is negotiated with the client (v5.channel.k8s.io or v4), a
WebSocket with that same subprotocol is opened to the agent, and only then
is the client's upgrade accepted; frames are relayed both ways unchanged
until one side closes, and then the other is closed. If the agent cannot be
reached the upgrade is still accepted and the failure is sent as a Status on
the error channel: a refused upgrade would make kubectl 1.30+ retry over
SPDY and print that refusal instead of the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from switchboard.api import fielderrors, kinds
from switchboard.api import remotecommand as rc
from switchboard.api.kinds import Obj
from switchboard.apiserver import status
from switchboard.apiserver.registry import Registry

DEFAULT_KUBELET_PORT = 10250
_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname")
_CONNECT_TIMEOUT = 10.0
_LIVENESS_CHECK = 1.0  # seconds between checks that an idle log stream's client is still there
_MAX_MESSAGE = 4 * 1024 * 1024
_SPDY_REFUSED = (
    "this server runs exec over WebSocket only, not SPDY: use kubectl 1.30 or newer "
    "(or kubectl 1.29 with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true)"
)


def container_for(pod: Obj, requested: str) -> str:
    """The container a log or exec request is for; BadRequest as Kubernetes words it."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    if requested:
        if requested not in _all_containers(spec):
            raise status.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return str(containers[0]["name"])
    message = f"a container name must be specified for pod {name}"
    if containers:
        message += f", choose one of: [{' '.join(_all_containers(spec))}]"
    raise status.bad_request(message)


def _all_containers(spec: Obj) -> list[str]:
    return [
        c.get("name", "")
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]


async def agent_url(registry: Registry, node_name: str) -> URL:
    """The base URL of the agent on a node."""
    node = await registry.get(kinds.NODES, "", node_name)
    node_status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in node_status.get("addresses") or []}
    host = next((addresses[t] for t in _ADDRESS_PREFERENCE if addresses.get(t)), None)
    if host is None:
        known = ", ".join(f"{t}={a}" for t, a in addresses.items())
        raise status.APIError(
            500,
            "",
            f"no preferred addresses found for node {node_name}; known addresses: [{known}]",
        )
    endpoint = (node_status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = endpoint.get("Port") or DEFAULT_KUBELET_PORT
    return URL.build(scheme="http", host=host, port=int(port))


def _session() -> aiohttp.ClientSession:
    # No total timeout: a followed log or an exec session lasts as long as its client.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    )


# ---- log --------------------------------------------------------------------------------


def _log_query(pod_name: str, query: Mapping[str, str]) -> dict[str, str]:
    """The query for the agent; 400 for a malformed number, 422 for one out of range."""
    out: dict[str, str] = {}
    for name in ("follow", "previous", "timestamps"):
        if rc.flag(query.get(name)):
            out[name] = "true"
    errors: list[fielderrors.FieldError] = []
    for name, least, detail in (
        ("tailLines", 0, "must be greater than or equal to 0"),
        ("limitBytes", 1, "must be greater than 0"),
        ("sinceSeconds", 1, "must be greater than 0"),
    ):
        raw = query.get(name)
        if raw in (None, ""):
            continue
        try:
            value = int(raw)
        except ValueError as exc:
            raise status.bad_request(f'{name}: invalid value "{raw}": not an integer') from exc
        if value < least:
            errors.append(fielderrors.invalid(name, value, detail))
        out[name] = str(value)
    if query.get("sinceTime"):
        if "sinceSeconds" in out:
            errors.append(
                fielderrors.forbidden(
                    "", "at most one of `sinceTime` or `sinceSeconds` may be specified"
                )
            )
        out["sinceTime"] = query["sinceTime"]
    if errors:
        raise status.APIError(
            422,
            "Invalid",
            fielderrors.message("PodLogOptions", pod_name, errors),
            {
                "name": pod_name,
                "kind": "PodLogOptions",
                "causes": [
                    {"reason": e.reason, "message": e.body, "field": e.field} for e in errors
                ],
            },
        )
    return out


async def log(request: web.Request, registry: Registry, pod: Obj) -> web.StreamResponse:
    """Serve GET …/pods/NAME/log for `pod` from its node's agent."""
    meta = pod["metadata"]
    container = container_for(pod, request.query.get("container", ""))
    query = _log_query(meta["name"], request.query)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return web.Response(body=b"", content_type="text/plain")
    base = await agent_url(registry, node_name)
    url = base.with_path(f"/containerLogs/{meta['namespace']}/{meta['name']}/{container}")
    url = url.with_query(query)
    async with _session() as session:
        try:
            upstream = await session.get(url)
        except (aiohttp.ClientError, OSError) as exc:
            raise status.APIError(500, "", f'Get "{url}": {exc}') from exc
        async with upstream:
            if upstream.status != 200:
                raise _agent_refusal(upstream.status, await upstream.text())
            resp = web.StreamResponse()
            resp.content_type = "text/plain"
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                await _relay_body(request, upstream, resp)
                await resp.write_eof()
    return resp


def _agent_refusal(code: int, text: str) -> status.APIError:
    message = text.strip()
    if code == 400:
        return status.bad_request(message)
    if code == 404:
        return status.APIError(404, "NotFound", message)
    if code == 500:
        return status.internal(message)
    return status.APIError(code, "", message)


async def _relay_body(
    request: web.Request, upstream: aiohttp.ClientResponse, resp: web.StreamResponse
) -> None:
    while True:
        try:
            # Wake up now and then even when the log is quiet: aiohttp does not cancel a
            # handler whose client went away, and a followed log may stay quiet for ever.
            async with asyncio.timeout(_LIVENESS_CHECK):
                chunk = await upstream.content.readany()
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return
            continue
        if not chunk:
            return
        await resp.write(chunk)


# ---- exec -------------------------------------------------------------------------------


async def exec_(request: web.Request, registry: Registry, pod: Obj) -> web.StreamResponse:
    """Serve GET/POST …/pods/NAME/exec for `pod`, relaying a WebSocket to its node's agent."""
    meta = pod["metadata"]
    q = request.query
    container = container_for(pod, q.get("container", ""))
    command = q.getall("command", [])
    if not command:
        raise status.bad_request("you must specify at least one command for the container")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise status.bad_request(f"pod {meta['name']} does not have a host assigned")
    base = await agent_url(registry, node_name)
    client = web.WebSocketResponse(protocols=rc.PROTOCOLS, max_msg_size=_MAX_MESSAGE)
    ready = client.can_prepare(request)  # the client's first subprotocol that both speak
    if not ready.ok:
        if "spdy" in request.headers.get("Upgrade", "").lower():
            raise status.bad_request(_SPDY_REFUSED)
        raise status.bad_request("Upgrade request required")
    protocol = ready.protocol
    if not protocol:
        raise status.bad_request(
            rc.unsupported_protocols(request.headers.get("Sec-WebSocket-Protocol", ""))
        )
    url = base.with_path(f"/exec/{meta['namespace']}/{meta['name']}/{container}")
    url = url.with_query(
        [("command", c) for c in command]
        + [(name, "true") for name in ("stdin", "stdout", "stderr", "tty") if rc.flag(q.get(name))]
    )
    async with _session() as session:
        upstream: aiohttp.ClientWebSocketResponse | None = None
        failure: dict[str, Any] | None = None
        try:
            upstream = await session.ws_connect(
                url, protocols=(protocol,), max_msg_size=_MAX_MESSAGE
            )
        except aiohttp.WSServerHandshakeError as exc:
            failure = rc.failure(f"unable to upgrade connection: {exc.status} {exc.message}")
        except (aiohttp.ClientError, OSError) as exc:
            failure = rc.failure(f"error dialing the node agent at {base}: {exc}")
        await client.prepare(request)
        if upstream is None:
            with contextlib.suppress(ConnectionResetError):
                await client.send_bytes(rc.frame(rc.ERROR, json.dumps(failure).encode()))
            await client.close()
            return client
        async with upstream:
            await _relay(client, upstream)
    return client


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Copy frames both ways until one side closes; then close the other."""

    async def copy(source: Any, sink: Any) -> None:
        with contextlib.suppress(ConnectionResetError):
            async for msg in source:
                if msg.type is WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    return

    from_agent = asyncio.create_task(copy(upstream, client))
    from_client = asyncio.create_task(copy(client, upstream))
    try:
        await asyncio.wait((from_agent, from_client), return_when=asyncio.FIRST_COMPLETED)
        if from_agent.done():
            # The agent sent its Status and closed: close toward the client, which answers
            # once it has read everything (the reader task then sees the close as well).
            await client.close()
        else:
            await upstream.close()
    finally:
        for task in (from_agent, from_client):
            task.cancel()
        await asyncio.gather(from_agent, from_client, return_exceptions=True)
        await client.close()
