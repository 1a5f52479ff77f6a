"""Attention of the prefix layout's response rows as two maskless flash calls (CPU).

A response row of the prefix layout (:mod:`arpo.train.prefix_rows`) has W queries and P + W keys:
the tree's prompt (P, cached, no padding) then the row's own response (W, right-padded). Query i
attends to every prompt key and to response keys 0 … i — a causal mask aligned to the lower
right, which PyTorch's CPU flash kernel does not run: with the explicit mask it scores all
W·(P + W) pairs at the masked kernel's rate (and ``causal_lower_right`` was measured no faster).
Here the row's attention is split (docs/performance.md, "The learner's layout"):

    o₁, ℓ₁ = flash(Q, K_prompt, V_prompt)                   no mask: every query sees the prompt
    o₂, ℓ₂ = flash(Q, K_resp, V_resp, is_causal=True)       W × W, top-left = lower-right here
    ℓ = log(e^ℓ₁ + e^ℓ₂),   o = e^(ℓ₁ − ℓ)·o₁ + e^(ℓ₂ − ℓ)·o₂

(ℓ the per-query log-sum-exp of the scaled scores): W·P + W²/2 pairs, none masked. Right padding
needs no mask: a padding key comes after every real query of its row, which the causal call
never lets it see; padding queries compute values the loss never reads. The backward hands each
partial flash backward the *merged* output and log-sum-exp — for softmax attention over the
union of the two key sets, dS = P ∘ (dP − rowsum(dO ∘ O)) with P = exp(S − ℓ), which is what the
flash backward computes from (O, ℓ); each part's own (oᵢ, ℓᵢ) would give the gradient of a
different function. Exact up to floating-point summation order (tests, float64: log-probs equal
each trajectory's own full forward to 1e-12, gradients to 1e-6 of their size — the level at which
transformers' own attention paths agree here, its rotary tables being float32; a backward fed
each part's own output and log-sum-exp, tried by hand, failed them and the layout tests).

Used only inside :func:`split_prefix_attention`, around the response forward of a prefix chunk,
when the policy runs transformers' ``sdpa`` attention on CPU; elsewhere the masked path runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from arpo.models.attention_implementation import attention_implementation, model_configs, runs_sdpa

NAME = "arpo_prefix_split"
"""The attention implementation registered with transformers for the response forward."""

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


class SplitPrefixAttention(torch.autograd.Function):
    """``o`` of the module docstring from ``[B, H, W, D]`` queries, the prompt's ``[B, H, P, D]``
    keys and values and the response's ``[B, H, W, D]`` ones (heads already repeated)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        query: torch.Tensor,
        prompt_keys: torch.Tensor,
        prompt_values: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        scale: float | None,
    ) -> torch.Tensor:
        out_prompt, lse_prompt = _flash(query, prompt_keys, prompt_values, scale=scale)[:2]
        out_own, lse_own = _flash(query, keys, values, is_causal=True, scale=scale)[:2]
        lse = torch.logaddexp(lse_prompt, lse_own)
        out = (
            torch.exp(lse_prompt - lse).unsqueeze(-1) * out_prompt
            + torch.exp(lse_own - lse).unsqueeze(-1) * out_own
        ).to(query.dtype)
        ctx.save_for_backward(query, prompt_keys, prompt_values, keys, values, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        query, prompt_keys, prompt_values, keys, values, out, lse = ctx.saved_tensors
        grad = grad.contiguous()
        dq_prompt, dk_prompt, dv_prompt = _flash_backward(
            grad, query, prompt_keys, prompt_values, out, lse, 0.0, False, scale=ctx.scale
        )
        dq_own, dk_own, dv_own = _flash_backward(
            grad, query, keys, values, out, lse, 0.0, True, scale=ctx.scale
        )
        return dq_prompt + dq_own, dk_prompt, dv_prompt, dk_own, dv_own, None


def _split_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``[B, H, W, D]`` queries against the cache's
    ``[B, H_kv, P + W, D]`` keys and values; a forward whose queries are all its keys (the prompt's
    own forward) runs transformers' sdpa, causal without a mask."""
    width, total = query.shape[2], key.shape[2]
    if width == total:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling
        )
    if dropout:
        raise ValueError(f"the prefix layout's split attention has no dropout (the model asks for {dropout})")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    prompt = total - width
    out = SplitPrefixAttention.apply(
        query.contiguous(),
        key[:, :, :prompt].contiguous(),
        value[:, :, :prompt].contiguous(),
        key[:, :, prompt:].contiguous(),
        value[:, :, prompt:].contiguous(),
        scaling,
    )
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """The split needs no mask (module docstring), so transformers builds none."""
    return None


AttentionInterface.register(NAME, _split_attention)
AttentionMaskInterface.register(NAME, _no_mask)


def split_applies(model: torch.nn.Module) -> bool:
    """Whether the model's prefix rows take the split: transformers' ``sdpa`` attention in every
    config, weights on the CPU, no attention dropout while training."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    dropout = model.training and any(
        getattr(config, "attention_dropout", 0.0) for config in model_configs(model)
    )
    return on_cpu and not dropout and runs_sdpa(model)


@contextmanager
def split_prefix_attention(model: torch.nn.Module, attention_mask: torch.Tensor) -> Iterator[bool]:
    """Run the model's forwards inside with the split attention, and yield True, when it applies
    (:func:`split_applies`, and every row of ``attention_mask``, ``[B, P + W]``, is ones then
    zeros: right padding only). Else yield False and change nothing (the masked path)."""
    right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    if not (right_padded and split_applies(model)):
        yield False
        return
    with attention_implementation(model, NAME):
        yield True
