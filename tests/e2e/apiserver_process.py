"""A running `switchboard apiserver` for tests that need no kubectl.

The kubectl fixtures in conftest skip when kubectl is missing; the Python
client and HTTP fuzz tests only need the server, so they start their own
through `running_apiserver`, on a free loopback port with a fresh data
directory, and end it by its own pid.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    kubeconfig: Path
    url: str

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> Reply:
        """One HTTP request on a fresh connection; the body is read whole."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def stop(self) -> None:
        _end(self.process)


def _end(process: subprocess.Popen[bytes]) -> None:
    """End the server by its own pid: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_apiserver(data_dir: Path, *extra: str) -> Iterator[ApiServer]:
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / "kubeconfig"
    with open(data_dir / "apiserver.log", "ab") as log:
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
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"apiserver exited {process.returncode}:\n"
                    + (data_dir / "apiserver.log").read_text()
                )
            if time.monotonic() > deadline:
                raise RuntimeError("apiserver did not write its kubeconfig within 30s")
            time.sleep(0.05)
        url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        srv = ApiServer(process, data_dir, kubeconfig, url)
        yield srv
    finally:
        _end(process)
