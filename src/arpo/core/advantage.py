"""Advantages on the rollout tree: group baselines, reward shaping and ARPO's attribution.

One prompt's tree is one group of G trajectories with scalar rewards r_1..r_G.

**Estimators** (per trajectory):

* ``grpo`` (Shao et al. 2024, arXiv 2402.03300): A_i = (r_i − mean_g r) / (std_g r + ε), with the
  unbiased (G−1) std as in verl; ``norm_by_std: false`` gives Dr. GRPO's A_i = r_i − mean_g r
  (Liu et al. 2025, arXiv 2503.20783). A group of one has A_i = r_i (mean 0, std 1, as verl).
* ``reinforce_pp`` (REINFORCE++-baseline, Hu et al. 2025, arXiv 2501.03262): subtract the group
  mean, a_i = r_i − mean_g r, then whiten over the batch's response *tokens* after attribution
  (as verl and OpenRLHF do): with every loss token copy c of the batch carrying a_c and weight
  w_c (below), μ = Σ w_c a_c / Σ w_c, σ² = Σ w_c (a_c − μ)² / (Σ w_c − 1), and
  A_c = (a_c − μ) / (σ + ε). Longer trajectories weigh more, so μ ≠ 0 when length correlates
  with reward; soft copies of a shared token count once each, a hard token once in all
  (:func:`token_moments`, :func:`whiten_tokens`; the sums span all processes).

**Reward shaping and filtering** (DAPO, Yu et al. 2025, arXiv 2503.14476):

* overlong penalty (DAPO Eq. 13), added to the reward of a trajectory of response length L with
  budget L_max and soft window L_cache:  0 if L ≤ L_max − L_cache;
  ((L_max − L_cache) − L) / L_cache if L_max − L_cache < L ≤ L_max;  −1 beyond.
* dynamic sampling: a group whose *correctness* (answer accuracy, not the shaped reward) is the
  same for every trajectory — all wrong or all right — is dropped (DAPO Eq. 11 filters on
  accuracy; DAPO refills by oversampling, here the batch just shrinks). Filtering on the shaped
  reward would keep e.g. [1, 1, 0.8] and train on a length penalty or tool bonus alone.

**Attribution** (ARPO, arXiv 2507.19849 §3.2), given A_i per trajectory, for the model tokens:

* ``soft``: every trajectory carries its own A_i on each of its tokens, shared prefixes included
  (a token shared by d trajectories appears d times, each with its trajectory's advantage). This
  is what the authors train with (vanilla GRPO over the forked sequences).
* ``hard``: a token of tree node n, shared by the d_n trajectories through n, carries the mean
  Ā_n = (1/d_n) Σ_{i through n} A_i and is counted once: in the per-trajectory layout each of its
  d_n copies gets advantage Ā_n and weight 1/d_n, so the copies sum to one term.

Soft copies get weight 1. The loss multiplies each token term by its weight (:mod:`arpo.core.loss`).

**Entropy-aware advantage** (AEPO, arXiv 2510.14545, entropy-balanced policy optimization), on
when ``entropy_weight`` a > 0 (AEPO: 0.2): every loss token copy c, with the sampling entropy H_c
of its token, gets

    Ã_c = A_c · max(0, 1 + a·z_c),   z_c = (H_c − μ_H) / (σ_H + ε),

μ_H, σ_H the weighted mean and unbiased std of H over the batch's loss token copies, counted with
their weights w_c as REINFORCE++'s whitening counts them (:func:`entropy_moments`; the sums span
all processes). The moments thus describe the loss's own terms: with ``soft`` attribution a shared
token is a term per trajectory (as in the official code, which trains on one row per trajectory),
with ``hard`` one term in all. The factor is applied last, after the group advantages,
attribution and REINFORCE++'s whitening, so that, as in the official code (which applies it inside
the loss), it scales the estimator's final advantages and never changes their sign. Where this
deviates from the official code, and why:

* H is the *sampling* entropy recorded on the tree's model nodes, not the learner's entropy at each
  mini-batch: the same value when π_old = π_θ (the learner scores the same tempered policy, and the
  ``hf`` engine records exact entropies; ``vllm``'s are a top-k estimate), and a constant of the
  step, like the advantage it scales, over several PPO epochs;
* μ_H and σ_H span the step's whole batch, not a micro-batch, so the advantage does not depend on
  the micro-batch size;
* the factor is clamped at 0, so a token of very low entropy (z < −1/a) never flips its
  advantage's sign; equal entropies (σ_H = 0) give z = 0, a factor of 1, as the official code's
  std 0 → 1.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arpo.core.tree import Role, RolloutTree


class OverlongConfig(BaseModel):
    """DAPO's soft overlong punishment (Eq. 13)."""

    model_config = ConfigDict(extra="forbid")

    max_length: int = Field(..., ge=1, description="L_max: response length (tokens) that earns −1 beyond it.")
    cache_length: int = Field(
        ..., ge=1, description="L_cache: window before L_max where the penalty ramps to −1."
    )

    @model_validator(mode="after")
    def _window_fits(self) -> OverlongConfig:
        if self.cache_length > self.max_length:
            raise ValueError(f"cache_length ({self.cache_length}) must be <= max_length ({self.max_length})")
        return self


class AdvantageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    estimator: Literal["grpo", "reinforce_pp"] = Field(
        "grpo", description="grpo: group-normalised; reinforce_pp: group baseline, batch-normalised."
    )
    norm_by_std: bool = Field(True, description="GRPO: divide by the group std (false = Dr. GRPO).")
    eps: float = Field(1e-6, ge=0, description="ε added to the std.")
    attribution: Literal["soft", "hard"] = Field(
        "soft",
        description="soft: own advantage on every token; hard: shared tokens get the mean, counted once.",
    )
    dynamic_sampling: bool = Field(
        False, description="DAPO: drop groups whose correctness is the same for all trajectories."
    )
    overlong: OverlongConfig | None = Field(None, description="DAPO overlong penalty; off when unset.")
    entropy_weight: float = Field(
        0.0,
        ge=0,
        description="a: AEPO's entropy-aware advantage A·max(0, 1 + a·z), z the token's sampling-entropy "
        "z-score over the batch; 0 = off (AEPO: 0.2).",
    )


def overlong_penalty(length: int, config: OverlongConfig) -> float:
    """DAPO Eq. 13 for a response of ``length`` tokens."""
    soft_start = config.max_length - config.cache_length
    if length <= soft_start:
        return 0.0
    if length <= config.max_length:
        return (soft_start - length) / config.cache_length
    return -1.0


def has_signal(correctness: Sequence[float]) -> bool:
    """Whether a group's correctness values differ (dynamic sampling keeps only such groups)."""
    return len(set(correctness)) > 1


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 1.0


def _normalise(values: Sequence[float], std: float, eps: float) -> list[float]:
    """values / (std + ε); a zero std means the values are all 0 (centred) and stay 0."""
    return [v / (std + eps) if std + eps > 0 else 0.0 for v in values]


def group_advantages(groups: Sequence[Sequence[float]], config: AdvantageConfig) -> list[list[float]]:
    """Per-trajectory advantages for each group of rewards (module docstring formulas).

    For ``reinforce_pp`` these are the group-centred a_i; the batch whitening happens on the
    tokens (:func:`whiten_tokens`).
    """
    centred = [[r - (statistics.fmean(g) if len(g) > 1 else 0.0) for r in g] for g in groups]
    if config.estimator == "reinforce_pp" or not config.norm_by_std:
        return centred
    return [_normalise(c, _std(g), config.eps) for g, c in zip(groups, centred, strict=True)]


@dataclass(frozen=True)
class TokenAdvantages:
    """Per-token advantage and weight of one trajectory, aligned with its token ids (0 off-mask)."""

    advantages: list[float]
    weights: list[float]


def attribute(
    tree: RolloutTree, leaf_advantages: Sequence[float], mode: Literal["soft", "hard"]
) -> list[TokenAdvantages]:
    """Token advantages for each trajectory of ``tree`` (in ``tree.trajectories()`` order)."""
    trajectories = tree.trajectories()
    if len(leaf_advantages) != len(trajectories):
        raise ValueError(f"{len(leaf_advantages)} advantages for a tree of {len(trajectories)} trajectories")
    node_mean: dict[int, float] = {}
    node_count: dict[int, int] = {}
    if mode == "hard":
        totals: dict[int, float] = {}
        for traj, adv in zip(trajectories, leaf_advantages, strict=True):
            for node in traj.nodes:
                totals[node.id] = totals.get(node.id, 0.0) + adv
                node_count[node.id] = node_count.get(node.id, 0) + 1
        node_mean = {nid: totals[nid] / node_count[nid] for nid in totals}
    out = []
    for traj, adv in zip(trajectories, leaf_advantages, strict=True):
        advantages: list[float] = []
        weights: list[float] = []
        for node in traj.nodes:
            n = len(node.token_ids)
            if node.role is not Role.MODEL:
                advantages += [0.0] * n
                weights += [0.0] * n
            elif mode == "soft":
                advantages += [adv] * n
                weights += [1.0] * n
            else:
                advantages += [node_mean[node.id]] * n
                weights += [1.0 / node_count[node.id]] * n
        out.append(TokenAdvantages(advantages, weights))
    return out


