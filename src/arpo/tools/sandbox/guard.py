"""The fallback when namespaces are unavailable: an audit hook that refuses dangerous operations.

Installed in the child right before the code runs (stdlib only). ``sys.addaudithook`` hooks
cannot be removed, and an exception raised in one aborts the operation, so Python code in the
sandbox cannot:

- create sockets (``socket.__new__``) or resolve names: no network, local sockets included;
- create processes (``os.fork``, ``os.exec*``, ``os.posix_spawn``, ``os.system``, ``subprocess``)
  or send signals (``os.kill``, ``os.killpg``, ``signal.pthread_kill``);
- write, create, rename, delete or re-permission files outside the working directory (``open``
  for writing, ``os.remove``, ``os.rename``, ``os.mkdir``, ``shutil.rmtree``, ...), checked on
  the resolved path (``/dev/null`` is allowed);
- read ``/proc/<pid>/...`` of another process (its environment, command line, memory);
- call foreign functions through ``ctypes``.

This is a guard against what an untrained policy writes, not a security boundary: native code
(a C extension, ``_posixsubprocess``) does not raise audit events. The kernel limits (rlimits,
the unprivileged uid when root drops privileges) still hold underneath it.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

_REFUSED = {
    "socket.__new__": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "os.fork": "starting processes",
    "os.forkpty": "starting processes",
    "os.exec": "starting processes",
    "os.posix_spawn": "starting processes",
    "os.spawn": "starting processes",
    "os.system": "starting processes",
    "subprocess.Popen": "starting processes",
    "os.kill": "sending signals",
    "os.killpg": "sending signals",
    "signal.pthread_kill": "sending signals",
    "ctypes.call_function": "calling native functions",
}
_PATH_WRITES = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_OTHER_PROC = re.compile(r"^/proc/(\d+)(/|$)")


def install_guard(workdir: str) -> None:
    """Install the hook; ``workdir`` is the only tree the code may modify."""
    root = os.path.realpath(workdir)
    own_pid = str(os.getpid())

    def inside(path: Any) -> bool:
        if isinstance(path, int):  # an already-open file descriptor
            return True
        resolved = os.path.realpath(os.fsdecode(path))
        return resolved == root or resolved.startswith(root + os.sep) or resolved == os.devnull

    def refuse(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in _REFUSED:
            refuse(_REFUSED[event])
        elif event in _PATH_WRITES:
            if not all(inside(args[i]) for i in _PATH_WRITES[event]):
                refuse("modifying files outside the working directory")
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or any(
                c in (mode or "") for c in "wax+"
            )
            if writing and not inside(path):
                refuse("writing files outside the working directory")
            other = _OTHER_PROC.match(os.path.realpath(os.fsdecode(path)))
            if other and other.group(1) != own_pid:
                refuse("reading other processes")

    sys.addaudithook(hook)
