import random

import pytest
from pydantic import ValidationError

from arpo.core.branching import (
    BranchingConfig,
    branch_score,
    copies_to_fork,
    initial_split,
    should_branch,
)


def test_score_is_alpha_plus_beta_delta():
    cfg = BranchingConfig(alpha=0.5, beta=0.2)
    assert branch_score(cfg, h_init=0.3, h_after=0.8) == pytest.approx(0.5 + 0.2 * 0.5)


def test_stochastic_rule_frequency_follows_clipped_score():
    cfg = BranchingConfig(rule="stochastic")
    rng = random.Random(0)
    hits = sum(should_branch(cfg, 0.3, rng) for _ in range(20000))
    assert 0.28 < hits / 20000 < 0.32
    assert not any(should_branch(cfg, -0.5, rng) for _ in range(1000))
    assert all(should_branch(cfg, 1.5, rng) for _ in range(1000))


def test_threshold_rule_is_strict_inequality_and_draws_nothing():
    cfg = BranchingConfig(rule="threshold", threshold=0.5)
    rng = random.Random(0)
    state = rng.getstate()
    assert should_branch(cfg, 0.5001, rng)
    assert not should_branch(cfg, 0.5, rng)
    assert rng.getstate() == state


def test_copies_respect_width_and_budget():
    cfg = BranchingConfig(rollouts_per_prompt=8, initial_rollouts=2, branch_width=3)
    assert copies_to_fork(cfg, 2) == 3
    assert copies_to_fork(cfg, 6) == 2
    assert copies_to_fork(cfg, 8) == 0


def test_initial_rollouts_cannot_exceed_budget():
    with pytest.raises(ValidationError, match="initial_rollouts"):
        BranchingConfig(rollouts_per_prompt=4, initial_rollouts=5)
    with pytest.raises(ValidationError, match="bogus"):
        BranchingConfig(bogus=1)


def test_consecutive_penalty_damps_the_score_by_the_streak():
    cfg = BranchingConfig(alpha=0.5, beta=0.2, consecutive_penalty=0.05)
    base = 0.5 + 0.2 * 0.5
    assert branch_score(cfg, 0.3, 0.8, streak=0) == pytest.approx(base)
    assert branch_score(cfg, 0.3, 0.8, streak=1) == pytest.approx(base * 0.95)
    assert branch_score(cfg, 0.3, 0.8, streak=4) == pytest.approx(base * 0.8)
    assert branch_score(cfg, 0.3, 0.8, streak=25) == 0.0, "P̂(l) ≥ 1 never branches"
    assert branch_score(BranchingConfig(alpha=0.5, beta=0.2), 0.3, 0.8, streak=4) == pytest.approx(base)


@pytest.mark.parametrize(
    ("m", "beta", "h_root", "h_tool", "expected"),
    [
        (8, 0.5, 0.30, 0.30, 4),  # σ(0) = ½ → M/2
        (8, 0.5, 0.30, None, 4),  # no tool result: σ(0)
        (8, 0.5, 0.35, 0.30, 4),  # 8·σ(0.025) = 4.05 → 4: β = 0.5 barely moves m on normalised entropies
        (8, 40.0, 0.35, 0.30, 7),  # 8·σ(2) = 7.05 → 7
        (8, 40.0, 0.30, 0.35, 2),  # 8·σ(−2) = 0.95 → 1, raised to 2 so that one sample can branch
        (8, 200.0, 0.30, 0.35, 2),  # 8·σ(−10) ≈ 0.0004 → clamped to 2
        (1, 200.0, 0.30, 0.35, 1),  # M = 1: m = 1
        (8, 0.5, None, 0.35, 4),  # nothing generated: σ = ½
        (8, 200.0, 0.35, 0.30, 8),  # 8·σ(10) ≈ 7.9996 → 8
        (6, 20.0, 0.40, 0.35, 4),  # 6·σ(1) = 4.39 → 4
        (5, 0.0, 0.9, 0.1, 3),  # 5·½ = 2.5 → 3 (half rounds up)
    ],
)
def test_initial_split_is_rounded_m_sigma(m, beta, h_root, h_tool, expected):
    cfg = BranchingConfig(rollouts_per_prompt=m, initial_rollouts=1, pre_monitor={"beta": beta})
    assert initial_split(cfg, h_root, h_tool) == expected


def test_initial_split_needs_pre_monitor():
    with pytest.raises(ValueError, match="pre_monitor"):
        initial_split(BranchingConfig(), 0.3, 0.2)
