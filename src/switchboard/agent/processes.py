"""A container's processes from the outside: how one starts, is told from a recycled
pid, is signalled, and is waited for.

Every container instance starts as

    nsenter --net=/var/run/netns/<pod> -- unshare --uts [--mount] -- /bin/sh -c WRAPPER ...

(`container_argv`) in a session of its own, so the wrapper is the leader
of a process group that is the container. The wrapper (`_WRAPPER`, a few
lines of sh) names the host after the pod in its new UTS namespace,
bind-mounts the pod's resolv.conf over /etc/resolv.conf in its new mount
namespace when there is one, runs the container's argv in the foreground,
writes the exit code to a file (how an agent started later learns how a
container it did not start ended: that file, not the wrapper's own status,
is the exit code), and then SIGKILLs its own group, as the end of a
container's first process ends its pid namespace.

**Telling processes apart.** A pid alone names nothing for long: pids wrap
quickly (32768 is a common pid_max). A process is identified by its pid
*and* its start time (clock ticks after boot, from /proc/<pid>/stat), and
a group is only ever signalled while its leader is provably the wrapper
that was started: alive with the recorded start time, or a child of this
agent not yet reaped. Either way the leader's pid, and so the group id,
cannot have been handed to anyone else. Processes that leave the
container's group (a daemon calling setsid) are not followed: without
cgroups nothing can follow them.

**Waiting.** `wait_exit` waits on a pidfd, which works for processes this
agent did not start (adopted after a restart), so every container is
watched the same way.

**Exec.** `enter_argv` is an argv that enters a running container's
namespaces (`nsenter --target`), for exec probes and `kubectl exec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from switchboard.agent import launch as launches

NETNS_RUN_DIR = "/var/run/netns"
KILL_WAIT = 10.0  # how long a SIGKILLed process may take to be gone
_WRAPPER = r"""
exit_file=$1 pod_hostname=$2 resolv_conf=$3
shift 3
printf '%s' "$pod_hostname" > /proc/sys/kernel/hostname || exit 128
if [ -n "$resolv_conf" ]; then
  mount --bind "$resolv_conf" /etc/resolv.conf || echo "cannot bind-mount the pod's resolv.conf" >&2
fi
trap : TERM INT HUP QUIT
"$@"
echo "$?" > "$exit_file"
kill -KILL 0
"""


def container_argv(
    argv: Sequence[str],
    *,
    nsenter: str,
    unshare: str,
    netns: str | None,
    hostname: str,
    exit_file: Path,
    resolv_conf: Path | None = None,
) -> list[str]:
    """The argv that starts a container instance: namespaces, then the wrapper, then `argv`.

    `netns` is a name under /var/run/netns (None: stay in this process's own).
    """
    enter = [nsenter, f"--net={NETNS_RUN_DIR}/{netns}", "--"] if netns else []
    new = [unshare, "--uts", *(["--mount"] if resolv_conf else []), "--"]
    wrapper = ["/bin/sh", "-c", _WRAPPER, "container", str(exit_file), hostname]
    return [*enter, *new, *wrapper, str(resolv_conf or ""), *argv]


def enter_argv(nsenter: str, pid: int, working_dir: str, command: Sequence[str]) -> list[str]:
    """The argv that runs `command` in the namespaces of container process `pid`."""
    return [
        nsenter,
        f"--target={pid}",
        "--net",
        "--uts",
        "--mount",
        f"--wd={working_dir}",
        "--",
        *command,
    ]


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot; None if it is gone or a zombie."""
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[3]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, process group, session, start ticks) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            raw = stream.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, ticks: int) -> bool:
    """Whether `pid` is still the process that started at `ticks` (and not a zombie)."""
    return bool(ticks) and start_ticks(pid) == ticks


def signal_main(pid: int, ticks: int, sig: int) -> None:
    """Signal a container's main process: the wrapper's child, else the wrapper."""
    if not alive(pid, ticks):
        return
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as stream:
            children = [int(p) for p in stream.read().split()]
    except OSError:
        children = []
    targets = [p for p in children if (_stat(p) or ("", -1))[1] == pid] or [pid]
    for target in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)


def kill_group(pid: int, ticks: int) -> bool:
    """SIGKILL a container's process group, if its leader is still the one recorded."""
    if not alive(pid, ticks):
        return False  # gone: the wrapper ended its group itself, and the id may be reused
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def reap(pid: int) -> None:
    """Collect the exit of a child of this process, if it is one, so no zombie is left."""
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)


async def wait_exit(pid: int, ticks: int | None, popen: subprocess.Popen[bytes] | None) -> None:
    """Return once the process has ended; works for processes this agent did not start."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if popen is None and start_ticks(pid) != ticks:
            return  # it ended before the pidfd was opened
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def start_problem(launch: launches.Launch) -> str | None:
    """Why the container's argv cannot start here, checked before anything is spawned."""
    directory = launch.working_dir
    if not os.path.isdir(directory):
        return f'working directory "{directory}" does not exist on this node'
    if not launch.argv:
        return "the container has no command to run"
    program = launch.argv[0]
    if "/" in program:
        path = os.path.join(directory, program)
        found = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        found = (
            shutil.which(program, path=launch.env.get("PATH", launches.DEFAULT_PATH)) is not None
        )
    return None if found else f'exec: "{program}": executable file not found in $PATH'


def read_exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
