"""``arpo sft`` and ``arpo train``: a YAML config (+ dotted overrides) → a run folder.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/step-*/`` (see :mod:`arpo.train.checkpoint`) and, once the job ends, ``report.md`` /
``report.html`` with plots (:mod:`arpo.report.run_report`). A run whose folder already has
checkpoints must be continued with ``--resume`` (or given a new ``run_dir``): nothing is
overwritten silently.

Where the data comes from (``data``), at most one of (none: ``toolworld`` with its defaults):

* ``toolworld``: the built-in environment, generated from its config into ``<run_dir>/env`` (or
  reused when already there with the same config); its train tasks, demonstrations, tokenizer
  and tools (``search`` over its corpus, ``python``) become the run's defaults;
* ``toolworld_dir``: an environment built before (``arpo toolworld build``);
* ``dataset``: tasks from a JSONL/Parquet/Hugging Face data set (RL only); ``tools`` must then
  be given;
* ``demonstrations``: demonstrations from a JSONL/Parquet/Hugging Face data set in one of the
  layouts of :mod:`arpo.tasks.demonstrations` (SFT only; docs/sft.md).

``system_prompt`` replaces the system messages of the tasks and of the demonstrations.

``validation`` (RL only; :mod:`arpo.train.validation`) names data sets as ``arpo eval`` does —
a held-out split or file, or a fixed subset of the training tasks — that the trainer samples at
step 0, every ``validation.every`` steps and at the end; their tools default to the run's, and
their system prompt to ``data.system_prompt``.

``model.name`` may name a previous run's folder: its newest checkpoint with intact model files
is used (e.g. RL starting from the SFT run; its trainer state is not needed, so it may have been
deleted: :func:`arpo.train.checkpoint.newest_model_checkpoint`). ``--resume`` picks the run's newest intact checkpoint once
(:func:`arpo.train.checkpoint.newest_intact_checkpoint`: a damaged newer one is skipped with a
warning) and loads both the weights and the trainer state from it.

With several processes (``accelerate launch``), the main process prepares the environment first
and the others then reuse it; ``run_dir`` must be on a file system that every process sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console

from arpo.core.rewards import RewardConfig, make_reward_fn
from arpo.core.tool_parsers import get_parser
from arpo.eval.sources import load_eval_dataset
from arpo.io import atomic_write_text
from arpo.models.loading import PolicyConfig, load_policy
from arpo.report.run_report import write_run_report
from arpo.tasks.chat_tools import TOOL_FORMAT_HELP, TOOL_PARSER_HELP, ChatToolFormat, ToolFormatName
from arpo.tasks.demonstrations import (
    Conversation,
    DemonstrationsConfig,
    ResponseProtocol,
    conversation_example,
    load_demonstrations,
)
from arpo.tasks.loaders import DatasetConfig, load_tasks
from arpo.tasks.record import Task
from arpo.tasks.toolworld import (
    ToolworldConfig,
    ToolworldPaths,
    build_toolworld,
    load_demos,
    load_toolworld_tasks,
    read_config,
    tool_specs,
)
from arpo.tools import ToolBox
from arpo.tools.registry import build_toolbox
from arpo.train.batching import LearnerRow
from arpo.train.checkpoint import latest_checkpoint, newest_intact_checkpoint, newest_model_checkpoint
from arpo.train.loop import process_state
from arpo.train.rl import RLConfig, RLTrainer
from arpo.train.sft import SFTConfig, SFTTrainer
from arpo.train.validation import ValidationConfig, ValidationSet, Validator


class DataConfig(BaseModel):
    """Where tasks (and demonstrations) come from: at most one source; none means the built-in
    environment with its default config."""

    model_config = ConfigDict(extra="forbid")

    toolworld: ToolworldConfig | None = Field(
        None, description="Build the built-in environment into <run_dir>/env."
    )
    toolworld_dir: str | None = Field(None, description="Use an environment built before (a folder).")
    dataset: DatasetConfig | None = Field(None, description="Tasks from a data set file or folder (RL only).")
    demonstrations: DemonstrationsConfig | None = Field(
        None,
        description="Demonstrations from a data set file or folder: OpenAI messages, ShareGPT conversations, "
        "arpo eval records or demonstration rows (SFT only; docs/sft.md).",
    )
    system_prompt: str | None = Field(
        None,
        description="Replace the system messages of the tasks (RL) or demonstrations (SFT) with this text.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = ("toolworld", "toolworld_dir", "dataset", "demonstrations")
        given = [n for n in sources if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"set at most one of {', '.join('data.' + n for n in sources)} (got {given})")
        return self


class ToolboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_workers: int = Field(8, ge=1, description="Tool calls running at once.")
    timeout_s: float = Field(30.0, gt=0, description="Wall-clock limit per call.")
    max_result_chars: int = Field(2000, gt=20, description="Tool results are cut to this many characters.")
    max_result_tokens: int | None = Field(
        None, ge=1, description="Tool results are also cut to this many tokens of the policy's tokenizer."
    )

    def build(self, specs: list[dict[str, Any]], tokenizer: Any) -> ToolBox:
        """The tool box of ``specs`` with these limits (``tokenizer`` counts result tokens)."""
        count = {"count_tokens": tokenizer} if self.max_result_tokens else {}
        return build_toolbox(specs, **self.model_dump(), **count)


class JobConfig(BaseModel):
    """What SFT and RL runs share."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = Field("runs/arpo", description="Folder of the run (config, metrics, checkpoints).")
    model: PolicyConfig = Field(default_factory=PolicyConfig, description="The policy to train.")
    data: DataConfig = Field(
        default_factory=DataConfig,
        description="Tasks and demonstrations (default: toolworld with its defaults).",
    )


