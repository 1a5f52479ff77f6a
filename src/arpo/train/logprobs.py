"""Per-token log-probabilities (and entropies) of given sequences under a causal LM.

For a sequence x and position t ≥ 1, log π(x_t | x_<t) = z_t[x_t] − logsumexp(z_t), with z_t the
logits at position t−1. Computed as a gather minus a logsumexp in float32 (or the logits' dtype
when wider), never materialising a full log-softmax for the backward pass (CPU_NOTES.md: the
B×T×|V| logits dominate memory). Entropies, when asked for, use the exact full-vocabulary
formula of :func:`arpo.core.entropy.entropy_from_logits`.

The logits are those of the sampled policy (:class:`arpo.core.logits.PolicyView`): divided by the
rollout temperature and restricted to the tokenizer's vocabulary, so the learner scores exactly
the distribution the rollout drew from (SFT uses the default view: T = 1, every output row).

Results are aligned with the input ids: column t holds the log-prob of token t (column 0, which
has no context, is 0).
"""

from __future__ import annotations

import torch
from torch import nn

from arpo.core.entropy import entropy_from_logits
from arpo.core.logits import RAW, PolicyView


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    with_entropy: bool = False,
    view: PolicyView = RAW,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, T]`` log-probs of ``input_ids`` (and entropies of the predicting distributions) under
    the policy ``view`` of the logits.

    ``attention_mask`` is the usual 2-D padding mask or a 4-D additive mask (tree packing).
    """
    kwargs = {"use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[:, :-1]
    logits = view(logits)
    targets = input_ids[:, 1:]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    zero = picked.new_zeros(picked.shape[0], 1)
    logprobs = torch.cat([zero, picked], dim=1)
    entropies = torch.cat([zero, entropy_from_logits(logits)], dim=1) if with_entropy else None
    return logprobs, entropies
