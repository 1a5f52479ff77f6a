"""BM25 search over a small corpus built in the test: retrieval, formatting, the on-disk index cache."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bm25s")

from arpo.tools.base import ToolStatus  # noqa: E402
from arpo.tools.search import NO_RESULTS, SearchTool  # noqa: E402
from arpo.tools.search.bm25 import BM25Backend  # noqa: E402
from arpo.tools.search.corpus import load_corpus  # noqa: E402

from .sample_corpus import DOCUMENTS, write_corpus  # noqa: E402


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("capital of France", "Paris"),
        ("who created the Python programming language", "Python (language)"),
        ("highest mountain Himalayas", "Mount Everest"),
        ("coral reef Queensland", "Great Barrier Reef"),
    ],
)
def test_finds_the_right_passage_first(corpus: Path, tmp_path: Path, query: str, title: str) -> None:
    tool = SearchTool(BM25Backend(corpus, top_k=3, cache_dir=tmp_path / "cache"))
    result = tool.run(query)
    assert result.status is ToolStatus.OK
    assert result.text.splitlines()[0].startswith(f"Page 1: {title}: ")


def test_format_top_k_and_snippets(corpus: Path, tmp_path: Path) -> None:
    backend = BM25Backend(corpus, top_k=2, snippet_chars=20, cache_dir=tmp_path / "cache")
    lines = backend.search("capital city").text.splitlines()
    assert len(lines) == 2
    assert {line.split(":")[1].strip() for line in lines} == {"Paris", "Berlin"}
    assert all(line.endswith("…") and len(line.split(": ", 2)[2]) == 20 for line in lines)


def test_no_matching_terms_gives_no_results(corpus: Path, tmp_path: Path) -> None:
    assert BM25Backend(corpus, cache_dir=tmp_path / "cache").search("zzzxq qqqv").text == NO_RESULTS


def test_index_is_built_once_and_keyed_by_corpus_content(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = BM25Backend(corpus, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [first.index_dir.name]  # no temporary directory left behind

    import bm25s

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached index should have been loaded, not rebuilt")

    monkeypatch.setattr(bm25s.BM25, "index", no_rebuild)
    again = BM25Backend(corpus, cache_dir=cache)
    assert again.index_dir == first.index_dir
    assert again.search("capital of France").text.startswith("Page 1: Paris")

    monkeypatch.undo()
    write_corpus(corpus, DOCUMENTS[:3])
    changed = BM25Backend(corpus, cache_dir=cache)
    assert changed.index_dir != first.index_dir
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.index_dir.name, changed.index_dir.name])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", r"corpus.jsonl:1: not valid JSON"),
        ('{"id": 1, "title": "t", "text": "ok"}\n[1, 2]\n', r"corpus.jsonl:2: expected a JSON object"),
        ('{"id": 1, "title": "t"}\n', r"corpus.jsonl:1: missing field 'text'"),
        ('{"id": 1, "title": 5, "text": "x"}\n', r"corpus.jsonl:1: 'title' and 'text' must be strings"),
        ("\n", r"the corpus is empty"),
    ],
)
def test_bad_corpus_lines_are_reported_with_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_corpus(path)


def test_missing_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="corpus file .*missing.jsonl does not exist"):
        BM25Backend(tmp_path / "missing.jsonl", cache_dir=tmp_path)
