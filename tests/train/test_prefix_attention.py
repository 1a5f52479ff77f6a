"""The prefix layout's split attention (arpo.train.prefix_attention): the same log-probs and
gradients as each trajectory's full forward, taken only where it applies."""

from __future__ import annotations

import pytest
import torch

from arpo.models.tiny import build_tiny_llama
from arpo.train import prefix_attention
from arpo.train.prefix_attention import SplitPrefixAttention, split_prefix_attention
from arpo.train.prefix_rows import PrefixBatch, prefix_logprobs

PROMPT, LENGTHS = 7, (9, 6, 1)


def batch_of(tokenizer_size: int, seed: int = 0) -> PrefixBatch:
    """A 7-token prompt and three right-padded responses of 9, 6 and 1 tokens."""
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(5, tokenizer_size, (1, PROMPT), generator=generator)
    width = max(LENGTHS)
    responses = torch.zeros(len(LENGTHS), width, dtype=torch.long)
    mask = torch.zeros(len(LENGTHS), PROMPT + width, dtype=torch.long)
    for row, length in enumerate(LENGTHS):
        responses[row, :length] = torch.randint(5, tokenizer_size, (length,), generator=generator)
        mask[row, : PROMPT + length] = 1
    return PrefixBatch(prompt, responses, mask)


def full_logprobs(model: torch.nn.Module, batch: PrefixBatch) -> list[torch.Tensor]:
    """Each trajectory's log-probs from its own forward over prompt + response (no cache)."""
    out = []
    for row, length in enumerate(LENGTHS):
        ids = torch.cat([batch.prompt_ids[0], batch.input_ids[row, :length]])[None]
        logits = model(input_ids=ids).logits[0, PROMPT - 1 : -1]
        out.append(torch.log_softmax(logits, -1).gather(-1, ids[0, PROMPT:, None]).squeeze(-1))
    return out


def gradients(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.fixture
def spy(monkeypatch):
    calls = []
    apply = SplitPrefixAttention.apply

    def counted(*args):
        calls.append(args[0].shape)
        return apply(*args)

    monkeypatch.setattr(SplitPrefixAttention, "apply", counted)
    return calls


@pytest.mark.parametrize("heads", [(4, 2), (4, 4)], ids=["grouped-query", "multi-head"])
def test_split_equals_each_trajectorys_full_forward(tokenizer, spy, heads):
    model = build_tiny_llama(
        tokenizer, seed=3, num_heads=heads[0], num_kv_heads=heads[1], dtype=torch.float64
    )
    batch = batch_of(len(tokenizer))
    logprobs, _ = prefix_logprobs(model, batch)
    assert len(spy) == model.config.num_hidden_layers, "the response forward took the split"
    expected = full_logprobs(model, batch)
    for row, length in enumerate(LENGTHS):
        torch.testing.assert_close(logprobs[row, :length], expected[row], rtol=0, atol=1e-12)
    weights = torch.linspace(0.5, 2.0, max(LENGTHS), dtype=torch.float64)
    split = gradients(model, sum((logprobs[r, :n] * weights[:n]).sum() for r, n in enumerate(LENGTHS)))
    full = gradients(model, sum((expected[r] * weights[:n]).sum() for r, n in enumerate(LENGTHS)))
    # float64, but the rotary tables are float32 here: every path (sdpa, eager, split) agrees to ~1e-7
    for name in full:
        error = float((split[name] - full[name]).abs().max())
        assert error <= 1e-6 * float(full[name].abs().max()), (name, error)


def test_float32_and_bf16_autocast_stay_close_to_the_masked_path(tokenizer, spy):
    model = build_tiny_llama(tokenizer, seed=3)
    batch = batch_of(len(tokenizer))
    masked = model.config._attn_implementation
    split, _ = prefix_logprobs(model, batch)
    assert spy
    model.config._attn_implementation = "eager"  # not sdpa: the masked path
    try:
        reference, _ = prefix_logprobs(model, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference_bf16, _ = prefix_logprobs(model, batch)
    finally:
        model.config._attn_implementation = masked
    with torch.autocast("cpu", dtype=torch.bfloat16):
        split_bf16, _ = prefix_logprobs(model, batch)
    for row, length in enumerate(LENGTHS):
        torch.testing.assert_close(split[row, :length], reference[row, :length], rtol=0, atol=1e-5)
        torch.testing.assert_close(split_bf16[row, :length], reference_bf16[row, :length], rtol=0, atol=0.1)


def test_it_applies_only_to_sdpa_on_cpu_with_right_padding_and_no_dropout(tokenizer):
    model = build_tiny_llama(tokenizer, seed=3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    with split_prefix_attention(model, right) as applies:
        assert applies and model.config._attn_implementation == prefix_attention.NAME
    assert model.config._attn_implementation == "sdpa", "restored"
    with split_prefix_attention(model, torch.tensor([[1, 0, 1, 1]])) as applies:
        assert not applies and model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "eager"
    with split_prefix_attention(model, right) as applies:
        assert not applies
    model.config._attn_implementation = "sdpa"
    model.config.attention_dropout = 0.1
    with split_prefix_attention(model.train(), right) as applies:
        assert not applies
    with split_prefix_attention(model.eval(), right) as applies:
        assert applies
