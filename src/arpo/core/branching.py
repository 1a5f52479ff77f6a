"""ARPO's entropy-gated branching rule and its budget (arXiv 2507.19849, §3.1).

Per prompt, ARPO samples N < M full trajectories. Each time a trajectory receives a tool result,
it generates on, and the normalised entropy of the first k tokens after the result is compared
with the trajectory's initial entropy:

    H_init = mean_{t ≤ k} H_t / ln|V|   over the trajectory's first k generated tokens
    H_after = mean_{t ≤ k} H_t / ln|V|   over the first k tokens after this tool result
    ΔH = H_after − H_init,    score = α + β·ΔH

and the trajectory branches *at this tool result* (Z copies of the prefix that ends with the
result, each sampling its own continuation) when

    stochastic rule:  u < clip(score, 0, 1),  u ~ U(0, 1)     (what the reference code does)
    threshold rule:   score > τ                                (the paper's rule)

Branching stops at the budget: a prompt never has more than M paths. If all its paths end with
fewer than M, the missing ones start together as fresh full samples. N = M is plain GRPO sampling.
Unlike the reference code, H_init is per trajectory and per rollout call (a branch keeps the
H_init of the trajectory it forked from), and ΔH uses the tokens after *this* tool result
(ARPO_REFERENCE.md §9.1–9.2).
"""

from __future__ import annotations

import random
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BranchRule(str, Enum):
    STOCHASTIC = "stochastic"
    THRESHOLD = "threshold"


class BranchingConfig(BaseModel):
    """How many trajectories a prompt gets and when they branch."""

    model_config = ConfigDict(extra="forbid")

    rollouts_per_prompt: int = Field(16, ge=1, description="M: leaves (trajectories) per prompt tree.")
    initial_rollouts: int = Field(
        8, ge=1, description="N: full samples started per prompt; N = M disables branching (GRPO)."
    )
    branch_width: int = Field(1, ge=1, description="Z: copies forked per positive branching decision.")
    alpha: float = Field(0.5, description="α: base branching score.")
    beta: float = Field(0.2, description="β: weight of the entropy change ΔH in the score.")
    entropy_window: int = Field(20, ge=1, description="k: tokens averaged for H_init and for H_after.")
    rule: BranchRule = Field(
        BranchRule.STOCHASTIC,
        description="stochastic: branch with probability clip(α+β·ΔH, 0, 1); threshold: iff α+β·ΔH > τ.",
    )
    threshold: float = Field(0.5, description="τ for the threshold rule.")

    @model_validator(mode="after")
    def _initial_within_budget(self) -> BranchingConfig:
        if self.initial_rollouts > self.rollouts_per_prompt:
            raise ValueError(
                f"initial_rollouts (N={self.initial_rollouts}) must be <= rollouts_per_prompt "
                f"(M={self.rollouts_per_prompt})"
            )
        return self


def branch_score(config: BranchingConfig, h_init: float, h_after: float) -> float:
    """score = α + β·(H_after − H_init)."""
    return config.alpha + config.beta * (h_after - h_init)


def should_branch(config: BranchingConfig, score: float, rng: random.Random) -> bool:
    """Apply the configured rule to a score; the stochastic rule draws one uniform number."""
    if config.rule is BranchRule.THRESHOLD:
        return score > config.threshold
    return rng.random() < min(max(score, 0.0), 1.0)


def copies_to_fork(config: BranchingConfig, paths_started: int) -> int:
    """Copies a positive decision may fork: Z, or fewer when the prompt is close to M paths."""
    return max(0, min(config.branch_width, config.rollouts_per_prompt - paths_started))
