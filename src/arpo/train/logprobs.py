"""Per-token log-probabilities (and entropies) of given sequences under a causal LM.

For a sequence x and position t ≥ 1, log π(x_t | x_<t) = z_t[x_t] − logsumexp(z_t), with z_t the
logits at position t−1. Computed as a gather minus a logsumexp in float32 (or the logits' dtype
when wider), never materialising a full log-softmax for the backward pass (CPU_NOTES.md: the
B×T×|V| logits dominate memory). Entropies, when asked for, use the exact full-vocabulary
formula of :func:`arpo.core.entropy.entropy_from_logits`.

**The output layer runs only where a log-prob is wanted.** A learner needs log-probs of the
model's own tokens, not of the prompt or of tool results (their loss weight is 0), so the callers
name the wanted tokens and :func:`output_layer_at` feeds the model's output layer (d → |V|, and
everything after it: the logsumexp, the gather, their backward) only the hidden states of those
tokens' predecessors. The result is the same as computing every position's logits and reading
the wanted ones; the cost of the d·|V| product and of the |V|-wide float32 rows falls with the
share of tokens not trained on (SmolLM2's demonstrations in docs/recipes/smollm2_gsm8k.md: about
half their tokens are prompt or tool results).

The logits are those of the sampled policy (:class:`arpo.core.logits.PolicyView`): divided by the
rollout temperature and restricted to the tokenizer's vocabulary, so the learner scores exactly
the distribution the rollout drew from (SFT uses the default view: T = 1, every output row).

Results are aligned with the input ids: column t holds the log-prob of token t; a column that was
not wanted (and column 0, which has no context) holds 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from arpo.core.entropy import entropy_from_logits
from arpo.core.logits import RAW, PolicyView
from arpo.models.unwrap import unwrap

Wanted = tuple[torch.Tensor, torch.Tensor]
"""(row, column) index tensors of the tokens whose log-probs are asked for."""


@contextmanager
def output_layer_at(model: nn.Module, needed: torch.Tensor) -> Iterator[None]:
    """Inside, the model's output layer sees only the hidden states where ``needed`` (``[B, T]``
    bool, the forward's input shape) is true: its logits come out ``[N, |V|]``, N = needed.sum(),
    in row-major order."""
    head = unwrap(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(unwrap(model)).__name__} has no output embeddings to compute log-probs with")

    def select(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if hidden.shape[:2] != needed.shape:
            raise ValueError(
                f"the output layer got hidden states of shape {tuple(hidden.shape)}, not the inputs' "
                f"{tuple(needed.shape)}: this model does not take its logits from one output layer call"
            )
        return (hidden[needed], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def needed_positions(shape: torch.Size, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` bool, true at (``rows``, ``cols``): the positions whose logits are needed (at
    least one, (0, 0) when none is, so that the output layer's result can always be indexed)."""
    needed = torch.zeros(shape, dtype=torch.bool, device=rows.device)
    needed[rows, cols] = True
    if not bool(needed.any()):
        needed[0, 0] = True
    return needed


def slot_index(needed: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: each needed position's row in the ``[N, |V|]`` logits, −1 elsewhere."""
    index = torch.full(needed.shape, -1, dtype=torch.long, device=needed.device)
    index[needed] = torch.arange(int(needed.sum()), device=needed.device)
    return index


def read_logprobs(
    logits: torch.Tensor, slot: torch.Tensor, targets: torch.Tensor, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, T]`` log-prob of ``targets`` under the logits row ``slot`` (0 where ``slot`` is −1),
    and the entropies of those rows; ``logits`` is ``[N, |V|]``."""
    has = slot >= 0
    rows = slot.clamp(min=0)
    picked = logits[rows, targets] - torch.logsumexp(logits, dim=-1)[rows]
    zero = torch.zeros_like(picked)
    entropies = torch.where(has, entropy_from_logits(logits)[rows], zero) if with_entropy else None
    return torch.where(has, picked, zero), entropies


def logprobs_at(
    model: nn.Module,
    inputs: dict[str, Any],
    wanted: Wanted,
    previous: torch.Tensor,
    view: PolicyView,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model(**inputs)`` with its output layer only at (row, ``previous``) of each ``wanted``
    token, and read the ``[B, T]`` log-probs (and entropies) of ``inputs["input_ids"]`` at the
    wanted positions from those logits, 0 elsewhere."""
    ids = inputs["input_ids"]
    rows, cols = wanted
    needed = needed_positions(ids.shape, rows, previous)
    with output_layer_at(model, needed):
        logits = model(**inputs).logits
    slot = torch.full_like(ids, -1)
    slot[rows, cols] = slot_index(needed)[rows, previous]
    return read_logprobs(view(logits), slot, ids, with_entropy)


def every_token(shape: torch.Size, device: torch.device) -> Wanted:
    """Every (row, column ≥ 1) of a ``[B, T]`` batch, row-major."""
    grid = torch.ones(shape, dtype=torch.bool, device=device)
    grid[:, 0] = False
    return torch.nonzero(grid, as_tuple=True)


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    with_entropy: bool = False,
    view: PolicyView = RAW,
    wanted: Wanted | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, T]`` log-probs of the ``wanted`` tokens of ``input_ids`` (default: every token with a
    context; columns ≥ 1) and the entropies of their predicting distributions, under the policy
    ``view`` of the logits.

    ``attention_mask`` is the usual 2-D padding mask or a 4-D additive mask.
    """
    rows, cols = wanted if wanted is not None else every_token(input_ids.shape, input_ids.device)
    if bool((cols < 1).any()):
        raise ValueError("column 0 has no context: its log-prob cannot be asked for")
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    return logprobs_at(model, inputs, (rows, cols), cols - 1, view, with_entropy)
