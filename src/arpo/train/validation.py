"""Validation during RL training: the policy sampled on fixed task sets every few steps.

The per-step training accuracy (``reward/accuracy*``) is measured on that step's prompts, which
change every step: how hard they happen to be moves it as much as learning does (docs/demo.md).
Validation samples the *same* tasks with the *same* seeds at step 0 (the starting policy), every
``every`` steps and after the last step, so the curve it draws moves with the policy only.

Each data set is an :class:`~arpo.eval.sources.EvalDataset`, as in ``arpo eval``: a held-out
split or file, or a fixed subset of the training tasks (``split: train`` with ``limit``) to follow
the sampled training accuracy without prompt noise. Sampling goes through the trainer's own
generator and the rollout's own settings (the same weights, engine, tool format, tags and tool
loop; no branching) with ``sampling``'s samples, temperature, top-p and budgets (default:
greedy, one sample, the rollout's budgets), and every sample is scored as ``arpo eval`` scores
it (:mod:`arpo.eval.records`). On one process the numbers equal an ``arpo eval`` of the
checkpoint with the same settings (tested). The engine is left awake: the trainer puts it to
sleep after its own rollout, before the update, as without validation. Logged per data set ``name``:

* ``val/<name>/accuracy``: mean correctness C of the samples (``score`` in ``arpo eval``);
* ``val/<name>/format_ok``: share of samples that pass the format gate;
* ``val/<name>/tool_calls``: tool calls per sample (refused calls excluded);
* ``val/<name>/response_tokens``: tokens after the prompt per sample;

and ``time/validation_s``, kept out of ``time/step_s`` and the run's wall-time budget. With
several processes, each samples every ``world``-th task with its own seed and the sums are
all-reduced, so the numbers cover every task; with T > 0 the samples, and so the numbers,
depend on the number of processes (greedy validation does not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arpo.core.rewards import RewardFn
from arpo.engines.base import Generator
from arpo.eval.records import score_trajectory
from arpo.eval.sampling import SamplingConfig, sample_with
from arpo.eval.sources import EvalDataset, LoadedDataset
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tools import ToolBox, ToolStatus

SEED_STRIDE = 100_003
"""Process ``rank`` samples with ``sampling.seed + rank * SEED_STRIDE``."""


class ValidationConfig(BaseModel):
    """Sample fixed task sets during RL training (module docstring of :mod:`arpo.train.validation`)."""

    model_config = ConfigDict(extra="forbid")

    every: int = Field(
        0, ge=0, description="Validate at step 0, every this many steps and after the last step; 0 = never."
    )
    datasets: list[EvalDataset] = Field(
        default_factory=list,
        description="Data sets as in arpo eval's datasets (e.g. {toolworld_dir: ..., split: train, limit: 200}); "
        "tools: the data set's own, else the run's.",
    )
    sampling: SamplingConfig | None = Field(
        None,
        description="How each task is sampled: samples, temperature, top_p, budgets, prompts_per_batch, seed; null = "
        "greedy, one sample, with the rollout's budgets. Everything else (engine, tool format and parser, tags, "
        "result template) is the rollout's; an engine or tool format set here must equal it.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> ValidationConfig:
        if self.every > 0 and not self.datasets:
            raise ValueError("validation.every > 0 needs validation.datasets (the tasks to validate on)")
        if self.datasets and self.every == 0:
            raise ValueError(
                "validation.datasets are given but validation.every is 0: set how often to validate"
            )
        return self

    def enabled(self) -> bool:
        return self.every > 0

    def resolved_sampling(self, rollout: RolloutConfig) -> SamplingConfig:
        """``sampling``, or greedy with the rollout's budgets; raises ValueError on another engine or
        tool format."""
        if self.sampling is None:
            return SamplingConfig(
                max_response_tokens=rollout.max_response_tokens,
                max_tool_calls=rollout.max_tool_calls,
                engine=rollout.engine,
                scheduling=rollout.scheduling,
                tool_format=rollout.tool_format,
            )
        if self.sampling.engine != rollout.engine:
            raise ValueError(
                f"validation.sampling.engine is {self.sampling.engine!r} but the rollout's is {rollout.engine!r}: "
                "validation samples with the trainer's generator, so they must be the same"
            )
        if self.sampling.tool_format != rollout.tool_format:
            raise ValueError(
                f"validation.sampling.tool_format is {self.sampling.tool_format!r} but the rollout's is "
                f"{rollout.tool_format!r}: the policy is validated in the format it is trained in"
            )
        return self.sampling

    def rollout_config(self, rollout: RolloutConfig) -> RolloutConfig:
        """The training rollout's config (engine, tool format and parser, tags, result template)
        with the validation's sampling: N = M = samples, temperature, top_p and budgets."""
        sampling = self.resolved_sampling(rollout)
        return rollout.model_copy(
            update={
                "branching": sampling.rollout_config().branching,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_response_tokens": sampling.max_response_tokens,
                "max_tool_calls": sampling.max_tool_calls,
            }
        )


@dataclass
class ValidationSet:
    data: LoadedDataset
    tools: ToolBox


class Validator:
    """Samples and scores the validation sets with the trainer's generator (module docstring)."""

    def __init__(
        self,
        every: int,
        sets: list[ValidationSet],
        sampling: SamplingConfig,
        rollout: RolloutConfig,
        tokenizer: Any,
        reward_fn: RewardFn,
    ) -> None:
        names = [s.data.name for s in sets]
        if empty := [s.data.name for s in sets if not s.data.tasks]:
            raise ValueError(f"validation data set(s) {empty} hold no tasks")
        if len(set(names)) != len(names):
            raise ValueError(f"validation data set names must differ (got {names}): set datasets[i].name")
        self.every = every
        self.sets = sets
        self.sampling = sampling
        self.rollout = rollout
        """The rollout config validation samples with (:meth:`ValidationConfig.rollout_config`)."""
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn

    def due(self, step: int, last_step: int) -> bool:
        """Whether to validate after ``step`` (0: before training)."""
        return step == 0 or step == last_step or step % self.every == 0

    def run(
        self,
        generator: Generator,
        shard: Callable[[list[Any]], list[Any]],
        all_sum: Callable[..., tuple[float, ...]],
        rank: int,
    ) -> dict[str, float]:
        """The ``val/*`` metrics of the generator's current weights over every process's share."""
        started = time.perf_counter()
        sampling = self.sampling.model_copy(update={"seed": self.sampling.seed + rank * SEED_STRIDE})
        metrics: dict[str, float] = {}
        for vset in self.sets:
            tasks = shard(vset.data.tasks)
            rollout = ArpoRollout(generator, self.tokenizer, vset.tools, self.rollout)
            sums = [0.0] * 5
            for task, tree in zip(tasks, sample_with(rollout, self.tokenizer, tasks, sampling), strict=True):
                for trajectory in tree.trajectories():
                    _, result = score_trajectory(task, trajectory, self.tokenizer, self.reward_fn)
                    calls = sum(c.status != ToolStatus.LIMIT.value for c in trajectory.tool_calls)
                    for i, value in enumerate(
                        (result.correctness, float(result.format_ok), calls, trajectory.response_length, 1)
                    ):
                        sums[i] += value
            score, format_ok, calls, tokens, count = all_sum(*sums)
            prefix = f"val/{vset.data.name}"
            metrics.update(
                {
                    f"{prefix}/accuracy": score / count,
                    f"{prefix}/format_ok": format_ok / count,
                    f"{prefix}/tool_calls": calls / count,
                    f"{prefix}/response_tokens": tokens / count,
                }
            )
        metrics["time/validation_s"] = time.perf_counter() - started
        return metrics
