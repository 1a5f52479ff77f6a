"""How a mini-batch of trees reaches the model: ``flat`` rows or ``tree``-packed rows.

Both layouts describe the same loss. Its terms are *copies*: one per (trajectory, model token)
of the flat per-trajectory layout, each with its advantage and its scale s = c·w
(:func:`arpo.core.loss.token_scale`, computed on the flat layout, so both layouts use the same
normalisers). The layouts differ only in the forward passes that produce each copy's log-prob:

* ``flat``: trajectories as right-padded rows, ``micro_batch_size`` rows per forward; rows are
  sorted by length so that each micro-batch is padded only to its own longest row; a token shared
  by d trajectories is computed d times.
* ``tree``: whole trees packed into rows of at most ``pack_tokens`` unique tokens
  (:mod:`arpo.train.packing`), ``micro_batch_size`` packed rows per forward; a shared token is
  computed once and all its copies read the same log-prob — exact, because every copy has the
  same context and hence the same ratio; only the per-copy advantages (``soft``) or weights
  (``hard``) differ. SFT packs demonstrations the same way, each a one-path tree
  (:func:`one_path_tree`), so short examples share a row instead of being padded.
* ``auto``: whichever of the two a cost model finds cheaper for this mini-batch
  (:mod:`arpo.train.layout_cost`): tree packing saves the shared tokens' dense layers but pays
  attention over whole packed rows, so it loses when little is shared or rows get long.

Each forward is a :class:`Unit`: the model inputs plus, for every copy it serves, where in the
output that copy's log-prob sits, and the policy view (temperature, vocabulary) under which the
log-probs are taken (:mod:`arpo.core.logits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from arpo.core.logits import RAW, PolicyView
from arpo.core.loss import Aggregation, token_scale
from arpo.core.tree import RolloutTree
from arpo.train.batching import LearnerRow, PaddedBatch, micro_batches, pad_rows
from arpo.train.layout_cost import LayoutCost
from arpo.train.logprobs import token_logprobs
from arpo.train.packing import PackedBatch, collate_packed, pack_trees, packed_logprobs

Packing = Literal["auto", "flat", "tree"]


@dataclass
class Unit:
    inputs: PaddedBatch | PackedBatch
    copies: torch.Tensor
    """Indices of the mini-batch copies this forward serves."""
    rows: torch.Tensor
    cols: torch.Tensor
    """Position of each served copy's log-prob in this forward's ``[B, L]`` output."""
    view: PolicyView = RAW

    def logprobs(
        self, model: torch.nn.Module, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and entropies) of the served copies, in ``copies`` order."""
        if isinstance(self.inputs, PackedBatch):
            out, ent = packed_logprobs(model, self.inputs, with_entropy=with_entropy, view=self.view)
        else:
            out, ent = token_logprobs(
                model,
                self.inputs.input_ids,
                self.inputs.attention_mask,
                with_entropy=with_entropy,
                view=self.view,
            )
        picked = out[self.rows, self.cols]
        return picked, ent[self.rows, self.cols] if ent is not None else None


@dataclass
class MiniBatch:
    copy_rows: torch.Tensor
    copy_cols: torch.Tensor
    """Each copy's (trajectory row, token index) in the flat layout."""
    advantages: torch.Tensor
    scale: torch.Tensor
    units: list[Unit]
    tokens_forwarded: int
    """Tokens the forwards process (padding excluded): what packing saves."""

    @property
    def num_copies(self) -> int:
        return self.scale.shape[0]


