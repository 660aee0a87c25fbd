"""Apply an nftables script in a network namespace: the proxy's one side effect.

Two backends with one method, `apply(script)`, each taking the namespace as
a constructor argument (None: the namespace this process runs in):

- `LibNftables` loads libnftables through ctypes and runs scripts
  in-process. Netlink sockets belong to the namespace of the thread that
  opened them, so each instance owns one worker thread that enters the
  namespace once, creates the nftables context there and runs every script;
  the caller's threads never change namespace. The context keeps nft's
  cache of the table between scripts, so a one-element change at 10,000
  Services applies in about 0.3 ms; the tool re-reads the table for every
  script (20-45 ms there). It also takes one script in pieces
  (`apply_stream`, the `StreamingBackend` protocol): nft reads them from a
  pipe while the caller still makes the rest, so a full sync's Python work
  runs beside nft's parsing instead of before it.
- `NftCommand` pipes the script into ``nft -f -``, started inside the
  namespace with ``ip netns exec``. It needs only the tool, and is the
  fallback where the library is missing.

`open_backend` picks the library when it loads. A script is one
transaction either way: it applies whole or not at all, and a failure is
raised as `NftError` with nft's own message.

Errors::

    NftError            nft rejected a script, or could not run
     └── NftUnavailable  neither libnftables nor the nft tool is usable
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar, runtime_checkable

_T = TypeVar("_T")
_NFT_CTX_DEFAULT = 0
_PIPE_SIZE = 1 << 20
# Written after a script that was cut short: nft's scanner reads a backquote as junk,
# a syntax error wherever it stands, so nothing of the script is committed.
_UNPARSABLE = b"\n` the script was cut short\n"


class NftError(Exception):
    """nft rejected a script or could not be run; the message is nft's."""


class NftUnavailable(NftError):
    """Neither libnftables nor the nft tool can be used on this machine."""


