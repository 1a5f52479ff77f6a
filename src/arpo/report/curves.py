"""Training curves of runs, one PNG per plot, drawn only for the metrics the runs logged
(:mod:`arpo.train.rl`, :mod:`arpo.train.sft`); several runs share the axes (the first solid, the
others dashed):

* reward: mean reward, accuracy (mean correctness) and format-OK share per step;
* tools: tool calls per trajectory and response length;
* budget: the run's cumulative budgets per step (:mod:`arpo.train.budget`): tool calls executed
  (a call shared by several trajectories once) and counted per trajectory, engine tokens (prefill
  + decode), flat and learner tokens, wall time;
* branching: ARPO branches per prompt and the share of each tree's branches on its 3 most-branched
  samples (branch concentration, AEPO arXiv 2510.14545);
* entropy: mean normalised entropy of the k tokens before each tool call and after each tool
  result (the signal ARPO branches on, arXiv 2507.19849 §2.2);
* sft: the SFT loss; optimizer: gradient norm and learning rate;
* accuracy_vs_budget: every accuracy metric the runs logged (``reward/accuracy_initial``,
  ``reward/accuracy``, and any other whose name's last part starts with ``accuracy``) against the
  cumulative executed tool calls, engine tokens and wall time: runs compared at equal cost, not
  only at equal steps (ARPO's claim: fewer tool calls for the same accuracy).

Per-step curves are smoothed with a centred moving average over a tenth of the steps (raw values
faint); cumulative ones are drawn as they are. Non-finite values (``null`` in ``metrics.jsonl``)
are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arpo.report.markdown import Block, Image
from arpo.report.plots import Panel, Series, figure

Metrics = list[dict[str, Any]]


@dataclass(frozen=True)
class PanelSpec:
    title: str
    keys: Sequence[tuple[str, str]]
    """[(metric key, series label)]."""
    x: str = "step"
    """The metric on the x axis (a key of :data:`X_LABELS`)."""


@dataclass(frozen=True)
class PlotSpec:
    name: str
    caption: str
    panels: Sequence[PanelSpec]
    smooth: bool = True
    """Smooth the curves (noisy per-step values); cumulative ones are drawn as they are."""


BUDGET_AXES = (
    ("budget/tool_calls_total", "executed tool calls (cumulative)"),
    ("budget/engine_tokens_total", "engine tokens (cumulative)"),
    ("time/wall_s_total", "wall time, s (cumulative)"),
)
"""The costs accuracy is plotted against: (metric, axis label)."""
X_LABELS = {"step": "step", **dict(BUDGET_AXES)}
ACCURACY_LABELS = {"reward/accuracy_initial": "initial samples", "reward/accuracy": "all leaves"}


PLOTS = (
    PlotSpec(
        "reward",
        "Reward, accuracy and format-OK share per step",
        [
            PanelSpec("mean reward", [("reward/mean", "")]),
            PanelSpec(
                "accuracy (mean correctness)",
                [("reward/accuracy", "all leaves"), ("reward/accuracy_initial", "initial samples")],
            ),
            PanelSpec("format OK", [("reward/format_ok", "")]),
        ],
    ),
    PlotSpec(
        "tools",
        "Tool calls per trajectory and response length",
        [
            PanelSpec("tool calls per trajectory", [("rollout/tool_calls_per_trajectory", "")]),
            PanelSpec("response tokens", [("rollout/response_length_mean", "")]),
        ],
    ),
    PlotSpec(
        "budget",
        "Cumulative budgets: tool calls executed (a shared call once) and per trajectory; engine tokens "
        "(prefill + decode), flat tokens (trajectories one by one) and learner tokens; wall time",
        [
            PanelSpec(
                "tool calls",
                [("budget/tool_calls_total", "executed"), ("budget/tool_calls_flat_total", "per trajectory")],
            ),
            PanelSpec(
                "tokens",
                [
                    ("budget/engine_tokens_total", "engine"),
                    ("budget/tokens_flat_total", "flat"),
                    ("budget/learner_tokens_total", "learner"),
                ],
            ),
            PanelSpec("wall time (s)", [("time/wall_s_total", "")]),
        ],
        smooth=False,
    ),
    PlotSpec(
        "branching",
        "Branches per prompt, branch concentration (share on each tree's top-3 samples), and how often "
        "a branch ends as right or wrong as the path it forked from (against two initial samples)",
        [
            PanelSpec("branches per prompt", [("rollout/branches_per_prompt", "")]),
            PanelSpec("top-3 share of branches", [("rollout/branch_top3_share", "")]),
            PanelSpec(
                "same outcome",
                [
                    ("reward/branch_same_outcome", "branch and its parent"),
                    ("reward/initial_same_outcome", "two initial samples"),
                ],
            ),
        ],
    ),
    PlotSpec(
        "entropy",
        "Mean normalised entropy of the k tokens before tool calls and after tool results",
        [
            PanelSpec(
                "entropy H/ln|V|",
                [("rollout/entropy_before_tool", "before"), ("rollout/entropy_after_tool", "after")],
            )
        ],
    ),
    PlotSpec(
        "sft", "SFT loss (token-mean negative log-likelihood)", [PanelSpec("SFT loss", [("loss/sft", "")])]
    ),
    PlotSpec(
        "optimizer",
        "Gradient norm (before clipping) and learning rate",
        [PanelSpec("gradient norm", [("grad_norm", "")]), PanelSpec("learning rate", [("lr", "")])],
    ),
)


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def metric_series(history: Metrics, key: str, x_key: str = "step") -> tuple[list[float], list[float]]:
    """(x, y) of the steps where both ``x_key`` and ``key`` have a finite value."""
    points = [
        (x, y) for m in history if (x := _value(m, x_key)) is not None and (y := _value(m, key)) is not None
    ]
    return [x for x, _ in points], [y for _, y in points]


def last_value(history: Metrics, key: str) -> float | None:
    """The last finite value of ``key``."""
    _, values = metric_series(history, key)
    return values[-1] if values else None


def accuracy_keys(runs: Mapping[str, Metrics]) -> list[tuple[str, str]]:
    """(metric, label) of the accuracy metrics the runs logged: the training accuracies of
    :data:`ACCURACY_LABELS`, then any other metric whose name's last part starts with ``accuracy``."""
    logged = {key for history in runs.values() for metrics in history for key in metrics}
    others = sorted(
        k for k in logged if k.rsplit("/", 1)[-1].startswith("accuracy") and k not in ACCURACY_LABELS
    )
    return [(k, label) for k, label in ACCURACY_LABELS.items() if k in logged] + [(k, k) for k in others]


