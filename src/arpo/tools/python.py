"""The sandboxed Python interpreter tool (tag ``python``).

Each call runs the code once, in a fresh sandboxed process forked from the tool's pre-started
sandbox server (:mod:`arpo.tools.sandbox`; no interpreter start-up per call), and returns what it
printed: stdout, then stderr. Like a notebook cell, a trailing bare expression
is printed; a Markdown code fence around the code is removed. The code is never re-run, and
empty output is reported as ``(no output)``, not retried.

Per call (docs/tools.md has the full table and what each isolation mode guarantees):

- a fresh temporary working directory (also ``HOME`` and ``TMPDIR``), removed afterwards;
- in namespaces mode, a minimal root file system: the interpreter and system libraries
  read-only, the working directory as ``/tmp``, nothing else of the host;
- an environment scrubbed of the parent's variables;
- rlimits on CPU seconds, address space, file size, open files and processes;
- a wall-clock timeout that kills the process group (and the PID namespace);
- at most ``max_output_bytes`` of output, past which the process is killed;
- ``isolation``: ``namespaces`` (no network, read-only file system outside the working
  directory, host processes invisible), ``guard`` (audit-hook refusals), or ``auto``.

Statuses: ``ok`` (exit 0), ``error`` (an exception, a crash, a failed sandbox setup),
``timeout`` (wall clock or CPU time), ``limit`` (memory, file size, output size, code too long).
"""

from __future__ import annotations

import signal
import sys
from typing import Any, ClassVar

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.sandbox.protocol import EXIT_LIMIT, EXIT_OK, SIGNAL_EXIT_BASE
from arpo.tools.sandbox.runner import SandboxLimits, SandboxRun, SandboxRunner, resolve_isolation

NO_OUTPUT = "(no output)"


class PythonTool(Tool):
    """Run model-written Python in a sandboxed process; see the module docstring."""

    tag = "python"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "The Python 3 code to run."}},
        "required": ["code"],
    }

    def __init__(
        self,
        *,
        isolation: str = "auto",
        timeout_s: float = 10.0,
        cpu_s: int = 10,
        memory_mb: int = 1024,
        file_size_mb: int = 16,
        max_processes: int = 16,
        open_files: int = 64,
        workdir_mb: int = 64,
        max_output_bytes: int = 256 * 1024,
        max_code_chars: int = 100_000,
        sandbox_uid: int | None = None,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        """Limits are per call; ``env`` adds variables to the scrubbed environment; ``python`` is the
        interpreter the code runs with (its site-packages are importable); ``sandbox_uid`` pins the
        uid root drops to (default: a fresh random uid per call)."""
        if max_code_chars <= 0:
            raise ValueError(f"PythonTool: max_code_chars must be > 0, got {max_code_chars!r}")
        limits = SandboxLimits(
            timeout_s=timeout_s,
            cpu_s=cpu_s,
            memory_mb=memory_mb,
            file_size_mb=file_size_mb,
            max_processes=max_processes,
            open_files=open_files,
            workdir_mb=workdir_mb,
            max_output_bytes=max_output_bytes,
        )
        self.isolation, self.isolation_reason = resolve_isolation(isolation, python)
        self.max_code_chars = max_code_chars
        self.runner = SandboxRunner(python, self.isolation, limits, env=env, sandbox_uid=sandbox_uid)
        self.description = (
            "python: runs Python 3 code written between <python> and </python> in a fresh sandboxed "
            "process and returns what it prints; the value of a final bare expression is shown. "
            "Nothing is kept between calls and there is no network access. "
            f"Limits: {timeout_s:g} s, {memory_mb} MB of memory."
        )
        self.function_description = (
            "Runs Python 3 code in a fresh sandboxed process and returns what it prints; the value of a "
            "final bare expression is shown. Nothing is kept between calls and there is no network access. "
            f"Limits: {timeout_s:g} s, {memory_mb} MB of memory."
        )
        super().__init__()

    @property
    def limits(self) -> SandboxLimits:
        return self.runner.limits

    def run(self, call: str) -> ToolResult:
        code = strip_code_fence(call)
        if not code.strip():
            return ToolResult("error: no code to run", ToolStatus.ERROR)
        if len(code) > self.max_code_chars:
            return ToolResult(
                f"error: the code has {len(code)} characters; the limit is {self.max_code_chars}",
                ToolStatus.LIMIT,
            )
        text, status = describe_run(self.runner.run(code), self.limits)
        return ToolResult(text, status)

    def close(self) -> None:
        self.runner.close()


def strip_code_fence(call: str) -> str:
    """The code inside a Markdown fence (```python ... ```) if the call is one, else the call."""
    text = call.strip()
    if text.startswith("```") and text.endswith("```") and "\n" in text:
        return text[text.index("\n") + 1 : -3]
    return call


def describe_run(run: SandboxRun, limits: SandboxLimits) -> tuple[str, ToolStatus]:
    """The text shown to the model and the status, from how the child ended."""
    printed = [part.decode("utf-8", "replace").rstrip("\n") for part in (run.stdout, run.stderr)]
    text = "\n".join(part for part in printed if part.strip())
    code = run.returncode
    signal_number = -code if code < 0 else code - SIGNAL_EXIT_BASE
    note, status = None, ToolStatus.ERROR
    if run.stopped == "timeout":
        note, status = f"Timed out after {limits.timeout_s:g} s; the process was killed.", ToolStatus.TIMEOUT
    elif run.stopped == "output":
        note = f"Output exceeded {limits.max_output_bytes} bytes; the process was killed."
        status = ToolStatus.LIMIT
    elif code == EXIT_OK:
        return text or NO_OUTPUT, ToolStatus.OK
    elif code == EXIT_LIMIT:
        status = ToolStatus.LIMIT
    elif signal_number == signal.SIGXCPU:
        note, status = f"CPU time limit of {limits.cpu_s} s exceeded.", ToolStatus.TIMEOUT
    elif 0 < signal_number < signal.NSIG:
        note = f"The process was killed by signal {signal_number} ({signal.strsignal(signal_number) or 'unknown'})."
    elif not text:
        note = f"Exited with status {code}."
    return "\n".join(part for part in (text, note) if part), status
