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
* ``prefix``: per tree, the prompt once, then its trajectories' responses as rows attending to
  the prompt's cached keys and values (:mod:`arpo.train.prefix_rows`): the prompt is shared
  without tree packing's dense attention over long rows; branches below it are not shared.
* ``auto``: whichever of these a cost model finds cheapest for this mini-batch
  (:mod:`arpo.train.layout_cost`): tree packing saves the shared tokens' dense layers but pays
  attention over whole packed rows, so it loses when little is shared or rows get long.

Each forward is a :class:`Unit`: the model inputs plus, for every copy it serves, where in the
output that copy's log-prob sits, and the policy view (temperature, vocabulary) under which the
log-probs are taken (:mod:`arpo.core.logits`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from arpo.core.logits import RAW, PolicyView
from arpo.core.loss import Aggregation, token_scale
from arpo.core.tree import Role, RolloutTree
from arpo.train.batching import LearnerRow, PaddedBatch, micro_batches, pad_rows
from arpo.train.layout_cost import LayoutCost
from arpo.train.logprobs import token_logprobs
from arpo.train.packing import PackedBatch, collate_packed, pack_trees, packed_logprobs
from arpo.train.packing import Packing as PackedTrees
from arpo.train.prefix_rows import PrefixBatch, prefix_logprobs

Packing = Literal["auto", "flat", "tree", "prefix"]
AUTO_CANDIDATES = ("flat", "tree", "prefix")
"""The layouts ``auto`` chooses from (without ``prefix`` where processes must run equal forwards)."""


@dataclass
class Unit:
    inputs: PaddedBatch | PackedBatch | PrefixBatch
    copies: torch.Tensor
    """Indices of the mini-batch copies this forward serves."""
    rows: torch.Tensor
    cols: torch.Tensor
    """Position of each served copy's log-prob in this forward's ``[B, L]`` output."""
    view: PolicyView = RAW

    def logprobs(
        self, model: torch.nn.Module, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and entropies) of the served copies, in ``copies`` order (the output layer
        runs only where they are predicted: :mod:`arpo.train.logprobs`)."""
        options = {"with_entropy": with_entropy, "view": self.view, "wanted": (self.rows, self.cols)}
        if isinstance(self.inputs, PackedBatch):
            out, ent = packed_logprobs(model, self.inputs, **options)
        elif isinstance(self.inputs, PrefixBatch):
            out, ent = prefix_logprobs(model, self.inputs, **options)
        else:
            out, ent = token_logprobs(model, self.inputs.input_ids, self.inputs.attention_mask, **options)
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
    candidates: Sequence[str] = AUTO_CANDIDATES,
) -> MiniBatch:
    """Lay out ``rows`` (the trajectories of ``trees``, tree by tree, in trajectory order).

    ``totals`` are the mini-batch's normalisers when ``rows`` are one process's share of it, and
    ``loss_multiplier`` scales every copy (the number of processes, which the gradient
    all-reduce divides by again). ``view`` is the sampled policy's temperature and vocabulary;
    ``max_length`` the response budget L_max of the ``seq-mean-token-sum-norm`` aggregation;
    ``cost`` the model's cost model, which ``packing="auto"`` needs to pick among ``candidates``.
    """
    counts = [len(tree.leaves()) for tree in trees]
    if sum(counts) != len(rows):
        raise ValueError("rows must be the trajectories of the given trees, in order")
    flat = pad_rows(rows, pad_id, device)
    scale_grid = token_scale(flat.weights, aggregation, totals, max_length) * loss_multiplier
    row_idx, col_idx = torch.nonzero(flat.weights > 0, as_tuple=True)  # copies, row-major
    layout = _Layout(flat, row_idx, col_idx, [len(r.token_ids) for r in rows], micro_batch_size, view)
    packed = pack_trees(trees, pack_tokens) if packing in ("auto", "tree") else None
    if packing == "auto":
        if cost is None:
            raise ValueError('packing="auto" needs the model\'s cost model (cost=LayoutCost.of(model))')
        packing = choose_layout(
            layout_costs(trees, layout.lengths, micro_batch_size, pack_tokens, cost, packed), candidates
        )
    if packing == "flat":
        units, forwarded = layout.flat_units()
    elif packing == "prefix":
        units, forwarded = layout.prefix_units(trees, counts)
    else:
        units, forwarded = layout.tree_units(packed, pad_id, dtype, device)
    return MiniBatch(
        row_idx, col_idx, flat.advantages[row_idx, col_idx], scale_grid[row_idx, col_idx], units, forwarded
    )


def layout_costs(
    trees: Sequence[RolloutTree],
    lengths: Sequence[int],
    micro_batch_size: int,
    pack_tokens: int,
    cost: LayoutCost,
    packed: PackedTrees | None = None,
) -> dict[str, float]:
    """The cost model's price of each layout of a mini-batch whose trajectories (tree by tree, in
    trajectory order) have ``lengths`` tokens (:mod:`arpo.train.layout_cost`); ``packed``: the
    trees already packed with ``pack_tokens``."""
    packed = packed or pack_trees(trees, pack_tokens)
    counts = [len(tree.leaves()) for tree in trees]
    copies, unique = model_tokens(trees)
    costs = {
        "flat": cost.layout(sorted(lengths), micro_batch_size) + copies * cost.output,
        "tree": cost.layout([len(row) for row in packed.rows], micro_batch_size, masked=True)
        + unique * cost.output,
        "prefix": copies * cost.output,
    }
    if min(counts) < 2:  # a tree with one trajectory shares nothing; its prompt forward is waste
        costs["prefix"] = math.inf
        return costs
    for tree, members in zip(trees, _tree_rows(counts), strict=True):
        prompt = len(tree.root.token_ids)
        for chunk in _chunks(members, lengths, micro_batch_size):
            width = max(lengths[i] for i in chunk) - prompt
            costs["prefix"] += cost.prefixed(prompt, len(chunk), width) + cost.output
    return costs


def model_tokens(trees: Sequence[RolloutTree]) -> tuple[int, int]:
    """The trees' model tokens counted once per trajectory through them, and once each."""
    copies = unique = 0
    for tree in trees:
        below = tree.leaf_counts()
        for node in tree.nodes:
            if node.role is Role.MODEL:
                copies += len(node.token_ids) * below[node.id]
                unique += len(node.token_ids)
    return copies, unique


