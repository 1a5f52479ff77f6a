"""Parent side of the sandbox: start ``child.py`` for one piece of code and collect what it printed.

:class:`SandboxRunner` owns the per-call lifecycle:

1. a private call directory (``code.py``, ``config.json``) and inside it a fresh working
   directory (in namespaces mode the child mounts a size-limited tmpfs over it); both are
   removed when the call ends, whatever happens;
2. the child is started with ``python -I -u`` (isolated mode: no ``PYTHON*`` variables, no user
   site, unbuffered output) in a new session, with a scrubbed environment, stdin from /dev/null;
3. stdout and stderr are read together, at most ``max_output_bytes``; at the wall-clock
   deadline or on overflow the child's process group is killed with SIGKILL (in namespaces mode
   the PID namespace dies with it, taking every process the code started);
4. as root, each call gets a fresh random uid (or ``sandbox_uid``) that owns the working
   directory and that the child drops to.

:func:`resolve_isolation` turns ``auto`` into ``namespaces`` or ``guard`` by running one trivial
call in namespaces mode (once per interpreter and process).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from arpo.tools.sandbox import CHILD_SCRIPT
from arpo.tools.sandbox.protocol import ISOLATION_GUARD, ISOLATION_NAMESPACES, ChildConfig

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
    """Runs code in sandboxed children; thread-safe; :meth:`close` kills the calls still running."""

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
        self._active: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def run(self, code: str) -> SandboxRun:
        with tempfile.TemporaryDirectory(prefix="arpo-python-") as call_dir:
            return self._run_in(code, Path(call_dir))

    def close(self) -> None:
        with self._lock:
            active = list(self._active)
        for process in active:
            _kill_group(process)

    def _run_in(self, code: str, call_dir: Path) -> SandboxRun:
        workdir = call_dir / "work"
        workdir.mkdir()
        code_path, config_path = call_dir / "code.py", call_dir / "config.json"
        code_path.write_text(code, encoding="utf-8")
        uid = self._uid_for_call()
        if uid is not None:
            os.chown(workdir, uid, uid)
            call_dir.chmod(0o711)  # the uid must traverse it to reach the workdir, not list it
        limits = self.limits
        ChildConfig(
            code_path=str(code_path),
            workdir=str(workdir),
            isolation=self.isolation,
            sandbox_uid=uid,
            cpu_s=limits.cpu_s,
            memory_bytes=limits.memory_mb * 2**20,
            file_bytes=limits.file_size_mb * 2**20,
            processes=limits.max_processes,
            open_files=limits.open_files,
            workdir_bytes=limits.workdir_mb * 2**20,
        ).dump(str(config_path))
        process = subprocess.Popen(
            [self.python, "-I", "-u", str(CHILD_SCRIPT), str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, "HOME": str(workdir), "TMPDIR": str(workdir)},
            cwd=workdir,
            start_new_session=True,
        )
        with self._lock:
            self._active.add(process)
        try:
            stdout, stderr, stopped = _collect(process, limits.timeout_s, limits.max_output_bytes)
        finally:
            with self._lock:
                self._active.discard(process)
        return SandboxRun(process.returncode, stdout, stderr, stopped)

    def _uid_for_call(self) -> int | None:
        if os.geteuid() != 0:
            return None
        low, high = RANDOM_UID_RANGE
        return self.sandbox_uid or low + secrets.randbelow(high - low)


def _collect(
    process: subprocess.Popen[bytes], timeout_s: float, max_bytes: int
) -> tuple[bytes, bytes, str | None]:
    """Read stdout and stderr until EOF; kill the group at the deadline or past ``max_bytes``."""
    assert process.stdout is not None and process.stderr is not None
    deadline = time.monotonic() + timeout_s
    buffers = {process.stdout: bytearray(), process.stderr: bytearray()}
    total, stopped = 0, None
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and stopped is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timeout"
                break
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                buffers[key.fileobj] += data[: max(0, max_bytes - total)]
                total += len(data)
                if total > max_bytes:
                    stopped = "output"
    if stopped is None:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stopped = "timeout"
    if stopped is not None:
        _kill_group(process)
        process.wait()
    process.stdout.close()
    process.stderr.close()
    return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), stopped


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


PROBE_OUTPUT = b"probe-ok"


@cache
def namespaces_failure(python: str) -> str | None:
    """Why namespaces mode does not work for ``python`` here, or None when it does (probed once)."""
    runner = SandboxRunner(python, ISOLATION_NAMESPACES, SandboxLimits(timeout_s=30.0))
    run = runner.run(f"print({PROBE_OUTPUT.decode()!r})")
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
