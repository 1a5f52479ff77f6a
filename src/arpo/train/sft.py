"""Cold-start SFT on demonstration trajectories in the rollout protocol (ARPO §4.1, all models).

A demonstration is laid out exactly like a rollout trajectory (prompt, model segments, tool
results), so its weights are the loss mask: 1 on the model's own tokens, 0 on prompt and
tool-result tokens. The loss of a batch is the token-mean negative log-likelihood

    L = − Σ_{i,t} w_{i,t} log π(x_{i,t} | x_{i,<t}) / Σ_{i,t} w_{i,t}

accumulated over micro-batches with the batch's normaliser (so accumulation is exact).

Layout (:mod:`arpo.train.layout`): with ``packing: tree`` the batch's
demonstrations are packed, first fit, into rows of at most ``pack_tokens`` tokens, each attending
only to itself (a block-diagonal causal mask, positions restarting at 0), so short examples share
a row instead of being padded to the longest one; the log-probs equal the padded ones. With
``flat`` each demonstration is a row, micro-batches sorted by length and padded to their own
longest row. ``auto`` (the default) takes whichever of the two the cost model of
:mod:`arpo.train.layout_cost` predicts is faster for the batch: packing saves padding but pays
attention across the whole packed row. Models whose attention takes no custom 4-D mask use ``flat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from arpo.train.batching import LearnerRow
from arpo.train.layout import Packing, one_path_tree
from arpo.train.loop import LoopConfig, TrainLoop


class SFTConfig(LoopConfig):
    """A cold-start SFT run (the data source is configured by the job)."""

    batch_size: int = Field(32, ge=1, description="Demonstrations per optimizer step.")
    packing: Literal["auto", "flat", "tree"] = Field(
        "auto",
        description="auto: tree or flat per batch, whichever a cost model of the policy predicts is faster; tree: "
        "demonstrations packed into shared rows (no padding, exact); flat: one padded row each.",
    )
    pack_tokens: int = Field(
        256,
        ge=1,
        description="Tokens per packed row (attention costs its square; longer examples get their own row).",
    )


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
        self.packing: Packing = self.resolve_packing(config.packing)

    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        rows = self.shard([self.demos[i] for i in self.sampler.take(cfg.batch_size)])
        batch = self.lay_out(
            [one_path_tree(r.token_ids) for r in rows],
            rows,
            aggregation="token-mean",
            packing=self.packing,
            pack_tokens=cfg.pack_tokens,
            totals=self.row_totals(rows),
        )
        self.model.train()
        total = 0.0
        for i, last in self.accumulation(len(batch.units)):
            with self.micro_step(last), self.accelerator.autocast():
                if i is None:
                    self.padding_pass()
                    continue
                unit = batch.units[i]
                logprobs, _ = unit.logprobs(self.model)
                loss = -(batch.scale[unit.copies] * logprobs.float()).sum()
                self.backward(loss)
            total += loss.item()
        return {
            "loss/sft": total,
            "tokens": float(sum(sum(r.weights) for r in rows)),
            "tokens_forwarded": float(batch.tokens_forwarded),
            "grad_norm": self.clip_and_step(total),
        }
