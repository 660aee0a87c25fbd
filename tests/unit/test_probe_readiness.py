"""A container's readiness as its probes hold it, from the first moment on."""

from __future__ import annotations

import asyncio
import socket
import time

from switchboard.agent import probes


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def container(port: int) -> dict[str, object]:
    return {
        "name": "web",
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 1},
    }


def prober(
    port: int, *, reported_ready: bool, changes: list[bool], changed: asyncio.Event
) -> probes.ContainerProbes:
    def no_exec(argv: list[str]) -> list[str]:
        return argv

    holder: list[probes.ContainerProbes] = []
    made = probes.ContainerProbes(
        container(port),
        probes.Target(pod_ip="127.0.0.1", netns=None, exec_argv=no_exec),  # type: ignore[arg-type]
        container_id="switchboard://1",
        started_at=time.time(),
        on_change=lambda: (changes.append(holder[0].ready), changed.set()),
        on_failed=lambda probe, message: None,
        on_unhealthy=lambda probe, message: None,
        reported_ready=reported_ready,
    )
    holder.append(made)
    return made


async def test_a_new_container_is_not_ready_until_its_probe_succeeds() -> None:
    changes: list[bool] = []
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    changed = asyncio.Event()
    probe = prober(port, reported_ready=False, changes=changes, changed=changed)
    assert not probe.ready
    probe.start()
    try:
        async with asyncio.timeout(10):
            await changed.wait()
    finally:
        await probe.stop()
        server.close()
    assert changes == [True]


async def test_a_container_reported_ready_stays_ready_until_its_probe_fails() -> None:
    # An agent restarted beside a running container: the pod's status says ready, so
    # its Services keep it until a probe says otherwise -- here the port is closed.
    changes: list[bool] = []
    changed = asyncio.Event()
    probe = prober(unused_port(), reported_ready=True, changes=changes, changed=changed)
    assert probe.ready and probe.started
    probe.start()
    try:
        async with asyncio.timeout(10):
            await changed.wait()
    finally:
        await probe.stop()
    assert changes == [False]
