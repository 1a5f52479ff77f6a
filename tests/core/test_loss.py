import math

import pytest
import torch

from arpo.core.advantage import attribute
from arpo.core.loss import PolicyLossConfig, clipped_pg_terms, kl_terms, policy_loss, token_scale
from tests.core.test_advantage import hand_tree


def as_logprobs(ratios):
    """(log π, log π_old) with the given ratios."""
    return torch.log(torch.tensor(ratios, dtype=torch.float64)), torch.zeros(len(ratios), dtype=torch.float64)


def test_ppo_clip_and_dual_clip_by_hand():
    new, old = as_logprobs([1.0, 1.5, 0.5, 5.0, 0.7])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    terms, clipped = clipped_pg_terms(new, old, adv, PolicyLossConfig())
    # ρ=1: −1 | ρ=1.5,A=1: max(−1.5, −1.2) | ρ=0.5,A=−1: max(0.5, 0.8) | ρ=5,A=−1: max(5, 1.2) → dual 3 | ρ=0.7,A=1: −0.7
    assert terms.tolist() == pytest.approx([-1.0, -1.2, 0.8, 3.0, -0.7])
    assert clipped.tolist() == [False, True, True, True, False]
    no_dual, _ = clipped_pg_terms(new, old, adv, PolicyLossConfig(dual_clip=None))
    assert no_dual[3].item() == pytest.approx(5.0)
    higher, _ = clipped_pg_terms(new, old, adv, PolicyLossConfig(clip_high=0.28))
    assert higher[1].item() == pytest.approx(-1.28)
    low, _ = clipped_pg_terms(new, old, adv, PolicyLossConfig(clip_low=0.1))
    assert low[2].item() == pytest.approx(0.9)


def test_gradient_vanishes_exactly_on_clipped_tokens():
    new, old = as_logprobs([1.0, 1.5, 0.5, 5.0, 0.7])
    new.requires_grad_(True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    terms, clipped = clipped_pg_terms(new, old, adv, PolicyLossConfig())
    terms.sum().backward()
    assert (new.grad == 0).tolist() == clipped.tolist()
    assert new.grad[0].item() == pytest.approx(-1.0)  # d(−A·ρ)/d log π = −A·ρ


TERMS = torch.tensor([[-1.0, -1.2, 0.0], [0.8, 3.0, -0.7]], dtype=torch.float64)
WEIGHTS = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("token-mean", (-1.0 - 1.2 + 0.8 + 3.0 - 0.7) / 5),
        ("seq-mean-token-mean", ((-1.0 - 1.2) / 2 + (0.8 + 3.0 - 0.7) / 3) / 2),
        ("seq-mean-token-sum", ((-1.0 - 1.2) + (0.8 + 3.0 - 0.7)) / 2),
    ],
)
def test_aggregations_by_hand(aggregation, expected):
    scale = token_scale(WEIGHTS, aggregation)
    assert (scale * TERMS).sum().item() == pytest.approx(expected)
    assert scale[0, 2].item() == 0.0, "padding never contributes"


def test_dr_grpo_divides_by_the_constant_budget_not_by_lengths():
    """Dr. GRPO (arXiv 2503.20783 §3.1): token sums over G · L_max, the same for every sequence."""
    scale = token_scale(WEIGHTS, "seq-mean-token-sum-norm", max_length=10)
    assert (scale * TERMS).sum().item() == pytest.approx(((-1.0 - 1.2) + (0.8 + 3.0 - 0.7)) / (2 * 10))
    assert scale[0, 0].item() == scale[1, 0].item() == pytest.approx(1 / 20)
    with pytest.raises(ValueError, match="L_max"):
        token_scale(WEIGHTS, "seq-mean-token-sum-norm")


def test_micro_batches_with_mini_batch_scale_sum_to_the_full_loss():
    cfg = PolicyLossConfig(aggregation="seq-mean-token-mean")
    new, old = torch.log(torch.rand(4, 5, dtype=torch.float64) + 0.5), torch.zeros(4, 5, dtype=torch.float64)
    adv = torch.randn(4, 5, dtype=torch.float64)
    weights = (torch.rand(4, 5) > 0.3).double()
    scale = token_scale(weights, cfg.aggregation)
    full = policy_loss(new, old, adv, scale, cfg).loss
    halves = sum(policy_loss(new[s], old[s], adv[s], scale[s], cfg).loss for s in (slice(0, 2), slice(2, 4)))
    assert halves.item() == pytest.approx(full.item())


