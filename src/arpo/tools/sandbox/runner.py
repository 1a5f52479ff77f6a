"""Parent side of the sandbox: hand code to the tool's sandbox server and collect what it printed.

:class:`SandboxRunner` owns the per-call lifecycle:

1. the first call starts the sandbox server (``server.py``, ``python -I -u`` in a new session
   with a scrubbed environment), which then forks one launcher per call (``call.py``); a server
   that died is restarted once, transparently;
2. each call sends the server four pipe ends (:mod:`protocol`), the launcher names itself, and
   the request (code, isolation, limits, environment, uid) goes down the request pipe;
3. stdout and stderr are read together, at most ``max_output_bytes``; at the wall-clock
   deadline (counted from the call's start) or on overflow the launcher's process group is
   killed with SIGKILL (in namespaces mode the PID namespace dies with it, taking every process
   the code started);
4. as root, each call gets a fresh random uid (or ``sandbox_uid``) that owns the working
   directory and that the code runs as; in guard mode the working directory is a fresh host
   folder made (and removed) here, in namespaces mode it is the sandbox's own tmpfs.

:func:`resolve_isolation` turns ``auto`` into ``namespaces`` or ``guard`` by running one trivial
call in namespaces mode (once per interpreter and process).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from functools import cache

from arpo.tools.sandbox import SERVER_SCRIPT
from arpo.tools.sandbox.protocol import EXIT_LINE, ISOLATION_GUARD, ISOLATION_NAMESPACES, CallRequest

ISOLATIONS = ("auto", ISOLATION_NAMESPACES, ISOLATION_GUARD)
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}
RANDOM_UID_RANGE = (1_000_000_000, 2_000_000_000)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits; every field must be positive."""

    timeout_s: float = 10.0
    """Wall-clock limit; the process group is killed when it is reached."""
    cpu_s: int = 10
    """CPU-time limit (RLIMIT_CPU)."""
    memory_mb: int = 1024
    """Address-space limit per process (RLIMIT_AS)."""
    file_size_mb: int = 16
    """Largest file the code may write (RLIMIT_FSIZE)."""
    max_processes: int = 16
    """Processes and threads the code may have at once, itself included (RLIMIT_NPROC)."""
    open_files: int = 64
    """File descriptors per process (RLIMIT_NOFILE)."""
    workdir_mb: int = 64
    """Size of the working directory, a tmpfs, in namespaces mode (in guard mode it is not bounded)."""
    max_output_bytes: int = 256 * 1024
    """Bytes of stdout+stderr read before the process is killed."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class SandboxRun:
    """How one child ended: exit status, captured output, and why the parent stopped it (if it did)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    stopped: str | None
    """``"timeout"`` (wall clock), ``"output"`` (too much output) or None."""


class SandboxRunner:
    """Runs code through a pre-started sandbox server; thread-safe; :meth:`close` kills the server
    and the calls still running. The server is started on the first call and restarted if it died."""

    def __init__(
        self,
        python: str,
        isolation: str,
        limits: SandboxLimits,
        env: dict[str, str] | None = None,
        sandbox_uid: int | None = None,
    ) -> None:
        if isolation not in (ISOLATION_NAMESPACES, ISOLATION_GUARD):
            raise ValueError(
                f"isolation must be {ISOLATION_NAMESPACES!r} or {ISOLATION_GUARD!r}, got {isolation!r}"
            )
        if sandbox_uid is not None and (os.geteuid() != 0 or sandbox_uid <= 0):
            raise ValueError("sandbox_uid needs root and must be > 0 (it is the uid root drops to)")
        self.python = python
        self.isolation = isolation
        self.limits = limits
        self.env = {**SAFE_ENV, **(env or {})}
        self.sandbox_uid = sandbox_uid
        self._active: set[int] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._closed = False

    def run(self, code: str) -> SandboxRun:
        """Run ``code`` in a fresh sandboxed process; raises RuntimeError once :meth:`close` was called."""
        if self.isolation == ISOLATION_GUARD:
            with tempfile.TemporaryDirectory(prefix="arpo-python-") as workdir:
                return self._run(code, workdir)
        return self._run(code, None)

    @property
    def server_pid(self) -> int | None:
        """The sandbox server's process id while one runs (its children are the running calls)."""
        server = self._server
        return server.process.pid if server is not None and server.alive() else None

    def close(self) -> None:
        """Kill the running calls and stop the server; later calls raise (no server is restarted)."""
        with self._lock:
            self._closed = True
            active, server, self._server = list(self._active), self._server, None
        for pid in active:
            _kill_group(pid)
        if server is not None:
            server.close()

    def _run(self, code: str, workdir: str | None) -> SandboxRun:
        uid = self._uid_for_call()
        if uid is not None and workdir is not None:
            os.chown(workdir, uid, uid)
            os.chmod(os.path.dirname(workdir), 0o711)  # traversed by the uid, not listed
        limits = self.limits
        request = CallRequest(
            code=code,
            isolation=self.isolation,
            workdir=workdir,
            env=self.env,
            sandbox_uid=uid,
            cpu_s=limits.cpu_s,
            memory_bytes=limits.memory_mb * 2**20,
            file_bytes=limits.file_size_mb * 2**20,
            processes=limits.max_processes,
            open_files=limits.open_files,
            workdir_bytes=limits.workdir_mb * 2**20,
        )
        deadline = time.monotonic() + limits.timeout_s
        call = self._submit(request.to_json())
        with self._lock:
            self._active.add(call.pid)
        try:
            stdout, stderr, stopped = _collect(call, deadline, limits.max_output_bytes)
        finally:
            with self._lock:
                self._active.discard(call.pid)
            call.close()
        return SandboxRun(call.returncode, stdout, stderr, stopped)

    def _submit(self, request: bytes) -> _Call:
        """Hand a call to the server (restarting it once if it died); the call's launcher is running."""
        for attempt in range(2):
            with self._lock:
                if self._closed:
                    raise RuntimeError("the python tool was closed: it runs no more code")
                if self._server is None or not self._server.alive():
                    if self._server is not None:
                        self._server.close()
                    self._server = _Server(self.python)
                server = self._server
            try:
                return server.submit(request)
            except (OSError, _ServerGone) as exc:
                if attempt:
                    raise RuntimeError(f"the sandbox server ({self.python}) does not answer: {exc}") from exc
        raise AssertionError("unreachable")

    def _uid_for_call(self) -> int | None:
        if os.geteuid() != 0:
            return None
        low, high = RANDOM_UID_RANGE
        return self.sandbox_uid or low + secrets.randbelow(high - low)


