"""The summary table of an evaluation: one row per data set (and per toolworld family).

Per row, over its tasks and their k samples each:

* ``score``: mean of the answer type's metric over all samples: the paper's metric per
  benchmark type (math equivalence for math, F1 for QA, exact match for names); 0 for a sample
  that fails the format gate;
* ``pass@1`` and ``pass@k``: the unbiased estimator of :mod:`arpo.eval.passk` on binary
  correctness (``score`` ≥ the threshold), averaged over tasks;
* ``tool_calls``: tool calls per answer (per sample), refused calls included;
* ``format_errors``: share of samples that fail the format gate (no answer extracted);
* ``response_tokens``: mean tokens after the prompt;
* ``judge_accuracy`` / ``judge_errors``: share of judged samples the LLM judge accepted, and how
  many verdicts failed (timeouts, garbage), when a judge is configured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from arpo.eval.passk import mean_pass_at_k
from arpo.eval.records import SampleRecord
from arpo.report.markdown import Table, fmt


def summary_row(
    records: Sequence[SampleRecord], pass_k: Sequence[int], metrics: Mapping[str, str]
) -> dict[str, Any]:
    """The summary of one group of records (module docstring); ``metrics``: answer type → metric name."""
    by_task: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        by_task[record.task_id].append(record)
    counts = [(len(rs), sum(r.correct for r in rs)) for rs in by_task.values()]
    row: dict[str, Any] = {
        "tasks": len(by_task),
        "samples": max(n for n, _ in counts),
        "metric": ", ".join(sorted({metrics.get(r.answer_type, r.answer_type) for r in records})),
        "score": fmean(r.score for r in records),
        **{f"pass@{k}": mean_pass_at_k(counts, k) for k in pass_k},
        "tool_calls": fmean(len(r.tool_calls) for r in records),
        "format_errors": fmean(not r.format_ok for r in records),
        "response_tokens": fmean(r.tokens.response for r in records),
    }
    verdicts = [r.judge for r in records if r.judge is not None]
    if verdicts:
        judged = [v["correct"] for v in verdicts if v["correct"] is not None]
        row["judge_accuracy"] = fmean(judged) if judged else None
        row["judge_errors"] = len(verdicts) - len(judged)
    return row


def summarize(
    records: Sequence[SampleRecord], pass_k: Sequence[int], metrics: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """``{"datasets": [rows], "families": [rows]}``, rows labelled by ``dataset`` (and ``family``)."""
    datasets: dict[str, list[SampleRecord]] = defaultdict(list)
    families: dict[tuple[str, str], list[SampleRecord]] = defaultdict(list)
    for record in records:
        datasets[record.dataset].append(record)
        if record.family is not None:
            families[(record.dataset, record.family)].append(record)
    return {
        "datasets": [{"dataset": name, **summary_row(rs, pass_k, metrics)} for name, rs in datasets.items()],
        "families": [
            {"dataset": name, "family": family, **summary_row(rs, pass_k, metrics)}
            for (name, family), rs in sorted(families.items())
        ],
    }


def summary_table(rows: Sequence[Mapping[str, Any]], pass_k: Sequence[int]) -> Table:
    """The rows as a report table (dataset, family when present, then the numbers)."""
    label_keys = ["dataset", *(["family"] if any("family" in r for r in rows) else [])]
    keys = [
        "tasks",
        "samples",
        "metric",
        "score",
        *(f"pass@{k}" for k in pass_k),
        "tool_calls",
        "format_errors",
        "response_tokens",
    ]
    if any("judge_accuracy" in r for r in rows):
        keys += ["judge_accuracy", "judge_errors"]
    header = [*label_keys, *(k.replace("_", " ") for k in keys)]
    return Table(header, [[fmt(row.get(k)) for k in [*label_keys, *keys]] for row in rows])
