"""pass@k: the unbiased estimator against hand-computed values and the binomial formula."""

from __future__ import annotations

import math

import pytest

from arpo.eval.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 0, 1, 0.0),  # nothing correct
        (5, 5, 3, 1.0),  # everything correct
        (5, 2, 1, 2 / 5),  # pass@1 = c/n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 1, 4, 1.0),  # n - c < k: every draw of 4 holds the correct one
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
    ],
)
def test_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_equals_the_binomial_formula_everywhere_on_a_grid():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_large_n_stays_finite_and_monotone_in_k():
    values = [pass_at_k(200, 3, k) for k in (1, 10, 50, 100)]
    assert values == sorted(values) and 0 < values[0] < values[-1] <= 1


def test_mean_over_tasks():
    assert mean_pass_at_k([(4, 0), (4, 2), (4, 4)], 1) == pytest.approx((0 + 0.5 + 1) / 3)
    assert mean_pass_at_k([(4, 1), (4, 0)], 2) == pytest.approx((1 - 3 / 6) / 2)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_invalid_counts_are_errors(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_empty_set_of_tasks_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        mean_pass_at_k([], 1)