def build_minibatch(
    trees: Sequence[RolloutTree],
    rows: Sequence[LearnerRow],
    *,
    aggregation: Aggregation,
    packing: Packing,
    micro_batch_size: int,
    pack_tokens: int,
    pad_id: int,
    dtype: torch.dtype,
    device: torch.device | str,
    totals: tuple[float, float] | None = None,
    loss_multiplier: float = 1.0,
    view: PolicyView = RAW,
    max_length: int | None = None,
    cost: LayoutCost | None = None,
) -> MiniBatch:
    """Lay out ``rows`` (the trajectories of ``trees``, tree by tree, in trajectory order).

    ``totals`` are the mini-batch's normalisers when ``rows`` are one process's share of it, and
    ``loss_multiplier`` scales every copy (the number of processes, which the gradient
    all-reduce divides by again). ``view`` is the sampled policy's temperature and vocabulary;
    ``max_length`` the response budget L_max of the ``seq-mean-token-sum-norm`` aggregation;
    ``cost`` the model's cost model, which ``packing="auto"`` needs.
    """
    flat = pad_rows(rows, pad_id, device)
    scale_grid = token_scale(flat.weights, aggregation, totals, max_length) * loss_multiplier
    row_idx, col_idx = torch.nonzero(flat.weights > 0, as_tuple=True)  # copies, row-major
    advantages = flat.advantages[row_idx, col_idx]
    scale = scale_grid[row_idx, col_idx]
    lengths = [len(r.token_ids) for r in rows]
    order = sorted(range(len(rows)), key=lengths.__getitem__)  # similar lengths share a forward
    packed = None if packing == "flat" else pack_trees(trees, pack_tokens)
    if packing == "auto":
        if cost is None:
            raise ValueError('packing="auto" needs the model\'s cost model (cost=LayoutCost.of(model))')
        flat_cost = cost.layout([lengths[i] for i in order], micro_batch_size)
        if cost.layout([len(row) for row in packed.rows], micro_batch_size) >= flat_cost:
            packed = None
    if packed is None:
        local = torch.full((len(rows),), -1, dtype=torch.long, device=row_idx.device)
        units = []
        for micro in micro_batches(len(rows), micro_batch_size):
            members = order[micro]
            local.fill_(-1)
            local[members] = torch.arange(len(members), device=local.device)
            served = torch.nonzero(local[row_idx] >= 0, as_tuple=True)[0]
            inputs = flat.rows(torch.tensor(members, device=local.device)).narrow(
                max(lengths[i] for i in members)
            )
            units.append(Unit(inputs, served, local[row_idx[served]], col_idx[served], view))
        forwarded = int(flat.attention_mask.sum())
        return MiniBatch(row_idx, col_idx, advantages, scale, units, forwarded)
    trajectory_columns = [cols for tree_cols in packed.columns for cols in tree_cols]
    if len(trajectory_columns) != len(rows):
        raise ValueError("rows must be the trajectories of the given trees, in order")
    row_grid = torch.zeros_like(flat.input_ids)
    col_grid = torch.zeros_like(flat.input_ids)
    for i, cols in enumerate(trajectory_columns):  # (packed row, column) of every flat position
        where = torch.tensor(cols, dtype=torch.long, device=row_grid.device)
        row_grid[i, : len(cols)], col_grid[i, : len(cols)] = where[:, 0], where[:, 1]
    packed_row, packed_col = row_grid[row_idx, col_idx], col_grid[row_idx, col_idx]
    units = []
    for micro in micro_batches(len(packed.rows), micro_batch_size):
        served = torch.nonzero((packed_row >= micro.start) & (packed_row < micro.stop), as_tuple=True)[0]
        inputs = collate_packed(packed.rows[micro], pad_id, dtype, device)
        units.append(Unit(inputs, served, packed_row[served] - micro.start, packed_col[served], view))
    forwarded = sum(len(row) for row in packed.rows)
    return MiniBatch(row_idx, col_idx, advantages, scale, units, forwarded)


def one_path_tree(token_ids: Sequence[int], prompt_length: int = 1) -> RolloutTree:
    """A sequence (e.g. an SFT demonstration) as a tree with one trajectory, for packing."""
    if not 0 < prompt_length < len(token_ids):
        raise ValueError(f"need 0 < prompt_length < {len(token_ids)} tokens, got {prompt_length}")
    tree = RolloutTree(list(token_ids[:prompt_length]), vocab_size=2)
    rest = list(token_ids[prompt_length:])
    tree.add_model(tree.root).append(rest, [0.0] * len(rest), [0.0] * len(rest))
    return tree