VALIDATION_PREFIX = "val/"
"""Validation metrics (:mod:`arpo.train.validation`): logged every few steps, never smoothed."""


def validation_plot(runs: Mapping[str, Metrics]) -> PlotSpec:
    """Each validation set's accuracy and tool calls per sample against the step."""
    logged = {key for history in runs.values() for metrics in history for key in metrics}
    names = sorted({key.split("/")[1] for key in logged if key.startswith(VALIDATION_PREFIX)})
    return PlotSpec(
        "validation",
        "Validation: the same tasks sampled at step 0, every few steps and at the end",
        [
            PanelSpec(f"validation {quantity}", [(f"{VALIDATION_PREFIX}{n}/{quantity}", n) for n in names])
            for quantity in ("accuracy", "tool_calls")
        ],
        smooth=False,
    )


def accuracy_vs_budget(runs: Mapping[str, Metrics]) -> PlotSpec:
    """Accuracy against each of :data:`BUDGET_AXES` (one panel each)."""
    keys = accuracy_keys(runs)
    return PlotSpec(
        "accuracy_vs_budget",
        "Accuracy against the cumulative executed tool calls, engine tokens and wall time (equal cost, "
        "not equal steps)",
        [PanelSpec("accuracy", keys, x=x) for x, _ in BUDGET_AXES],
    )


def training_figures(runs: Mapping[str, Metrics], folder: Path, prefix: str = "plots/") -> list[Block]:
    """Write one PNG per plot of :data:`PLOTS` and :func:`accuracy_vs_budget` that has data into
    ``folder/prefix``; returns the image blocks."""
    blocks: list[Block] = []
    steps = max((len(h) for h in runs.values()), default=0)
    for spec in (*PLOTS, validation_plot(runs), accuracy_vs_budget(runs)):
        smooth = max(1, steps // 10) if spec.smooth else 1
        panels = []
        for panel in spec.panels:
            series = []
            for run_index, (run, history) in enumerate(runs.items()):
                for key, label in panel.keys:
                    x, y = metric_series(history, key, panel.x)
                    if y:
                        name = " ".join(part for part in (run if len(runs) > 1 else "", label) if part) or key
                        style = "-" if run_index == 0 else "--"
                        series.append(Series(name, x, y, style, not key.startswith(VALIDATION_PREFIX)))
            if series:
                panels.append(
                    Panel(panel.title, panel.title, series, xlabel=X_LABELS[panel.x], smooth=smooth)
                )
        if panels:
            path = f"{prefix}{spec.name}.png"
            figure(panels, folder / path)
            blocks.append(Image(path, spec.caption))
    return blocks
