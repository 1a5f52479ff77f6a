"""The sandboxed process behind the Python tool.

``runner.py`` is the parent side: it starts one sandbox server per tool (``server.py``, a
pre-started interpreter) and hands it each call. The other modules run inside the sandbox,
imported by path rather than through the package, so they depend on nothing but the standard
library: ``server.py`` (entry point), ``call.py`` (one call: launcher, init, worker),
``namespaces.py`` (kernel isolation), ``rootfs.py`` (the minimal root file system),
``guard.py`` (the audit-hook fallback), ``execute.py`` (notebook-style execution and error text)
and ``protocol.py`` (what they agree on).
"""

from pathlib import Path

SERVER_SCRIPT = Path(__file__).with_name("server.py")