class SFTJobConfig(JobConfig):
    """Cold-start SFT on demonstrations in the rollout protocol (``arpo sft``)."""

    train: SFTConfig = Field(default_factory=SFTConfig, description="The SFT loop.")
    tool_format: ToolFormatName = Field("tags", description=TOOL_FORMAT_HELP)
    tool_parser: str = Field("hermes", description=TOOL_PARSER_HELP)
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="tool_format chat_template: the tools whose schemas the prompts show (tool specs); default: "
        "the environment's tools.",
    )

    @model_validator(mode="after")
    def _needs_demos(self) -> SFTJobConfig:
        if self.data.dataset is not None:
            raise ValueError(
                "arpo sft learns from demonstrations: use data.demonstrations, data.toolworld or data.toolworld_dir"
            )
        return self


class RLJobConfig(JobConfig):
    """ARPO/GRPO reinforcement learning with tools (``arpo train``)."""

    tools: list[dict[str, Any]] | None = Field(
        None, description="Tool specs ({name: ...} or {import: ...}); default: the environment's tools."
    )
    toolbox: ToolboxConfig = Field(default_factory=ToolboxConfig, description="Tool execution limits.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="The hierarchical reward.")
    train: RLConfig = Field(default_factory=RLConfig, description="The RL loop.")
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig,
        description="Sample fixed task sets at step 0, every few steps and at the end (val/* metrics).",
    )

    @model_validator(mode="after")
    def _tools_for_datasets(self) -> RLJobConfig:
        if self.data.dataset is not None and not self.tools:
            raise ValueError("data.dataset has no built-in tools: list them under tools")
        if self.data.demonstrations is not None:
            raise ValueError(
                "data.demonstrations is for arpo sft; RL samples tasks: use data.dataset or a toolworld"
            )
        self.validation.resolved_sampling(self.train.rollout)  # the engine must be the rollout's
        return self


Prompted = TypeVar("Prompted", Task, Conversation)


@dataclass
class Environment:
    tasks: list[Task]
    tokenizer: str | None
    tool_specs: list[dict[str, Any]]
    demos: Path | None


def prepare_environment(data: DataConfig, run_dir: Path, console: Console) -> Environment:
    """Tasks, tokenizer folder, tool specs and demonstrations of the configured data source."""
    if data.demonstrations is not None:  # read by run_sft
        return Environment([], None, [], None)
    if data.dataset is not None:
        tasks = load_tasks(data.dataset)
        return Environment(_with_system(tasks, data.system_prompt), None, [], None)
    if data.toolworld_dir is not None:
        paths = ToolworldPaths(Path(data.toolworld_dir))
        config = read_config(paths.root)
    else:
        config = data.toolworld or ToolworldConfig()
        paths = ToolworldPaths(run_dir / "env")
        if not paths.manifest.is_file() or read_config(paths.root) != config:
            console.print(f"building the toolworld environment in {paths.root}")
            build_toolworld(config, paths.root, overwrite=True)
    tasks = _with_system(load_toolworld_tasks(paths.train), data.system_prompt)
    specs = tool_specs(config, paths.corpus, cache_dir=paths.root / "index")
    return Environment(tasks, str(paths.tokenizer), specs, paths.demos)


def _with_system(items: list[Prompted], system_prompt: str | None) -> list[Prompted]:
    return [item.with_system_prompt(system_prompt) for item in items] if system_prompt else items


def sft_demonstrations(data: DataConfig, env: Environment) -> tuple[list[Conversation], ResponseProtocol]:
    """The demonstrations of an SFT run (``data.demonstrations`` or the environment's) and the
    protocol they are rendered with; ``data.system_prompt`` replaces their system messages."""
    if data.demonstrations is not None:
        conversations, protocol = load_demonstrations(data.demonstrations), data.demonstrations
    else:
        conversations = [demo.conversation() for demo in load_demos(env.demos or "")]
        protocol = ResponseProtocol()
    return _with_system(conversations, data.system_prompt), protocol