MARGINS = {"tree": 0.9, "prefix": 0.8}
"""``auto`` leaves flat only for a layout predicted at most this share of flat's cost. The FLOP
model's tree ÷ flat was within ±15 % of the measured ratio (docs/performance.md); the prefix layout
also runs one more forward per chunk (its prompt's), whose fixed cost the model does not price:
on trees sampled in the built-in environment it predicted 0.85 and measured 1.09."""


def choose_layout(costs: dict[str, float], candidates: Sequence[str] = AUTO_CANDIDATES) -> str:
    """``auto``'s pick: the cheapest of ``candidates`` among flat and those clearly cheaper than
    flat (:data:`MARGINS`)."""
    if "flat" not in candidates:
        return min(candidates, key=costs.__getitem__)
    clear = [name for name in candidates if name == "flat" or costs[name] <= MARGINS[name] * costs["flat"]]
    return min(clear, key=costs.__getitem__)


def _chunks(members: Sequence[int], lengths: Sequence[int], micro_batch_size: int) -> list[list[int]]:
    """``members`` sorted by length (similar lengths share a forward), ``micro_batch_size`` at a time."""
    ordered = sorted(members, key=lengths.__getitem__)
    return [ordered[m] for m in micro_batches(len(ordered), micro_batch_size)]


def _tree_rows(counts: Sequence[int]) -> list[list[int]]:
    """Row indices of each tree's trajectories, trees one after another."""
    starts = [sum(counts[:k]) for k in range(len(counts))]
    return [list(range(start, start + n)) for start, n in zip(starts, counts, strict=True)]


