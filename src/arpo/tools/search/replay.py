"""``replay`` search backend: answers from a recorded query -> result file, offline and deterministic.

The file is one JSON object mapping each recorded query to the result text the real search
returned (the format of the ARPO authors' ``search_cache.json``). A query is looked up exactly,
then by its normalised form (:func:`~arpo.tools.search.base.normalize_query`: case, punctuation
and spacing ignored). A miss returns :data:`NO_CACHED_RESULT` with status ``error`` (the search
did not happen) and is counted: :meth:`ReplayBackend.metrics` gives ``hits`` and ``misses``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

from arpo.tools.base import ToolResult, ToolStatus
from arpo.tools.search.base import SearchBackend, normalize_query

NO_CACHED_RESULT = "No cached search result for this query."


class ReplayBackend(SearchBackend):
    """Recorded search results; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"replay: recorded search file {self.path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"replay: {self.path} is not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        if not isinstance(records, dict):
            raise ValueError(f"replay: {self.path} must hold one JSON object mapping query -> result text")
        for query, result in records.items():
            if not isinstance(result, str):
                raise ValueError(
                    f"replay: {self.path}: the result for {query!r} is {type(result).__name__}, not text"
                )
        self.exact: dict[str, str] = records
        self.normalized: dict[str, str] = {}
        for query, result in records.items():
            self.normalized.setdefault(normalize_query(query), result)
        self.source = "a recorded web-search cache"
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def search(self, query: str) -> ToolResult:
        result = self.exact.get(query)
        if result is None:
            result = self.normalized.get(normalize_query(query))
        with self._lock:
            self._counts["hits" if result is not None else "misses"] += 1
        if result is None:
            return ToolResult(NO_CACHED_RESULT, ToolStatus.ERROR)
        return ToolResult(result)

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._counts["hits"], "misses": self._counts["misses"]}
