"""ToolBox: the set of tools of a rollout, keyed by tag, and their concurrent execution.

The rollout loop hands a whole round of calls to :meth:`ToolBox.run_many` at once; calls run on
a bounded thread pool (``max_workers``), each with a wall-clock ``timeout_s``. Every call returns
a :class:`ToolResult` whatever happens: an exception becomes an ``error`` result with the
exception's type and message, an overrun a ``timeout`` result. Result text longer than
``max_result_chars`` is cut and ends with a visible truncation marker.

A tool that outlives its timeout keeps its worker thread until it returns; tools that run
untrusted work (the Python interpreter) must enforce their own hard limits so that never lasts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from arpo.tools.base import Tool, ToolResult, ToolStatus

TRUNCATION_MARKER = "\n[... truncated ...]"


def truncate_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` characters, marker included."""
    if len(text) <= max_chars:
        return text, False
    keep = max(0, max_chars - len(TRUNCATION_MARKER))
    return text[:keep] + TRUNCATION_MARKER, True


class ToolBox:
    """Tools keyed by tag, executed concurrently with timeouts and output truncation."""

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        max_workers: int = 8,
        timeout_s: float = 30.0,
        max_result_chars: int = 2000,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_result_chars <= len(TRUNCATION_MARKER):
            raise ValueError(f"max_result_chars must be > {len(TRUNCATION_MARKER)}, got {max_result_chars}")
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.tag in self._tools:
                raise ValueError(f"two tools use the tag <{tool.tag}>")
            self._tools[tool.tag] = tool
        self.timeout_s = timeout_s
        self.max_result_chars = max_result_chars
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="arpo-tool")

    @property
    def tags(self) -> list[str]:
        return list(self._tools)

    def get(self, tag: str) -> Tool:
        try:
            return self._tools[tag]
        except KeyError:
            raise KeyError(f"no tool with tag <{tag}>; known: {self.tags}") from None

    def run_many(self, calls: Sequence[tuple[str, str]]) -> list[ToolResult]:
        """Run ``(tag, call text)`` pairs concurrently; results come back in the same order."""
        started = time.perf_counter()
        futures = [self._pool.submit(self._run_one, tag, call) for tag, call in calls]
        results = []
        for (tag, _), future in zip(calls, futures, strict=True):
            remaining = self.timeout_s - (time.perf_counter() - started)
            try:
                results.append(future.result(timeout=max(remaining, 0.0)))
            except FutureTimeout:
                future.cancel()
                results.append(
                    ToolResult(
                        f"Tool <{tag}> timed out after {self.timeout_s:g} s.",
                        ToolStatus.TIMEOUT,
                        latency_s=time.perf_counter() - started,
                    )
                )
        return results

    def _run_one(self, tag: str, call: str) -> ToolResult:
        started = time.perf_counter()
        try:
            result = self.get(tag).run(call)
        except Exception as exc:  # a tool bug must not kill the rollout; the model sees the error
            result = ToolResult(f"Tool <{tag}> failed: {type(exc).__name__}: {exc}", ToolStatus.ERROR)
        text, cut = truncate_text(result.text, self.max_result_chars)
        return ToolResult(
            text, result.status, latency_s=time.perf_counter() - started, truncated=cut or result.truncated
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ToolBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
