"""Replay search: exact and normalised hits, counted misses, the recorded ARPO cache when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arpo.tools.base import ToolStatus
from arpo.tools.search import SearchTool, normalize_query
from arpo.tools.search.replay import NO_CACHED_RESULT, ReplayBackend

SHARED_CACHE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "arpo" / "search_cache.json"


@pytest.fixture
def tool(tmp_path: Path) -> SearchTool:
    path = tmp_path / "cache.json"
    path.write_text(
        json.dumps(
            {
                "Who directed the film Love Finds Andy Hardy?": "Page 1: George B. Seitz directed it.",
                "capital of France": "Page 1: Paris.",
            }
        )
    )
    return SearchTool(ReplayBackend(path))


def test_exact_normalised_and_missing_queries_are_counted(tool: SearchTool) -> None:
    assert tool.run("capital of France").text == "Page 1: Paris."
    assert (
        tool.run('  WHO directed the film "love finds andy hardy"  ').text
        == "Page 1: George B. Seitz directed it."
    )
    miss = tool.run("capital of Germany")
    assert (miss.status, miss.text) == (ToolStatus.ERROR, NO_CACHED_RESULT)
    assert tool.metrics() == {"hits": 2, "misses": 1}


def test_empty_query_is_an_error_and_not_a_miss(tool: SearchTool) -> None:
    assert tool.run('  ""  ').status is ToolStatus.ERROR
    assert tool.metrics() == {"hits": 0, "misses": 0}


def test_normalize_query() -> None:
    assert normalize_query("  Hello,   WORLD!! ") == "hello world"
    assert normalize_query("ＦＵＬＬ width") == "full width"
    assert normalize_query("a_b-c") == "a b c"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold one JSON object"),
        ('{"q": 3}', "the result for 'q' is int, not text"),
    ],
)
def test_bad_files_are_rejected_with_the_path(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ReplayBackend(path)


@pytest.mark.skipif(not SHARED_CACHE.is_file(), reason="shared ARPO search cache not present")
def test_the_recorded_arpo_search_cache() -> None:
    records = json.loads(SHARED_CACHE.read_text(encoding="utf-8"))
    tool = SearchTool(ReplayBackend(SHARED_CACHE))
    query, expected = next(iter(records.items()))
    assert tool.run(query).text == expected
    assert tool.run(query.upper() + "?").text == expected
    assert tool.run("a query that was never recorded 0xdeadbeef").text == NO_CACHED_RESULT
    assert tool.metrics() == {"hits": 2, "misses": 1}
