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

**AEPO options** (Agentic Entropy-Balanced Policy Optimization, arXiv 2510.14545, same authors;
"dynamic entropy-balanced rollout"). Both are off by default.

* *Consecutive high-entropy branching penalty.* AEPO observes that ARPO piles its branches onto a
  few trajectories: a path that branched once tends to branch again. With l the number of tool
  results immediately before this one on the path where it branched (copies were forked;
  consecutive, counted back from the latest), the score becomes

      score = (α + β·ΔH) · max(0, 1 − P̂(l)),    P̂(l) = γ_p · l     (``consecutive_penalty`` = γ_p)

  AEPO's code uses γ_p = 0.05 with l counted per *prompt* (rounds in a row in which the prompt
  added any path, fresh fills included); here l is counted along the path, as the paper describes
  it ("consecutive high-entropy branching" of one trajectory).
* *Entropy pre-monitoring* (``pre_monitor``) splits the budget of M paths between initial samples
  and branches from the question's entropy against the tools' entropy:

      m = clamp(⌊M · σ(β_m · (H_root − H̄_tool)) + ½⌋, min(2, M), M)

  with σ the logistic function, H_root the normalised window mean of the first k tokens of a
  monitoring sample and H̄_tool the mean, over that sample's executed tool calls, of the first k
  tokens generated after each result (σ = ½, so m = M/2, when it ran no tool or generated
  nothing). A question whose own uncertainty dominates gets more independent samples; one whose
  tool results raise the uncertainty leaves more of the budget to branches. The monitoring sample
  is the first initial sample, run alone and *kept* as one of the m (AEPO's code runs it
  separately and discards it, spending a full trajectory and its tool calls per prompt); it takes
  no branching decisions, since the branch budget M − m is unknown until it ends. The other
  m − 1 initial samples start when it ends (so a prompt's rollout takes about twice as many
  rounds), and the M − m branches fork from them: m is at least 2 so that one sample can branch
  (with m = 1 the budget would go to fresh fills, plain GRPO sampling, for exactly the prompts
  whose tool results are most uncertain). AEPO's code rounds ⌊M·σ⌋ + 1 (M/2 + 1 at σ = ½) and
  uses β_m = 0.5; with normalised entropies (differences of a few hundredths) β_m = 0.5 leaves
  m = M/2, so β_m is a knob here.
"""

from __future__ import annotations

import math
import random
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BranchRule(str, Enum):
    STOCHASTIC = "stochastic"
    THRESHOLD = "threshold"


class PreMonitorConfig(BaseModel):
    """AEPO's entropy pre-monitoring: the initial/branch split m per prompt (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(
        0.5, ge=0, description="β_m: sensitivity of m = M·σ(β_m·(H_root − H̄_tool)) (AEPO's code: 0.5)."
    )


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
    consecutive_penalty: float = Field(
        0.0,
        ge=0,
        description="AEPO γ_p: score × max(0, 1 − γ_p·l), l = consecutive branchings just before on the "
        "path (AEPO's code: 0.05; 0 = off).",
    )
    pre_monitor: PreMonitorConfig | None = Field(
        None,
        description="AEPO entropy pre-monitoring: a first sample per prompt sets the number of initial "
        "samples m (initial_rollouts is then unused); null = off.",
    )

    @model_validator(mode="after")
    def _initial_within_budget(self) -> BranchingConfig:
        if self.initial_rollouts > self.rollouts_per_prompt:
            raise ValueError(
                f"initial_rollouts (N={self.initial_rollouts}) must be <= rollouts_per_prompt "
                f"(M={self.rollouts_per_prompt})"
            )
        return self


def branch_score(config: BranchingConfig, h_init: float, h_after: float, streak: int = 0) -> float:
    """score = (α + β·(H_after − H_init)) · max(0, 1 − γ_p·l), with l = ``streak`` (AEPO's penalty;
    γ_p = 0 gives ARPO's score)."""
    score = config.alpha + config.beta * (h_after - h_init)
    if config.consecutive_penalty > 0:
        score *= max(0.0, 1.0 - config.consecutive_penalty * streak)
    return score


def initial_split(config: BranchingConfig, h_root: float | None, h_tool: float | None) -> int:
    """AEPO's m = clamp(⌊M·σ(β_m·(H_root − H̄_tool)) + ½⌋, min(2, M), M); either entropy None (no
    tool result, or nothing generated) gives σ = ½."""
    if config.pre_monitor is None:
        raise ValueError("initial_split needs branching.pre_monitor")
    difference = 0.0 if h_root is None or h_tool is None else h_root - h_tool
    share = 1.0 / (1.0 + math.exp(-config.pre_monitor.beta * difference))
    m = config.rollouts_per_prompt
    return min(max(math.floor(m * share + 0.5), min(2, m)), m)


def should_branch(config: BranchingConfig, score: float, rng: random.Random) -> bool:
    """Apply the configured rule to a score; the stochastic rule draws one uniform number."""
    if config.rule is BranchRule.THRESHOLD:
        return score > config.threshold
    return rng.random() < min(max(score, 0.0), 1.0)


def copies_to_fork(config: BranchingConfig, paths_started: int) -> int:
    """Copies a positive decision may fork: Z, or fewer when the prompt is close to M paths."""
    return max(0, min(config.branch_width, config.rollouts_per_prompt - paths_started))
