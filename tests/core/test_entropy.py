import math

import pytest
import torch

from arpo.core.entropy import (
    entropy_from_logits,
    normalised_window_mean,
    topk_entropy_bounds,
    topk_entropy_estimate,
)


def brute_force_entropy(logits: list[float]) -> float:
    z = max(logits)
    weights = [math.exp(x - z) for x in logits]
    total = sum(weights)
    return -sum(w / total * math.log(w / total) for w in weights if w > 0)


def test_entropy_matches_brute_force_on_random_logits():
    torch.manual_seed(0)
    logits = torch.randn(5, 37, dtype=torch.float64) * 3
    got = entropy_from_logits(logits)
    for row, value in zip(logits.tolist(), got.tolist(), strict=True):
        assert value == pytest.approx(brute_force_entropy(row), abs=1e-12)


def test_entropy_extremes_uniform_and_one_hot_and_masked():
    assert entropy_from_logits(torch.zeros(10)).item() == pytest.approx(math.log(10), abs=1e-6)
    one_hot = torch.full((10,), -1e4)
    one_hot[3] = 0
    assert entropy_from_logits(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    masked = torch.tensor([0.0, 0.0, -math.inf, -math.inf])
    assert entropy_from_logits(masked).item() == pytest.approx(math.log(2), abs=1e-6)


def test_normalised_window_mean_uses_first_k_and_ln_v():
    values = [math.log(8), 0.0, math.log(8), 99.0]
    assert normalised_window_mean(values, 8, 3) == pytest.approx(2 / 3)
    assert normalised_window_mean(values[:1], 8, 3) == pytest.approx(1.0)
    assert normalised_window_mean([], 8, 3) is None
    with pytest.raises(ValueError, match="vocab_size"):
        normalised_window_mean(values, 1, 3)


def test_topk_bounds_bracket_the_exact_entropy():
    gen = torch.Generator().manual_seed(3)
    for vocab, k, scale in [(50, 5, 1.0), (50, 20, 4.0), (1000, 20, 0.3), (1000, 1, 8.0)]:
        for _ in range(50):
            logits = torch.randn(vocab, generator=gen, dtype=torch.float64) * scale
            exact = float(entropy_from_logits(logits))
            top = torch.log_softmax(logits, -1).topk(k).values.tolist()
            low, high = topk_entropy_bounds(top, vocab)
            assert low - 1e-9 <= exact <= high + 1e-9
            assert topk_entropy_estimate(top, vocab) == pytest.approx((low + high) / 2)


def test_topk_bounds_are_exact_with_the_whole_vocabulary_and_reject_bad_k():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0], dtype=torch.float64)
    full = torch.log_softmax(logits, -1).sort(descending=True).values.tolist()
    exact = float(entropy_from_logits(logits))
    assert topk_entropy_bounds(full, 4) == pytest.approx((exact, exact))
    with pytest.raises(ValueError, match="between 1 and vocab_size"):
        topk_entropy_bounds([], 4)
