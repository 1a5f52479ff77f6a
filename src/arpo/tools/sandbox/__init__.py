"""The sandboxed process behind the Python tool.

``runner.py`` is the parent side: it starts ``child.py`` for each call and collects its output.
The other modules run inside the child, imported by path rather than through the package, so
they depend on nothing but the standard library: ``child.py`` (entry point), ``namespaces.py``
(kernel isolation), ``guard.py`` (the audit-hook fallback), ``execute.py`` (notebook-style
execution and error text) and ``protocol.py`` (what parent and child agree on).
"""

from pathlib import Path

CHILD_SCRIPT = Path(__file__).with_name("child.py")
