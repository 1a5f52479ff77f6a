"""pass@k, the unbiased estimator of Chen et al. 2021 (Codex, arXiv 2107.03374, §2.1).

With n samples of a task of which c are correct, the probability that at least one of k samples
drawn without replacement from those n is correct is

    pass@k = 1 − C(n − c, k) / C(n, k)

(1 when n − c < k: every draw of k contains a correct sample). Computed as the product
1 − Π_{i = n−c+1}^{n} (1 − k/i), which never forms the huge binomials. A data set's pass@k is
the mean over its tasks; pass@1 is then the mean share of correct samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``n`` samples, ``c`` of them correct (module docstring)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k} with n={n} samples")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(correct_counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks given as ``(n, c)`` pairs."""
    if not correct_counts:
        raise ValueError("pass@k of an empty set of tasks")
    return fmean(pass_at_k(n, c, k) for n, c in correct_counts)
