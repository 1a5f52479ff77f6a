"""The run's cumulative budgets: counts summed over processes, clock time averaged, restorable."""

from __future__ import annotations

from arpo.train.budget import BUDGETS, RunBudget


def two_processes(*values: float) -> tuple[float, ...]:
    """The all-reduce sum of two processes that reported the same values."""
    return tuple(2 * v for v in values)


def test_counts_are_summed_over_processes_and_wall_time_averaged():
    budget = RunBudget()
    step = {"rollout/tool_calls_executed": 3.0, "train/tokens_forwarded": None, "time/step_s": 1.5}
    budget.add(step, two_processes, world=2)
    totals = budget.add(step, two_processes, world=2)
    assert totals["budget/tool_calls_total"] == 2 * 2 * 3.0
    assert totals["time/wall_s_total"] == 2 * 1.5
    assert totals["budget/learner_tokens_total"] == totals["budget/engine_tokens_total"] == 0.0  # not logged


def test_state_round_trip_and_an_older_checkpoint_starts_missing_totals_at_zero():
    budget = RunBudget()
    budget.add({"rollout/engine_tokens": 7.0, "time/step_s": 2.0}, lambda *v: v, world=1)
    restored = RunBudget()
    restored.load_state_dict(budget.state_dict())
    assert restored.totals == budget.totals and set(restored.totals) == set(BUDGETS)
    older = RunBudget()
    older.load_state_dict({"budget/engine_tokens_total": 7.0})
    assert older.totals["budget/engine_tokens_total"] == 7.0 and older.totals["time/wall_s_total"] == 0.0