def test_kl_estimators_and_entropy_bonus():
    logp = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    ref = torch.tensor([-1.5, -1.0], dtype=torch.float64)
    assert kl_terms(logp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert kl_terms(logp, ref, "k3").tolist() == pytest.approx(
        [math.exp(-0.5) + 0.5 - 1, math.exp(1) - 1 - 1]
    )
    far = torch.tensor([-40.0, -40.0], dtype=torch.float64)  # π_θ drifted ~e^40 away from π_ref
    assert kl_terms(far, torch.tensor([0.0, -80.0], dtype=torch.float64), "k3").tolist() == [10.0, 10.0]
    assert kl_terms(logp, torch.tensor([-3.0, -2.0], dtype=torch.float64), "k3")[1].item() == 0.0
    scale = torch.tensor([0.5, 0.5], dtype=torch.float64)
    adv = torch.zeros(2, dtype=torch.float64)
    cfg = PolicyLossConfig(kl_coef=0.1, kl_estimator="k1", entropy_coef=0.01)
    parts = policy_loss(
        logp, logp, adv, scale, cfg, ref_logprobs=ref, entropies=torch.tensor([2.0, 4.0]).double()
    )
    assert parts.kl.item() == pytest.approx(-0.25)
    assert parts.loss.item() == pytest.approx(0.1 * -0.25 - 0.01 * 3.0)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(logp, logp, adv, scale, cfg)


def flat_loss(mode, ratio_on_shared, aggregation="token-mean"):
    """Loss of the hand tree's 3 trajectories laid out flat (ratio 1 except on the shared node)."""
    tree = hand_tree()
    tokens = attribute(tree, [1.0, -1.0, 0.5], mode)
    trajs = tree.trajectories()
    width = max(len(t.token_ids) for t in trajs)
    adv = torch.zeros(3, width, dtype=torch.float64)
    weights = torch.zeros(3, width, dtype=torch.float64)
    logp = torch.zeros(3, width, dtype=torch.float64)
    for i, (traj, ta) in enumerate(zip(trajs, tokens, strict=True)):
        n = len(traj.token_ids)
        adv[i, :n] = torch.tensor(ta.advantages)
        weights[i, :n] = torch.tensor(ta.weights)
        if traj.nodes[1].token_ids == [10, 11]:
            logp[i, 2:4] = math.log(ratio_on_shared)
    scale = token_scale(weights, aggregation)
    return policy_loss(logp, torch.zeros_like(logp), adv, scale, PolicyLossConfig(dual_clip=None)).loss.item()


def test_hard_and_soft_differ_exactly_as_defined_on_a_hand_built_tree():
    # ratio 1 everywhere: ℓ = −A. soft: c (−1·3) + d (+1·4) + b (−0.5) over 8 tokens
    assert flat_loss("soft", 1.0) == pytest.approx(0.5 / 8)
    # hard: shared a-tokens carry mean(1, −1) = 0 once; c −1, d +2, b −0.5 over 6 counted tokens
    assert flat_loss("hard", 1.0) == pytest.approx(0.5 / 6)
    # ratio 1.5 on the shared tokens: soft sums each copy's clipped term: c copy −1.2, d copy +1.5
    assert flat_loss("soft", 1.5) == pytest.approx((2 * (-1.2 + 1.5) + (-1) + 2 * 1 + (-0.5)) / 8)
    # hard: the shared tokens carry A = 0, whatever the ratio
    assert flat_loss("hard", 1.5) == pytest.approx(0.5 / 6)


def loss_and_gradient(ratios, advantages, scale, **config):
    """(loss, clip fraction, ∂loss/∂log π per token) at the given ratios."""
    new, old = as_logprobs(ratios)
    new.requires_grad_(True)
    adv = torch.tensor(advantages, dtype=torch.float64)
    parts = policy_loss(new, old, adv, torch.full_like(adv, scale), PolicyLossConfig(**config))
    parts.loss.backward()
    return parts.loss.item(), parts.clip_fraction.item(), new.grad.tolist()


def test_entropy_balanced_clip_keeps_the_loss_value_and_the_upper_clipped_gradient():
    """AEPO's (1 + ε_high)·ρ/sg(ρ) upper bound: ∂ℓ/∂log π = −F·A with F = 1 + ε_high above the clip
    for A > 0 (PPO: 0), 0 below it for A < 0 (as PPO), ρ in range (as PPO); times the scale s."""
    ratios, adv = [1.0, 1.5, 0.5, 5.0, 0.7, 1.5], [1.0, 1.0, -1.0, -1.0, 1.0, -1.0]
    ppo_loss, ppo_clipped, ppo_grad = loss_and_gradient(ratios, adv, 0.5)
    loss, clipped, grad = loss_and_gradient(ratios, adv, 0.5, clip_gradient="entropy_balanced")
    assert loss == ppo_loss == pytest.approx(0.5 * (-1.0 - 1.2 + 0.8 + 3.0 - 0.7 + 1.5))
    assert clipped == ppo_clipped == pytest.approx(0.5 * 3), "values clipped: ρ=1.5 A>0, ρ=0.5 A<0, dual"
    # ρ=1 A=1: −A·ρ·s | ρ=1.5 A=1: PPO 0, AEPO −(1+ε_h)·A·s | ρ=0.5 A=−1: 0 | dual clip: 0 |
    # ρ=0.7 A=1 (A>0 is not clipped below): −A·ρ·s | ρ=1.5 A=−1 (not clipped above): −A·ρ·s
    assert ppo_grad == pytest.approx([-0.5, 0.0, 0.0, 0.0, -0.35, 0.75])
    assert grad == pytest.approx([-0.5, -1.2 * 0.5, 0.0, 0.0, -0.35, 0.75])
    loss, clipped, grad = loss_and_gradient(
        [1.5], [2.0], 1.0, clip_high=0.28, clip_gradient="entropy_balanced"
    )
    assert (loss, clipped, *grad) == pytest.approx((-2 * 1.28, 1.0, -2 * 1.28)), "F = 1 + ε_high = 1.28"
