"""The demo's report: held-out accuracy of SFT, ARPO and GRPO, wall time per phase, training curves.

Reads what :mod:`arpo.demo` left in its folder (``eval/<model>/summary.json``, the runs'
``metrics.jsonl``) and writes ``report.md``, ``report.html``, ``plots/*.png`` and
``results.json`` (the numbers, for scripts and tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arpo.io import atomic_write_json
from arpo.report.curves import training_figures
from arpo.report.markdown import Block, Heading, Paragraph, Table, fmt, write_report
from arpo.report.run_report import metrics_table
from arpo.train.metrics_log import read_metrics

MODELS = {"sft": "SFT", "arpo": "ARPO", "grpo": "GRPO"}
"""Run folder → label, in the order the demo trains them."""
PHASES = {
    "environment": "build the environment",
    "sft": "cold-start SFT",
    "arpo": "ARPO",
    "grpo": "GRPO",
    "eval_sft": "evaluate SFT",
    "eval_arpo": "evaluate ARPO",
    "eval_grpo": "evaluate GRPO",
}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def demo_results(out: Path, wall_s: Mapping[str, float], cpu_s: Mapping[str, float]) -> dict[str, Any]:
    """The numbers of the report: per model its test row and per-family accuracy; per phase its wall
    and CPU seconds, and their totals."""
    results: dict[str, Any] = {
        "models": {},
        "wall_s": dict(wall_s),
        "cpu_s": dict(cpu_s),
        "total_wall_s": sum(wall_s.get(phase, 0.0) for phase in PHASES),
        "total_cpu_s": sum(cpu_s.get(phase, 0.0) for phase in PHASES),
    }
    for name in MODELS:
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        (row,) = summary["datasets"]
        results["models"][name] = {
            **{k: row[k] for k in ("tasks", "pass@1", "format_errors", "tool_calls", "response_tokens")},
            "families": {r["family"]: r["pass@1"] for r in summary["families"]},
        }
    models = results["models"]
    results["arpo_minus_sft"] = models["arpo"]["pass@1"] - models["sft"]["pass@1"]
    results["grpo_minus_sft"] = models["grpo"]["pass@1"] - models["sft"]["pass@1"]
    results["training_accuracy"] = {name: training_accuracy(out / name) for name in ("arpo", "grpo")}
    return results


START_STEPS = 5
END_STEPS = 10
VALIDATION_KEY = "val/train/accuracy"
"""The demo's validation: the first tasks of the training split, the same at every validation."""


def training_accuracy(run_dir: Path) -> dict[str, Any]:
    """Sampled training accuracy of an RL run: the mean over its first ``START_STEPS`` steps (the
    policy has barely moved), over its last ``END_STEPS`` steps, and per step — of the initial
    samples (``reward/accuracy_initial``: independent draws from the policy, comparable between
    ARPO and GRPO), and in ``all_leaves`` the same for every leaf of the trees
    (``reward/accuracy``: ARPO's branches over-weight tool-using prefixes); in ``validation``, the
    accuracy on the fixed validation tasks at step 0 (the SFT policy), at each validation and at
    the end: the same tasks each time, so it moves with the policy, not with the prompts drawn."""
    metrics = read_metrics(run_dir)

    def summary(key: str) -> dict[str, Any]:
        curve = [m[key] for m in metrics if m.get(key) is not None]
        if not curve:
            return {"start": None, "end": None, "per_step": []}
        head, tail = curve[:START_STEPS], curve[-END_STEPS:]
        return {"start": sum(head) / len(head), "end": sum(tail) / len(tail), "per_step": curve}

    validation = [(m["step"], m[VALIDATION_KEY]) for m in metrics if m.get(VALIDATION_KEY) is not None]
    return {
        **summary("reward/accuracy_initial"),
        "all_leaves": summary("reward/accuracy"),
        "validation": {
            "start": validation[0][1] if validation else None,
            "end": validation[-1][1] if validation else None,
            "steps": [step for step, _ in validation],
            "values": [value for _, value in validation],
        },
    }


def verdict_line(results: Mapping[str, Any]) -> str:
    """One sentence with the held-out accuracies and the differences to SFT."""
    models = results["models"]
    return (
        f"Held-out accuracy on {models['sft']['tasks']} test tasks (a world whose names never occur in "
        f"training; greedy decoding): SFT **{_percent(models['sft']['pass@1'])}**, ARPO "
        f"**{_percent(models['arpo']['pass@1'])}** ({100 * results['arpo_minus_sft']:+.1f} points over SFT), "
        f"GRPO **{_percent(models['grpo']['pass@1'])}** ({100 * results['grpo_minus_sft']:+.1f} points)."
    )


