"""Run the apiserver: open the store, bootstrap, serve, and announce readiness.

The kubeconfig is written (atomically) only once the socket is listening and
the system namespaces exist, so a script may start the server and simply wait
for `DATA_DIR/kubeconfig` to appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

from switchboard.apiserver import app as app_module
from switchboard.apiserver import lifecycle, reads, services
from switchboard.apiserver.registry import Registry
from switchboard.store.sqlite import SQLiteStore


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    port: int = 6443
    bookmark_interval: float = 60.0
    compact_window: int = 10000
    # How long a get or list waits for a resourceVersion the store has not reached.
    resource_version_wait: float = reads.RESOURCE_VERSION_WAIT
    service_cidr: str = services.DEFAULT_SERVICE_CIDR
    node_port_range: str = services.DEFAULT_NODE_PORT_RANGE


def kubeconfig(server: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "switchboard", "cluster": {"server": server}}],
        "users": [{"name": "switchboard-admin", "user": {}}],
        "contexts": [
            {
                "name": "switchboard",
                "context": {"cluster": "switchboard", "user": "switchboard-admin"},
            }
        ],
        "current-context": "switchboard",
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig(server), sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig_path = config.data_dir / "kubeconfig"
    with contextlib.suppress(FileNotFoundError):
        kubeconfig_path.unlink()
    store = await SQLiteStore.open(config.data_dir / "state.db")
    hooks = services.ServiceHooks(config.service_cidr, config.node_port_range)
    registry = Registry(store, hooks)
    registry.resource_version_wait = config.resource_version_wait
    # The stored Services are the record of what is allocated: rebuild before serving.
    await hooks.repair(registry)
    await lifecycle.bootstrap(registry)
    application = app_module.build(registry, bookmark_interval=config.bookmark_interval)
    runner = web.AppRunner(application, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_address, config.port, reuse_address=True)
    await site.start()
    port = config.port
    server = getattr(site, "_server", None)
    if port == 0 and server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    await services.ensure_kubernetes_service(registry, hooks, config.bind_address, port)
    host = config.bind_address if ":" not in config.bind_address else f"[{config.bind_address}]"
    write_kubeconfig(kubeconfig_path, f"http://{host}:{port}")
    if ready is not None:
        ready.set()
    loops = asyncio.gather(
        lifecycle.run_loops(registry, compact_window=config.compact_window),
        services.repair_loop(registry, hooks),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        loops.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loops
        await runner.cleanup()
        await store.close()
