"""The learner's view of a batch: trajectories as right-padded token tensors.

Each trajectory becomes one row: its exact token ids (prompt + segments, token-in/token-out),
and per token an advantage and a weight (0 on prompt, tool-result and padding tokens; see
:mod:`arpo.core.advantage`). SFT rows use the loss mask as weight and no advantage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LearnerRow:
    token_ids: list[int]
    weights: list[float]
    advantages: list[float] | None = None
    group: int = 0
    """Index of the prompt (tree) the row belongs to."""

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if len(self.weights) != n or (self.advantages is not None and len(self.advantages) != n):
            raise ValueError("token_ids, weights and advantages must have the same length")


@dataclass
class PaddedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    weights: torch.Tensor
    advantages: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: slice | torch.Tensor) -> PaddedBatch:
        return PaddedBatch(
            self.input_ids[index], self.attention_mask[index], self.weights[index], self.advantages[index]
        )

    def narrow(self, width: int) -> PaddedBatch:
        """The first ``width`` columns (drops padding when every row fits in them)."""
        return PaddedBatch(
            self.input_ids[:, :width],
            self.attention_mask[:, :width],
            self.weights[:, :width],
            self.advantages[:, :width],
        )


def pad_rows(rows: Sequence[LearnerRow], pad_id: int, device: torch.device | str = "cpu") -> PaddedBatch:
    """Right-pad rows to the longest one."""
    if not rows:
        raise ValueError("cannot pad an empty batch")
    width = max(len(r.token_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    weights = torch.zeros((len(rows), width), dtype=torch.float32)
    advantages = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, row in enumerate(rows):
        n = len(row.token_ids)
        ids[i, :n] = torch.tensor(row.token_ids)
        mask[i, :n] = 1
        weights[i, :n] = torch.tensor(row.weights)
        if row.advantages is not None:
            advantages[i, :n] = torch.tensor(row.advantages)
    return PaddedBatch(ids.to(device), mask.to(device), weights.to(device), advantages.to(device))


def micro_batches(batch_size: int, micro_size: int) -> Iterator[slice]:
    """Consecutive row slices of at most ``micro_size`` rows."""
    for start in range(0, batch_size, micro_size):
        yield slice(start, min(start + micro_size, batch_size))
