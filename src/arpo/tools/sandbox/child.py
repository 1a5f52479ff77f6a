"""Entry point of the sandboxed child: ``python -I -u child.py CONFIG``.

Started by :class:`arpo.tools.python.PythonTool` in a new session (its own process group) with
a scrubbed environment. It reads its :class:`protocol.ChildConfig` and the code, then:

``namespaces`` mode (the launcher, this process, stays outside; see :mod:`namespaces`)::

    launcher ── enter_namespaces() ── fork ──> init (PID 1: fresh /proc, not dumpable, dies with the launcher)
                                                  └─ fork ──> worker: rlimits, drop privileges,
                                                              chdir, run the code

``guard`` mode: this process sets the rlimits, drops root to the sandbox uid when the
interpreter is reachable by it, installs the audit-hook guard (:mod:`guard`) and runs the code.

rlimits on the process that runs the code: CPU seconds (soft; the hard limit is one second
more), address space, file size, open files, no core dumps, and the number of processes of the
sandbox's uid (enforced by the kernel only for a non-root uid; in namespaces mode the user
namespace or the per-call uid makes that count start from zero for each call).

Exit status: see :mod:`protocol`; a setup failure exits with ``EXIT_SETUP_FAILED`` before any
of the code runs (fail closed).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import execute  # noqa: E402  (siblings, imported by path: the child does not import the package)
import guard  # noqa: E402
import namespaces  # noqa: E402
import protocol  # noqa: E402

del sys.path[0]


def main(config_path: str) -> int:
    config = protocol.ChildConfig.load(config_path)
    with open(config.code_path, encoding="utf-8") as handle:
        code = handle.read()
    try:
        if config.isolation == protocol.ISOLATION_NAMESPACES:
            user_ns = namespaces.enter_namespaces(config.workdir, config.workdir_bytes, config.sandbox_uid)
            init = os.fork()
            if init == 0:
                _exit_forked(lambda: _namespace_init(config, code, user_ns))
            return _exit_status(os.waitpid(init, 0)[1])
        if config.isolation != protocol.ISOLATION_GUARD:
            raise namespaces.SandboxSetupError(f"unknown isolation {config.isolation!r}")
        return _run_guarded(config, code)
    except namespaces.SandboxSetupError as exc:
        return _setup_failed(exc)


def _namespace_init(config: protocol.ChildConfig, code: str, user_ns: bool) -> int:
    namespaces.become_namespace_init()
    worker = os.fork()
    if worker == 0:
        _exit_forked(lambda: _run_confined(config, code, user_ns))
    return _exit_status(os.waitpid(worker, 0)[1])


def _run_confined(config: protocol.ChildConfig, code: str, user_ns: bool) -> int:
    # In a user namespace the launcher and init process count against the uid's process limit too.
    _set_limits(config, processes=config.processes + (2 if user_ns else 0))
    if config.sandbox_uid is not None:
        namespaces.drop_to_uid(config.sandbox_uid)
    else:
        namespaces.drop_capabilities()
    namespaces.forbid_new_privileges()
    namespaces.die_with_parent(signal.SIGKILL)
    os.chdir(config.workdir)
    return _execute(config, code)


def _run_guarded(config: protocol.ChildConfig, code: str) -> int:
    drop = config.sandbox_uid is not None and all(
        namespaces.unreachable_ancestor(path) is None for path in namespaces.interpreter_paths()
    )
    # The process limit counts every process of the uid, so it only makes sense for a fresh uid.
    _set_limits(config, processes=config.processes if drop else None)
    if drop:
        namespaces.drop_to_uid(config.sandbox_uid)
    namespaces.forbid_new_privileges()
    os.chdir(config.workdir)
    guard.install_guard(config.workdir)
    return _execute(config, code)


def _set_limits(config: protocol.ChildConfig, processes: int | None) -> None:
    limits = {
        "RLIMIT_CPU": (config.cpu_s, config.cpu_s + 1),
        "RLIMIT_AS": (config.memory_bytes, config.memory_bytes),
        "RLIMIT_FSIZE": (config.file_bytes, config.file_bytes),
        "RLIMIT_NOFILE": (config.open_files, config.open_files),
        "RLIMIT_CORE": (0, 0),
    }
    if processes is not None:
        limits["RLIMIT_NPROC"] = (processes, processes)
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), value)
        except (OSError, ValueError) as exc:
            raise namespaces.SandboxSetupError(f"setrlimit {name} to {value}: {exc}") from None


def _execute(config: protocol.ChildConfig, code: str) -> int:
    host_paths = [config.workdir, sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(__file__)]
    return execute.run_code(
        code,
        exit_ok=protocol.EXIT_OK,
        exit_exception=protocol.EXIT_EXCEPTION,
        exit_limit=protocol.EXIT_LIMIT,
        host_paths=host_paths,
    )


def _exit_status(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else protocol.SIGNAL_EXIT_BASE - code


def _setup_failed(exc: BaseException) -> int:
    sys.stderr.write(f"sandbox setup failed: {exc}\n")
    return protocol.EXIT_SETUP_FAILED


def _exit_forked(body: Callable[[], int]) -> NoReturn:
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
