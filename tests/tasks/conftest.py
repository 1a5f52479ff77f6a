"""A small toolworld built once per test session (real bm25 search and sandboxed python tools)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from arpo.tasks.toolworld import SplitSizes, ToolworldConfig, ToolworldPaths, build_toolworld, load_tokenizer

SMALL_TOOLWORLD = ToolworldConfig(
    seed=3,
    train=SplitSizes(towns=20, people=40, tasks=240),
    test=SplitSizes(towns=20, people=40, tasks=120),
)


@pytest.fixture(scope="session")
def bm25_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bm25-cache")


@pytest.fixture(scope="session")
def toolworld(tmp_path_factory: pytest.TempPathFactory, bm25_cache: Path) -> ToolworldPaths:
    out = tmp_path_factory.mktemp("toolworld") / "env"
    return build_toolworld(SMALL_TOOLWORLD, out, cache_dir=bm25_cache, progress=False)


@pytest.fixture(scope="session")
def toolworld_tokenizer(toolworld: ToolworldPaths) -> PreTrainedTokenizerFast:
    return load_tokenizer(toolworld.tokenizer)
