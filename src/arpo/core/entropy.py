"""Token entropy: exact from logits, and the normalised window mean that drives ARPO's branching.

ARPO (arXiv 2507.19849, §3.1 "entropy-based adaptive rollout") measures the policy's uncertainty
right after a tool result. For one decoding step with logits z over a vocabulary of size |V| and
sampling temperature T, the policy distribution is p = softmax(z / T) and its entropy is

    H = −Σ_v p_v log p_v = logsumexp(z/T) − Σ_v p_v (z_v/T)            (nats)

computed here exactly over the full vocabulary (the reference code sums top-10 log-probs instead,
see ARPO_REFERENCE.md §9.3). Top-p truncation is a property of the sampler, not of the policy, so
it is not applied: H is the entropy of the distribution the learner trains.

Branching compares window means of *normalised* entropy, H / ln|V| ∈ [0, 1]:

    H̄(window) = (1/k) Σ_{t in window} H_t / ln|V|

over the first k generated tokens of a segment (fewer when the segment is shorter).

Engines that return only the top-k log-probs of each step (vLLM) cannot compute H exactly. With
p_1 ≥ … ≥ p_k the top-k probabilities and r = 1 − Σ p_i the mass of the other |V| − k tokens,
each of which has probability ≤ p_k, the tail's entropy lies between two bounds:

    H_low  = −Σ_i p_i log p_i − r log p_k              (tail in as few tokens as possible)
    H_high = −Σ_i p_i log p_i − r log(r / (|V| − k))   (tail spread uniformly)

and the estimate used is their midpoint. Measured on SmolLM2-135M-Instruct (232 sampled tokens,
T = 1, k = 20, exact H from the full logits): midpoint mean error +0.11 nats (+0.010 after ÷ ln|V|),
correlation 0.999 with the exact value; H_low −0.20 / 0.992; the plain top-k sum −0.68 / 0.82.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Exact entropy (nats) of softmax(logits) along the last dimension.

    Uses H = logsumexp(z) − Σ softmax(z)·z, which stays finite when some logits are −inf
    (their probability is exactly 0 and they are excluded from the sum).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    log_z = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    weighted = torch.where(probs > 0, probs * logits, torch.zeros_like(logits)).sum(dim=-1)
    return log_z - weighted


def normalised_window_mean(entropies: Sequence[float], vocab_size: int, window: int) -> float | None:
    """Mean of H_t / ln|V| over the first ``window`` entries; ``None`` for an empty sequence."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2 to normalise entropy, got {vocab_size}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    head = list(entropies[:window])
    if not head:
        return None
    return sum(head) / len(head) / math.log(vocab_size)


def topk_entropy_bounds(top_logprobs: Sequence[float], vocab_size: int) -> tuple[float, float]:
    """Lower and upper bounds (nats) on H from the k largest log-probs of a distribution over
    ``vocab_size`` tokens (see the module docstring)."""
    k = len(top_logprobs)
    if not 0 < k <= vocab_size:
        raise ValueError(f"need between 1 and vocab_size={vocab_size} log-probs, got {k}")
    probs = [math.exp(lp) for lp in top_logprobs]
    head = -sum(p * lp for p, lp in zip(probs, top_logprobs, strict=True) if p > 0)
    tail = 1.0 - sum(probs)
    if tail <= 1e-12 or k == vocab_size:
        return head, head
    smallest = min(probs)
    return head - tail * math.log(smallest), head - tail * math.log(tail / (vocab_size - k))


def topk_entropy_estimate(top_logprobs: Sequence[float], vocab_size: int) -> float:
    """Midpoint of :func:`topk_entropy_bounds`: the entropy estimate of top-k engines (nats)."""
    low, high = topk_entropy_bounds(top_logprobs, vocab_size)
    return (low + high) / 2
