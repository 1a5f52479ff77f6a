"""The policy loss: clipped policy gradient, aggregation, KL and entropy terms (token tensors only).

Per token t of trajectory i, with ratio ρ = exp(log π_θ − log π_old) and advantage A:

    ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))          PPO clip (Schulman et al. 2017)
    ℓ = min(ℓ, −c·A)   when A < 0                             dual clip, c > 1 (Ye et al. 2020,
                                                               arXiv 1912.09729)

``clip_high > clip_low`` is DAPO's clip-higher (arXiv 2503.14476).

``clip_gradient: entropy_balanced`` is AEPO's entropy clipping-balanced clip (AEPO, arXiv
2510.14545, entropy-balanced policy optimization): the upper bound becomes (1 + ε_high)·ρ/sg(ρ),
with sg the stop-gradient, i.e. ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, (1 + ε_high)·ρ/sg(ρ))). Its
value is 1 + ε_high, so the loss value is PPO's, but the clipped term keeps a gradient:

    ∂ℓ/∂log π_θ = −F·A,   F = 1 + ε_high   if ρ > 1 + ε_high and A > 0   (PPO: F = 0)
                          F = 0            if ρ < 1 − ε_low and A < 0    (as PPO)
                          F = ρ            otherwise                     (as PPO)

(and F = 0 where the dual clip binds, as PPO), so a token whose probability already rose past the
clip still learns, at a bounded rate (AEPO's motivation: PPO's clip drops the gradient of the
high-entropy, exploratory tokens first). As in the official code only the upper bound is treated, on every
token (no entropy mask despite the name), and the dual clip still bounds A < 0 tokens. The clip
fraction counts tokens whose loss *value* was clipped in both modes, so it is comparable across
them; with ``entropy_balanced`` the upper-clipped A > 0 ones among them keep a gradient.

The batch loss is a weighted sum

    L = Σ_{i,t} s_{i,t} · (ℓ_{i,t} + β_KL·KL_{i,t} − β_H·H_{i,t})

where the *scale* s = c·w combines the token's attribution weight w (1, or 1/d for ``hard``
attribution, :mod:`arpo.core.advantage`; 0 on prompt, tool-result and padding tokens, which
therefore never contribute) with the aggregation coefficient c of its mini-batch:

* ``token-mean``: c = 1 / Σ_{i,t} w_{i,t} — mean over (weighted) tokens (verl's default; DAPO).
* ``seq-mean-token-mean``: c_i = 1 / (G · n_i) — mean over each sequence's n_i loss tokens, then
  over the G sequences (GRPO as written by Shao et al. 2024).
* ``seq-mean-token-sum``: c_i = 1 / G — each sequence's token *sum*, averaged over sequences
  (verl's mode of that name; longer sequences weigh more).
* ``seq-mean-token-sum-norm``: c = 1 / (G · L_max), L_max the response budget — Dr. GRPO's
  constant normaliser (Liu et al. 2025, arXiv 2503.20783, §3.1: "replace mask.sum(axis=dim) with a
  constant value such as generation budget"), so no sequence's tokens are up- or down-weighted
  by its own length; verl's ``seq-mean-token-sum-norm``.

Coefficients are computed once per mini-batch (:func:`token_scale`) and passed to every
micro-batch, so gradient accumulation gives exactly the mini-batch loss.

KL to a frozen reference, with δ = log π_ref − log π_θ: ``k1`` = −δ; ``k3`` = e^δ − δ − 1
(Schulman 2020, "Approximating KL divergence"; unbiased, always ≥ 0, verl's ``low_var_kl``). As in
verl, δ is clamped to [−20, 20] and k3 to at most 10, so one token whose probabilities drifted
apart cannot produce an infinite or exploding term.
The entropy bonus uses the exact entropy of the learner's distribution at each token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
K3_DELTA_BOUND = 20.0
K3_MAX = 10.0


class PolicyLossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clip_low: float = Field(0.2, ge=0, lt=1, description="ε_low: ratios below 1−ε_low are clipped.")
    clip_high: float = Field(0.2, ge=0, description="ε_high: ratios above 1+ε_high are clipped (DAPO: 0.28).")
    dual_clip: float | None = Field(
        3.0, gt=1, description="c: bound −c·A on the loss of A<0 tokens; null = off."
    )
    aggregation: Aggregation = Field(
        "token-mean", description="How token terms are averaged (module docstring)."
    )
    kl_coef: float = Field(
        0.0, ge=0, description="β_KL: weight of the KL to the frozen reference (0 = no reference)."
    )
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="KL estimator per token.")
    clip_gradient: Literal["ppo", "entropy_balanced"] = Field(
        "ppo",
        description="ppo: clipped tokens get no gradient; entropy_balanced: AEPO's stop-gradient upper "
        "clip, A>0 tokens above 1+ε_high keep gradient (1+ε_high)·A (same loss value).",
    )
    entropy_coef: float = Field(0.0, ge=0, description="β_H: entropy bonus weight.")


def batch_totals(weights: torch.Tensor) -> tuple[float, float]:
    """(Σ w, number of sequences with loss tokens) of ``weights`` ``[B, T]``."""
    return float(weights.sum()), float((weights > 0).any(dim=1).sum())


def token_scale(
    weights: torch.Tensor,
    aggregation: Aggregation,
    totals: tuple[float, float] | None = None,
    max_length: int | None = None,
) -> torch.Tensor:
    """Scale s = c·w for ``weights`` ``[B, T]`` (0 off the loss mask).

    ``totals`` = (Σ w, G) of the whole mini-batch when ``weights`` is only part of it (another
    process's rows, see :func:`batch_totals`); by default the totals of ``weights`` itself.
    ``max_length`` is L_max of ``seq-mean-token-sum-norm`` (required there, unused otherwise).
    """
    total_weight, sequences = totals if totals is not None else batch_totals(weights)
    if total_weight <= 0 or sequences <= 0:
        return torch.zeros_like(weights)
    if aggregation == "token-mean":
        return weights / total_weight
    if aggregation == "seq-mean-token-mean":
        lengths = (weights > 0).sum(dim=1, keepdim=True).clamp(min=1)
        return weights / (lengths * sequences)
    if aggregation == "seq-mean-token-sum-norm":
        if max_length is None or max_length < 1:
            raise ValueError(
                f"seq-mean-token-sum-norm needs the response budget L_max >= 1, got {max_length}"
            )
        return weights / (sequences * max_length)
    return weights / sequences


def clipped_pg_terms(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, config: PolicyLossConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped loss ℓ and a mask of tokens whose loss value the clip changed (with
    ``clip_gradient: ppo`` exactly those whose gradient it removed)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    upper = 1 + config.clip_high
    bounded = torch.clamp(ratio, 1 - config.clip_low, upper)
    if config.clip_gradient == "entropy_balanced":  # (1 + ε_high)·ρ/sg(ρ): value and ∂/∂log π 1 + ε_high
        bounded = torch.where(ratio > upper, upper * torch.exp(logprobs - logprobs.detach()), bounded)
    clipped = -advantages * bounded
    loss = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if config.dual_clip is not None:
        bound = -config.dual_clip * advantages
        dual = (advantages < 0) & (loss > bound)
        loss = torch.where(dual, bound, loss)
        was_clipped = was_clipped | dual
    return loss, was_clipped


def kl_terms(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Literal["k1", "k3"]
) -> torch.Tensor:
    delta = ref_logprobs - logprobs
    if estimator == "k1":
        return -delta
    delta = delta.clamp(-K3_DELTA_BOUND, K3_DELTA_BOUND)
    return (torch.exp(delta) - delta - 1).clamp(max=K3_MAX)


@dataclass
class LossParts:
    loss: torch.Tensor
    pg_loss: torch.Tensor
    clip_fraction: torch.Tensor
    kl: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    scale: torch.Tensor,
    config: PolicyLossConfig,
    ref_logprobs: torch.Tensor | None = None,
    entropies: torch.Tensor | None = None,
) -> LossParts:
    """L = Σ s·(ℓ + β_KL·KL − β_H·H) over the given tokens (module docstring)."""
    pg, was_clipped = clipped_pg_terms(logprobs, old_logprobs, advantages, config)
    pg_loss = (scale * pg).sum()
    parts = LossParts(
        loss=pg_loss, pg_loss=pg_loss.detach(), clip_fraction=(scale * was_clipped).sum().detach()
    )
    if config.kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs reference log-probs")
        kl = (scale * kl_terms(logprobs, ref_logprobs, config.kl_estimator)).sum()
        parts.loss = parts.loss + config.kl_coef * kl
        parts.kl = kl.detach()
    if config.entropy_coef > 0:
        if entropies is None:
            raise ValueError("entropy_coef > 0 needs the learner's token entropies")
        entropy = (scale * entropies).sum()
        parts.loss = parts.loss - config.entropy_coef * entropy
        parts.entropy = entropy.detach()
    return parts
