"""Fixtures for lab tests: real network namespaces, links and processes, run as root.

Everything here stays inside network namespaces the test made; the
namespace pytest runs in is never given an address, a route or a link.

`netlab` is the one door to the kernel. It skips the test unless this is
root on a kernel where network namespaces can be made, and it records every
namespace, link and process it makes (and every namespace name it hands to
code under test) and removes them all when the test ends, passed or failed:
processes first (by the pid it started), then links, then namespaces.

Names carry the prefix `sbt-` and a token of this pytest run, so runs on
the same machine never touch each other's namespaces. At the end of the
session any namespace left with this run's prefix fails the run (and is
removed); one left by an earlier run is reported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

PREFIX = "sbt-"
SESSION_PREFIX = f"{PREFIX}{secrets.token_hex(3)}-"
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
# Runs argv[2:] inside network namespace argv[1]: setns, then exec.
_ENTER = (
    "import os, sys\n"
    "from pyroute2 import netns\n"
    "netns.setns(sys.argv[1], flags=0)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    probe = f"{SESSION_PREFIX}probe"
    try:
        netns.create(probe)
        netns.remove(probe)
    except OSError as exc:
        return f"network namespaces cannot be made here: {exc}"
    return None


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without proxy settings, so clients dial directly."""
    kept = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
    return {**kept, **extra}


class NetLab:
    """Namespaces, links and processes of one test, removed when it ends."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[tuple[str, str]] = []  # (namespace, interface)
        self.processes: list[subprocess.Popen[bytes]] = []

    def name(self, suffix: str) -> str:
        """A namespace name for code under test to create; removed at the end if it exists."""
        full = f"{SESSION_PREFIX}{suffix}"
        self.namespaces.append(full)
        return full

    def namespace(self, suffix: str) -> str:
        """A new, empty network namespace."""
        full = self.name(suffix)
        netns.create(full)
        return full

    def veth(self, first: tuple[str, str], second: tuple[str, str]) -> None:
        """A veth pair between two of this test's namespaces: (namespace, interface) each."""
        for namespace, _ in (first, second):
            assert namespace.startswith(SESSION_PREFIX), f"{namespace} is not this test's"
        self.links.append(first)
        with IPRoute(netns=first[0], flags=0) as ipr:
            ipr.link(
                "add",
                ifname=first[1],
                kind="veth",
                peer={"ifname": second[1], "net_ns_fd": second[0]},
            )

    def address(self, namespace: str, interface: str, cidr: str) -> None:
        """Put `cidr` on an interface of one of this test's namespaces and bring it up."""
        assert namespace.startswith(SESSION_PREFIX), f"{namespace} is not this test's"
        address, prefixlen = cidr.split("/")
        with IPRoute(netns=namespace, flags=0) as ipr:
            index = ipr.link_lookup(ifname=interface)[0]
            ipr.addr("add", index=index, address=address, prefixlen=int(prefixlen))
            ipr.link("set", index=index, state="up")

    def spawn(self, namespace: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        """Start `argv` inside `namespace`; ended when the test ends."""
        assert namespace.startswith(SESSION_PREFIX), f"{namespace} is not this test's"
        process = subprocess.Popen(
            [sys.executable, "-c", _ENTER, namespace, *argv],
            env=clean_environment(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def run(self, namespace: str, argv: list[str], timeout: float = 30) -> str:
        """Run `argv` inside `namespace` to completion; its output, or a failure with stderr."""
        assert namespace.startswith(SESSION_PREFIX), f"{namespace} is not this test's"
        done = subprocess.run(
            [sys.executable, "-c", _ENTER, namespace, *argv],
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{argv} in {namespace} failed: {done.stderr}"
        return done.stdout

    def cleanup(self) -> list[str]:
        """Remove everything; the problems met on the way (empty when all went)."""
        problems: list[str] = []
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stderr is not None:
                process.stderr.close()
        for namespace, interface in self.links:
            if namespace not in netns.listnetns():
                continue
            try:
                with IPRoute(netns=namespace, flags=0) as ipr:
                    ipr.link("del", ifname=interface)
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: gone with its peer's namespace
                    problems.append(f"link {interface} in {namespace}: {exc}")
        for namespace in reversed(self.namespaces):
            if namespace in netns.listnetns():
                try:
                    netns.remove(namespace)
                except OSError as exc:
                    problems.append(f"namespace {namespace}: {exc}")
        return problems


@pytest.fixture(scope="session")
def lab_available() -> None:
    reason = _lab_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def netlab(lab_available: None) -> Iterator[NetLab]:
    lab = NetLab()
    try:
        yield lab
    finally:
        problems = lab.cleanup()
    assert not problems, f"cleanup left things behind: {problems}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    present = [n for n in netns.listnetns() if n.startswith(PREFIX)]
    ours = [n for n in present if n.startswith(SESSION_PREFIX)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for namespace in ours:
        with contextlib.suppress(OSError):
            netns.remove(namespace)
    if ours:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(
                f"FAILED: lab tests left network namespaces behind: {ours}", red=True
            )
    earlier = sorted(set(present) - set(ours))
    if earlier and reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(
            f"network namespaces left by an earlier test run: {earlier}", yellow=True
        )
