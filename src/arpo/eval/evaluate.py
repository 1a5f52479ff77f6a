"""``arpo eval``: a model × data sets × tools × sampling settings → records and a summary table.

For each data set, every task is sampled ``sampling.samples`` times with the rollout loop (no
branching, :mod:`arpo.eval.sampling`), every sample is scored like an RL trajectory
(:mod:`arpo.eval.records`) and, when ``judge`` is set, graded by an LLM judge
(:mod:`arpo.eval.judge`). ``out_dir`` then holds, each written atomically once everything is done:

* ``records.jsonl``: one line per sample (full prompt and response text, tool calls, extracted
  answer, score, reward, tokens, verdict);
* ``summary.json``: the resolved config and the summary rows (:mod:`arpo.eval.summary`);
* ``summary.md`` / ``summary.html``: the same tables for people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console

from arpo.core.rewards import ANSWER_TYPES, RewardConfig, make_reward_fn
from arpo.eval.judge import Judge, JudgeConfig
from arpo.eval.records import SampleRecord, make_record
from arpo.eval.sampling import SamplingConfig, sample_trees
from arpo.eval.sources import EvalDataset, ToolSpecs, load_eval_dataset, resolve_policy
from arpo.eval.summary import summarize, summary_table
from arpo.io import atomic_write_json, atomic_write_text
from arpo.models.loading import PolicyConfig, load_policy
from arpo.report.markdown import Heading, Paragraph, write_report
from arpo.train.jobs import ToolboxConfig


class EvalConfig(BaseModel):
    """Evaluate a model on data sets with tools: per-sample records and a summary table (``arpo eval``)."""

    model_config = ConfigDict(extra="forbid")

    model: PolicyConfig = Field(
        default_factory=PolicyConfig,
        description="The policy; model.name may be a Hugging Face folder, a checkpoint or a run folder (newest checkpoint).",
    )
    datasets: list[EvalDataset] = Field(
        default_factory=list, description="Data sets to evaluate on (at least one)."
    )
    tools: ToolSpecs | None = Field(
        None, description="Tool specs for every data set without its own; default: a toolworld's tools."
    )
    toolbox: ToolboxConfig = Field(default_factory=ToolboxConfig, description="Tool execution limits.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How each task is sampled.")
    pass_k: list[int] = Field(
        default_factory=lambda: [1], description="The k of each pass@k to report (k <= samples)."
    )
    correct_threshold: float = Field(
        1.0, ge=0, le=1, description="A sample counts as correct (for pass@k) when its score reaches this."
    )
    reward: RewardConfig = Field(
        default_factory=RewardConfig, description="Format gate and metric per answer type."
    )
    judge: JudgeConfig | None = Field(
        None, description="Also grade answers with an LLM judge (OpenAI-compatible API)."
    )
    out_dir: str = Field("runs/eval", description="Folder for records.jsonl and the summary files.")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if not self.datasets:
            raise ValueError("no data sets: give datasets=[{toolworld_dir: ...}] or [{dataset: {path: ...}}]")
        labels = [d.label for d in self.datasets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"data set names must differ (got {labels}): set datasets[i].name")
        too_big = [k for k in self.pass_k if not 1 <= k <= self.sampling.samples]
        if too_big:
            raise ValueError(f"pass_k {too_big} needs 1 <= k <= sampling.samples ({self.sampling.samples})")
        return self

    def metric_names(self) -> dict[str, str]:
        """Answer type → the metric (or custom reward) that scores it."""
        if self.reward.function is not None:
            return {answer_type: self.reward.function for answer_type in ANSWER_TYPES}
        return dict(self.reward.metrics)


def run_eval(config: EvalConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the evaluation (module docstring); returns what ``summary.json`` holds."""
    console = console or Console(stderr=True)
    policy = resolve_policy(config.model)
    model, tokenizer = load_policy(policy)
    reward_fn = make_reward_fn(config.reward)
    judge = Judge(config.judge) if config.judge is not None else None
    records: list[SampleRecord] = []
    for dataset_config in config.datasets:
        data = load_eval_dataset(dataset_config, config.tools)
        with config.toolbox.build(data.tool_specs, tokenizer) as tools:
            trees = sample_trees(
                model,
                tokenizer,
                data.tasks,
                tools,
                config.sampling,
                label=f"eval {data.name}",
                console=console,
            )
        batch = [
            make_record(
                data.name,
                task,
                data.families.get(task.id),
                index,
                trajectory,
                tokenizer,
                reward_fn,
                config.correct_threshold,
            )
            for task, tree in zip(data.tasks, trees, strict=True)
            for index, trajectory in enumerate(tree.trajectories())
        ]
        if judge is not None:
            with console.status(f"judging {len(batch)} answers of {data.name}"):
                verdicts = judge.judge_many([(r.question, r.ground_truths, r.answer) for r in batch])
            for record, verdict in zip(batch, verdicts, strict=True):
                record.judge = verdict.to_dict()
        records += batch
    summary = {
        "model": policy.name,
        "config": config.model_dump(mode="json"),
        **summarize(records, config.pass_k, config.metric_names()),
    }
    write_outputs(Path(config.out_dir), records, summary, config)
    return summary


def write_outputs(
    out: Path, records: list[SampleRecord], summary: dict[str, Any], config: EvalConfig
) -> None:
    """``records.jsonl``, ``summary.json`` and ``summary.md``/``.html`` in ``out``, each atomically."""
    atomic_write_text(out / "records.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in records))
    atomic_write_json(out / "summary.json", summary)
    s = config.sampling
    blocks = [
        Heading(f"Evaluation of `{summary['model']}`", 1),
        Paragraph(
            f"{s.samples} sample(s) per task, temperature {s.temperature}, top-p {s.top_p}, "
            f"budget {s.max_response_tokens} tokens, at most {s.max_tool_calls} tool calls; "
            f"a sample is correct when its score is at least {config.correct_threshold}."
        ),
        summary_table(summary["datasets"], config.pass_k),
    ]
    if summary["families"]:
        blocks += [Heading("By task family", 2), summary_table(summary["families"], config.pass_k)]
    write_report(blocks, out, "Evaluation", name="summary")
