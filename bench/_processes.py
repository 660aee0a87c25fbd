"""The processes a benchmark starts, and how it is sure to stop them.

Benchmarks run the code under test as separate processes: a `switchboard
apiserver` on a free loopback port, a controller-manager against it, a lab
made by `switchboard up --detach`, a DNS server or a peer such as dnsmasq.
Each must be gone when the benchmark ends, whether it measured or failed,
and only what the benchmark itself started may be ended: a process is
stopped by its own pid (SIGTERM, then SIGKILL if it has not exited within a
few seconds), never by its name, and a lab by `switchboard down` on its own
data directory. The helpers are here, once, so that every benchmark starts,
waits for and stops its processes the same way.

A process that will not start raises `ProcessError`, carrying the end of its
log when there is one; a benchmark reports it as "could not measure".
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

# The CLI run by this interpreter, so the benchmark and what it starts use the same code.
SWITCHBOARD = (sys.executable, "-m", "switchboard.cli")
START_SECONDS = 30.0
STOP_SECONDS = 5.0
LAB_UP_SECONDS = 300.0
LAB_DOWN_SECONDS = 180.0


class ProcessError(Exception):
    """A process the benchmark needs did not start, or shows none of what is read from it."""


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log; empty if it cannot be read."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def memory_kib(pid: int | Literal["self"]) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process `pid` ("self": this one), in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    if "VmRSS" not in fields or "VmHWM" not in fields:
        raise ProcessError(f"process {pid} shows no VmRSS or VmHWM")
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def stop(
    process: subprocess.Popen[Any], timeout: float = STOP_SECONDS, name: str | None = None
) -> None:
    """SIGTERM to the process, SIGKILL if it has not exited after `timeout`.

    With a `name`, being killed is noted on stderr: it means the process did
    not shut down as it should.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        if name is not None:
            print(
                f"note: the {name} had not stopped {timeout:.0f} s after SIGTERM, so it was killed",
                file=sys.stderr,
            )


def stop_all(processes: Iterable[subprocess.Popen[Any]], timeout: float = STOP_SECONDS) -> None:
    """`stop` for many, all sent SIGTERM first so that they shut down side by side."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        stop(process, timeout)


@contextlib.contextmanager
def running(
    argv: list[str], log: Path, name: str, stop_seconds: float = STOP_SECONDS
) -> Iterator[subprocess.Popen[bytes]]:
    """`switchboard ARGV` as a process writing to `log`; stopped by its pid on the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen([*SWITCHBOARD, *argv], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop(process, stop_seconds, name)


def server_url(kubeconfig: Path) -> str:
    """The URL of the (first) cluster a kubeconfig names."""
    config = yaml.safe_load(kubeconfig.read_text())
    try:
        return str(config["clusters"][0]["cluster"]["server"])
    except (TypeError, KeyError, IndexError):
        raise ProcessError(f"{kubeconfig} names no server") from None


@dataclass(frozen=True, slots=True)
class Apiserver:
    """A running `switchboard apiserver`: its process, URL, kubeconfig and log."""

    process: subprocess.Popen[bytes]
    url: str
    kubeconfig: Path
    log: Path

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server process, in KiB."""
        return memory_kib(self.process.pid)


@contextlib.contextmanager
def running_apiserver(
    data_dir: Path, start_seconds: float = START_SECONDS, stop_seconds: float = STOP_SECONDS
) -> Iterator[Apiserver]:
    """`switchboard apiserver` on a free loopback port, storing in `data_dir`.

    Ready once it has written `data_dir/kubeconfig` (replaced atomically, so
    whole when it appears); its output goes to `data_dir/apiserver.log`.
    """
    kubeconfig = data_dir / "kubeconfig"
    log = data_dir / "apiserver.log"
    argv = ["apiserver", "--data-dir", str(data_dir), "--bind-address", "127.0.0.1", "--port", "0"]
    with running(argv, log, "apiserver", stop_seconds) as process:
        deadline = time.monotonic() + start_seconds
        while not kubeconfig.exists():
            if process.poll() is not None:
                raise ProcessError(f"the apiserver exited {process.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise ProcessError(f"the apiserver wrote no kubeconfig in {start_seconds:.0f} s")
            time.sleep(0.02)
        yield Apiserver(process, server_url(kubeconfig), kubeconfig, log)


def _switchboard(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCHBOARD, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def lab(nodes: int, prefix: str) -> Iterator[Path]:
    """A lab of `nodes` nodes (`switchboard up --detach`); yields its data directory.

    The directory is a new temporary one, so the lab's names, derived from
    it, are its own. `switchboard down` runs on the way out even if `up`
    failed half-way, and the directory is removed after it.
    """
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        data_dir = Path(tmp) / "lab"
        try:
            where = ("--nodes", str(nodes), "--data-dir", str(data_dir))
            up = _switchboard("up", *where, "--detach", timeout=LAB_UP_SECONDS)
            if up.returncode != 0:
                raise ProcessError(f"switchboard up failed: {up.stdout}{up.stderr}")
            yield data_dir
        finally:
            down = _switchboard("down", "--data-dir", str(data_dir), timeout=LAB_DOWN_SECONDS)
            if down.returncode != 0:
                print(f"switchboard down failed: {down.stdout}{down.stderr}", file=sys.stderr)
