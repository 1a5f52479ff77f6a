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
