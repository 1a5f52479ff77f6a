"""Grouped-query attention without copied heads: the same forward bits as transformers' sdpa."""

from __future__ import annotations

import pytest
import torch

from arpo.models.grouped_attention import IMPLEMENTATION, grouped_query_attention
from arpo.models.tiny import build_tiny_llama


def random_mask(batch: int, q_len: int, kv_len: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Additive ``[B, 1, q, kv]`` mask: causal over the last ``q_len`` columns, random holes before."""
    generator = torch.Generator().manual_seed(seed)
    allowed = torch.rand(batch, 1, q_len, kv_len, generator=generator) < 0.7
    q_cols = torch.arange(kv_len - q_len, kv_len)
    allowed &= torch.arange(kv_len)[None, :] <= q_cols[:, None]
    allowed |= (torch.arange(kv_len)[None, :] == q_cols[:, None])[None, None]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("q_len", [1, 5])
def test_forward_is_bitwise_sdpa_with_copied_heads(tokenizer, dtype, q_len):
    model = build_tiny_llama(tokenizer, hidden_size=96, num_heads=6, num_kv_heads=2, seed=2, dtype=dtype)
    batch, past = 3, 17
    ids = torch.randint(0, len(tokenizer), (batch, past + q_len), generator=torch.Generator().manual_seed(0))
    mask = random_mask(batch, past + q_len, past + q_len, dtype, seed=q_len)
    positions = torch.arange(past + q_len).expand(batch, -1)
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        with grouped_query_attention(model):
            assert model.config._attn_implementation == IMPLEMENTATION
            grouped = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(plain, grouped)


def test_the_grouped_path_skips_the_head_copies(tokenizer, monkeypatch):
    """The covered call never reaches ``repeat_kv``; one with a gradient does, as before."""
    import transformers.integrations.sdpa_attention as sdpa

    model = build_tiny_llama(tokenizer, num_heads=4, num_kv_heads=2, seed=3)
    copies = []
    original = sdpa.repeat_kv
    monkeypatch.setattr(sdpa, "repeat_kv", lambda x, n: copies.append(n) or original(x, n))
    ids = torch.randint(0, len(tokenizer), (2, 9), generator=torch.Generator().manual_seed(1))
    mask = random_mask(2, 9, 9, torch.float32, seed=4)
    with grouped_query_attention(model):
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
        assert copies == []
        model(input_ids=ids, attention_mask=mask).logits.sum().backward()  # the learner's path
    assert copies == [2, 2] * model.config.num_hidden_layers


def test_gradients_are_transformers_sdpa(tokenizer):
    """Within the block a forward with autograd is sdpa's own: the same gradients, bit for bit."""
    model = build_tiny_llama(tokenizer, num_heads=4, num_kv_heads=2, seed=4)
    ids = torch.randint(0, len(tokenizer), (2, 11), generator=torch.Generator().manual_seed(2))
    mask = random_mask(2, 11, 11, torch.float32, seed=5)
    grads = []
    for grouped in (False, True):
        model.zero_grad()
        if grouped:
            with grouped_query_attention(model):
                model(input_ids=ids, attention_mask=mask).logits.square().mean().backward()
        else:
            model(input_ids=ids, attention_mask=mask).logits.square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_the_implementation_is_restored_and_never_saved(tokenizer, tmp_path):
    model = build_tiny_llama(tokenizer, seed=5)
    with pytest.raises(RuntimeError, match="inside"), grouped_query_attention(model):
        raise RuntimeError("inside")
    assert model.config._attn_implementation == "sdpa"
    with grouped_query_attention(model):
        pass
    model.save_pretrained(tmp_path)
    assert IMPLEMENTATION not in (tmp_path / "config.json").read_text()


def test_other_implementations_are_left_alone(tokenizer):
    model = build_tiny_llama(tokenizer, seed=6)
    model.set_attn_implementation("eager")
    with grouped_query_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "eager"
