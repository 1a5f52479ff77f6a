"""Paired comparison of two evaluations: the sign test's exact p, the discordant counts, clear errors;
several pairs pooled: mean and spread of A − B, the sign test on the summed discordant tasks."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from arpo.cli import app
from arpo.eval.paired import compare_evaluations, pool_comparisons, read_eval_records, sign_test_p


def _records(dataset: str, outcomes: list[list[bool]], calls: int = 1) -> list[dict]:
    return [
        {"dataset": dataset, "task_id": str(t), "sample": s, "correct": ok, "tool_calls": [{}] * calls}
        for t, samples in enumerate(outcomes)
        for s, ok in enumerate(samples)
    ]


def _write(path, records) -> None:
    path.mkdir(parents=True)
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),  # every discordant task goes one way: 2 · (1/2)^5
        (1, 5, 2 * (1 + 6) / 64),
        (23, 23, 1.0),
        (155, 0, 2 / 2**155),
    ],
)
def test_sign_test_p_is_the_exact_binomial_tail(wins, losses, p):
    assert sign_test_p(wins, losses) == pytest.approx(p, rel=1e-12)
    assert sign_test_p(losses, wins) == pytest.approx(p, rel=1e-12)


def test_sign_test_p_against_a_brute_force_sum_over_outcomes():
    n = 12
    for wins in range(n + 1):
        observed = math.comb(n, wins)
        brute = sum(math.comb(n, i) for i in range(n + 1) if math.comb(n, i) <= observed) / 2**n
        assert sign_test_p(wins, n - wins) == pytest.approx(brute, rel=1e-12)


def test_greedy_evaluations_give_mcnemars_table():
    a = _records("gsm8k", [[True], [True], [False], [False], [True]])
    b = _records("gsm8k", [[True], [False], [True], [False], [False]], calls=0)
    (row,), only_one = compare_evaluations(a, b)
    assert only_one == []
    assert (row.tasks, row.a, row.b, row.a_only, row.b_only) == (5, 0.6, 0.4, 2, 1)
    assert row.p == 1.0  # n = 3: min(1, 2·(C(3,0) + C(3,1))/2³)
    assert (row.tool_use_a, row.tool_use_b) == (1.0, 0.0)


def test_several_samples_compare_the_per_task_shares():
    a = _records("d", [[True, True], [True, False], [False, False]])
    b = _records("d", [[True, False], [True, False], [True, False]])
    (row,), _ = compare_evaluations(a, b)
    assert (row.a, row.b) == (0.5, 0.5)
    assert (row.a_only, row.b_only) == (1, 1)  # task 0: 1 > ½; task 2: 0 < ½; task 1 tied


def test_different_tasks_are_refused_and_a_lone_data_set_is_named():
    a = _records("x", [[True], [False]]) + _records("only-a", [[True]])
    b = _records("x", [[True], [False], [True]])
    with pytest.raises(ValueError, match="'x': the evaluations have different tasks"):
        compare_evaluations(a, b)
    rows, only_one = compare_evaluations(a, _records("x", [[False], [False]]))
    assert [r.dataset for r in rows] == ["x"] and only_one == ["only-a"]


def test_the_command_prints_the_table_and_names_a_bad_row(tmp_path):
    _write(tmp_path / "sft", _records("gsm8k", [[False]] * 6))
    _write(tmp_path / "arpo", _records("gsm8k", [[True]] * 5 + [[False]]))
    result = CliRunner().invoke(app, ["compare-evals", str(tmp_path / "arpo"), str(tmp_path / "sft")])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("| gsm8k"))
    assert row.split(" | ")[1:7] == ["6", "83.3 %", "0.0 %", "5", "0", "0.062"]

    bad = tmp_path / "bad" / "records.jsonl"
    bad.parent.mkdir()
    bad.write_text(
        json.dumps(_records("gsm8k", [[True]])[0]) + "\n" + json.dumps({"dataset": "gsm8k"}) + "\n"
    )
    with pytest.raises(ValueError, match=r"records.jsonl: row 2: field 'task_id': not an evaluation record"):
        read_eval_records(bad.parent)
    result = CliRunner().invoke(app, ["compare-evals", str(tmp_path / "arpo"), str(tmp_path / "none")])
    assert result.exit_code != 0 and "no evaluation records" in " ".join(result.output.split())


def test_pairs_pool_into_mean_spread_and_the_sign_test_on_summed_discordant_tasks():
    seed0 = compare_evaluations(  # 0.6 against 0.4: A only 2, B only 1
        _records("x", [[True], [True], [False], [False], [True]]) + _records("lone", [[True]]),
        _records("x", [[True], [False], [True], [False], [False]]) + _records("lone", [[False]]),
    )[0]
    seed1 = compare_evaluations(  # 1.0 against 0.2: A only 4, B only 0
        _records("x", [[True]] * 5), _records("x", [[True], [False], [False], [False], [False]])
    )[0]
    (row,), not_pooled = pool_comparisons([seed0, seed1])
    assert not_pooled == ["lone"]
    assert (row.dataset, row.pairs, row.tasks, row.a_only, row.b_only) == ("x", 2, 10, 6, 1)
    assert (row.a, row.b) == pytest.approx((0.8, 0.3))
    assert (row.diff_min, row.diff_max) == pytest.approx((0.2, 0.8))
    assert row.diff_sd == pytest.approx(math.sqrt(2 * 0.3**2))  # differences 0.2 and 0.8, mean 0.5
    assert row.p == pytest.approx(2 * (1 + 7) / 2**7)  # n = 7, min(6, 1) = 1
    with pytest.raises(ValueError, match="at least two pairs"):
        pool_comparisons([seed0])


def test_the_command_pools_several_pairs_and_refuses_an_odd_count(tmp_path):
    for seed, (sft, arpo) in enumerate([(1, 3), (2, 2), (0, 4)]):
        _write(tmp_path / f"s{seed}" / "sft", _records("gsm8k", [[True]] * sft + [[False]] * (4 - sft)))
        _write(tmp_path / f"s{seed}" / "arpo", _records("gsm8k", [[True]] * arpo + [[False]] * (4 - arpo)))
    args = [str(tmp_path / f"s{seed}" / arm) for seed in range(3) for arm in ("arpo", "sft")]
    result = CliRunner().invoke(app, ["compare-evals", *args])
    assert result.exit_code == 0, result.output
    assert "## Pooled over 3 pairs" in result.output
    row = next(line for line in result.output.splitlines()[::-1] if line.startswith("| gsm8k"))
    # A − B per pair: +50, 0, +100 points; A only 2 + 0 + 4 = 6, B only 0: p = 2/2⁶
    assert row.strip("| ").split(" | ")[1:] == [
        "3", "12", "75.0 %", "25.0 %", "+50.0 ± 50.0 (+0.0 to +100.0) points", "6", "0", "0.031",
    ]  # fmt: skip
    result = CliRunner().invoke(app, ["compare-evals", *args[:3]])
    assert result.exit_code != 0 and "pairs A B, got 3 evaluations" in result.output
