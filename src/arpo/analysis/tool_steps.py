"""``arpo analyze tool-steps``: do a model's tool calls compute steps of the reference solution?

Accuracy alone cannot tell *when to call a tool* from *what to compute with it*. For data sets
in GSM8K's format — a worked solution with calculator annotations ``<<expression=value>>`` and a
final ``#### answer`` — each evaluated sample's tool results are compared with the solution's
step values (:func:`arpo.tasks.gsm8k_demos.parse_solution`) and its answer. A result *hits* when
any number in it agrees with one of them (:func:`arpo.tasks.gsm8k_demos.agrees`: within 1e-6
relative, or equal at the annotation's decimals). Per evaluation and data set:

* ``tool use``: share of samples with at least one tool call;
* ``accuracy with / without tools``: share of correct samples among those with calls, and among
  those without;
* ``calls``: tool calls per sample that made any;
* ``calls on a step``: share of all calls whose result hits;
* ``first call on a step``: share of samples with calls whose first result hits.

Samples are matched to data rows by their question text; rows without annotations have no
reference steps and their samples are left out (counted in ``unmatched``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from arpo.eval.paired import read_eval_records
from arpo.report.markdown import Table, fmt
from arpo.tasks.gsm8k_demos import Skip, agrees, parse_solution, read_solutions

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class ToolStepRow:
    """One evaluation on one data set (module docstring)."""

    evaluation: str
    dataset: str
    samples: int
    unmatched: int
    tool_use: float
    accuracy_with_tools: float | None
    accuracy_without_tools: float | None
    calls: float | None
    calls_on_step: float | None
    first_call_on_step: float | None


def reference_values(paths: Sequence[str | Path]) -> dict[str, list[str]]:
    """Question → the step values and the answer of its solution, for every annotated row of the
    GSM8K-format files ``paths`` (read as ``arpo data gsm8k-demos`` reads them:
    :func:`arpo.tasks.gsm8k_demos.read_solutions`)."""
    references: dict[str, list[str]] = {}
    for path in paths:
        for task, text in read_solutions(path):
            try:
                steps = parse_solution(text).steps
            except Skip:
                continue
            references[task.question.strip()] = [s.value for s in steps] + [
                task.ground_truths[0].replace(",", "")
            ]
    if not references:
        raise ValueError(f"no annotated GSM8K-format row in {', '.join(map(str, paths))}")
    return references


def hits(text: str, values: Sequence[str]) -> bool:
    """Whether any number in a tool result agrees with one of ``values``."""
    for match in NUMBER.finditer(text):
        printed = float(match.group().replace(",", ""))
        if any(_agrees(printed, value) for value in values):
            return True
    return False


def _agrees(printed: float, value: str) -> bool:
    try:
        return agrees(printed, value)
    except ValueError:  # a reference value that is not a number
        return False


def tool_step_rows(
    name: str, records: Sequence[dict[str, Any]], references: dict[str, list[str]]
) -> list[ToolStepRow]:
    """The rows of one evaluation, a data set each (in the order they first occur)."""
    by_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_dataset[record["dataset"]].append(record)
    rows = []
    for dataset, samples in by_dataset.items():
        matched = [r for r in samples if str(r.get("question", "")).strip() in references]
        if not matched:
            continue
        with_tools = [r for r in matched if r["tool_calls"]]
        without = [r for r in matched if not r["tool_calls"]]
        results = [
            [s["text"] for s in r.get("segments") or [] if s.get("role") == "tool"] for r in with_tools
        ]
        values = [references[str(r["question"]).strip()] for r in with_tools]
        call_hits = [hits(text, v) for texts, v in zip(results, values, strict=True) for text in texts]
        first = [hits(texts[0], v) for texts, v in zip(results, values, strict=True) if texts]
        rows.append(
            ToolStepRow(
                name,
                dataset,
                len(matched),
                len(samples) - len(matched),
                len(with_tools) / len(matched),
                _mean([bool(r["correct"]) for r in with_tools]),
                _mean([bool(r["correct"]) for r in without]),
                _mean([len(r["tool_calls"]) for r in with_tools]),
                _mean(call_hits),
                _mean(first),
            )
        )
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def analyze_tool_steps(evaluations: Sequence[str | Path], data: Sequence[str | Path]) -> list[ToolStepRow]:
    """The rows of every evaluation (an ``arpo eval`` out_dir or its records.jsonl) against the
    reference solutions in ``data``."""
    references = reference_values(data)
    rows = []
    for evaluation in evaluations:
        found = tool_step_rows(str(evaluation), read_eval_records(evaluation), references)
        if not found:
            raise ValueError(f"{evaluation}: no sample's question is in {', '.join(map(str, data))}")
        rows.extend(found)
    return rows


def tool_steps_table(rows: Sequence[ToolStepRow]) -> Table:
    header = [
        "evaluation",
        "data set",
        "samples",
        "unmatched",
        "tool use",
        "accuracy with tools",
        "accuracy without tools",
        "calls",
        "calls on a step",
        "first call on a step",
    ]

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    body = [
        [
            r.evaluation,
            r.dataset,
            str(r.samples),
            str(r.unmatched),
            pct(r.tool_use),
            pct(r.accuracy_with_tools),
            pct(r.accuracy_without_tools),
            fmt(r.calls),
            pct(r.calls_on_step),
            pct(r.first_call_on_step),
        ]
        for r in rows
    ]
    return Table(header, body)
