import math
import statistics

import pytest
from pydantic import ValidationError

from arpo.core.advantage import (
    AdvantageConfig,
    OverlongConfig,
    TokenAdvantages,
    attribute,
    entropy_balance,
    entropy_moments,
    group_advantages,
    has_signal,
    overlong_penalty,
    token_moments,
    trajectory_entropies,
    whiten_tokens,
)
from arpo.core.tree import FinishReason, Origin, RolloutTree, ToolCall


def test_grpo_normalises_within_each_group_with_unbiased_std():
    cfg = AdvantageConfig(eps=0.0)
    (adv,) = group_advantages([[1.0, 0.0, 0.0, 1.0]], cfg)
    std = statistics.stdev([1, 0, 0, 1])  # 0.5774
    assert adv == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert group_advantages([[2.0, 0.0]], AdvantageConfig(norm_by_std=False)) == [[1.0, -1.0]]
    assert group_advantages([[0.7]], cfg) == [[0.7]], "a group of one: mean 0, std 1"
    assert group_advantages([[0.3, 0.3]], AdvantageConfig()) == [[0.0, 0.0]]


def test_reinforce_pp_centres_per_group_then_whitens_over_tokens():
    """REINFORCE++ whitening is over response tokens (verl/OpenRLHF), not trajectories: with a
    long correct and a short wrong answer the token mean is not 0."""
    cfg = AdvantageConfig(estimator="reinforce_pp", eps=0.0)
    assert group_advantages([[1.0, 0.0], [3.0, 1.0, 2.0]], cfg) == [[0.5, -0.5], [1.0, -1.0, 0.0]]
    tokens = [
        TokenAdvantages([0.0, 0.5, 0.5, 0.5], [0.0, 1.0, 1.0, 1.0]),  # prompt token + 3 model tokens
        TokenAdvantages([0.0, -0.5, 0.0], [0.0, 1.0, 0.0]),  # 1 model token, 1 tool token
    ]
    moments = token_moments(tokens)
    assert moments == pytest.approx((4.0, 1.0, 1.0))
    values = [0.5, 0.5, 0.5, -0.5]
    mean, std = statistics.fmean(values), statistics.stdev(values)  # 0.25, 0.5
    first, second = whiten_tokens(tokens, moments, cfg.eps)
    assert first.advantages == pytest.approx([0.0] + [(0.5 - mean) / std] * 3)
    assert second.advantages == pytest.approx([0.0, (-0.5 - mean) / std, 0.0])
    assert mean != 0 and first.weights == tokens[0].weights


def test_reinforce_pp_whitening_counts_soft_copies_and_hard_tokens_once():
    """Soft: a shared token appears once per trajectory through it; hard: once in all (weight 1/d)."""
    tree = hand_tree()
    centred = [1.0, -1.0, 0.5]
    soft, hard = attribute(tree, centred, "soft"), attribute(tree, centred, "hard")
    assert token_moments(soft)[0] == 2 * 2 + 1 + 2 + 1  # a (2 tokens) in c and d, then c, d, b
    assert token_moments(hard)[0] == pytest.approx(2 + 1 + 2 + 1)  # a counted once
    for tokens in (soft, hard):
        moments = token_moments(tokens)
        whitened = whiten_tokens(tokens, moments, 0.0)
        total, first, second = token_moments(whitened)
        assert first / total == pytest.approx(0.0, abs=1e-12)
        assert (second - first**2 / total) / (total - 1) == pytest.approx(1.0)


def test_overlong_penalty_follows_dapo_eq_13():
    cfg = OverlongConfig(max_length=100, cache_length=20)
    assert overlong_penalty(80, cfg) == 0.0
    assert overlong_penalty(90, cfg) == pytest.approx(-0.5)
    assert overlong_penalty(100, cfg) == pytest.approx(-1.0)
    assert overlong_penalty(101, cfg) == -1.0
    with pytest.raises(ValidationError, match="cache_length"):
        OverlongConfig(max_length=10, cache_length=20)


def test_dynamic_sampling_signal_is_on_correctness():
    assert not has_signal([1.0, 1.0, 1.0])
    assert not has_signal([0.0])
    assert has_signal([1.0, 0.0, 1.0])


def hand_tree() -> RolloutTree:
    """prompt → a[10,11] → tool[50] → c[12] | d[13,14];  prompt → b[20]. Leaves in order c, d, b."""
    tree = RolloutTree([1, 2], vocab_size=32)
    a = tree.add_model(tree.root, Origin.INITIAL)
    a.append([10, 11], [0.0, 0.0], [0.0, 0.0])
    tool = tree.add_tool(a, [50], [ToolCall("calc", "", "ok")])
    for ids, origin in (([12], None), ([13, 14], Origin.BRANCH)):
        node = tree.add_model(tool, origin)
        node.append(ids, [0.0] * len(ids), [0.0] * len(ids))
        node.finish_reason = FinishReason.ANSWER
    b = tree.add_model(tree.root, Origin.INITIAL)
    b.append([20], [0.0], [0.0])
    b.finish_reason = FinishReason.EOS
    return tree


def test_soft_attribution_gives_each_trajectory_its_own_advantage():
    c, d, b = attribute(hand_tree(), [1.0, -1.0, 0.5], "soft")
    assert c.advantages == [0, 0, 1, 1, 0, 1] and c.weights == [0, 0, 1, 1, 0, 1]
    assert d.advantages == [0, 0, -1, -1, 0, -1, -1] and d.weights == [0, 0, 1, 1, 0, 1, 1]
    assert b.advantages == [0, 0, 0.5] and b.weights == [0, 0, 1]


