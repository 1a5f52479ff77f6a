"""Grouped-query attention without copying the keys and values, for the generator's CPU forwards.

A model with grouped-query attention (GQA: H_q query heads share H_kv < H_q key/value heads, e.g.
SmolLM2-135M: 9 and 3) computes, per query head h,

    o_h = softmax(q_h K_g(h)ᵀ · s + M) V_g(h),   g(h) = ⌊h · H_kv / H_q⌋,

with M the additive mask. transformers' ``sdpa`` implementation passes the group structure to
``torch.nn.functional.scaled_dot_product_attention`` (``enable_gqa=True``) only where no mask is
given on a CPU; with the explicit 4-D mask the HF generator always passes (rows with holes,
:mod:`arpo.engines.hf`), it first copies every key and value head H_q / H_kv times
(``repeat_kv``). In a decode step that copy is the whole batch cache, H_q / H_kv times over, in every
layer: for SmolLM2 at batch 8 and 512 cached tokens, 3 × 8 × 3 × 512 × 64 floats per layer for the
keys and as many for the values, more bytes than the step's weights.

PyTorch's CPU attention kernel takes the group structure and a mask together. Its forward gives
bitwise the same output as the copied heads (tested: ``tests/models/test_grouped_attention.py``);
its backward sums the key/value gradients over a group in another order, so this path serves
forwards without autograd only, and the learner's forwards and backwards are unchanged.

:func:`grouped_query_attention` switches a model to it for the duration of a ``with`` block (the
generator's forward; :mod:`arpo.models.attention_implementation`), so nothing else (the learner, a saved
``config.json``) ever sees it. It applies only to models running transformers' ``sdpa``; calls it
does not cover (a gradient, no mask, not a CPU tensor, dropout, a position bias, a paged cache,
returned attention weights, no groups) go to ``sdpa`` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from arpo.models.attention_implementation import attention_implementation, runs_sdpa

IMPLEMENTATION = "arpo_cpu_grouped_sdpa"
"""The name this module registers in transformers' ``AttentionInterface``."""

_FALLBACK_KEYS = ("position_bias", "cache", "output_attentions")


def _covered(
    module: torch.nn.Module, query: torch.Tensor, mask: torch.Tensor | None, kwargs: dict[str, Any]
) -> bool:
    return (
        getattr(module, "num_key_value_groups", 1) > 1
        and mask is not None
        and query.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not any(kwargs.get(key) for key in _FALLBACK_KEYS)
    )


def grouped_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query [B, H_q, q, D]``, ``key``/``value``
    ``[B, H_kv, kv, D]``; returns ``[B, q, H_q, D]`` as ``sdpa`` does."""
    if dropout or not _covered(module, query, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION, grouped_sdpa_forward)


@contextmanager
def grouped_query_attention(model: PreTrainedModel) -> Iterator[None]:
    """Within the block, ``model``'s attention runs :func:`grouped_sdpa_forward` if it runs
    transformers' ``sdpa``; otherwise (eager, flash, flex) nothing changes."""
    if not runs_sdpa(model):
        yield
        return
    with attention_implementation(model, IMPLEMENTATION):
        yield
