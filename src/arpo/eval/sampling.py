"""Plain sampling for evaluation and analysis: k independent trajectories per task, no branching.

Evaluation reuses the rollout loop (:mod:`arpo.rollout`) with N = M = k, so a sample is produced
exactly as during training (same tool loop, budgets, token-in/token-out); only the branching is
off. Tasks go through the generator in batches of ``prompts_per_batch`` prompts, each batch
seeded with ``seed + batch index``, so results do not depend on anything but the config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console

from arpo.core.tree import RolloutTree
from arpo.engines.factory import build_generator
from arpo.engines.vllm_options import EngineName, VLLMOptions
from arpo.progress import ProgressBar
from arpo.rollout import SCHEDULING_HELP, ArpoRollout, RolloutConfig, Scheduling
from arpo.tasks.chat_tools import TOOL_FORMAT_HELP, TOOL_PARSER_HELP, ToolFormatName
from arpo.tasks.record import Task
from arpo.tools import ToolBox


class SamplingConfig(BaseModel):
    """How each task is sampled: k samples, temperature, budgets."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(1, ge=1, description="k: samples per task (pass@k needs k >= its k).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy (one sample).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_response_tokens: int = Field(
        512, ge=1, description="Budget of tokens after the prompt per sample (model + tool tokens)."
    )
    max_tool_calls: int = Field(4, ge=0, description="Tool calls per sample; later calls are refused.")
    prompts_per_batch: int = Field(32, ge=1, description="Tasks sampled together in one rollout batch.")
    seed: int = Field(0, description="Seed of the first batch (batch i uses seed + i).")
    engine: EngineName = Field("hf", description="Generator: hf (transformers) or vllm (see docs/vllm.md).")
    scheduling: Scheduling = Field("continuous", description=SCHEDULING_HELP)
    tool_format: ToolFormatName = Field("tags", description=TOOL_FORMAT_HELP)
    tool_parser: str = Field("hermes", description=TOOL_PARSER_HELP)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions, description="Options of the vllm engine.")

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> SamplingConfig:
        if self.temperature == 0 and self.samples > 1:
            raise ValueError(
                f"temperature 0 (greedy) gives {self.samples} identical samples: set samples=1 or temperature > 0"
            )
        return self

    def rollout_config(self) -> RolloutConfig:
        """The rollout's config: N = M = samples (no branching)."""
        return RolloutConfig.model_validate(
            {
                "branching": {"rollouts_per_prompt": self.samples, "initial_rollouts": self.samples},
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_response_tokens": self.max_response_tokens,
                "max_tool_calls": self.max_tool_calls,
                "engine": self.engine,
                "scheduling": self.scheduling,
                "vllm": self.vllm,
                "tool_format": self.tool_format,
                "tool_parser": self.tool_parser,
            }
        )


def sample_trees(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[Task],
    tools: ToolBox,
    config: SamplingConfig,
    *,
    label: str = "sampling",
    console: Console | None = None,
) -> list[RolloutTree]:
    """One tree of ``config.samples`` trajectories per task, in task order (progress bar on stderr)."""
    rollout_config = config.rollout_config()
    generator = build_generator(rollout_config.engine, model, tokenizer, rollout_config.vllm)
    rollout = ArpoRollout(generator, tokenizer, tools, rollout_config)
    with ProgressBar(label, len(tasks), console=console) as bar:
        return sample_with(rollout, tokenizer, tasks, config, on_batch=bar.advance)


def sample_with(
    rollout: ArpoRollout,
    tokenizer: Any,
    tasks: Sequence[Task],
    config: SamplingConfig,
    *,
    on_batch: Callable[[int], Any] | None = None,
) -> list[RolloutTree]:
    """:func:`sample_trees` with a rollout built before (e.g. the trainer's generator, for
    validation during training); ``on_batch(n)`` is called after each batch of n tasks."""
    size = config.prompts_per_batch
    trees: list[RolloutTree] = []
    for index, start in enumerate(range(0, len(tasks), size)):
        batch = tasks[start : start + size]
        prompts = [rollout.prompt_ids(task.chat()) for task in batch]
        metas = [{"task": task.id, "source": task.source} for task in batch]
        trees += rollout.run(prompts, seed=config.seed + index, metas=metas).trees
        if on_batch is not None:
            on_batch(len(batch))
    return trees