def test_hard_attribution_averages_shared_tokens_and_counts_them_once():
    c, d, b = attribute(hand_tree(), [1.0, -0.5, 0.5], "hard")
    assert c.advantages == [0, 0, 0.25, 0.25, 0, 1] and c.weights == [0, 0, 0.5, 0.5, 0, 1]
    assert d.advantages == [0, 0, 0.25, 0.25, 0, -0.5, -0.5] and d.weights == [0, 0, 0.5, 0.5, 0, 1, 1]
    assert b.advantages == [0, 0, 0.5] and b.weights == [0, 0, 1]
    with pytest.raises(ValueError, match="3 trajectories"):
        attribute(hand_tree(), [1.0], "hard")


def entropy_tree(entropies: dict[int, list[float]]) -> RolloutTree:
    """:func:`hand_tree` with the given sampling entropies on its model nodes a=1, c=3, d=4, b=5."""
    tree = hand_tree()
    for node_id, values in entropies.items():
        tree.nodes[node_id].entropies[:] = values
    return tree


SPREAD = {1: [1.0, 3.0], 3: [2.0], 4: [0.0, 4.0], 5: [2.0]}


def test_trajectory_entropies_align_with_tokens_and_copies_count_like_whitening():
    tree = entropy_tree(SPREAD)
    c, d, b = trajectory_entropies(tree)
    assert c == [0, 0, 1, 3, 0, 2] and d == [0, 0, 1, 3, 0, 0, 4] and b == [0, 0, 2]
    soft = entropy_moments(attribute(tree, [1.0, -0.5, 0.5], "soft"), [c, d, b])
    assert soft == pytest.approx((8, 16, 1 + 9 + 4 + 1 + 9 + 0 + 16 + 4)), "a's tokens once per trajectory"
    hard = entropy_moments(attribute(tree, [1.0, -0.5, 0.5], "hard"), [c, d, b])
    assert hard == pytest.approx((6, 12, 1 + 9 + 4 + 0 + 16 + 4)), "a's tokens once in all (weights 1/2)"


def test_entropy_balance_scales_soft_copies_by_the_entropy_z_score():
    """Ã = A·(1 + a·z), z over the 8 soft copies' entropies [1, 3, 2 | 1, 3, 0, 4 | 2]."""
    tree = entropy_tree(SPREAD)
    entropies = trajectory_entropies(tree)
    tokens = attribute(tree, [1.0, -0.5, 0.5], "soft")
    mean, std = 2.0, statistics.stdev([1, 3, 2, 1, 3, 0, 4, 2])  # sqrt(12 / 7)
    c, d, b = entropy_balance(tokens, entropies, entropy_moments(tokens, entropies), 0.5, 0.0)
    factor = [1 + 0.5 * (h - mean) / std for h in (1, 3, 2, 0, 4)]
    assert c.advantages == pytest.approx([0, 0, factor[0], factor[1], 0, factor[2]])
    assert d.advantages == pytest.approx(
        [0, 0, -0.5 * factor[0], -0.5 * factor[1], 0, -0.5 * factor[3], -0.5 * factor[4]]
    )
    assert b.advantages == pytest.approx([0, 0, 0.5 * factor[2]]) and b.weights == tokens[2].weights


def test_entropy_balance_clamps_the_factor_at_zero_and_counts_hard_tokens_once():
    """Hard: entropies [1, 3 | 2 | 0, 4 | 2] once each, μ = 2, σ = sqrt(10 / 5); a = 2: the factor
    1 + 2·z is below 0 for H = 0 and H = 1 and is clamped, so no advantage changes sign."""
    tree = entropy_tree(SPREAD)
    entropies = trajectory_entropies(tree)
    tokens = attribute(tree, [1.0, -0.5, 0.5], "hard")  # a: mean 0.25, weight 1/2
    c, d, b = entropy_balance(tokens, entropies, entropy_moments(tokens, entropies), 2.0, 0.0)
    root2 = math.sqrt(2)
    assert c.advantages == pytest.approx([0, 0, 0, 0.25 * (1 + root2), 0, 1])
    assert d.advantages == pytest.approx([0, 0, 0, 0.25 * (1 + root2), 0, 0, -0.5 * (1 + 2 * root2)])
    assert b.advantages == pytest.approx([0, 0, 0.5]) and d.weights == tokens[1].weights


def test_entropy_balance_leaves_equal_entropies_and_empty_batches_alone():
    tree = entropy_tree({1: [1.5, 1.5], 3: [1.5], 4: [1.5, 1.5], 5: [1.5]})
    entropies = trajectory_entropies(tree)
    tokens = attribute(tree, [1.0, -0.5, 0.5], "soft")
    for eps in (0.0, 1e-6):  # σ = 0: z = 0, a factor of 1 (the official code's std 0 → 1)
        assert entropy_balance(tokens, entropies, entropy_moments(tokens, entropies), 0.2, eps) == tokens
    assert entropy_balance(tokens, entropies, (0.0, 0.0, 0.0), 0.2, 0.0) == tokens
    with pytest.raises(ValidationError):
        AdvantageConfig(entropy_weight=-0.1)
