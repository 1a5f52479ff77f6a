"""The HF generator's batch cache appends in place, and generation is bitwise what transformers'
``DynamicCache`` and head-copying ``sdpa`` give."""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache

import arpo.engines.hf as hf
from arpo.engines.base import Request, SamplingParams
from arpo.engines.batch_cache import GROW_MIN, BatchCache, GrowingLayer, spare_columns
from arpo.engines.hf import HFGenerator


def kv(batch: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, width, 4, generator=generator), torch.randn(
        batch, 2, width, 4, generator=generator
    )


def test_appends_equal_concatenation_and_reuse_the_buffer():
    layer, keys, values = GrowingLayer(), *kv(3, 5, 0)
    layer.update(keys, values)
    buffer = layer.keys.data_ptr()
    for step in range(GROW_MIN):
        new_keys, new_values = kv(3, 1, step + 1)
        keys, values = torch.cat([keys, new_keys], dim=-2), torch.cat([values, new_values], dim=-2)
        out_keys, out_values = layer.update(new_keys, new_values)
        assert torch.equal(out_keys, keys) and torch.equal(out_values, values)
        assert out_keys.data_ptr() == buffer  # written into the spare columns: nothing copied
    assert layer.get_seq_length() == 5 + GROW_MIN
    layer.update(*kv(3, spare_columns(5), 99))  # more than the spare columns: a new buffer
    assert layer.keys.data_ptr() != buffer and layer.get_seq_length() == 5 + GROW_MIN + spare_columns(5)


def test_a_cache_holding_buffers_and_rows_that_leave():
    keys, values = kv(4, 10, 1)
    cache = BatchCache([(keys, values)], width=6)
    assert cache.get_seq_length() == 6 and torch.equal(cache.layers[0].keys, keys[:, :, :6])
    new = kv(4, 2, 2)
    cache.update(*new, layer_idx=0)
    assert torch.equal(cache.layers[0].keys, torch.cat([keys[:, :, :6], new[0]], dim=-2))
    assert cache.layers[0].keys.data_ptr() == keys.data_ptr()
    cache.batch_select_indices(torch.tensor([0, 2]))  # rows leave: fresh tensors, then a new buffer
    kept = cache.layers[0].keys.clone()
    more = kv(2, 1, 3)
    cache.update(*more, layer_idx=0)
    assert torch.equal(cache.layers[0].keys, torch.cat([kept, more[0]], dim=-2))
    assert torch.equal(cache.layers[0].values[:, :, :6], values[[0, 2], :, :6])


def reference_cache(buffers=(), width: int = 0) -> DynamicCache:
    """transformers' own cache with the same contents (every append a ``torch.cat``)."""
    layers = [(k[:, :, :width], v[:, :, :width]) for k, v in buffers]
    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def sample_everything(model, tokenizer, prompts) -> list:
    """Forks, a tool result, rows that join a running batch and leave it, sampled at T = 1."""
    gen = HFGenerator(model, tokenizer)
    gen.seed(7)
    roots = [gen.add_path(p) for p in prompts]
    outs = gen.generate(roots, [6, 9, 3, 12], SamplingParams(temperature=1.0), [])
    kids = [gen.fork(roots[0], len(prompts[0]) + 2) for _ in range(2)]
    gen.extend(roots[1], tokenizer.encode("<result>42</result>", add_special_tokens=False))
    joined = []

    def on_done(done):
        joined.extend(done)
        if len(joined) == 1:  # a tool result joins the running batch
            return [Request(roots[1], 10), Request(roots[2], 4)]
        return []

    gen.stream([Request(k, 14) for k in kids], SamplingParams(temperature=1.0), [], on_done)
    return [*outs, *(out for _, out in joined)]


def test_generation_is_bitwise_transformers_own(model, tokenizer, prompts, monkeypatch):
    ours = sample_everything(model, tokenizer, prompts)
    monkeypatch.setattr(hf, "BatchCache", reference_cache)
    monkeypatch.setattr(hf, "grouped_query_attention", lambda model: contextlib.nullcontext())
    theirs = sample_everything(model, tokenizer, prompts)
    assert [o.token_ids for o in ours] == [o.token_ids for o in theirs]
    assert [o.logprobs for o in ours] == [o.logprobs for o in theirs]
    assert [o.entropies for o in ours] == [o.entropies for o in theirs]
    assert sum(len(o.token_ids) for o in ours) > 40
