"""Cumulative budgets of an RL run: what it has spent so far, to compare runs at equal cost.

ARPO's claim (arXiv 2507.19849) is about cost: branches share their prefix, so its tool
calls and tokens are paid once. Each step's spend is logged by the trainer; this module keeps
the running totals. The total after step t of a quantity q is

    q_total(t) = Σ_{s ≤ t} Σ_{processes p} q(s, p)

— the whole run's spend, every process included (the per-step ``rollout/*`` and ``train/*``
metrics are per process, averaged over processes). Clock time is the exception: it passes in
every process at once, so ``time/wall_s_total`` is Σ over steps of the processes' mean step time.

| total | per-step metric it sums |
| --- | --- |
| ``budget/tool_calls_total`` | ``rollout/tool_calls_executed``: calls the tools ran, each shared call once |
| ``budget/tool_calls_flat_total`` | ``rollout/tool_calls_flat``: calls counted once per trajectory |
| ``budget/engine_tokens_total`` | ``rollout/engine_tokens``: prefill + decode tokens the generator computed |
| ``budget/tokens_flat_total`` | ``rollout/tokens_flat``: tokens of the trajectories laid out one by one |
| ``budget/learner_tokens_total`` | ``train/tokens_forwarded``: tokens of one learner pass over the kept trees |
| ``time/wall_s_total`` | ``time/step_s``: rollout, scoring and update (not checkpoint writes) |

Counts live under ``budget/``; the wall time stays under ``time/`` with the other clock readings,
which comparisons of runs that must be identical leave out. The totals are part of the trainer's
checkpoint state, so a resumed run continues them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

BUDGETS: dict[str, str] = {
    "budget/tool_calls_total": "rollout/tool_calls_executed",
    "budget/tool_calls_flat_total": "rollout/tool_calls_flat",
    "budget/engine_tokens_total": "rollout/engine_tokens",
    "budget/tokens_flat_total": "rollout/tokens_flat",
    "budget/learner_tokens_total": "train/tokens_forwarded",
    "time/wall_s_total": "time/step_s",
}
"""Cumulative metric → the per-step metric it sums (module docstring)."""
CLOCKS = frozenset({"time/wall_s_total"})
"""Totals averaged over processes instead of summed."""


class RunBudget:
    """The running totals of :data:`BUDGETS`."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = dict.fromkeys(BUDGETS, 0.0)

    def add(
        self, step: Mapping[str, Any], all_sum: Callable[..., tuple[float, ...]], world: int
    ) -> dict[str, float]:
        """Add one step's metrics of this process (a missing metric counts 0), summed over the
        processes with ``all_sum`` (a collective: every process calls it); returns the new totals."""
        sums = all_sum(*(float(step.get(source) or 0.0) for source in BUDGETS.values()))
        for total, value in zip(BUDGETS, sums, strict=True):
            self.totals[total] += value / world if total in CLOCKS else value
        return dict(self.totals)

    def state_dict(self) -> dict[str, float]:
        return dict(self.totals)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        """Restore the totals; one missing from ``state`` (a checkpoint older than it) restarts at 0."""
        self.totals = {total: float(state.get(total, 0.0)) for total in BUDGETS}