def write_demo_report(out: Path, config: Mapping[str, Any], results: Mapping[str, Any]) -> Path:
    """Write the demo's report and ``results.json`` (:func:`demo_results`) into ``out``; returns the
    path of ``report.md``."""
    atomic_write_json(out / "results.json", results)
    models = results["models"]
    rl = config["rl"]
    branching = rl["rollout"]["branching"]
    env = config["env"]
    verdict = verdict_line(results)
    families = sorted({f for m in models.values() for f in m["families"]})
    blocks: list[Block] = [
        Heading("ARPO demo: a tiny tool-using agent learns with RL", 1),
        Paragraph(verdict),
        Table(
            ["model", "accuracy", "format errors", "tool calls per answer", "response tokens"],
            [
                [
                    label,
                    _percent(models[name]["pass@1"]),
                    _percent(models[name]["format_errors"]),
                    fmt(models[name]["tool_calls"]),
                    fmt(models[name]["response_tokens"]),
                ]
                for name, label in MODELS.items()
            ],
        ),
        Paragraph(
            "Training accuracy on fixed tasks (validation: the same training tasks sampled at the rollout "
            "temperature at step 0 and at the end): "
            + "; ".join(
                f"{MODELS[name]} {_percent(acc['validation']['start'])} → {_percent(acc['validation']['end'])}"
                for name, acc in results["training_accuracy"].items()
            )
            + "."
        ),
        Paragraph(
            "Training accuracy per step (the RL rollouts' initial samples, independent draws from the policy at the "
            f"rollout temperature; mean of the first {START_STEPS} steps → mean of the last {END_STEPS}; in "
            "brackets every leaf of the trees, where ARPO's branches over-weight tool use): "
            + "; ".join(
                f"{MODELS[name]} {_percent(acc['start'])} → {_percent(acc['end'])} "
                f"({_percent(acc['all_leaves']['start'])} → {_percent(acc['all_leaves']['end'])})"
                for name, acc in results["training_accuracy"].items()
            )
            + "."
        ),
        Heading("Accuracy by task family", 2),
        Table(
            ["family", *MODELS.values()],
            [[family, *(_percent(models[n]["families"].get(family)) for n in MODELS)] for family in families],
        ),
        Heading("Time", 2),
        Paragraph(
            "Wall-clock seconds per phase, and the CPU seconds the demo's process used (all threads; "
            "on a machine shared with other work, wall time grows while CPU time hardly does)."
        ),
        Table(
            ["phase", "wall s", "CPU s"],
            [
                [label, _seconds(results["wall_s"].get(phase)), _seconds(results["cpu_s"].get(phase))]
                for phase, label in PHASES.items()
            ]
            + [["total", _seconds(results["total_wall_s"]), _seconds(results["total_cpu_s"])]],
        ),
        Heading("Settings", 2),
        Paragraph(
            f"Environment: {env['train']['tasks']} train tasks ({env['train']['towns']} towns, "
            f"{env['train']['people']} people), {env['test']['tasks']} test tasks on a disjoint world, families "
            f"{', '.join(env['families'])}; {_percent(env['imperfect_demo_share'])} of the demonstrations are "
            f"imperfect ({', '.join(env['imperfect_kinds'])}). Model: a Llama trained from scratch (layers "
            f"{config['model']['num_layers']}, hidden size {config['model']['hidden_size']}, seed {config['seed']}). "
            f"SFT: {config['sft']['steps']} steps of {config['sft']['batch_size']} demonstrations, lr "
            f"{config['sft']['optim']['lr']}. RL: {rl['steps']} steps of {rl['prompts_per_step']} prompts, "
            f"M = {branching['rollouts_per_prompt']} trajectories per prompt, ARPO with N = "
            f"{branching['initial_rollouts']} initial samples (GRPO: N = M), temperature "
            f"{rl['rollout']['temperature']}, lr {rl['optim']['lr']}."
        ),
        Heading("Training: ARPO vs GRPO", 2),
        metrics_table({MODELS[n]: read_metrics(out / n) for n in ("arpo", "grpo")}),
        *training_figures({MODELS[n]: read_metrics(out / n) for n in ("arpo", "grpo")}, out, "plots/rl-"),
        Heading("Cold-start SFT", 2),
        *training_figures({"SFT": read_metrics(out / "sft")}, out, "plots/sft-"),
        Heading("Files", 2),
        Paragraph(
            "Each run folder (`sft/`, `arpo/`, `grpo/`) holds its config, `metrics.jsonl`, checkpoints and "
            "`report.md`; `eval/<model>/` holds `records.jsonl` (every test trajectory) and `summary.md`; "
            "`results.json` holds the numbers above."
        ),
    ]
    return write_report(blocks, out, "ARPO demo")
