"""Where an evaluation's model, tasks and tools come from.

A data set is either a task file (:class:`~arpo.tasks.loaders.DatasetConfig`: JSONL, Parquet, a
``datasets`` folder, with the benchmark layouts) or a split of a built ``toolworld``
environment, whose tools (bm25 ``search`` over its corpus, sandboxed ``python``) and task
families come with it. The model is a :class:`~arpo.models.loading.PolicyConfig` whose ``name``
may also be a run folder: its newest checkpoint is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arpo.models.loading import PolicyConfig
from arpo.tasks.layouts import dataset_name
from arpo.tasks.loaders import DatasetConfig, load_tasks
from arpo.tasks.record import Task
from arpo.tasks.toolworld import (
    ToolworldPaths,
    load_toolworld_records,
    load_toolworld_tasks,
    read_config,
    tool_specs,
)
from arpo.train.checkpoint import newest_model_checkpoint

ToolSpecs = list[dict[str, Any]]


class EvalDataset(BaseModel):
    """One data set: a task file (``dataset``) or a split of a built toolworld (``toolworld_dir``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Label in the summary; default: the file's or split's name.")
    dataset: DatasetConfig | None = Field(None, description="Tasks from a data set file or folder.")
    toolworld_dir: str | None = Field(None, description="A built toolworld environment (a folder).")
    split: Literal["train", "test"] = Field("test", description="The toolworld split to evaluate on.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first this many tasks.")
    system_prompt: str | None = Field(None, description="Replace the tasks' system messages with this text.")
    tools: ToolSpecs | None = Field(
        None, description="Tool specs for this data set; default: the top-level tools, or the toolworld's."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EvalDataset:
        if (self.dataset is None) == (self.toolworld_dir is None):
            raise ValueError("set exactly one of dataset and toolworld_dir")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.dataset is not None:
            return dataset_name(self.dataset.path)
        return f"{Path(self.toolworld_dir or '').name}-{self.split}"


@dataclass
class LoadedDataset:
    name: str
    tasks: list[Task]
    tool_specs: ToolSpecs
    families: dict[str, str] = field(default_factory=dict)
    """Task id → toolworld family (empty for other data sets)."""


def load_eval_dataset(config: EvalDataset, default_tools: ToolSpecs | None) -> LoadedDataset:
    """Tasks, tools and families of one data set; raises ValueError when it has no tools."""
    families: dict[str, str] = {}
    specs = config.tools or default_tools
    if config.toolworld_dir is not None:
        paths = ToolworldPaths(Path(config.toolworld_dir))
        split_file = getattr(paths, config.split)
        tasks = load_toolworld_tasks(split_file)
        families = {r.task.id: r.family for r in load_toolworld_records(split_file)}
        specs = specs or tool_specs(read_config(paths.root), paths.corpus, cache_dir=paths.root / "index")
    else:
        assert config.dataset is not None
        tasks = load_tasks(config.dataset)
    if not specs:
        raise ValueError(f"data set {config.label!r} has no tools: give `tools` (top level or per data set)")
    tasks = tasks[: config.limit]
    if config.system_prompt is not None:
        tasks = [task.with_system_prompt(config.system_prompt) for task in tasks]
    return LoadedDataset(config.label, tasks, list(specs), families)


def resolve_policy(config: PolicyConfig) -> PolicyConfig:
    """``config`` with ``name`` replaced by the newest checkpoint with intact model files (its
    trainer state not needed) when it names a run folder."""
    checkpoint = newest_model_checkpoint(config.name)
    return config if checkpoint is None else config.model_copy(update={"name": str(checkpoint)})