class _ServerGone(Exception):
    """The server closed a call's status channel before naming the launcher."""


class _Server:
    """The parent's handle on one sandbox server process (``server.py``)."""

    def __init__(self, python: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [python, "-I", "-u", str(SERVER_SCRIPT), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=SAFE_ENV,
                cwd="/",
                start_new_session=True,
            )
        self.channel = ours
        self._finalizer = weakref.finalize(self, _stop_server, self.process, ours)

    def alive(self) -> bool:
        return self.process.poll() is None

    def submit(self, request: bytes) -> _Call:
        pipes = [os.pipe() for _ in range(4)]  # request, stdout, stderr, status
        (request_r, request_w), (out_r, out_w), (err_r, err_w), (status_r, status_w) = pipes
        theirs = [request_r, out_w, err_w, status_w]
        try:
            socket.send_fds(self.channel, [b"call"], theirs)
        except OSError:
            for fd in (fd for pair in pipes for fd in pair):
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        call = _Call(out_r, err_r, status_r)
        try:
            call.read_pid()
            with os.fdopen(request_w, "wb") as handle:
                handle.write(request)
        except BaseException:
            call.close()
            raise
        return call

    def close(self) -> None:
        self._finalizer()


def _stop_server(process: subprocess.Popen[bytes], channel: socket.socket) -> None:
    channel.close()  # the server exits at EOF; a stuck one is killed
    try:
        process.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        process.wait()


class _Call:
    """The parent's ends of one call's pipes, and what the status channel said."""

    def __init__(self, out_fd: int, err_fd: int, status_fd: int) -> None:
        self.out_fd, self.err_fd, self.status_fd = out_fd, err_fd, status_fd
        self.pid = 0
        self.returncode = -signal.SIGKILL
        """The code's exit status; a launcher that ends without reporting one was killed."""
        self._status = b""

    def read_pid(self) -> None:
        while b"\n" not in self._status:
            chunk = os.read(self.status_fd, 256)
            if not chunk:
                raise _ServerGone("no launcher was started")
            self._status += chunk
        first, _, self._status = self._status.partition(b"\n")
        self.pid = int(first.split()[1])

    def finish(self, deadline: float) -> bool:
        """Read the status channel to its end (False at the deadline); sets :attr:`returncode`."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.status_fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return False
                chunk = os.read(self.status_fd, 256)
                if not chunk:
                    break
                self._status += chunk
        for line in self._status.decode().splitlines():
            key, _, value = line.partition(" ")
            if key == EXIT_LINE:
                self.returncode = int(value)
        return True

    def close(self) -> None:
        for fd in (self.out_fd, self.err_fd, self.status_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _collect(call: _Call, deadline: float, max_bytes: int) -> tuple[bytes, bytes, str | None]:
    """Read stdout and stderr until EOF, then the exit status; kill the call's process group at
    the deadline or past ``max_bytes``."""
    buffers = {call.out_fd: bytearray(), call.err_fd: bytearray()}
    total, stopped = 0, None
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and stopped is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timeout"
                break
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                buffers[key.fd] += data[: max(0, max_bytes - total)]
                total += len(data)
                if total > max_bytes:
                    stopped = "output"
    if stopped is None and not call.finish(deadline):
        stopped = "timeout"
    if stopped is not None:
        _kill_group(call.pid)
    return bytes(buffers[call.out_fd]), bytes(buffers[call.err_fd]), stopped


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


PROBE_OUTPUT = b"probe-ok"


@cache
def namespaces_failure(python: str) -> str | None:
    """Why namespaces mode does not work for ``python`` here, or None when it does (probed once)."""
    runner = SandboxRunner(python, ISOLATION_NAMESPACES, SandboxLimits(timeout_s=30.0))
    try:
        run = runner.run(f"print({PROBE_OUTPUT.decode()!r})")
    finally:
        runner.close()
    if run.returncode == 0 and run.stdout.strip() == PROBE_OUTPUT:
        return None
    return (run.stderr or run.stdout).decode("utf-8", "replace").strip() or f"exit status {run.returncode}"


def resolve_isolation(requested: str, python: str) -> tuple[str, str]:
    """(isolation used, why): ``auto`` picks namespaces when the probe succeeds, else guard."""
    if requested not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {requested!r}")
    if requested == ISOLATION_GUARD:
        return ISOLATION_GUARD, "guard mode was requested"
    failure = namespaces_failure(python)
    if failure is None:
        return ISOLATION_NAMESPACES, "Linux namespaces are available"
    if requested == ISOLATION_NAMESPACES:
        raise RuntimeError(f"isolation='namespaces' is not available here: {failure}")
    return ISOLATION_GUARD, f"namespaces are unavailable ({failure}); using the audit-hook guard"
