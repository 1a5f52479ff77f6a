"""The vLLM generator against the transformers one on SmolLM2-135M-Instruct (float32 in both).

Run separately (``pytest -m vllm``): vLLM's in-process engine changes process-wide torch state.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from arpo.engines.base import SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.tasks.prompts import render_prompt
from tests.engines.vllm_support import start_engine

pytestmark = pytest.mark.vllm

QUESTIONS = [
    "What is the capital of France?",
    "Name three colors.",
    "Write one sentence about the sea.",
    "What is 2+2?",
]
GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def smol(smollm2_session):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_session.folder)
    model = AutoModelForCausalLM.from_pretrained(smollm2_session.folder, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def engine(smollm2_session):
    return start_engine(smollm2_session.folder)


@pytest.fixture(scope="module")
def prompts(smol):
    return [render_prompt(smol[1], [{"role": "user", "content": q}]) for q in QUESTIONS]


def greedy(generator, prompts, tokens=32, stops=()):
    paths = [generator.add_path(p) for p in prompts]
    generator.prefill(paths)
    outs = generator.generate(paths, [tokens] * len(paths), GREEDY, list(stops))
    for path in paths:
        generator.release(path)
    return outs


def test_greedy_generation_agrees_token_for_token_with_transformers(smol, engine, prompts):
    model, tokenizer = smol
    ours, theirs = greedy(engine, prompts), greedy(HFGenerator(model, tokenizer), prompts)
    for a, b in zip(ours, theirs, strict=True):
        assert a.token_ids == b.token_ids
        assert a.finish == b.finish
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
    assert "Paris" in tokenizer.decode(ours[0].token_ids)
    assert ours[0].finish == "eos" and ours[0].token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_topk_entropy_estimate_tracks_the_exact_entropy(smol, engine, prompts):
    """The estimate (midpoint of the top-20 bounds) against transformers' exact entropy, same tokens."""
    model, tokenizer = smol
    params = SamplingParams(temperature=1.0)
    paths = [engine.add_path(p) for p in prompts]
    outs = engine.generate(paths, [40] * len(paths), params, [])
    estimate, exact = [], []
    for prompt, out in zip(prompts, outs, strict=True):
        ids = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1].double()
        log_p = torch.log_softmax(logits, -1)
        exact += (-(log_p.exp() * log_p).sum(-1)).tolist()
        estimate += out.entropies
        assert out.logprobs == pytest.approx(
            log_p.gather(1, torch.tensor(out.token_ids)[:, None]).squeeze(1).tolist(), abs=1e-3
        )
    errors = [(e - x) / math.log(engine.vocab_size) for e, x in zip(estimate, exact, strict=True)]
    assert statistics.fmean(abs(e) for e in errors) < 0.03
    assert statistics.correlation(estimate, exact) > 0.95


def test_stop_strings_keep_the_sampled_tokens(smol, engine, prompts):
    _, tokenizer = smol
    out = greedy(engine, prompts[:1], stops=["Paris"])[0]
    assert out.finish == "stop" and out.stop_string == "Paris"
    assert tokenizer.decode(out.token_ids).endswith("Paris")


def test_forks_reuse_the_cached_prefix(engine, prompts):
    """A branch forked after a long prefix recomputes at most the prefix's last partial block."""
    root = engine.add_path(prompts[2] * 4)  # > 4 blocks of 32 tokens
    engine.prefill([root])
    branches = [engine.fork(root, engine.length(root)) for _ in range(3)]
    before = engine.stats.snapshot()
    engine.generate(branches, [4] * 3, SamplingParams(temperature=1.0), [])
    computed = engine.stats.since(before).prefill_tokens
    assert computed <= 3 * 32 < 3 * engine.length(root)
    for path in [root, *branches]:
        engine.release(path)


def test_weight_update_changes_outputs_and_matches_transformers(smol, engine, prompts):
    model, tokenizer = smol
    before = greedy(engine, prompts, tokens=16)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * 0.02)
        engine.update_weights(model)
        after = greedy(engine, prompts, tokens=16)
        reference = greedy(HFGenerator(model, tokenizer), prompts, tokens=16)
        assert [o.token_ids for o in after] != [o.token_ids for o in before]
        assert [o.token_ids for o in after] == [o.token_ids for o in reference]
    finally:
        model.load_state_dict(original)
        engine.update_weights(model)
    assert [o.token_ids for o in greedy(engine, prompts, tokens=16)] == [o.token_ids for o in before]
