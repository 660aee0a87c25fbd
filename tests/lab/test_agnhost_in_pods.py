"""The built-in agnhost as Kubernetes' tests use it: between pods, over HTTP and UDP.

Two pods on one node namespace of the test's own; agnhost runs in them as
the agent would run it, `python -m switchboard.agent.agnhost <mode>`, and is
asked from the other pod's namespace.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from switchboard.agent import podnet
from tests.lab.conftest import NetLab
from tests.lab.test_podnet import AGNHOST, fetch, node_network

pytestmark = pytest.mark.lab

# Sends one datagram from inside a namespace and prints the reply, retrying while the server starts.
UDP_ASK = """
import socket, sys, time
deadline = time.monotonic() + 20
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(0.5)
    while True:
        sock.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
        try:
            print(sock.recv(2048).decode(), end="")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
"""


def two_pods(netlab: NetLab, state_dir: Path) -> tuple[podnet.PodNetwork, dict[str, str]]:
    network = node_network(netlab, state_dir, netlab.namespace("node"))
    namespaces = {"a": netlab.name("pod-a"), "b": netlab.name("pod-b")}
    for pod, namespace in namespaces.items():
        network.add_pod(f"uid-{pod}", namespace)
    return network, namespaces


def test_netexec_dials_another_pod_as_the_e2e_connectivity_checks_do(
    netlab: NetLab, state_dir: Path
) -> None:
    network, namespaces = two_pods(netlab, state_dir)
    ips = {pod: network.pods()[f"uid-{pod}"] for pod in namespaces}
    for pod, namespace in namespaces.items():
        netlab.spawn(namespace, [*AGNHOST, "netexec", "--http-port=8080"], HOSTNAME=f"pod-{pod}")
    fetch(netlab, namespaces["b"], f"http://{ips['b']}:8080/healthz")  # b is serving

    dial = f"http://{ips['a']}:8080/dial?host={ips['b']}&port=8080&request=hostname&tries=2"
    assert json.loads(fetch(netlab, namespaces["a"], dial)) == {"responses": ["pod-b", "pod-b"]}
    udp_dial = (
        f"http://{ips['a']}:8080/dial?host={ips['b']}&port=8081&request=hostname&protocol=udp"
    )
    assert json.loads(fetch(netlab, namespaces["a"], udp_dial)) == {"responses": ["pod-b"]}


def test_netexec_answers_udp_from_another_pod(netlab: NetLab, state_dir: Path) -> None:
    network, namespaces = two_pods(netlab, state_dir)
    ip_b = network.pods()["uid-b"]
    netlab.spawn(namespaces["b"], [*AGNHOST, "netexec", "--udp-port=8081"], HOSTNAME="pod-b")
    ask = [sys.executable, "-c", UDP_ASK, ip_b, "8081"]
    assert netlab.run(namespaces["a"], [*ask, "hostname"]) == "pod-b"
    assert netlab.run(namespaces["a"], [*ask, "clientip"]).startswith(f"{network.pods()['uid-a']}:")


def test_serve_hostname_answers_another_pod_over_http(netlab: NetLab, state_dir: Path) -> None:
    network, namespaces = two_pods(netlab, state_dir)
    ip_b = network.pods()["uid-b"]
    process = netlab.spawn(namespaces["b"], [*AGNHOST, "serve-hostname"], HOSTNAME="pod-b")
    assert fetch(netlab, namespaces["a"], f"http://{ip_b}:9376/") == "pod-b"
    # On SIGTERM serve-hostname keeps serving for 60 s, as agnhost does; no need to wait here.
    process.kill()
    process.wait()


def test_netexec_exits_zero_after_its_shutdown_delay_on_sigterm(
    netlab: NetLab, state_dir: Path
) -> None:
    network, namespaces = two_pods(netlab, state_dir)
    ip_b = network.pods()["uid-b"]
    process = netlab.spawn(
        namespaces["b"], [*AGNHOST, "netexec", "--delay-shutdown=1"], HOSTNAME="pod-b"
    )
    assert fetch(netlab, namespaces["a"], f"http://{ip_b}:8080/readyz") == "ok"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
