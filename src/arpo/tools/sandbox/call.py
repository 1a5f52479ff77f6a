"""One sandboxed call: forked from the sandbox server (``server.py``) for each piece of code.

``namespaces`` mode (the launcher stays outside the namespaces it creates; see :mod:`namespaces`
and :mod:`rootfs`)::

    server ── fork ──> launcher: setsid, unshare ── fork ──> init (PID 1): not dumpable, dies with
                                                             the launcher, builds and enters the
                                                             minimal root
                                                               └─ fork ──> worker: rlimits, drop
                                                                           privileges, run the code

``guard`` mode::

    server ── fork ──> launcher: setsid ── fork ──> worker: rlimits, drop root when the interpreter
                                                    is reachable, audit-hook guard (:mod:`guard`),
                                                    run the code

The launcher dies with the server (so with the tool's process), reports its pid and then the
code's exit status on the status channel (:mod:`protocol`), and is the only process that holds
that channel: the code cannot forge its own status. The worker gets the request's environment
only (``HOME`` and ``TMPDIR`` = the working directory), ``sys.argv == [""]``, and a copy of the
server's pristine interpreter, in which no model code has ever run.

rlimits on the worker: CPU seconds (soft; the hard limit is one second more), address space,
file size, open files, no core dumps, and the number of processes of the sandbox's uid (enforced
by the kernel only for a non-root uid; in namespaces mode the user namespace or the per-call uid
makes that count start from zero for each call).

Exit status: see :mod:`protocol`; a setup failure exits with ``EXIT_SETUP_FAILED`` before any of
the code runs (fail closed).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

import execute  # (siblings, imported by path: the sandbox does not import the package)
import guard
import namespaces
import protocol
import rootfs


def run_call(request_fd: int, out_fd: int, err_fd: int, status_fd: int) -> int:
    """The launcher: the forked server process that owns one call; returns the code's exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it; this process waits
    os.setsid()
    os.write(status_fd, f"{protocol.PID_LINE} {os.getpid()}\n".encode())
    chunks = []
    while chunk := os.read(request_fd, 1 << 16):
        chunks.append(chunk)
    os.close(request_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
    try:
        namespaces.die_with_parent(signal.SIGKILL)
        status = _launch(protocol.CallRequest.from_json(b"".join(chunks)), status_fd)
    except namespaces.SandboxSetupError as exc:
        status = _setup_failed(exc)
    os.write(status_fd, f"{protocol.EXIT_LINE} {status}\n".encode())
    return status


def _launch(request: protocol.CallRequest, status_fd: int) -> int:
    if request.isolation == protocol.ISOLATION_NAMESPACES:
        user_ns = namespaces.enter_namespaces()
        return _fork_and_wait(lambda: _namespace_init(request, user_ns), close=status_fd)
    if request.isolation != protocol.ISOLATION_GUARD:
        raise namespaces.SandboxSetupError(f"unknown isolation {request.isolation!r}")
    return _fork_and_wait(lambda: _run_guarded(request), close=status_fd)


def _namespace_init(request: protocol.CallRequest, user_ns: bool) -> int:
    namespaces.become_namespace_init()
    rootfs.build_root(request.workdir_bytes, request.sandbox_uid)
    return _fork_and_wait(lambda: _run_confined(request, user_ns))


def _run_confined(request: protocol.CallRequest, user_ns: bool) -> int:
    # In a user namespace the launcher and init process count against the uid's process limit too.
    _set_limits(request, processes=request.processes + (2 if user_ns else 0))
    if request.sandbox_uid is not None:
        namespaces.drop_to_uid(request.sandbox_uid)
    else:
        namespaces.drop_capabilities()
    namespaces.forbid_new_privileges()
    namespaces.die_with_parent(signal.SIGKILL)
    return _execute(request, rootfs.WORKDIR, host_paths=[])


def _run_guarded(request: protocol.CallRequest) -> int:
    if request.workdir is None:
        raise namespaces.SandboxSetupError("guard mode needs a working directory from the parent")
    drop = request.sandbox_uid is not None and all(
        namespaces.unreachable_ancestor(path) is None for path in namespaces.interpreter_paths()
    )
    # The process limit counts every process of the uid, so it only makes sense for a fresh uid.
    _set_limits(request, processes=request.processes if drop else None)
    if drop:
        namespaces.drop_to_uid(request.sandbox_uid)
    namespaces.forbid_new_privileges()
    namespaces.die_with_parent(signal.SIGKILL)
    os.chdir(request.workdir)
    guard.install_guard(request.workdir)
    return _execute(request, request.workdir, host_paths=[request.workdir])


def _set_limits(request: protocol.CallRequest, processes: int | None) -> None:
    limits = {
        "RLIMIT_CPU": (request.cpu_s, request.cpu_s + 1),
        "RLIMIT_AS": (request.memory_bytes, request.memory_bytes),
        "RLIMIT_FSIZE": (request.file_bytes, request.file_bytes),
        "RLIMIT_NOFILE": (request.open_files, request.open_files),
        "RLIMIT_CORE": (0, 0),
    }
    if processes is not None:
        limits["RLIMIT_NPROC"] = (processes, processes)
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), value)
        except (OSError, ValueError) as exc:
            raise namespaces.SandboxSetupError(f"setrlimit {name} to {value}: {exc}") from None


def _execute(request: protocol.CallRequest, workdir: str, host_paths: list[str]) -> int:
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({**request.env, "HOME": workdir, "TMPDIR": workdir})
    sys.argv = [""]
    host_paths = [*host_paths, sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(__file__)]
    return execute.run_code(
        request.code,
        exit_ok=protocol.EXIT_OK,
        exit_exception=protocol.EXIT_EXCEPTION,
        exit_limit=protocol.EXIT_LIMIT,
        host_paths=host_paths,
    )


def _fork_and_wait(body: Callable[[], int], close: int | None = None) -> int:
    """Run ``body`` in a forked child (closing ``close`` there first); its exit status."""
    child = os.fork()
    if child == 0:
        if close is not None:
            os.close(close)
        exit_forked(body)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    return code if code >= 0 else protocol.SIGNAL_EXIT_BASE - code


def _setup_failed(exc: BaseException) -> int:
    sys.stderr.write(f"sandbox setup failed: {exc}\n")
    return protocol.EXIT_SETUP_FAILED


def exit_forked(body: Callable[[], int]) -> NoReturn:
    """Run ``body`` in a forked child and leave with its status; never return into the parent's frames."""
    try:
        status = body()
    except BaseException as exc:  # a failed setup step, or a bug in the sandbox itself: fail closed
        status = _setup_failed(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)
