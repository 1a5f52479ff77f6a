"""What the parent (:mod:`arpo.tools.python`) and the sandboxed child (``child.py``) agree on.

The parent writes a :class:`ChildConfig` as JSON next to the code file and starts
``python -I -u child.py CONFIG``; the child reports how the code ended through its exit status.
Stdlib only: the child imports this file by path, before any sandboxing, without the package.
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
"""In namespace mode a death by signal ``s`` is reported as exit status ``128 + s``."""

ISOLATION_NAMESPACES = "namespaces"
ISOLATION_GUARD = "guard"


@dataclass(frozen=True)
class ChildConfig:
    """Everything the child needs; limits are in bytes, seconds and counts."""

    code_path: str
    workdir: str
    isolation: str
    sandbox_uid: int | None
    cpu_s: int
    memory_bytes: int
    file_bytes: int
    processes: int
    open_files: int
    workdir_bytes: int

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle)

    @classmethod
    def load(cls, path: str) -> ChildConfig:
        with open(path, encoding="utf-8") as handle:
            return cls(**json.load(handle))
