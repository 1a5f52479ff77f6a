"""The distribution the policy samples from, shared by the sampler and the learner.

A rollout samples token x_t from

    π_T(· | x_<t) = softmax(z_t[:|V|] / T)

with z_t the model's logits, T the sampling temperature and |V| the tokenizer's vocabulary. Models
often have more output rows than the tokenizer has tokens (embedding matrices padded to a
multiple of 64 or 128, e.g. Qwen2.5: 152,064 rows for 151,665 tokens); those rows decode to
nothing and are never sampled. The learner must score the same distribution: its old and new
log-probs, the KL and the entropy all refer to π_T, otherwise the PPO ratio compares two
different policies (verl divides the learner's logits by the rollout temperature for the same
reason). Entropies normalised by ln|V| use the same |V|.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PolicyView:
    """Temperature and vocabulary that turn raw logits into the sampled policy's logits."""

    temperature: float = 1.0
    vocab_size: int | None = None
    """Tokens the tokenizer has; output rows beyond it are excluded. None: all rows."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"the policy's temperature must be > 0, got {self.temperature}")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """z[..., :|V|] / T in at least float32."""
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.vocab_size is not None and logits.shape[-1] > self.vocab_size:
            logits = logits[..., : self.vocab_size]
        return logits / self.temperature if self.temperature != 1.0 else logits


def tokenizer_vocab_size(tokenizer: Sized, output_rows: int) -> int:
    """|V|: the tokenizer's token count (``len(tokenizer)``), at most the model's output rows."""
    return min(len(tokenizer), output_rows)


RAW = PolicyView()
"""T = 1 over every output row: the model's own distribution (SFT, and the default)."""
