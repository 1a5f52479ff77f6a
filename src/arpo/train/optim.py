"""AdamW with a warm-up + decay learning-rate schedule, and gradient clipping settings.

lr(s) = lr · s/warmup for s < warmup, then lr · f(p) with p = (s − warmup)/(total − warmup):
``constant`` f = 1; ``linear`` f = 1 − (1 − r)·p; ``cosine`` f = r + (1 − r)·(1 + cos πp)/2,
where r = ``min_lr_ratio``. ARPO's authors train with a constant lr of 1e-6, no warm-up.

An update whose loss or gradient norm is not finite is skipped, and ``max_consecutive_nonfinite``
such updates in a row stop the run (:meth:`arpo.train.loop.TrainLoop.clip_and_step`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-6, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Decay after warm-up.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps (schedule steps).")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="r: final lr as a fraction of lr.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max global gradient norm; null = no clipping.")
    max_consecutive_nonfinite: int = Field(
        3,
        ge=1,
        description="An optimizer update whose loss or gradient norm is NaN or infinite is skipped (gradient "
        "zeroed, counted in train/skipped_updates); this many such updates in a row stop the run with an error.",
    )


def lr_factor(step: int, total: int, config: OptimConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    r = config.min_lr_ratio
    if config.schedule == "linear":
        return 1.0 - (1.0 - r) * progress
    return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    params: Iterable[torch.nn.Parameter], config: OptimConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, config))
    return optimizer, scheduler
