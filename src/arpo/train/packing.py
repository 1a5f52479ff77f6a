"""Tree packing: each shared prefix token goes through the model once, exactly.

A rollout tree's M trajectories share their prompt and, for branches, everything up to the tool
result they forked after; laid out flat, those tokens are recomputed up to M times in the forward
and the backward pass. Packing lays out each node's tokens once, trees one after another in
depth-first order, as one sequence with

* position ids equal to each token's index in its own trajectory (its depth), and
* an attention mask in which a token attends exactly to its ancestors in its tree: all tokens of
  its ancestor nodes and the earlier tokens of its own node (never a sibling branch, never another
  tree),

so every token sees exactly the context it has in each trajectory through it, and its hidden
states, logits and log-prob equal the flat ones. The log-prob of a node's first token is read
from the logits at the last token of its parent node (its predecessor in every trajectory), not
from the previous packed token. The mask is passed to the model as a 4-D additive mask
``[B, 1, L, L]``, which transformers' ``eager`` and ``sdpa`` attention accept; padding rows attend
to themselves only.

Several trees share a packed row up to ``max_tokens`` (first fit: each tree goes into the first
row with room for it); a tree is never split, so a tree larger than the budget gets a row of its
own. Attention over a packed row costs its length squared, so rows are kept short enough that
the quadratic part stays small beside the linear layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from arpo.core.logits import RAW, PolicyView
from arpo.core.tree import RolloutTree
from arpo.train.logprobs import Wanted, logprobs_at


@dataclass
class PackedRow:
    """One packed sequence: unique tokens of whole trees."""

    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    predecessor: list[int] = field(default_factory=list)
    """Column whose logits predict the token at each column (−1: none, a prompt's first token)."""
    spans: list[tuple[int, int, list[tuple[int, int]]]] = field(default_factory=list)
    """Per node: (start, end, ancestor spans) — what the node's tokens may attend to."""

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Packing:
    rows: list[PackedRow]
    columns: list[list[list[tuple[int, int]]]]
    """``columns[k][j][t]`` = (row, column) of token t of trajectory j of tree k."""


PACKABLE_ATTENTION = ("eager", "sdpa")


def tree_packing_unsupported(model: torch.nn.Module) -> str | None:
    """Why ``model`` cannot run tree-packed rows, or None when it can."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation not in PACKABLE_ATTENTION:
        return f"attention implementation {implementation!r} does not take a custom 4-D mask"
    return None


def _tree_size(tree: RolloutTree) -> int:
    return sum(len(node.token_ids) for node in tree.nodes)


def pack_trees(trees: Sequence[RolloutTree], max_tokens: int) -> Packing:
    """Pack ``trees`` (first fit, in order) into rows of at most ``max_tokens`` unique tokens."""
    rows: list[PackedRow] = []
    columns: list[list[list[tuple[int, int]]]] = []
    for tree in trees:
        size = _tree_size(tree)
        row_index = next((i for i, r in enumerate(rows) if len(r) + size <= max_tokens), len(rows))
        if row_index == len(rows):
            rows.append(PackedRow())
        row = rows[row_index]
        start: dict[int, int] = {}
        depth: dict[int, int] = {}
        for node in tree.walk():
            parent = node.parent
            start[node.id] = len(row)
            depth[node.id] = 0 if parent is None else depth[parent.id] + len(parent.token_ids)
            n = len(node.token_ids)
            row.input_ids += node.token_ids
            row.position_ids += range(depth[node.id], depth[node.id] + n)
            first_prev = -1 if parent is None else start[parent.id] + len(parent.token_ids) - 1
            row.predecessor += [first_prev] + list(range(start[node.id], start[node.id] + n - 1))
            ancestors = [(start[a.id], start[a.id] + len(a.token_ids)) for a in node.path()[:-1]]
            row.spans.append((start[node.id], start[node.id] + n, ancestors))
        columns.append(
            [
                [(row_index, start[node.id] + i) for node in traj.nodes for i in range(len(node.token_ids))]
                for traj in tree.trajectories()
            ]
        )
    return Packing(rows, columns)


def ancestor_mask(row: PackedRow, width: int) -> torch.Tensor:
    """Boolean ``[width, width]``: query column → key columns it may attend to."""
    allowed = torch.zeros(width, width, dtype=torch.bool)
    for start, end, ancestors in row.spans:
        for a_start, a_end in ancestors:
            allowed[start:end, a_start:a_end] = True
        allowed[start:end, start:end] = torch.ones(end - start, end - start, dtype=torch.bool).tril()
    padding = torch.arange(len(row), width)
    allowed[padding, padding] = True
    return allowed


@dataclass
class PackedBatch:
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    """Additive ``[B, 1, L, L]`` in the model's dtype."""
    predecessor: torch.Tensor
    """``[B, L]``; −1 where a column has no predecessor or is padding."""


def collate_packed(
    rows: Sequence[PackedRow], pad_id: int, dtype: torch.dtype, device: torch.device | str
) -> PackedBatch:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    predecessor = torch.full((len(rows), width), -1, dtype=torch.long)
    mask = torch.full((len(rows), 1, width, width), torch.finfo(dtype).min, dtype=dtype)
    for b, row in enumerate(rows):
        n = len(row)
        ids[b, :n] = torch.tensor(row.input_ids)
        positions[b, :n] = torch.tensor(row.position_ids)
        predecessor[b, :n] = torch.tensor(row.predecessor)
        mask[b, 0].masked_fill_(ancestor_mask(row, width), 0.0)
    return PackedBatch(ids.to(device), positions.to(device), mask.to(device), predecessor.to(device))


def packed_logprobs(
    model: torch.nn.Module,
    batch: PackedBatch,
    *,
    with_entropy: bool = False,
    view: PolicyView = RAW,
    wanted: Wanted | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, L]`` log-prob of each ``wanted`` packed token (default: every token with a
    predecessor) given its own trajectory's context, 0 elsewhere, under the policy ``view`` of the
    logits (:mod:`arpo.core.logits`). The output layer runs only at the wanted tokens'
    predecessor columns (:func:`arpo.train.logprobs.output_layer_at`)."""
    rows, cols = wanted if wanted is not None else torch.nonzero(batch.predecessor >= 0, as_tuple=True)
    previous = batch.predecessor[rows, cols]
    if bool((previous < 0).any()):
        raise ValueError("a wanted packed token has no predecessor: its log-prob has no context")
    inputs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "use_cache": False,
    }
    return logprobs_at(model, inputs, (rows, cols), previous, view, with_entropy)