def resolve_model(config: PolicyConfig, environment: Environment) -> PolicyConfig:
    """``model.name`` as a checkpoint folder when it names a run (its newest checkpoint with intact
    model files, the trainer state not needed); the environment's tokenizer for a tiny model
    without one."""
    updates: dict[str, Any] = {}
    if (found := newest_model_checkpoint(config.name)) is not None:
        updates["name"] = str(found)
    if config.name == "tiny" and config.tokenizer is None and environment.tokenizer is not None:
        updates["tokenizer"] = environment.tokenizer
    return config.model_copy(update=updates)


def _start(config: JobConfig, resume: bool, console: Console) -> tuple[Path, Path | None]:
    run_dir = Path(config.run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise FileExistsError(
            f"{run_dir} already has checkpoints (newest {checkpoint.name}): pass --resume to continue it, "
            "or set run_dir to a new folder"
        )
    if resume and checkpoint is None:
        console.print(f"--resume: {run_dir} has no checkpoint yet, starting from scratch")
    elif resume:
        checkpoint = newest_intact_checkpoint(run_dir)
        console.print(f"--resume: continuing from {checkpoint}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        run_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    return run_dir, checkpoint


def _open_run(
    config: JobConfig, resume: bool, console: Console | None
) -> tuple[Path, Path | None, Environment, PolicyConfig]:
    """Run folder, the checkpoint to resume from, the environment and the resolved model config."""
    console = console or Console(stderr=True)
    run_dir, checkpoint = _start(config, resume, console)
    with process_state().main_process_first():  # the main process builds the environment, the others reuse it
        env = prepare_environment(config.data, run_dir, console)
    return run_dir, checkpoint, env, resolve_model(config.model, env)


def run_sft(
    config: SFTJobConfig, *, resume: bool = False, console: Console | None = None
) -> list[dict[str, Any]]:
    console = console or Console(stderr=True)
    run_dir, checkpoint, env, policy_config = _open_run(config, resume, console)
    demonstrations, protocol = sft_demonstrations(config.data, env)
    console.print(f"{len(demonstrations)} demonstrations")
    model, tokenizer = load_policy(policy_config, checkpoint)
    chat = native_tool_format(config, env, tokenizer) if config.tool_format == "chat_template" else None
    rows = []
    for conversation in demonstrations:
        ids, mask = conversation_example(conversation, tokenizer, protocol, chat)
        rows.append(LearnerRow(ids, [float(m) for m in mask]))
    trainer = SFTTrainer(config.train, model, tokenizer, rows, run_dir)
    if checkpoint is not None:
        trainer.resume(checkpoint)
    history = trainer.train()
    if trainer.accelerator.is_main_process:
        write_run_report(run_dir)
    return history


def native_tool_format(config: SFTJobConfig, env: Environment, tokenizer: Any) -> ChatToolFormat:
    """The chat-template rendering of an SFT run's demonstrations, with its tools' schemas."""
    specs = config.tools or env.tool_specs
    if not specs:
        raise ValueError(
            "tool_format chat_template shows the tools' schemas in the prompt: list them under tools"
        )
    with build_toolbox(specs) as tools:
        return ChatToolFormat(tokenizer, tools.schemas(), get_parser(config.tool_parser))


def run_rl(
    config: RLJobConfig,
    *,
    resume: bool = False,
    console: Console | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or, with ``resume``, continue) an RL job; returns the metrics of the steps run.
    ``on_step(step, metrics)`` is called after each step (e.g. by benchmarks/soak.py)."""
    run_dir, checkpoint, env, policy_config = _open_run(config, resume, console)
    model, tokenizer = load_policy(policy_config, checkpoint)
    reference = None
    if config.train.loss.kl_coef > 0:
        reference, _ = load_policy(policy_config.model_copy(update={"lora": None}))
    specs = config.tools or env.tool_specs
    toolbox = config.toolbox.build(specs, tokenizer)
    validation = config.validation
    sets: list[ValidationSet] = []
    try:
        if validation.enabled():
            for dataset in validation.datasets:
                if dataset.system_prompt is None and config.data.system_prompt is not None:
                    dataset = dataset.model_copy(update={"system_prompt": config.data.system_prompt})
                data = load_eval_dataset(dataset, specs)
                sets.append(ValidationSet(data, config.toolbox.build(data.tool_specs, tokenizer)))
        validator = (
            Validator(
                validation.every,
                sets,
                validation.resolved_sampling(config.train.rollout),
                validation.rollout_config(config.train.rollout),
                tokenizer,
                make_reward_fn(config.reward),
            )
            if sets
            else None
        )
        trainer = RLTrainer(
            config.train,
            model,
            tokenizer,
            env.tasks,
            toolbox,
            make_reward_fn(config.reward),
            run_dir,
            reference=reference,
            validator=validator,
        )
        if checkpoint is not None:
            trainer.resume(checkpoint)
        history = trainer.train(on_step)
        if trainer.accelerator.is_main_process:
            write_run_report(run_dir)
        return history
    finally:
        for tools in (toolbox, *(s.tools for s in sets)):
            tools.close()
