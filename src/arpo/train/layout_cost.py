"""``packing: auto``: the cheapest layout of a mini-batch (flat, tree or prefix), by a cost model.

Tree packing computes each shared token once, but attention over a packed row is dense: every
query is scored against every key of its row, masked or not, so a row of W tokens costs W² pairs
however few of them a token may attend to. Flat rows are short (one trajectory each) but repeat
the shared prefix. Which is cheaper depends on how much is shared and on the model's balance
between its dense layers and its attention. For one forward over B rows padded to width W
(padding is computed too) the model counts floating-point operations:

    C(B, W) = B·W·c_token + B·W²·c_pair
    c_token = 2·P_dense                (matrix products per token: every weight outside the input
                                        and output embeddings once)
    c_pair  = 4·h·n_layers             (QKᵀ and the attention-weighted values, h = heads × head
                                        size, per layer)

plus K·c_output, c_output = 2·d·V (the output layer d × V, once even when tied), for the K
positions whose logits the layout computes: the output layer runs only where one of the model's
tokens is predicted (:mod:`arpo.train.logprobs`), so K is the model tokens of every trajectory
laid out flat, each shared model token once in a packed tree, and the prefix layout's response
tokens plus one prompt position per chunk (prompts and tool results get no logits in any layout).
The layout's cost is the sum over its forwards (each forward's backward costs about twice its
forward in both terms, so the comparison does not change). A forward without padding and without
a custom mask (flat rows of equal length, e.g. all cut at the budget) runs the causal attention
kernel, which skips the masked half: B·W²·c_pair / 2 (measured for the grid of
benchmarks/packed_vs_flat.py: flat's step at G 8, L 2048 with a 16-token prompt is 1.49× faster
than the prefix layout's, whose pairs are as many as flat's but masked; predicted 1.46×). The prefix layout
(:mod:`arpo.train.prefix_rows`) runs a prompt of P tokens once, C(1, P), then B response rows of
width W that attend to its cache: B·W·c_token + B·W·(P + W)·c_pair through a mask, or
B·W·c_token + B·W·(P + W/2)·c_pair where the rows' attention is split into two maskless calls
(:mod:`arpo.train.prefix_attention`: transformers' sdpa on CPU). ``auto`` lays the mini-batch
out in whichever of its candidate layouts (flat, tree, prefix; without prefix under FSDP) costs
least — leaving flat only for a layout predicted clearly cheaper (tree ≤ 0.9×, prefix ≤ 0.8×
flat: :data:`arpo.train.layout.MARGINS`) — with the same micro-batch size and row budget in each (prefix only when every tree has
two trajectories or more: a single trajectory shares nothing, and the model does not price the
fixed cost of a forward). All layouts give the same loss and
gradients (exact up to floating-point summation order), so the choice only changes speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from arpo.train.prefix_attention import split_applies


@dataclass(frozen=True)
class LayoutCost:
    """FLOPs of a forward per token (``token``) and per attention (query, key) pair (``pair``)."""

    token: float
    pair: float
    split_prefix: bool = False
    """The prefix layout's rows run the split attention (:mod:`arpo.train.prefix_attention`)."""
    output: float = 0.0
    """FLOPs of the output layer at one position (c_output)."""

    @classmethod
    def of(cls, model: torch.nn.Module) -> LayoutCost:
        """The cost model of a transformers causal LM, from its configuration and parameter count."""
        config = model.config
        config = getattr(config, "text_config", None) or config
        hidden = config.hidden_size
        heads = getattr(config, "num_attention_heads", None)
        head_size = getattr(config, "head_dim", None) or (hidden // heads if heads else hidden)
        attention_width = heads * head_size if heads else hidden
        embeddings = model.get_input_embeddings().weight
        output = model.get_output_embeddings()
        vocab = embeddings.shape[0]
        untied = output is not None and output.weight is not embeddings
        dense = sum(p.numel() for p in model.parameters()) - embeddings.numel()
        dense -= output.weight.numel() if untied else 0
        return cls(
            token=2.0 * dense,
            pair=4.0 * attention_width * config.num_hidden_layers,
            split_prefix=split_applies(model),
            output=2.0 * hidden * vocab,
        )

    def forward(self, rows: int, width: int, causal: bool = False) -> float:
        """C(B, W) of one forward over ``rows`` rows padded to ``width`` tokens; ``causal``: without a
        mask (no padding), where attention runs the causal kernel over half the pairs."""
        return rows * width * (self.token + width * self.pair * (0.5 if causal else 1.0))

    def prefixed(self, prompt: int, rows: int, width: int) -> float:
        """A prompt of ``prompt`` tokens run once, then ``rows`` rows of ``width`` tokens attending
        to its cached keys and values (:mod:`arpo.train.prefix_rows`): through a mask, over all
        ``prompt + width`` keys, or split, over the prompt's and causally over half their own."""
        own = width / 2 if self.split_prefix else width
        return self.forward(1, prompt, causal=True) + rows * width * (self.token + (prompt + own) * self.pair)

    def layout(self, row_lengths: Sequence[int], micro_batch_size: int, masked: bool = False) -> float:
        """Cost of running rows of these lengths, in this order, ``micro_batch_size`` per forward;
        ``masked``: every forward has a custom mask (tree packing), else a forward whose rows have
        equal lengths runs without one (``causal``)."""
        chunks = (row_lengths[i : i + micro_batch_size] for i in range(0, len(row_lengths), micro_batch_size))
        return sum(
            self.forward(len(chunk), max(chunk), causal=not masked and min(chunk) == max(chunk))
            for chunk in chunks
        )
