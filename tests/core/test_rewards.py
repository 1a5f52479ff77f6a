"""The hierarchical reward: format gate, correctness per answer type, multi-tool bonus, hooks."""

from __future__ import annotations

import textwrap
from enum import Enum
from pathlib import Path

import pytest
from pydantic import ValidationError

from arpo.core.rewards import HierarchicalReward, RewardConfig, RewardInput, RewardResult, make_reward_fn

REWARD = HierarchicalReward()


def respond(answer: str, tools: tuple[str, ...] = ()) -> str:
    calls = "".join(f"<{tag}>call</{tag}><result>out</result>" for tag in tools)
    return f"<think>reasoning</think>{calls}<answer>{answer}</answer>"


def score(answer: str, truths: list[str], answer_type: str, tools: tuple[str, ...] = ()) -> RewardResult:
    return REWARD(RewardInput(respond(answer, tools), tools, truths, answer_type))  # type: ignore[arg-type]


def test_correct_math_with_two_tools_earns_the_bonus() -> None:
    result = score("\\boxed{\\frac12}", ["0.5"], "math", ("search", "python"))
    assert result == RewardResult(
        total=pytest.approx(1.1),
        format_ok=True,
        format_error=None,
        correctness=1.0,
        bonus=0.1,
        answer="\\frac12",
    )


def test_bonus_needs_two_different_tools() -> None:
    result = score("\\boxed{45}", ["45"], "number", ("python", "python"))
    assert (result.total, result.bonus) == (1.0, 0.0)
    assert score("\\boxed{045}", ["45"], "number", ("search",)).total == 1.0


def test_bonus_needs_a_correct_answer() -> None:
    result = score("\\boxed{44}", ["45"], "number", ("search", "python"))
    assert (result.total, result.correctness, result.bonus) == (0.0, 0.0, 0.0)
    assert result.format_ok and result.answer == "44"


def test_format_violation_gives_the_configured_penalty() -> None:
    bad = RewardInput("<answer>45</answer>", (), ["45"], "number")
    result = REWARD(bad)
    assert (result.total, result.format_ok, result.format_error) == (-1.0, False, "no <think> block")
    assert (result.correctness, result.bonus, result.answer) == (0.0, 0.0, None)
    assert HierarchicalReward(RewardConfig(format_violation_reward=-0.5))(bad).total == -0.5
    truncated = RewardInput(respond("45"), (), ["45"], "number", finish_reason="length")
    assert REWARD(truncated).format_error == "finish reason 'length' (truncated response)"


def test_qa_uses_max_f1_over_aliases() -> None:
    # vs "New York": P = 2/3, R = 1 → F1 = 0.8; vs "NYC": 0; vs "Big Apple": 0
    result = score("New York City", ["NYC", "New York", "Big Apple"], "qa")
    assert result.correctness == pytest.approx(0.8)
    assert result.total == pytest.approx(0.8)
    with_tools = score("New York City", ["NYC", "New York"], "qa", ("search", "python"))
    assert with_tools.total == pytest.approx(0.9)


def test_bonus_threshold_on_partial_credit() -> None:
    config = RewardConfig.model_validate({"multi_tool_bonus": {"min_correctness": 0.99, "value": 0.3}})
    reward = HierarchicalReward(config)
    partial = RewardInput(
        respond("New York City", ("search", "python")), ("search", "python"), ["New York"], "qa"
    )
    exact = RewardInput(respond("New York", ("search", "python")), ("search", "python"), ["New York"], "qa")
    assert reward(partial).bonus == 0.0
    assert reward(exact).total == pytest.approx(1.3)


def test_exact_answer_type() -> None:
    assert score("Paris.", ["paris"], "exact").correctness == 1.0
    assert score("Paris France", ["paris"], "exact").correctness == 0.0


def test_boxed_ground_truth_is_compared_by_its_content() -> None:
    assert score("\\boxed{C}", ["The final answer is \\( \\boxed{C} \\)"], "exact").correctness == 1.0
    assert score("\\boxed{C}", ["The final answer is \\( \\boxed{C} \\)"], "math").correctness == 1.0


def test_metric_override_by_name_and_import_path() -> None:
    by_name = HierarchicalReward(RewardConfig(metrics={"qa": "exact_match"}))
    by_path = HierarchicalReward(RewardConfig(metrics={"qa": "arpo.core.qa_metrics:exact_match"}))
    sample = RewardInput(respond("New York City"), (), ["New York"], "qa")
    assert by_name(sample).correctness == 0.0
    assert by_path(sample).correctness == 0.0
    assert by_name.config.metrics["math"] == "math_equal"  # unspecified types keep their defaults


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("nonsense", "unknown metric 'nonsense'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("arpo.core.qa_metrics:missing", "has no attribute 'missing'"),
        ("arpo.core.qa_metrics:", "must look like 'package.module:attribute'"),
    ],
)
def test_bad_metric_names_fail_at_construction(metric: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HierarchicalReward(RewardConfig(metrics={"qa": metric}))


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "reward_hooks_for_tests.py").write_text(
        textwrap.dedent(
            """
            def length_reward(sample):
                return len(sample.response) / 100

            def wrong_type(sample):
                return "high"

            def overconfident(prediction, gold):
                return 2.0
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "reward_hooks_for_tests"


def test_custom_reward_function_replaces_the_whole_reward(hooks: str) -> None:
    reward = make_reward_fn(RewardConfig(function=f"{hooks}:length_reward"))
    result = reward(RewardInput("x" * 50, (), ["1"], "math"))
    assert (result.total, result.correctness, result.format_ok) == (0.5, 0.5, True)
    with pytest.raises(TypeError, match="returned str"):
        make_reward_fn(RewardConfig(function=f"{hooks}:wrong_type"))(RewardInput("x", (), ["1"], "math"))


def test_metric_outside_unit_interval_is_an_error(hooks: str) -> None:
    reward = HierarchicalReward(RewardConfig(metrics={"qa": f"{hooks}:overconfident"}))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        reward(RewardInput(respond("a"), (), ["a"], "qa"))


def test_make_reward_fn_defaults_to_the_hierarchical_reward() -> None:
    assert make_reward_fn()(RewardInput(respond("\\boxed{2}"), (), ["2"], "math")).total == 1.0


def test_finish_reason_enum_is_normalised() -> None:
    class Finish(str, Enum):
        LENGTH = "length"

    sample = RewardInput(respond("2"), (), ["2"], "math", finish_reason=Finish.LENGTH)
    assert sample.finish_reason == "length"
    assert REWARD(sample).format_error == "finish reason 'length' (truncated response)"


def test_invalid_inputs_and_config() -> None:
    with pytest.raises(ValueError, match="at least one answer"):
        RewardInput(respond("2"), (), [], "math")
    with pytest.raises(ValidationError):
        RewardConfig.model_validate({"metrics": {"code": "exact_match"}})
    with pytest.raises(ValidationError, match="extra"):
        RewardConfig.model_validate({"bonus": 0.2})
