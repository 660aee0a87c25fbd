"""Fixtures that start the real apiserver as a process and drive it with the real kubectl.

Each test module gets its own server on a free loopback port with its own
data directory; the process is ended by its own pid when the module is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
        cmd = [
            kubectl_binary(minor),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir / str(minor)),
            *args,
        ]
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

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
        [sys.executable, "-m", "switchboard.cli", "apiserver", "--data-dir", str(data_dir),
         "--port", "0", *extra],
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
