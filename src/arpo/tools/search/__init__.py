"""Search over a local corpus (``bm25``, ``dense``), a recorded cache (``replay``) or a web API (``http``).

:func:`build_search_tool` is what the tool registry calls for ``{"name": "search", "backend": ...}``;
backends are imported only when used, so ``bm25s`` is needed only for ``bm25`` and
sentence-transformers + faiss only for ``dense``.
"""

from __future__ import annotations

import importlib
from typing import Any

from arpo.tools.registry import call_with_params
from arpo.tools.search.base import (
    NO_RESULTS,
    Passage,
    SearchBackend,
    SearchTool,
    format_passages,
    normalize_query,
)

BACKENDS = {
    "bm25": "arpo.tools.search.bm25:BM25Backend",
    "dense": "arpo.tools.search.dense:DenseBackend",
    "replay": "arpo.tools.search.replay:ReplayBackend",
    "http": "arpo.tools.search.http:HTTPBackend",
}


def backend_class(name: str) -> type[SearchBackend]:
    """The backend class registered as ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown search backend {name!r}; known: {', '.join(BACKENDS)}")
    module, attribute = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def build_search_tool(backend: str, tag: str = "search", **params: Any) -> SearchTool:
    """A :class:`SearchTool` with the backend ``backend`` built from ``params``."""
    return SearchTool(
        call_with_params(backend_class(backend), params, f"search backend {backend!r}"), tag=tag
    )


__all__ = [
    "BACKENDS",
    "NO_RESULTS",
    "Passage",
    "SearchBackend",
    "SearchTool",
    "backend_class",
    "build_search_tool",
    "format_passages",
    "normalize_query",
]
