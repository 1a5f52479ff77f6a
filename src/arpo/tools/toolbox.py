"""ToolBox: the set of tools of a rollout, keyed by tag, and their concurrent execution.

The rollout loop hands a whole round of calls to :meth:`ToolBox.run_many` at once. At most
``max_workers`` calls run at a time; the others wait for a free slot. Each call's ``timeout_s``
counts from the moment *that call* starts running, so a call queued behind a full pool gets its
whole budget. Every call returns a :class:`ToolResult` whatever happens: an exception becomes an
``error`` result with the exception's type and message, an overrun a ``timeout`` result, an
unknown tag an ``error`` naming the known ones. Results are cut to ``max_result_chars`` and,
when a token counter is given, ``max_result_tokens`` (see :mod:`arpo.tools.truncation`), and
carry the call's latency.

A call that overruns its timeout frees its slot at once; its thread is abandoned and keeps
running until the tool returns (counted in ``metrics()["abandoned"]``). Tools that run untrusted
work (the Python interpreter) enforce their own hard limits, so that never lasts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.truncation import TRUNCATION_MARKER, TokenCounter, token_counter, truncate, truncate_text

__all__ = ["TRUNCATION_MARKER", "ToolBox", "truncate_text"]


class ToolBox:
    """Tools keyed by tag, executed concurrently with per-call timeouts and output budgets."""

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        max_workers: int = 8,
        timeout_s: float = 30.0,
        max_result_chars: int = 2000,
        max_result_tokens: int | None = None,
        count_tokens: TokenCounter | Any | None = None,
    ) -> None:
        """``count_tokens`` is a function ``str -> int`` or a tokenizer with ``encode``; it is
        required with ``max_result_tokens``."""
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_result_chars <= len(TRUNCATION_MARKER):
            raise ValueError(f"max_result_chars must be > {len(TRUNCATION_MARKER)}, got {max_result_chars}")
        if max_result_tokens is not None and (count_tokens is None or max_result_tokens < 1):
            raise ValueError(
                "max_result_tokens must be >= 1 and needs count_tokens (a function or a tokenizer)"
            )
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.tag in self._tools:
                raise ValueError(f"two tools use the tag <{tool.tag}>")
            self._tools[tool.tag] = tool
        self.timeout_s = timeout_s
        self.max_result_chars = max_result_chars
        self.max_result_tokens = max_result_tokens
        self._count: TokenCounter | None = token_counter(count_tokens) if max_result_tokens else None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="arpo-tool")
        self._counters: Counter[str] = Counter()
        self._counters_lock = threading.Lock()

    @property
    def tags(self) -> list[str]:
        return list(self._tools)

    def get(self, tag: str) -> Tool:
        try:
            return self._tools[tag]
        except KeyError:
            raise KeyError(f"no tool with tag <{tag}>; known: {self.tags}") from None

    def schemas(self) -> list[dict[str, Any]]:
        """Each tool's function schema (:meth:`Tool.schema`), for a chat template's ``tools``."""
        return [tool.schema() for tool in self._tools.values()]

    def describe(self) -> str:
        """The tools' descriptions, one paragraph each, for the system prompt."""
        return "\n".join(tool.description for tool in self._tools.values())

    def run(self, tag: str, call: str) -> ToolResult:
        """Run one call (same guarantees as :meth:`run_many`)."""
        return self.run_many([(tag, call)])[0]

    def run_many(self, calls: Sequence[tuple[str, str]]) -> list[ToolResult]:
        """Run ``(tag, call text)`` pairs concurrently; results come back in the same order."""
        futures = [self._pool.submit(self._run_call, tag, call) for tag, call in calls]
        return [future.result() for future in futures]

    def metrics(self) -> dict[str, int]:
        """Counters: ``<tag>/calls``, ``<tag>/<status>``, ``<tag>/truncated``, ``abandoned``, and
        each tool's own :meth:`Tool.metrics` as ``<tag>/<name>``."""
        with self._counters_lock:
            counters = dict(self._counters)
        for tag, tool in self._tools.items():
            counters.update({f"{tag}/{name}": value for name, value in tool.metrics().items()})
        return counters

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for tool in self._tools.values():
            tool.close()

    def __enter__(self) -> ToolBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_call(self, tag: str, call: str) -> ToolResult:
        """Runs in a pool slot: the tool runs in its own thread so the slot can give up at the timeout."""
        started = time.perf_counter()
        tool = self._tools.get(tag)
        if tool is None:
            result = ToolResult(
                f"error: there is no tool <{tag}>; available: {', '.join(self.tags)}", ToolStatus.ERROR
            )
        else:
            result = self._run_with_timeout(tag, lambda: tool.run(call))
        text, cut = truncate(result.text, self.max_result_chars, self.max_result_tokens, self._count)
        result = ToolResult(
            text, result.status, latency_s=time.perf_counter() - started, truncated=cut or result.truncated
        )
        self._count_call(tag, result)
        return result

    def _run_with_timeout(self, tag: str, body: Callable[[], ToolResult]) -> ToolResult:
        outcome: list[ToolResult] = []

        def target() -> None:
            try:
                outcome.append(body())
            except Exception as exc:  # a tool bug must not kill the rollout; the model sees the error
                outcome.append(
                    ToolResult(f"Tool <{tag}> failed: {type(exc).__name__}: {exc}", ToolStatus.ERROR)
                )

        thread = threading.Thread(target=target, name=f"arpo-tool-{tag}", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if outcome:
            return outcome[0]
        with self._counters_lock:
            self._counters["abandoned"] += 1
        return ToolResult(f"Tool <{tag}> timed out after {self.timeout_s:g} s.", ToolStatus.TIMEOUT)

    def _count_call(self, tag: str, result: ToolResult) -> None:
        with self._counters_lock:
            self._counters[f"{tag}/calls"] += 1
            self._counters[f"{tag}/{result.status.value}"] += 1
            if result.truncated:
                self._counters[f"{tag}/truncated"] += 1
