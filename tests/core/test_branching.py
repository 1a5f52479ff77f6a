import random

import pytest
from pydantic import ValidationError

from arpo.core.branching import BranchingConfig, branch_score, copies_to_fork, should_branch


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