def _moments(
    tokens: Sequence[TokenAdvantages], values: Sequence[Sequence[float]]
) -> tuple[float, float, float]:
    """(Σ w, Σ w·v, Σ w·v²) of per-token ``values`` over the loss-token copies of ``tokens``."""
    total = first = second = 0.0
    for trajectory, trajectory_values in zip(tokens, values, strict=True):
        for v, w in zip(trajectory_values, trajectory.weights, strict=True):
            if w > 0:
                total += w
                first += w * v
                second += w * v * v
    return total, first, second


def _standardiser(moments: tuple[float, float, float], eps: float) -> tuple[float, float]:
    """(μ, 1 / (σ + ε)) from ``moments`` (unbiased variance; 1 for a total weight ≤ 1; a zero
    σ + ε gives a factor 0). The total weight must be > 0."""
    total, first, second = moments
    mean = first / total
    variance = max(second - total * mean * mean, 0.0) / (total - 1) if total > 1 else 1.0
    denominator = math.sqrt(variance) + eps
    return mean, 1.0 / denominator if denominator > 0 else 0.0


def token_moments(tokens: Sequence[TokenAdvantages]) -> tuple[float, float, float]:
    """(Σ w, Σ w·a, Σ w·a²) over the loss-token copies of ``tokens`` (sum these over processes)."""
    return _moments(tokens, [t.advantages for t in tokens])


def whiten_tokens(
    tokens: Sequence[TokenAdvantages], moments: tuple[float, float, float], eps: float
) -> list[TokenAdvantages]:
    """REINFORCE++'s token whitening A = (a − μ) / (σ + ε) with μ, σ from the batch's ``moments``
    (:func:`token_moments`, unbiased variance); tokens off the loss mask stay 0."""
    if moments[0] <= 0:
        return list(tokens)
    mean, scale = _standardiser(moments, eps)
    return [
        TokenAdvantages(
            [(a - mean) * scale if w > 0 else 0.0 for a, w in zip(t.advantages, t.weights, strict=True)],
            list(t.weights),
        )
        for t in tokens
    ]


def trajectory_entropies(tree: RolloutTree) -> list[list[float]]:
    """Sampling entropy of every token of each trajectory of ``tree`` (``tree.trajectories()``
    order, aligned with its token ids); 0 on prompt and tool tokens."""
    return [
        [
            h
            for node in traj.nodes
            for h in (node.entropies if node.role is Role.MODEL else [0.0] * len(node.token_ids))
        ]
        for traj in tree.trajectories()
    ]


def entropy_moments(
    tokens: Sequence[TokenAdvantages], entropies: Sequence[Sequence[float]]
) -> tuple[float, float, float]:
    """(Σ w, Σ w·H, Σ w·H²) over the loss-token copies of ``tokens`` with their ``entropies``
    (:func:`trajectory_entropies`; sum these over processes)."""
    return _moments(tokens, entropies)


def entropy_balance(
    tokens: Sequence[TokenAdvantages],
    entropies: Sequence[Sequence[float]],
    moments: tuple[float, float, float],
    weight: float,
    eps: float,
) -> list[TokenAdvantages]:
    """AEPO's entropy-aware advantage Ã = A·max(0, 1 + a·(H − μ_H)/(σ_H + ε)) with μ_H, σ_H from
    the batch's ``moments`` (:func:`entropy_moments`); weights unchanged."""
    if moments[0] <= 0:
        return list(tokens)
    mean, scale = _standardiser(moments, eps)
    return [
        TokenAdvantages(
            [a * max(0.0, 1.0 + weight * (h - mean) * scale) for a, h in zip(t.advantages, h_t, strict=True)],
            list(t.weights),
        )
        for t, h_t in zip(tokens, entropies, strict=True)
    ]
