"""What the parent (:mod:`runner`), the sandbox server (``server.py``) and a call (``call.py``) agree on.

Per call, the parent makes four pipes and sends their child-side ends to the server in one
``SCM_RIGHTS`` message on a ``SOCK_SEQPACKET`` socket: the request (read end), stdout and stderr
(write ends) and the status channel (write end). The server forks the call's launcher, which

1. writes ``pid <launcher pid>`` on the status channel (the parent kills that process group on a
   timeout);
2. reads the :class:`CallRequest` as JSON from the request pipe until EOF;
3. runs the code with stdout/stderr on the two pipes and stdin on ``/dev/null``;
4. writes ``exit <status>`` on the status channel, then exits.

A status channel that ends without an ``exit`` line means the launcher was killed.
Stdlib only: these files are imported by path inside the sandbox, without the package.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

EXIT_OK = 0
"""The code ran to the end (or called ``sys.exit(0)``)."""
EXIT_EXCEPTION = 1
"""The code raised; a short traceback is on stderr."""
EXIT_LIMIT = 3
"""A resource limit stopped the code: ``MemoryError`` (address space), ``EFBIG`` (file size) or
``ENOSPC`` (the working directory is full)."""
EXIT_SETUP_FAILED = 125
"""The sandbox could not be set up; the code did not run. The reason is on stderr."""
SIGNAL_EXIT_BASE = 128
"""A death by signal ``s`` of the process running the code is reported as exit status ``128 + s``."""

ISOLATION_NAMESPACES = "namespaces"
ISOLATION_GUARD = "guard"

CALL_FDS = 4
"""Descriptors per call message: request (read), stdout (write), stderr (write), status (write)."""
PID_LINE = "pid"
EXIT_LINE = "exit"


@dataclass(frozen=True)
class CallRequest:
    """Everything a call needs; limits are in bytes, seconds and counts."""

    code: str
    isolation: str
    workdir: str | None
    """Guard mode: the host folder the parent made for the call; namespaces mode: None (the
    working directory is the sandbox's own ``/tmp``)."""
    env: dict[str, str]
    """The code's whole environment (``HOME`` and ``TMPDIR`` are set to the working directory)."""
    sandbox_uid: int | None
    cpu_s: int
    memory_bytes: int
    file_bytes: int
    processes: int
    open_files: int
    workdir_bytes: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> CallRequest:
        return cls(**json.loads(data.decode("utf-8")))
