"""Run model-written code once, like a notebook cell, and report errors as short text.

Runs inside the sandboxed child (stdlib only). The code is compiled as file ``<code>``; if its
last statement is a bare expression, the expression's ``repr`` is printed unless it is ``None``
(``x = 2; x * 21`` prints ``42``). ``sys.exit(0)`` ends the code normally; any other exit
status is reported as ``SystemExit: <status>``. ``MemoryError`` and writes past the file size
limit (``EFBIG``; CPython ignores SIGXFSZ) or the working directory's size (``ENOSPC``) end with
the "limit" exit status.

Errors go to stderr as a traceback restricted to the code's own frames, e.g.::

    Traceback (most recent call last):
      line 2, in <module>
        1 / 0
    ZeroDivisionError: division by zero

Frames inside libraries and every host path (the interpreter prefix, the working directory)
are left out, so the same code gives the same text on any machine. The return value is the
exit status defined in :mod:`protocol`.
"""

from __future__ import annotations

import ast
import builtins
import errno
import linecache
import sys
import traceback
import warnings

CODE_FILENAME = "<code>"
LIMIT_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT)
"""A file larger than the file size limit, a full working directory (its tmpfs), a disk quota."""
MAX_FRAMES = 5


def run_code(code: str, *, exit_ok: int, exit_exception: int, exit_limit: int, host_paths: list[str]) -> int:
    """Execute ``code`` in a fresh ``__main__`` namespace; returns the exit status."""
    linecache.cache[CODE_FILENAME] = (len(code), None, code.splitlines(True), CODE_FILENAME)
    warnings.formatwarning = lambda message, category, *_args, **_kwargs: f"{category.__name__}: {message}\n"
    try:
        tree = ast.parse(code, filename=CODE_FILENAME)
    except SyntaxError as exc:
        _report(_format_syntax_error(exc), host_paths)
        return exit_exception
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(tree, CODE_FILENAME, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), CODE_FILENAME, "eval"), namespace)
            if value is not None:
                print(repr(value))
    except SystemExit as exc:  # sys.exit(0) is a normal end; any other status is an error
        if exc.code in (None, 0):
            return exit_ok
        _report(f"SystemExit: {exc.code}", host_paths)
        return exit_exception
    except MemoryError:
        _report("MemoryError: the memory limit was reached", host_paths)
        return exit_limit
    except OSError as exc:
        _report(_format_exception(exc), host_paths)
        return exit_limit if exc.errno in LIMIT_ERRNOS else exit_exception
    except BaseException as exc:  # the code's own failure, reported to the model
        _report(_format_exception(exc), host_paths)
        return exit_exception
    return exit_ok


def _report(text: str, host_paths: list[str]) -> None:
    for path in sorted(host_paths, key=len, reverse=True):
        text = text.replace(path, "...")
    sys.stdout.flush()
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.stderr.flush()


def _format_exception(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CODE_FILENAME][-MAX_FRAMES:]
    lines = ["Traceback (most recent call last):"] if frames else []
    for frame in frames:
        lines.append(f"  line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    message = str(exc)
    lines.append(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return "\n".join(lines)


def _format_syntax_error(exc: SyntaxError) -> str:
    lines = [f"  line {exc.lineno}"]
    if exc.text:
        lines.append(f"    {exc.text.strip()}")
    lines.append(f"{type(exc).__name__}: {exc.msg}")
    return "\n".join(lines)
