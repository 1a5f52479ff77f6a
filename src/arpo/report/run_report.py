"""The report of training runs: ``report.md`` + ``report.html`` with PNG plots, from ``metrics.jsonl``.

Every run folder gets one when its job ends (:mod:`arpo.train.jobs`); ``arpo report RUN --compare
OTHER`` overlays other runs on the same axes (e.g. ARPO vs GRPO with the same budget). Plots, one
file each, drawn only for the metrics the runs logged (:mod:`arpo.train.rl`, :mod:`arpo.train.sft`):

* reward: mean reward, accuracy (mean correctness) and format-OK share per step;
* tools: tool calls per trajectory and response length;
* branching: ARPO branches per prompt and the share of each tree's branches on its 3 most-branched
  samples (branch concentration, AEPO arXiv 2510.14545);
* entropy: mean normalised entropy of the k tokens before each tool call and after each tool
  result (the signal ARPO branches on, arXiv 2507.19849 §2.2);
* sft: the SFT loss; optimizer: gradient norm and learning rate.

The table gives each metric's mean over the first and the last tenth of the steps. Non-finite
values (``null`` in ``metrics.jsonl``) are left out of tables and curves; a note lists the steps
that had any, and how many optimizer updates were skipped for them (:mod:`arpo.train.loop`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import yaml

from arpo.report.markdown import Block, Heading, Image, Paragraph, Table, fmt, write_report
from arpo.report.plots import Panel, Series, figure
from arpo.train.metrics_log import NONFINITE_KEY, read_metrics

Metrics = list[dict[str, Any]]


@dataclass(frozen=True)
class PlotSpec:
    name: str
    caption: str
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]]
    """(panel title, [(metric key, series label)])."""


PLOTS = (
    PlotSpec(
        "reward",
        "Reward, accuracy and format-OK share per step",
        [
            ("mean reward", [("reward/mean", "")]),
            (
                "accuracy (mean correctness)",
                [("reward/accuracy", "all leaves"), ("reward/accuracy_initial", "initial samples")],
            ),
            ("format OK", [("reward/format_ok", "")]),
        ],
    ),
    PlotSpec(
        "tools",
        "Tool calls per trajectory and response length",
        [
            ("tool calls per trajectory", [("rollout/tool_calls_per_trajectory", "")]),
            ("response tokens", [("rollout/response_length_mean", "")]),
        ],
    ),
    PlotSpec(
        "branching",
        "Branches per prompt and branch concentration (share on each tree's top-3 samples)",
        [
            ("branches per prompt", [("rollout/branches_per_prompt", "")]),
            ("top-3 share of branches", [("rollout/branch_top3_share", "")]),
        ],
    ),
    PlotSpec(
        "entropy",
        "Mean normalised entropy of the k tokens before tool calls and after tool results",
        [
            (
                "entropy H/ln|V|",
                [("rollout/entropy_before_tool", "before"), ("rollout/entropy_after_tool", "after")],
            )
        ],
    ),
    PlotSpec("sft", "SFT loss (token-mean negative log-likelihood)", [("SFT loss", [("loss/sft", "")])]),
    PlotSpec(
        "optimizer",
        "Gradient norm (before clipping) and learning rate",
        [("gradient norm", [("grad_norm", "")]), ("learning rate", [("lr", "")])],
    ),
)
TABLE_KEYS = (
    "reward/mean",
    "reward/accuracy",
    "reward/accuracy_initial",
    "reward/format_ok",
    "rollout/tool_calls_per_trajectory",
    "rollout/response_length_mean",
    "rollout/branches_per_prompt",
    "rollout/branch_top3_share",
    "rollout/entropy_before_tool",
    "rollout/entropy_after_tool",
    "loss/sft",
    "time/step_s",
)
SETTINGS = (
    ("model", "model.name"),
    ("steps", "train.steps"),
    ("learning rate", "train.optim.lr"),
    ("SFT batch size", "train.batch_size"),
    ("prompts per step", "train.prompts_per_step"),
    ("M (rollouts per prompt)", "train.rollout.branching.rollouts_per_prompt"),
    ("N (initial rollouts)", "train.rollout.branching.initial_rollouts"),
    ("temperature", "train.rollout.temperature"),
    ("seed", "train.seed"),
)


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _series(history: Metrics, key: str) -> tuple[list[float], list[float]]:
    points = [(float(m["step"]), v) for m in history if (v := _value(m, key)) is not None]
    return [x for x, _ in points], [y for _, y in points]


def training_figures(runs: Mapping[str, Metrics], folder: Path, prefix: str = "plots/") -> list[Block]:
    """Write one PNG per :data:`PLOTS` entry that has data into ``folder/prefix``; returns the image blocks."""
    blocks: list[Block] = []
    steps = max((len(h) for h in runs.values()), default=0)
    smooth = max(1, steps // 10)
    for spec in PLOTS:
        panels = []
        for title, keys in spec.panels:
            series = []
            for run_index, (run, history) in enumerate(runs.items()):
                for key, label in keys:
                    x, y = _series(history, key)
                    if y:
                        name = " ".join(part for part in (run if len(runs) > 1 else "", label) if part) or key
                        style = "-" if run_index == 0 else "--"
                        series.append(Series(name, x, y, style))
            if series:
                panels.append(Panel(title, title, series, smooth=smooth))
        if panels:
            path = f"{prefix}{spec.name}.png"
            figure(panels, folder / path)
            blocks.append(Image(path, spec.caption))
    return blocks


def metrics_table(runs: Mapping[str, Metrics]) -> Table:
    """Each logged metric of :data:`TABLE_KEYS`: its mean over the first and last tenth of the steps, per run."""
    header = ["metric"]
    for run in runs:
        header += [f"{run}: start", f"{run}: end"] if len(runs) > 1 else ["start", "end"]
    rows = []
    for key in TABLE_KEYS:
        cells, found = [key], False
        for history in runs.values():
            _, values = _series(history, key)
            tenth = max(1, len(values) // 10)
            found |= bool(values)
            cells += [fmt(fmean(values[:tenth])), fmt(fmean(values[-tenth:]))] if values else ["–", "–"]
        if found:
            rows.append(cells)
    return Table(header, rows)


def nonfinite_notes(runs: Mapping[str, Metrics]) -> list[Paragraph]:
    """Per run with non-finite values: the steps that had them, which metrics, and the skipped updates."""
    notes = []
    for run, history in runs.items():
        flagged = [m for m in history if m.get(NONFINITE_KEY)]
        if not flagged:
            continue
        keys = sorted({key for m in flagged for key in m[NONFINITE_KEY]})
        skipped = max((m.get("train/skipped_updates_total") or 0 for m in history), default=0)
        steps = ", ".join(str(m["step"]) for m in flagged[:20]) + (", ..." if len(flagged) > 20 else "")
        notes.append(
            Paragraph(
                f"{run}: non-finite values at {len(flagged)} step(s) ({steps}) in {', '.join(keys)}; "
                f"{skipped:g} optimizer update(s) skipped over the run."
            )
        )
    return notes


def _setting(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def settings_table(configs: Mapping[str, Mapping[str, Any]]) -> Table:
    """The main settings of each run's ``config.yaml`` (rows without a value in any run are left out)."""
    header = ["setting", *configs] if len(configs) > 1 else ["setting", "value"]
    rows = [
        [name, *(fmt(_setting(c, key)) for c in configs.values())]
        for name, key in SETTINGS
        if any(_setting(c, key) is not None for c in configs.values())
    ]
    return Table(header, rows)


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Folder names, or parent/name where two runs share a name."""
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(d).parent.name}/{Path(d).name}" for d in run_dirs]


def write_run_report(
    run_dir: str | Path, compare: Sequence[str | Path] = (), out_dir: str | Path | None = None
) -> Path:
    """Write the report of ``run_dir`` (overlaid with the ``compare`` runs) into ``out_dir``
    (default: ``run_dir``); returns the path of ``report.md``."""
    dirs = [Path(run_dir), *map(Path, compare)]
    for folder in dirs:
        if not (folder / "metrics.jsonl").is_file():
            raise FileNotFoundError(f"{folder} has no metrics.jsonl: not a training run folder")
    labels = run_labels(dirs)
    runs = {label: read_metrics(folder) for label, folder in zip(labels, dirs, strict=True)}
    configs = {
        label: yaml.safe_load((folder / "config.yaml").read_text())
        if (folder / "config.yaml").is_file()
        else {}
        for label, folder in zip(labels, dirs, strict=True)
    }
    out = Path(out_dir) if out_dir is not None else dirs[0]
    title = f"Training report: {' vs '.join(labels)}"
    steps = ", ".join(f"{label}: {len(history)} steps" for label, history in runs.items())
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(f"Logged steps ({steps}); curves are smoothed with a moving average, raw values faint."),
        Heading("Settings", 2),
        settings_table(configs),
        Heading("Metrics (mean over the first and last tenth of the steps)", 2),
        metrics_table(runs),
        *nonfinite_notes(runs),
        Heading("Curves", 2),
        *training_figures(runs, out),
    ]
    return write_report(blocks, out, title)
