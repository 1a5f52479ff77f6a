"""Cold-start SFT on demonstration trajectories in the rollout protocol (ARPO §4.1, all models).

A demonstration is laid out exactly like a rollout trajectory (prompt, model segments, tool
results), so its weights are the loss mask: 1 on the model's own tokens, 0 on prompt and
tool-result tokens. The loss of a batch is the token-mean negative log-likelihood

    L = − Σ_{i,t} w_{i,t} log π(x_{i,t} | x_{i,<t}) / Σ_{i,t} w_{i,t}

accumulated over micro-batches with the batch's normaliser (so accumulation is exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from arpo.core.loss import batch_totals, token_scale
from arpo.train.batching import LearnerRow, micro_batches, pad_rows
from arpo.train.logprobs import token_logprobs
from arpo.train.loop import LoopConfig, TrainLoop


class SFTConfig(LoopConfig):
    """A cold-start SFT run (the data source is configured by the job)."""

    batch_size: int = Field(32, ge=1, description="Demonstrations per optimizer step.")


class SFTTrainer(TrainLoop):
    label = "sft"

    def __init__(
        self,
        config: SFTConfig,
        model: torch.nn.Module,
        tokenizer: Any,
        demos: Sequence[LearnerRow],
        run_dir: Path,
    ) -> None:
        if not any(any(w > 0 for w in row.weights) for row in demos):
            raise ValueError("the demonstrations contain no model tokens to learn from")
        super().__init__(config, model, tokenizer, run_dir, len(demos))
        self.check_divisible("train.batch_size", config.batch_size)
        self.config = config
        self.demos = list(demos)

    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        rows = self.shard([self.demos[i] for i in self.sampler.take(cfg.batch_size)])
        batch = pad_rows(rows, self.pad_id, self.accelerator.device)
        totals = self.all_sum(*batch_totals(batch.weights))
        scale = token_scale(batch.weights, "token-mean", totals) * self.world
        self.model.train()
        total = 0.0
        slices = list(micro_batches(len(batch), cfg.micro_batch_size))
        for i, micro in enumerate(slices):
            part = batch.rows(micro)
            with self.micro_step(last=i == len(slices) - 1), self.accelerator.autocast():
                logprobs, _ = token_logprobs(self.model, part.input_ids, part.attention_mask)
                loss = -(scale[micro] * logprobs.float()).sum()
                self.accelerator.backward(loss)
            total += loss.item()
        return {
            "loss/sft": total,
            "tokens": float(batch.weights.sum()),
            "grad_norm": self.clip_and_step(),
        }
