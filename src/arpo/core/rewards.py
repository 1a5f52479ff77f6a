"""ARPO's hierarchical reward: format gate, answer correctness, multi-tool bonus.

arXiv 2507.19849 §3.3 (reward design taken from Tool-Star), ARPO_REFERENCE.md §3. For one
finished trajectory with extracted answer a, ground-truth aliases g_1..g_n and metric m chosen
by the task's answer type:

    R = r_format                 if the format gate fails (default r_format = −1)
    R = C + r_M                  otherwise, with C = max_i m(a, g_i) ∈ [0, 1]
    r_M = bonus (0.1)            if C > min_correctness (0) and ≥ min_distinct_tools (2)
                                 different tools were called; else 0

Default metric per answer type: ``math`` and ``number`` → symbolic/numeric equivalence
(:func:`arpo.core.math_equivalence.math_equal`), ``qa`` → token F1 and ``exact`` → exact match
(:mod:`arpo.core.qa_metrics`). Any of them can be replaced by an import path
``"package.module:function"`` to a function ``(prediction: str, gold: str) -> float`` in [0, 1].
``RewardConfig.function`` replaces the whole reward by ``(RewardInput) -> RewardResult | float``.

A ground truth written as ``…\\boxed{X}…`` (a few ARPO training rows) is compared as ``X``. The
format gate and answer extraction live in :mod:`arpo.core.answer_format`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arpo.core.answer_format import FormatSpec, check_format, last_boxed
from arpo.core.import_path import builtin_or_import, import_object
from arpo.core.math_equivalence import math_equal
from arpo.core.qa_metrics import exact_match, token_f1

AnswerType = Literal["math", "number", "qa", "exact"]
"""How a task's answer is compared: selects the correctness metric through ``RewardConfig.metrics``."""
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)

Metric = Callable[[str, str], float]
BUILTIN_METRICS: dict[str, Metric] = {
    "math_equal": math_equal,
    "token_f1": token_f1,
    "exact_match": exact_match,
}
DEFAULT_METRICS: dict[str, str] = {
    "math": "math_equal",
    "number": "math_equal",
    "qa": "token_f1",
    "exact": "exact_match",
}


@dataclass(frozen=True)
class RewardInput:
    """What the reward sees of one finished trajectory.

    ``response`` is everything after the prompt (model text with tool results inserted as
    ``<result>…</result>``); ``tool_calls`` the tags of the tools called, in order;
    ``finish_reason`` why the trajectory ended (a string or a str-valued enum such as
    :class:`arpo.core.tree.FinishReason`: ``answer``, ``eos`` or ``length``).
    """

    response: str
    tool_calls: Sequence[str]
    ground_truths: Sequence[str]
    answer_type: AnswerType
    finish_reason: str = "answer"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "finish_reason", str(getattr(self.finish_reason, "value", self.finish_reason))
        )
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        object.__setattr__(self, "ground_truths", tuple(self.ground_truths))
        if not self.ground_truths:
            raise ValueError("RewardInput.ground_truths must hold at least one answer")


@dataclass(frozen=True)
class RewardResult:
    """The reward and its parts, so metrics can count format failures, accuracy and bonuses."""

    total: float
    format_ok: bool
    format_error: str | None
    correctness: float
    bonus: float
    answer: str | None


RewardFn = Callable[[RewardInput], RewardResult]


