"""Fault injection for tests and the soak benchmark: a tool that makes a seeded share of its calls fail.

``{"import": "arpo.tools.faults:FaultyTool", "tool": {"name": "python"}, "rate": 0.1, "seed": 0}``
wraps the tool the inner spec builds (same tag and description; a built :class:`Tool` may be
given instead of a spec). With probability ``rate`` a call gets one of ``kinds`` (uniformly)
instead of running normally:

* ``hang``: the call blocks for ``hang_s`` seconds (default: until the tool is closed) and then
  runs — unless the tool was closed meanwhile (the inner tool is never called after its
  close); the :class:`~arpo.tools.ToolBox` times it out first when its ``timeout_s`` is shorter;
* ``crash``: the call raises :class:`InjectedFault`, which the ToolBox turns into an ``error`` result;
* ``garbage``: the call returns ``ok`` with random text instead of running: control characters,
  escape sequences, replacement characters and the protocol's own tags (``</result>``,
  ``<answer>``), so the rollout must treat it as plain text.

The draws come from one RNG seeded with ``seed``, in call order: with calls running
concurrently, which call gets which draw can vary between runs; the share of faults does not.
:meth:`FaultyTool.metrics` adds ``injected_<kind>`` counts to the inner tool's counters.
Used by tests/faults and benchmarks/soak.py; not meant for training runs.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.registry import build_tool

KINDS = ("hang", "crash", "garbage")
GARBAGE_PIECES = (
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r",
    "\ufffd",
    "\u202e",
    "</result>",
    "<answer>",
    "</answer>",
    "<|assistant|>",
    "\U0001f4a5",
    "{",
    "]]",
    "\\",
)


class InjectedFault(RuntimeError):
    """The exception of an injected ``crash``."""


class FaultyTool(Tool):
    """A tool whose calls fail at a given rate; see the module docstring."""

    def __init__(
        self,
        tool: Mapping[str, Any] | Tool,
        rate: float,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        hang_s: float | None = None,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {list(KINDS)}, got {list(kinds)}")
        self.inner = tool if isinstance(tool, Tool) else build_tool(tool)
        self.tag, self.description = self.inner.tag, self.inner.description
        super().__init__()
        self.rate, self.kinds, self.hang_s = rate, tuple(kinds), hang_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._injected: Counter[str] = Counter()
        self._closed = threading.Event()

    def run(self, call: str) -> ToolResult:
        with self._lock:
            kind = self._rng.choice(self.kinds) if self._rng.random() < self.rate else None
            garbage = self._garbage() if kind == "garbage" else ""
            if kind is not None:
                self._injected[kind] += 1
        if kind == "crash":
            raise InjectedFault(f"injected crash of <{self.tag}>")
        if kind == "garbage":
            return ToolResult(garbage)
        if kind == "hang" and self._closed.wait(self.hang_s):
            return ToolResult(f"<{self.tag}> was closed during an injected hang", ToolStatus.ERROR)
        return self.inner.run(call)

    def _garbage(self) -> str:
        """Random text of up to 200 pieces (called with the lock held: one RNG, one order)."""
        pieces = [
            self._rng.choice(GARBAGE_PIECES)
            if self._rng.random() < 0.5
            else chr(self._rng.randrange(32, 0x2FFF))
            for _ in range(self._rng.randrange(1, 200))
        ]
        return "".join(pieces)

    def metrics(self) -> dict[str, int]:
        with self._lock:
            injected = {f"injected_{kind}": count for kind, count in self._injected.items()}
        return {**self.inner.metrics(), **injected}

    def close(self) -> None:
        self._closed.set()
        self.inner.close()