@dataclass
class _Layout:
    """The forwards of one mini-batch in each layout: which copies each serves, and where."""

    flat: PaddedBatch
    row_idx: torch.Tensor
    col_idx: torch.Tensor
    lengths: list[int]
    micro_batch_size: int
    view: PolicyView

    def chunks(self, members: Sequence[int]) -> list[list[int]]:
        return _chunks(members, self.lengths, self.micro_batch_size)

    def served(self, members: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies on the rows ``members``, and each one's row within them."""
        local = torch.full((len(self.lengths),), -1, dtype=torch.long, device=self.row_idx.device)
        local[members] = torch.arange(len(members), device=local.device)
        served = torch.nonzero(local[self.row_idx] >= 0, as_tuple=True)[0]
        return served, local[self.row_idx[served]]

    def flat_units(self) -> tuple[list[Unit], int]:
        units = []
        for members in self.chunks(range(len(self.lengths))):
            served, local_rows = self.served(members)
            inputs = self.flat.rows(torch.tensor(members, device=self.row_idx.device)).narrow(
                max(self.lengths[i] for i in members)
            )
            units.append(Unit(inputs, served, local_rows, self.col_idx[served], self.view))
        return units, int(self.flat.attention_mask.sum())

    def prefix_units(self, trees: Sequence[RolloutTree], counts: list[int]) -> tuple[list[Unit], int]:
        units, forwarded = [], 0
        for tree, members in zip(trees, _tree_rows(counts), strict=True):
            prompt = len(tree.root.token_ids)
            for chunk in self.chunks(members):
                served, local_rows = self.served(chunk)
                width = max(self.lengths[i] for i in chunk)
                index = torch.tensor(chunk, device=self.row_idx.device)
                mask = self.flat.attention_mask[index, :width]
                inputs = PrefixBatch(
                    self.flat.input_ids[index[:1], :prompt], self.flat.input_ids[index, prompt:width], mask
                )
                units.append(Unit(inputs, served, local_rows, self.col_idx[served] - prompt, self.view))
                forwarded += prompt + int(mask[:, prompt:].sum())
        return units, forwarded

    def tree_units(
        self, packed: PackedTrees, pad_id: int, dtype: torch.dtype, device: torch.device | str
    ) -> tuple[list[Unit], int]:
        row_grid = torch.zeros_like(self.flat.input_ids)
        col_grid = torch.zeros_like(self.flat.input_ids)
        trajectory_columns = [cols for tree_cols in packed.columns for cols in tree_cols]
        for i, cols in enumerate(trajectory_columns):  # (packed row, column) of every flat position
            where = torch.tensor(cols, dtype=torch.long, device=row_grid.device)
            row_grid[i, : len(cols)], col_grid[i, : len(cols)] = where[:, 0], where[:, 1]
        packed_row, packed_col = row_grid[self.row_idx, self.col_idx], col_grid[self.row_idx, self.col_idx]
        units = []
        for micro in micro_batches(len(packed.rows), self.micro_batch_size):
            served = torch.nonzero((packed_row >= micro.start) & (packed_row < micro.stop), as_tuple=True)[0]
            inputs = collate_packed(packed.rows[micro], pad_id, dtype, device)
            units.append(
                Unit(inputs, served, packed_row[served] - micro.start, packed_col[served], self.view)
            )
        return units, sum(len(row) for row in packed.rows)


def one_path_tree(token_ids: Sequence[int], prompt_length: int = 1) -> RolloutTree:
    """A sequence (e.g. an SFT demonstration) as a tree with one trajectory, for packing."""
    if not 0 < prompt_length < len(token_ids):
        raise ValueError(f"need 0 < prompt_length < {len(token_ids)} tokens, got {prompt_length}")
    tree = RolloutTree(list(token_ids[:prompt_length]), vocab_size=2)
    rest = list(token_ids[prompt_length:])
    tree.add_model(tree.root).append(rest, [0.0] * len(rest), [0.0] * len(rest))
    return tree
