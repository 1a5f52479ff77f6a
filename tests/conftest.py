"""Shared fixtures: the tiny tokenizer and models built from a config (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.tasks.prompts import render_prompt
from arpo.tasks.toolworld import SplitSizes, ToolworldConfig, ToolworldPaths, build_toolworld, load_tokenizer

TOOL_SCRIPT = "<calc>1+2</calc><result>3</result>"
SMALL_TOOLWORLD = ToolworldConfig(
    seed=3,
    train=SplitSizes(towns=20, people=40, tasks=240),
    test=SplitSizes(towns=20, people=40, tasks=120),
)
"""A small toolworld built once per test session (real bm25 search and sandboxed python tools)."""
QUESTIONS = ["what is 1+2?", "add one and two", "compute 1+2 please", "sum?"]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """Random tiny Llama (float32): emits tags, answers and EOS at random."""
    return build_tiny_llama(tokenizer, seed=0)


@pytest.fixture(scope="session")
def model64(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """Random tiny Llama in float64, for exact comparisons with a full recompute."""
    return build_tiny_llama(tokenizer, seed=1, dtype=torch.float64)


@pytest.fixture(scope="session")
def prompts(tokenizer: PreTrainedTokenizerFast) -> list[list[int]]:
    return [render_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="session")
def tool_caller(tokenizer: PreTrainedTokenizerFast, prompts: list[list[int]]) -> LlamaForCausalLM:
    """A tiny Llama trained (in ~1 s) to call <calc>1+2</calc> after every prompt and every result.

    Makes tool calls certain, so the tool-loop rules (limits, budgets, branching at every
    result) are exercised deterministically by a real model.
    """
    model = build_tiny_llama(tokenizer, seed=2)
    script = tokenizer.encode(TOOL_SCRIPT * 12, add_special_tokens=False)
    sequences = [torch.tensor(p + script) for p in prompts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(300):
        seq = sequences[step % len(sequences)][None]
        loss = model(input_ids=seq, labels=seq).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


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
