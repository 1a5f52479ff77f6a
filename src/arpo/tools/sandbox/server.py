"""The sandbox server: a pre-started interpreter that forks one sandboxed call per request.

Started by :class:`runner.SandboxRunner` as ``python -I -u server.py FD`` (isolated mode: no
``PYTHON*`` variables, no user site; unbuffered output), in its own session, with a scrubbed
environment and ``/`` as its working directory. FD is its end of a ``SOCK_SEQPACKET`` socket
pair; each message carries a call's descriptors (:mod:`protocol`). For each, the server forks a
launcher (:mod:`call`) and closes its own copies; the launcher does the rest. The server never
runs model code, so every call starts from the same pristine interpreter, and the start-up of
the interpreter and of the sandbox's modules is paid once per tool instead of once per call.

It exits when the parent closes its end (the tool was closed, or its process died); launchers
still running die with it (``PR_SET_PDEATHSIG``), and their PID namespaces with them.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import call  # noqa: E402  (siblings, imported by path: the sandbox does not import the package)
import protocol  # noqa: E402

del sys.path[0]


def serve(channel: socket.socket) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished launchers are reaped by the kernel
    while True:
        message, fds, _flags, _address = socket.recv_fds(channel, 16, protocol.CALL_FDS)
        if not message:
            return 0
        if len(fds) == protocol.CALL_FDS and os.fork() == 0:
            channel.close()
            call.exit_forked(functools.partial(call.run_call, *fds))
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=int(sys.argv[1]))))
