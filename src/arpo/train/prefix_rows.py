"""Prefix layout: a tree's prompt computed once, each trajectory's response attending to its cache.

The trajectories of a rollout tree all start with the tree's prompt (P tokens). Laid out flat,
every trajectory recomputes it; tree-packed (:mod:`arpo.train.packing`), it is computed once but
attention runs densely over the whole packed row. The prefix layout runs, per chunk of a tree's
trajectories:

1. the prompt alone (one row of P tokens), keeping its keys and values (the KV cache, with their
   autograd graph);
2. the chunk's responses as B right-padded rows of W tokens, positions P, P + 1, …, attending to
   the prompt's keys and values (the cache, broadcast over the B rows without a copy) and
   causally to their own tokens — on CPU as two maskless flash calls merged by their log-sum-exp
   (:mod:`arpo.train.prefix_attention`), elsewhere through transformers' mask.

Every response token sees exactly its trajectory's context, so log-probs, losses and gradients
equal the flat layout's (the prompt's gradient arrives through its cached keys and values, once
per chunk, in the chunk's single backward). The first response token is predicted by the
prompt's last logits. Cost: P tokens once plus B·W response tokens in the dense layers, and
P² + B·W·(P + W) attention pairs, against B·(P + W) tokens and B·(P + W)² pairs flat
(:mod:`arpo.train.layout_cost`). Branching below the prompt (ARPO's forks after tool results) is
not shared by this layout; the tree layout shares it.

A chunk is two forwards before one backward, so the layout is not used where every process must
run the same number of forwards of a sharded model (``train.fsdp``, docs/distributed.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from arpo.core.logits import RAW, PolicyView
from arpo.models.cache_argument import cache_argument
from arpo.train.logprobs import Wanted, logprobs_at, output_layer_at, read_logprobs
from arpo.train.prefix_attention import split_prefix_attention


@dataclass
class PrefixBatch:
    prompt_ids: torch.Tensor
    """``[1, P]``: the tree's prompt."""
    input_ids: torch.Tensor
    """``[B, W]``: the responses (every token after the prompt), right-padded."""
    attention_mask: torch.Tensor
    """``[B, P + W]``: 1 on the prompt and on each response's tokens, 0 on padding."""


def prefix_logprobs(
    model: torch.nn.Module,
    batch: PrefixBatch,
    *,
    with_entropy: bool = False,
    view: PolicyView = RAW,
    wanted: Wanted | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, W]`` log-prob of each ``wanted`` response token (default: all) given the prompt and
    the response before it, 0 elsewhere, and the entropies of the predicting distributions, under
    the policy ``view``. The output layer runs only where a wanted token is predicted: the
    prompt's last position and the wanted tokens' predecessors
    (:func:`arpo.train.logprobs.output_layer_at`)."""
    rows, width = batch.input_ids.shape
    prompt_len = batch.prompt_ids.shape[1]
    if wanted is None:
        wanted = torch.nonzero(torch.ones_like(batch.input_ids, dtype=torch.bool), as_tuple=True)
    wanted_rows, wanted_cols = wanted
    argument = cache_argument(model)
    last = torch.zeros_like(batch.prompt_ids, dtype=torch.bool)
    last[0, -1] = True
    with output_layer_at(model, last):
        prompt = model(input_ids=batch.prompt_ids, use_cache=True)
    layers = [
        (layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1))
        for layer in prompt.past_key_values.layers
    ]
    positions = torch.arange(prompt_len, prompt_len + width, device=batch.input_ids.device).expand(
        rows, width
    )
    later = wanted_cols > 0  # predicted inside the response; column 0 by the prompt's last position
    inputs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": positions,
        "use_cache": False,
        argument: DynamicCache(ddp_cache_data=layers),
    }
    response_wanted = (wanted_rows[later], wanted_cols[later])
    with split_prefix_attention(model, batch.attention_mask):
        rest, rest_entropy = logprobs_at(
            model, inputs, response_wanted, wanted_cols[later] - 1, view, with_entropy
        )
    first_slot = torch.full_like(batch.input_ids, -1)
    first_slot[wanted_rows[~later], 0] = 0
    first, first_entropy = read_logprobs(view(prompt.logits), first_slot, batch.input_ids, with_entropy)
    entropies = rest_entropy + first_entropy if with_entropy else None  # type: ignore[operator]
    return rest + first, entropies