class Backend(Protocol):
    """Runs nft scripts in one network namespace."""

    netns: str | None

    def apply(self, script: str) -> None:
        """Run `script` as one transaction; raise NftError if it is rejected."""

    def close(self) -> None:
        """Release what the backend holds; it cannot be used afterwards."""


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that can also take one script in pieces, reading them as they are made."""

    def apply_stream(self, pieces: Iterable[str]) -> None:
        """Run the pieces, joined, as one transaction: all of it or nothing."""


class NftCommand:
    """Runs `nft -f -` inside the namespace for each script."""

    def __init__(self, netns: str | None = None, *, timeout: float = 60.0) -> None:
        if shutil.which("nft") is None:
            raise NftUnavailable("the nft tool is not installed; install the nftables package")
        self.netns = netns
        self._timeout = timeout

    def apply(self, script: str) -> None:
        argv = ["nft", "-f", "-"]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            done = subprocess.run(
                argv,
                input=script,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"running nft in {_where(self.netns)} failed: {exc}") from exc
        if done.returncode != 0:
            raise _rejected(self.netns, done.stderr)

    def close(self) -> None:
        pass


def _load_library() -> ctypes.CDLL:
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        library = ctypes.CDLL(name)
    except OSError as exc:
        raise NftUnavailable(
            f"libnftables cannot be loaded ({exc}); install libnftables1 or use NftCommand"
        ) from exc
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.restype = None
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_output.restype = ctypes.c_int
    library.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_error.restype = ctypes.c_int
    library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    library.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    library.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    library.nft_run_cmd_from_buffer.restype = ctypes.c_int
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.nft_run_cmd_from_filename.restype = ctypes.c_int
    library.nft_run_cmd_from_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return library


class LibNftables:
    """Runs scripts through libnftables on a worker thread that lives in the namespace."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._library = _load_library()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._context: int | None = None
        self._closed = False
        ready: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"nftables-{netns or 'self'}", daemon=True
        )
        self._thread.start()
        failure = ready.get()
        if failure is not None:
            self._thread.join()
            raise failure

    def _run(self, ready: queue.SimpleQueue[BaseException | None]) -> None:
        try:
            if self.netns is not None:
                from pyroute2 import netns as _netns

                # setns changes only this thread: the worker stays in the namespace for good.
                _netns.setns(self.netns, flags=0)
            context = self._library.nft_ctx_new(_NFT_CTX_DEFAULT)
            if not context:
                raise NftError("libnftables could not create a context")
            self._library.nft_ctx_buffer_output(context)
            self._library.nft_ctx_buffer_error(context)
            self._context = context
        except BaseException as exc:
            ready.put(
                exc
                if isinstance(exc, NftError)
                else NftError(f"cannot enter network namespace {self.netns}: {exc}")
            )
            return
        ready.put(None)
        try:
            while (job := self._jobs.get()) is not None:
                job()
        finally:
            self._library.nft_ctx_free(context)

    def _submit(self, work: Callable[[], _T]) -> queue.SimpleQueue[tuple[bool, object]]:
        """Queue `work` for the worker thread; its answer arrives in the queue returned."""
        if self._closed:
            raise NftError("this nftables backend is closed")
        answer: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()

        def job() -> None:
            try:
                answer.put((True, work()))
            except BaseException as exc:
                answer.put((False, exc))

        self._jobs.put(job)
        return answer

    def _call(self, work: Callable[[], _T]) -> _T:
        return _outcome(self._submit(work).get())  # type: ignore[return-value]

    def _check(self, status: int) -> None:
        """Raise nft's error if the script just run failed (on the worker thread)."""
        # Read even on success: reading the error buffer resets it for the next script.
        error = self._library.nft_ctx_get_error_buffer(self._context) or b""
        if status != 0:
            raise _rejected(self.netns, error.decode())

    def apply(self, script: str) -> None:
        data = script.encode()

        def run() -> None:
            self._check(self._library.nft_run_cmd_from_buffer(self._context, data))

        self._call(run)

    def apply_stream(self, pieces: Iterable[str]) -> None:
        """Run the pieces, joined, as one transaction, while the caller still makes them.

        nft reads the script from a pipe that this thread fills as `pieces`
        yields, so nft parses the start of a big script while Python makes
        the rest; nothing is committed before the end has been read. If
        making a piece fails, a line nft cannot parse goes in after whatever
        was written, so nft rejects the whole and the exception is raised.
        """
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # a bigger pipe, fewer wake-ups; the default works
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)

        def run() -> None:
            try:
                # nft opens the path itself; /proc/self/fd names the pipe in any namespace.
                path = f"/proc/self/fd/{read_end}".encode()
                status = self._library.nft_run_cmd_from_filename(self._context, path)
            finally:
                # Closed only now, so that a writer blocked on a full pipe gets EPIPE
                # instead of waiting for ever if nft gave up before the end.
                os.close(read_end)
            self._check(status)

        try:
            answer = self._submit(run)
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        finished = False
        try:
            for piece in pieces:
                _write_all(write_end, piece.encode())
            finished = True
        except BrokenPipeError:
            finished = True  # nft stopped reading: it failed, and its error says why
        finally:
            if not finished:
                with contextlib.suppress(OSError):
                    _write_all(write_end, _UNPARSABLE)
            os.close(write_end)
            done = answer.get()
        _outcome(done)

    def list(self, what: str) -> str:
        """The output of ``nft list <what>`` (for tests and tools; syncs never list)."""

        def run() -> str:
            status = self._library.nft_run_cmd_from_buffer(self._context, f"list {what}".encode())
            output = self._library.nft_ctx_get_output_buffer(self._context) or b""
            error = self._library.nft_ctx_get_error_buffer(self._context) or b""
            if status != 0:
                raise NftError(f"nft list {what} failed: {error.decode().strip()}")
            return output.decode()

        return self._call(run)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()

    def __enter__(self) -> LibNftables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _where(netns: str | None) -> str:
    """The namespace a backend works in, as its error messages name it."""
    return f"network namespace {netns}" if netns else "this network namespace"


def _rejected(netns: str | None, message: str) -> NftError:
    return NftError(f"nft rejected the script in {_where(netns)}: {message.strip()}")


def _outcome(answer: tuple[bool, object]) -> object:
    ok, value = answer
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_backend(netns: str | None = None) -> Backend:
    """libnftables in-process where it loads, else the nft tool."""
    try:
        return LibNftables(netns)
    except NftUnavailable:
        return NftCommand(netns)
