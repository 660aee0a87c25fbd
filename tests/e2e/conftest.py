"""Fixtures that start the real apiserver as a process and drive it with the real kubectl.

Each test module gets its own server on a free loopback port with its own
data directory; the process is ended by its own pid when the module is done.
Tests share that server, so each works in a namespace of its own (the
`namespace` fixture). Helpers read what kubectl printed the way a person
would: `cells` splits a table into columns, `KubectlWatch` follows a
long-running `kubectl get -w` line by line.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBECTL = shutil.which("kubectl")
KUBECTL_DIR = Path(os.path.realpath(KUBECTL)).parent if KUBECTL else None
MINORS = tuple(range(27, 34))


def kubectl_binary(minor: int | None) -> str:
    if minor is None:
        assert KUBECTL is not None
        return KUBECTL
    assert KUBECTL_DIR is not None
    return str(KUBECTL_DIR / f"kubectl.1.{minor}")


class KubectlWatch:
    """A running `kubectl get -w`, read line by line from a thread so reads can time out."""

    def __init__(self, cmd: list[str]) -> None:
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []  # stdout lines read so far
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._stdout.put(line.rstrip("\n"))
        self._stdout.put(None)

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        """Read stdout until a line matches the regex `pattern`; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"kubectl printed no line matching {pattern!r} within {timeout}s; "
                    f"stdout so far: {self.lines!r}; stderr: {''.join(self._stderr)!r}"
                )
            try:
                line = self._stdout.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._stdout.put(None)  # stay at end of output for later calls
                raise AssertionError(
                    f"kubectl exited ({self.process.wait()}) before printing a line matching "
                    f"{pattern!r}; stdout: {self.lines!r}; stderr: {''.join(self._stderr)!r}"
                )
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The readers end at EOF once the process is gone; close the pipes only after them.
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def cells(line: str) -> list[str]:
    """The columns of one row kubectl printed (columns are set apart by 2+ spaces)."""
    return re.split(r"\s{2,}", line.strip())


def rows(output: str) -> list[list[str]]:
    """Every non-empty line of a table kubectl printed, split into columns; header first."""
    return [cells(line) for line in output.splitlines() if line.strip()]


def manifest(*objects: dict[str, Any]) -> str:
    """A multi-document YAML manifest, as a person would write for `kubectl apply -f`."""
    return "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    data_dir: Path
    kubeconfig: Path
    url: str
    cache_dir: Path

    def kubectl(
        self,
        *args: str,
        minor: int | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*args, minor=minor)
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def command(self, *args: str, minor: int | None = None) -> list[str]:
        """The argv of a kubectl run against this server, with its own kubeconfig and cache."""
        return [
            kubectl_binary(minor),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir / str(minor)),
            *args,
        ]

    def get_json(self, *args: str, minor: int | None = None) -> Any:
        """`kubectl get ARGS -o json`, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json", minor=minor).stdout)

    @contextmanager
    def watch(self, *args: str, minor: int | None = None) -> Iterator[KubectlWatch]:
        """Run a long-lived kubectl (`get -w`) and end it, by its own handle, on exit."""
        w = KubectlWatch(self.command(*args, minor=minor))
        try:
            yield w
        finally:
            w.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, *extra: str) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / "kubeconfig"
    log = open(data_dir / "apiserver.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "apiserver",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if process.poll() is not None:
            raise RuntimeError(
                f"apiserver exited {process.returncode}:\n"
                + (data_dir / "apiserver.log").read_text()
            )
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("apiserver did not write its kubeconfig within 30s")
        time.sleep(0.05)
    url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return Server(process, data_dir, kubeconfig, url, data_dir / "kubectl-cache")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    srv = start_server(tmp_path_factory.mktemp("apiserver"), "--bookmark-interval", "1")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def namespace(server: Server, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test, so tests sharing a server never collide."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    name = f"{slug[:52].strip('-')}-{digest}"
    server.kubectl("create", "namespace", name)
    return name
