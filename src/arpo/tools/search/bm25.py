"""``bm25`` search backend: BM25 over a local JSONL corpus (:mod:`~arpo.tools.search.corpus`).

Title and text are indexed together with the ``bm25s`` library (lower-cased, English stopwords
removed, no stemming). The index is built once and cached on disk, keyed by the corpus content
and the BM25 parameters, and written atomically (see :func:`~arpo.tools.search.corpus.cached_index_dir`).
A query returns the ``top_k`` passages with a positive score, best first.

Uses the ``bm25s`` package (a core dependency).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from arpo.tools.base import ToolResult
from arpo.tools.search.base import SearchBackend, default_cache_dir, format_passages
from arpo.tools.search.corpus import cached_index_dir, load_corpus

INDEX_FORMAT = 1
"""Bumped when the cached index layout changes, so old caches are not reused."""
STOPWORDS = "en"


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError:
        raise ImportError("the bm25 search backend needs bm25s: pip install 'bm25s>=0.3.16'") from None
    return bm25s


class BM25Backend(SearchBackend):
    """BM25 over a JSONL corpus; see the module docstring."""

    def __init__(
        self,
        corpus: str | Path,
        *,
        top_k: int = 5,
        snippet_chars: int = 500,
        k1: float = 1.5,
        b: float = 0.75,
        cache_dir: str | Path | None = None,
    ) -> None:
        if top_k < 1 or snippet_chars < 1:
            raise ValueError(f"bm25: top_k and snippet_chars must be >= 1, got {top_k} and {snippet_chars}")
        corpus = Path(corpus)
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.source = f"the document collection {corpus.name}"
        self._bm25s = _bm25s()
        self.passages = load_corpus(corpus)

        def build(directory: Path) -> None:
            texts = [f"{p.title}\n{p.text}" for p in self.passages]
            retriever = self._bm25s.BM25(k1=k1, b=b)
            retriever.index(
                self._bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False), show_progress=False
            )
            retriever.save(str(directory), show_progress=False)

        params = {"backend": "bm25", "format": INDEX_FORMAT, "k1": k1, "b": b, "stopwords": STOPWORDS}
        self.index_dir = cached_index_dir(Path(cache_dir or default_cache_dir("bm25")), corpus, params, build)
        self._retriever = self._bm25s.BM25.load(str(self.index_dir), show_progress=False)
        self._lock = threading.Lock()

    def search(self, query: str) -> ToolResult:
        tokens = self._bm25s.tokenize([query], stopwords=STOPWORDS, show_progress=False)
        with self._lock:
            documents, scores = self._retriever.retrieve(
                tokens, k=min(self.top_k, len(self.passages)), show_progress=False
            )
        hits = [self.passages[int(d)] for d, s in zip(documents[0], scores[0], strict=True) if s > 0]
        return ToolResult(format_passages(hits, self.snippet_chars))
