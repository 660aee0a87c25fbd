"""A lab cluster as the lab tests drive it: kubectl through its kubeconfig, `switchboard` itself.

Shared by the modules that start a whole lab with `switchboard up`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from switchboard import labstate
from tests.lab.conftest import clean_environment

APPLY_STDIN = ("apply", "-f", "-")


@dataclass
class Cluster:
    data_dir: Path
    node_ips: tuple[str, ...]
    # Agents this module started itself, stopped at the end if `switchboard down` did not.
    restarted: list[labstate.Process] = field(default_factory=list)

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / labstate.KUBECONFIG)

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_environment(),
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, manifest: str) -> None:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *APPLY_STDIN],
            input=manifest,
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_environment(),
            check=False,
        )
        assert done.returncode == 0, f"kubectl apply: {done.stderr}"

    def pods(self, app: str) -> dict[str, str]:
        """Name → pod IP of the running pods labelled app=`app`."""
        listed = json.loads(self.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))
        return {
            p["metadata"]["name"]: p["status"].get("podIP", "")
            for p in listed["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        }

    def exec(self, pod: str, *argv: str, timeout: float = 60) -> str:
        return self.kubectl("exec", pod, "--", *argv, timeout=timeout)


def switchboard(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environment(),
        check=False,
    )