class MultiToolBonus(BaseModel):
    """r_M of the hierarchical reward: a bonus for correct answers reached with several tools."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(0.1, description="Bonus added to a correct answer (paper §3.3: 0.1; 0 disables).")
    min_distinct_tools: int = Field(2, ge=1, description="Different tool tags that must have been called.")
    min_correctness: float = Field(
        0.0, ge=0.0, le=1.0, description="The bonus requires correctness above this (reference: F1 > 0)."
    )


class RewardConfig(BaseModel):
    """Configuration of the hierarchical reward (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    format: FormatSpec = Field(default_factory=FormatSpec, description="The protocol the format gate checks.")
    format_violation_reward: float = Field(
        -1.0, description="Reward of a response that fails the format gate."
    )
    metrics: dict[AnswerType, str] = Field(
        default_factory=lambda: dict(DEFAULT_METRICS),
        description="Metric per answer type: a built-in name (math_equal, token_f1, exact_match) or "
        "'package.module:function' taking (prediction, gold) -> float in [0, 1]. Given keys override "
        "the defaults.",
    )
    multi_tool_bonus: MultiToolBonus = Field(default_factory=MultiToolBonus, description="The r_M term.")
    function: str | None = Field(
        None,
        description="'package.module:function' taking a RewardInput and returning a RewardResult or a "
        "float; replaces the whole hierarchical reward.",
    )

    @field_validator("metrics")
    @classmethod
    def _merge_default_metrics(cls, metrics: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_METRICS, **metrics}


def resolve_metric(name: str) -> Metric:
    """A built-in metric by name, or a function given as ``"package.module:function"``."""
    return builtin_or_import(name, BUILTIN_METRICS, "metric")


class HierarchicalReward:
    """The reward R = format gate, then correctness + multi-tool bonus (module docstring)."""

    def __init__(self, config: RewardConfig | None = None) -> None:
        self.config = config or RewardConfig()
        self._metrics = {
            answer_type: resolve_metric(name) for answer_type, name in self.config.metrics.items()
        }

    def __call__(self, sample: RewardInput) -> RewardResult:
        config = self.config
        check = check_format(sample.response, config.format, sample.finish_reason)
        if check.answer is None:
            return RewardResult(
                total=config.format_violation_reward,
                format_ok=False,
                format_error=check.error,
                correctness=0.0,
                bonus=0.0,
                answer=None,
            )
        correctness = self.correctness(check.answer, sample.ground_truths, sample.answer_type)
        bonus_config = config.multi_tool_bonus
        earns_bonus = (
            correctness > bonus_config.min_correctness
            and len(set(sample.tool_calls)) >= bonus_config.min_distinct_tools
        )
        bonus = bonus_config.value if earns_bonus else 0.0
        return RewardResult(
            total=correctness + bonus,
            format_ok=True,
            format_error=None,
            correctness=correctness,
            bonus=bonus,
            answer=check.answer,
        )

    def correctness(self, answer: str, ground_truths: Sequence[str], answer_type: str) -> float:
        """C = max over aliases of the answer type's metric, each value checked to lie in [0, 1]."""
        if answer_type not in self._metrics:
            raise ValueError(
                f"no metric for answer type {answer_type!r}; known types: {sorted(self._metrics)}"
            )
        metric = self._metrics[answer_type]
        scores = [float(metric(answer, last_boxed(gold) or gold)) for gold in ground_truths]
        if not all(0.0 <= score <= 1.0 for score in scores):
            raise ValueError(f"metric {self.config.metrics[answer_type]!r} returned {scores}, outside [0, 1]")
        return max(scores)


def make_reward_fn(config: RewardConfig | None = None) -> RewardFn:
    """The reward function a trainer calls per finished trajectory: the hierarchical reward, or
    ``config.function`` when set (a float it returns becomes ``total`` and ``correctness``)."""
    config = config or RewardConfig()
    if config.function is None:
        return HierarchicalReward(config)
    custom = import_object(config.function)
    if not callable(custom):
        raise ValueError(f"reward function {config.function!r} is not callable")

    def custom_reward(sample: RewardInput) -> RewardResult:
        value = custom(sample)
        if isinstance(value, RewardResult):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            score = float(value)
            return RewardResult(
                total=score, format_ok=True, format_error=None, correctness=score, bonus=0.0, answer=None
            )
        raise TypeError(
            f"reward function {config.function!r} returned {type(value).__name__}, "
            "expected RewardResult or float"
        )

    return custom_reward
