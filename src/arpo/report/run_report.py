"""The report of training runs: ``report.md`` + ``report.html`` with PNG plots, from ``metrics.jsonl``.

Every run folder gets one when its job ends (:mod:`arpo.train.jobs`); ``arpo report RUN --compare
OTHER`` overlays other runs on the same axes (e.g. ARPO vs GRPO with the same budget), against
steps and against the cumulative budgets (the plots: :mod:`arpo.report.curves`).

The metrics table gives each metric's mean over the first and the last tenth of the steps; the
budget table each run's totals at its last logged step, and what prefix sharing saved
(1 − executed / per-trajectory tool calls, 1 − engine / flat tokens). Non-finite
values (``null`` in ``metrics.jsonl``) are left out of tables and curves; a note lists the steps
that had any, and how many optimizer updates were skipped for them (:mod:`arpo.train.loop`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import yaml

from arpo.report.curves import Metrics, last_value, metric_series, training_figures
from arpo.report.markdown import Block, Heading, Paragraph, Table, fmt, write_report
from arpo.train.metrics_log import NONFINITE_KEY, read_metrics

TABLE_KEYS = (
    "reward/mean",
    "reward/accuracy",
    "reward/accuracy_initial",
    "reward/format_ok",
    "rollout/tool_calls_per_trajectory",
    "rollout/tool_calls_executed",
    "rollout/engine_tokens",
    "rollout/response_length_mean",
    "rollout/branches_per_prompt",
    "rollout/branch_top3_share",
    "reward/branch_same_outcome",
    "reward/initial_same_outcome",
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


def metrics_table(runs: Mapping[str, Metrics]) -> Table:
    """Each logged metric of :data:`TABLE_KEYS`: its mean over the first and last tenth of the steps, per run."""
    header = ["metric"]
    for run in runs:
        header += [f"{run}: start", f"{run}: end"] if len(runs) > 1 else ["start", "end"]
    rows = []
    for key in TABLE_KEYS:
        cells, found = [key], False
        for history in runs.values():
            _, values = metric_series(history, key)
            tenth = max(1, len(values) // 10)
            found |= bool(values)
            cells += [fmt(fmean(values[:tenth])), fmt(fmean(values[-tenth:]))] if values else ["–", "–"]
        if found:
            rows.append(cells)
    return Table(header, rows)


BUDGET_ROWS = (
    ("tool calls executed", "budget/tool_calls_total"),
    ("tool calls per trajectory (summed)", "budget/tool_calls_flat_total"),
    ("engine tokens (prefill + decode)", "budget/engine_tokens_total"),
    ("flat tokens (trajectories one by one)", "budget/tokens_flat_total"),
    ("learner tokens", "budget/learner_tokens_total"),
    ("wall time (s)", "time/wall_s_total"),
)
SHARING_ROWS = (
    ("tool calls saved by sharing", "budget/tool_calls_total", "budget/tool_calls_flat_total"),
    ("tokens saved by sharing", "budget/engine_tokens_total", "budget/tokens_flat_total"),
)
"""(label, paid, flat): the row shows 1 − paid / flat."""


def _saved(paid: float | None, flat: float | None) -> str:
    return "–" if paid is None or not flat else f"{100 * (1 - paid / flat):.1f} %"


def budget_blocks(runs: Mapping[str, Metrics]) -> list[Block]:
    """The budgets section: a heading, what the rows mean, :func:`budget_table`; nothing when no run
    logged budgets (SFT runs, RL runs written before budgets existed)."""
    table = budget_table(runs)
    if not table.rows:
        return []
    return [
        Heading("Budgets (cumulative, at the last logged step)", 2),
        Paragraph(
            "Executed tool calls count each call once however many trajectories share it; per trajectory, "
            "once per trajectory (what sampling every trajectory alone would cost). Engine tokens are the "
            "prefill and decode tokens the generator computed; flat tokens, the trajectories' tokens laid "
            "out one by one; learner tokens, those of one training pass. Counts are summed over processes. "
            "The accuracy_vs_budget plot compares runs at equal cost."
        ),
        table,
    ]


def budget_table(runs: Mapping[str, Metrics]) -> Table:
    """Each run's cumulative budgets (:data:`BUDGET_ROWS`) at its last logged step, and the share of
    tool calls and tokens that prefix sharing saved (:data:`SHARING_ROWS`); rows no run logged
    are left out."""
    header = ["budget", *runs] if len(runs) > 1 else ["budget", "total"]
    rows = [
        [label, *(fmt(last_value(history, key)) for history in runs.values())]
        for label, key in BUDGET_ROWS
        if any(last_value(history, key) is not None for history in runs.values())
    ]
    rows += [
        [label, *(_saved(last_value(history, paid), last_value(history, flat)) for history in runs.values())]
        for label, paid, flat in SHARING_ROWS
        if any(last_value(history, paid) is not None for history in runs.values())
    ]
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
    steps = ", ".join(  # step 0 (validation of the starting policy) is not a training step
        f"{label}: {sum(m.get('step', 0) > 0 for m in history)} steps" for label, history in runs.items()
    )
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(
            f"Logged steps ({steps}); per-step curves are smoothed with a moving average, raw values faint; "
            "cumulative ones are drawn as they are."
        ),
        Heading("Settings", 2),
        settings_table(configs),
        Heading("Metrics (mean over the first and last tenth of the steps)", 2),
        metrics_table(runs),
        *nonfinite_notes(runs),
        *budget_blocks(runs),
        Heading("Curves", 2),
        *training_figures(runs, out),
    ]
    return write_report(blocks, out, title)
