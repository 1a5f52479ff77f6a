"""GRPO, ARPO and AEPO from one SFT model on the built-in environment, at equal steps and at equal
executed tool calls: the numbers of docs/efficiency.md.

Setup, once per ``--out`` folder: the demo's environment with all five task families (``lookup``,
``multi_hop``, ``compute``, ``lookup_compute``, ``compare``: the multi-call families give
branching after tool results room to matter) and one cold-start SFT of the demo's tiny model
(seed 0, ``--sft-steps``). Every arm then trains from that one SFT model with the demo's RL
settings (40 steps of 8 prompts × M = 8 paths) plus the arm's overrides (:data:`ARMS`), once per
seed. Each run saves a checkpoint every ``--save-every`` steps, and every checkpoint is evaluated
greedily on the 200 held-out tasks: a held-out accuracy curve against the run's cumulative
executed tool calls (``budget/tool_calls_total``: the calls the tools ran, a shared call once).
The seeds vary RL (sampling, task order), not the starting model, so every comparison between
arms is paired by seed.

Printed (and written to ``OUT/summary.json``):

1. equal steps: per arm, over seeds as mean ± sd (min–max), the final held-out accuracy and its
   paired difference with GRPO, the training accuracy of the initial samples over the last 10
   steps, executed tool calls, engine tokens (prefill + decode), RL wall seconds, initial samples
   and branches per prompt, and how branches spread over a tree's samples (top-3 share, spread,
   mean streak l: :mod:`arpo.core.tree_stats`);
2. held-out accuracy per task family;
3. equal executed tool calls: at 25, 50, 75 and 100 % of each arm's final cumulative calls, its
   held-out accuracy minus GRPO's at the same calls (same seed; both curves linear between their
   checkpoints);
4. the calls each arm's seed-mean held-out curve needs to first reach GRPO's final mean accuracy.

``OUT/budget.png`` plots the seed-mean held-out and training accuracy against cumulative executed
tool calls. Finished runs and evaluations are reused, so an interrupted sweep continues.
Accuracies do not depend on the machine's load; wall times do (compare them only between runs
that had the machine to themselves).

    .venv/bin/python benchmarks/arpo_vs_grpo.py --seeds 0 1 2 3 4 --arms grpo arpo aepo --out runs/arpo-vs-grpo
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, mean_sd, spread, table  # noqa: E402
from rich.console import Console  # noqa: E402

from arpo.config import deep_merge, parse_overrides  # noqa: E402
from arpo.demo import DemoConfig  # noqa: E402
from arpo.eval.evaluate import EvalConfig, run_eval  # noqa: E402
from arpo.eval.sources import EvalDataset  # noqa: E402
from arpo.models.loading import PolicyConfig  # noqa: E402
from arpo.report.plots import Panel, Series, figure  # noqa: E402
from arpo.tasks.toolworld import ToolworldConfig, build_toolworld, read_config  # noqa: E402
from arpo.train.checkpoint import checkpoint_dir, latest_checkpoint  # noqa: E402
from arpo.train.jobs import DataConfig, RLJobConfig, SFTJobConfig, run_rl, run_sft  # noqa: E402
from arpo.train.rl import RLConfig  # noqa: E402

BRANCHING = "rollout.branching"
CONTINUOUS = "rollout.scheduling=continuous"
AEPO = [
    f"{BRANCHING}.consecutive_penalty=0.05",
    "loss.clip_gradient=entropy_balanced",
    "advantage.entropy_weight=0.2",
]
ARMS: dict[str, list[str]] = {
    "grpo": [f"{BRANCHING}.initial_rollouts=8"],
    "arpo": [],
    "aepo": AEPO,
    "arpo-n2": [f"{BRANCHING}.initial_rollouts=2"],
    "arpo-n6": [f"{BRANCHING}.initial_rollouts=6"],
    "arpo-beta10": [f"{BRANCHING}.beta=10.0"],
    "arpo-alpha0.2": [f"{BRANCHING}.alpha=0.2"],
    "arpo-z2": [f"{BRANCHING}.branch_width=2"],
    "aepo-rollout": [f"{BRANCHING}.consecutive_penalty=0.05", f"{BRANCHING}.pre_monitor={{beta: 30.0}}"],
    "aepo-loss": AEPO[1:],
    "grpo-continuous": [f"{BRANCHING}.initial_rollouts=8", CONTINUOUS],
    "arpo-speculative": [CONTINUOUS, "rollout.speculative_fills=true"],
    "arpo-speculative-early": [CONTINUOUS, "rollout.speculative_fills=true", "rollout.early_decisions=true"],
}
"""Arms by name: overrides of the demo's RL config (M = 8, N = 4, Z = 1, α = 0.5, β = 0.2, k = 8,
sampled by rounds)."""
BASELINE = "grpo"
TOOL_CALLS = "budget/tool_calls_total"
PER_STEP = (
    "initial_per_prompt",
    "branches_per_prompt",
    "branch_top3_share",
    "branch_spread",
    "branch_streak_mean",
)
"""Rollout metrics averaged over a run's steps."""


def base_config(sft_steps: int, rl_steps: int) -> DemoConfig:
    """The demo's settings with every task family (their default mix), ``sft_steps`` of SFT and
    ``rl_steps`` of RL."""
    demo = DemoConfig()
    env = demo.env.model_copy(update={"families": ToolworldConfig().families})
    sft = demo.sft.model_copy(update={"steps": sft_steps, "save_every": sft_steps})
    rl = demo.rl.model_copy(update={"steps": rl_steps})
    return demo.model_copy(update={"env": env, "sft": sft, "rl": rl})


def arm_config(demo: DemoConfig, overrides: list[str], seed: int, save_every: int) -> RLConfig:
    data = deep_merge(demo.rl.model_dump(mode="json"), parse_overrides(overrides))
    # every scheduled checkpoint, plus room for the one an interrupted run writes on SIGTERM
    data.update(seed=seed, save_every=save_every, keep_checkpoints=-(-demo.rl.steps // save_every) + 2)
    return RLConfig.model_validate(data)


def finished(run_dir: Path, steps: int) -> bool:
    return latest_checkpoint(run_dir) == checkpoint_dir(run_dir, steps)


def evaluate(model: Path, env: Path, out: Path, demo: DemoConfig, console: Console) -> dict[str, float]:
    """Greedy held-out pass@1 of the model folder ``model``, overall (``all``) and per task family
    (cached in ``out``)."""
    summary = out / "summary.json"
    if not summary.is_file():
        run_eval(
            EvalConfig(
                model=PolicyConfig(name=str(model)),
                datasets=[EvalDataset(name="test", toolworld_dir=str(env), split="test")],
                sampling=demo.eval,
                out_dir=str(out),
            ),
            console,
        )
    result = json.loads(summary.read_text())
    (row,) = result["datasets"]
    return {"all": float(row["pass@1"]), **{r["family"]: float(r["pass@1"]) for r in result["families"]}}


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def run_summary(
    rows: list[dict[str, Any]], accuracy: dict[str, float], held_out: list[list[float]]
) -> dict[str, Any]:
    """What the tables need of one run: its metrics, final held-out accuracy and held-out curve."""
    last = rows[-1]
    return {
        "accuracy": accuracy["all"],
        "families": accuracy,
        "train_accuracy_last10": statistics.fmean(r["reward/accuracy_initial"] for r in rows[-10:]),
        "tool_calls": last[TOOL_CALLS],
        "engine_tokens": last["budget/engine_tokens_total"],
        "wall_s": last["time/wall_s_total"],
        **{name: mean_of(rows, f"rollout/{name}") for name in PER_STEP},
        "train_curve": [[r[TOOL_CALLS], r["reward/accuracy_initial"]] for r in rows],
        "held_out_curve": held_out,
    }


def interpolate(curve: list[list[float]], calls: float) -> float | None:
    """Held-out accuracy at ``calls`` cumulative executed tool calls, linear between the two saved
    checkpoints around it (``curve``: [step, calls, accuracy] from step 0, the SFT model); None
    beyond the curve's last checkpoint."""
    for (_, c0, a0), (_, c1, a1) in zip(curve, curve[1:], strict=False):
        if c0 <= calls <= c1:
            return a0 + (a1 - a0) * (calls - c0) / (c1 - c0) if c1 > c0 else a1
    return None


def prepare(demo: DemoConfig, out: Path, console: Console) -> tuple[Path, Path]:
    """The environment and the SFT model (built once per ``out``)."""
    env = out / "env"
    if not ((env / "manifest.json").is_file() and read_config(env) == demo.env):
        build_toolworld(demo.env, env, overwrite=True)
    sft = SFTJobConfig(
        run_dir=str(out / "sft"),
        model=PolicyConfig(name="tiny", tiny=demo.model, seed=0),
        data=DataConfig(toolworld_dir=str(env)),
        train=demo.sft.model_copy(update={"seed": 0}),
    )
    if not finished(Path(sft.run_dir), demo.sft.steps):
        run_sft(sft, resume=latest_checkpoint(Path(sft.run_dir)) is not None, console=console)
    return env, out / "sft"


def train_and_eval(
    demo: DemoConfig,
    arm: str,
    seed: int,
    out: Path,
    env: Path,
    save_every: int,
    start: float,
    console: Console,
) -> dict[str, Any]:
    """Train (or reuse) one run and evaluate every saved checkpoint on the held-out tasks."""
    run_dir, evals = out / "runs" / f"{arm}-seed{seed}", out / "eval" / f"{arm}-seed{seed}"
    config = arm_config(demo, ARMS[arm], seed, save_every)
    if not finished(run_dir, config.steps):
        shutil.rmtree(evals, ignore_errors=True)  # evaluations of an earlier run of this name
        job = RLJobConfig(
            run_dir=str(run_dir),
            model=PolicyConfig(name=str(out / "sft")),
            data=DataConfig(toolworld_dir=str(env)),
            train=config,
        )
        run_rl(job, resume=latest_checkpoint(run_dir) is not None, console=console)
    rows = metrics(run_dir)
    calls = {int(r["step"]): r[TOOL_CALLS] for r in rows}
    held_out, accuracy = [[0, 0.0, start]], {}
    for step in [*range(save_every, config.steps, save_every), config.steps]:
        folder = checkpoint_dir(run_dir, step)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is missing: delete {run_dir} to train it again with --save-every {save_every}"
            )
        accuracy = evaluate(folder, env, evals / f"step-{step}", demo, console)
        held_out.append([step, calls[step], accuracy["all"]])
    return run_summary(rows, accuracy, held_out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["grpo", "arpo", "aepo"])
    parser.add_argument("--out", type=Path, default=Path("runs/arpo-vs-grpo"))
    parser.add_argument("--sft-steps", type=int, default=900, help="SFT steps of the shared starting model")
    parser.add_argument("--rl-steps", type=int, default=40, help="RL steps of every run")
    parser.add_argument("--save-every", type=int, default=4, help="checkpoint (and evaluation) interval")
    args = parser.parse_args()
    if BASELINE not in args.arms:
        parser.error(f"--arms must include the baseline {BASELINE!r}")
    console = Console(stderr=True)
    print(describe(machine()))
    args.out.mkdir(parents=True, exist_ok=True)
    demo = base_config(args.sft_steps, args.rl_steps)
    env, sft = prepare(demo, args.out, console)
    start = evaluate(sft, env, args.out / "eval" / "sft", demo, console)
    runs = {
        arm: {
            seed: train_and_eval(demo, arm, seed, args.out, env, args.save_every, start["all"], console)
            for seed in args.seeds
        }
        for arm in [BASELINE, *(a for a in args.arms if a != BASELINE)]
    }
    report(args, start, runs)


def paired(diffs: list[float]) -> str:
    mean, sd = mean_sd(diffs)
    return f"{mean:+.1f} ± {sd:.1f} ({sum(d > 0 for d in diffs)}/{len(diffs)} seeds higher)"


def mean_curve(
    by_seed: dict[int, dict[str, Any]], key: str, x: int, y: int
) -> tuple[list[float], list[float]]:
    """Point by point (saved step, or training step), the seeds' mean of columns ``x`` and ``y``."""
    points = list(zip(*(r[key] for r in by_seed.values()), strict=True))
    return [statistics.fmean(p[x] for p in point) for point in points], [
        statistics.fmean(p[y] for p in point) for point in points
    ]


def calls_to_reach(calls: list[float], accuracy: list[float], target: float) -> float | None:
    """Cumulative executed calls where the mean held-out curve first reaches ``target``
    (interpolated); None if it never does."""
    if accuracy[0] >= target:
        return 0.0
    for c0, a0, c1, a1 in zip(calls, accuracy, calls[1:], accuracy[1:], strict=False):
        if a1 >= target > a0:
            return c0 + (c1 - c0) * (target - a0) / (a1 - a0)
    return None


def report(
    args: argparse.Namespace, start: dict[str, float], runs: dict[str, dict[int, dict[str, Any]]]
) -> None:
    seeds = args.seeds

    def over_seeds(arm: str, key: str, scale: float = 1.0, digits: int = 1) -> str:
        values = [runs[arm][s][key] for s in seeds]
        return "–" if any(v is None for v in values) else spread(values, scale, digits)

    base = runs[BASELINE]
    print(f"\nthe SFT model all arms start from: {100 * start['all']:.1f} % held-out")
    print(f"\nequal steps ({args.rl_steps}; {len(seeds)} seeds: {seeds}; mean ± sd (min–max)):")
    columns = {
        "held-out %": lambda arm: over_seeds(arm, "accuracy", 100),
        "− GRPO, paired": lambda arm: (
            "–"
            if arm == BASELINE
            else paired([100 * (runs[arm][s]["accuracy"] - base[s]["accuracy"]) for s in seeds])
        ),
        "train acc, last 10 steps %": lambda arm: over_seeds(arm, "train_accuracy_last10", 100),
        "executed tool calls": lambda arm: over_seeds(arm, "tool_calls", 1, 0),
        "engine tokens (k)": lambda arm: over_seeds(arm, "engine_tokens", 1e-3, 0),
        "RL wall s": lambda arm: over_seeds(arm, "wall_s", 1, 0),
        "initial / prompt": lambda arm: over_seeds(arm, "initial_per_prompt", 1, 1),
        "branches / prompt": lambda arm: over_seeds(arm, "branches_per_prompt", 1, 2),
        "top-3 share %": lambda arm: over_seeds(arm, "branch_top3_share", 100),
        "branch spread %": lambda arm: over_seeds(arm, "branch_spread", 100),
        "streak l": lambda arm: over_seeds(arm, "branch_streak_mean", 1, 2),
    }
    print(table(["arm", *columns], [[arm, *(get(arm) for get in columns.values())] for arm in runs]))

    families = [f for f in start if f != "all"]
    print("\nheld-out accuracy % per task family at the last step (mean over seeds):")
    print(
        table(
            ["model", *families],
            [["SFT", *(f"{100 * start[f]:.1f}" for f in families)]]
            + [
                [
                    arm,
                    *(
                        f"{100 * statistics.fmean(r['families'][f] for r in by_seed.values()):.1f}"
                        for f in families
                    ),
                ]
                for arm, by_seed in runs.items()
            ],
        )
    )

    print(
        "\nequal executed tool calls: held-out accuracy, arm − GRPO (same seed, paired), at shares of the"
        " arm's final cumulative calls; both curves linear between their checkpoints every"
        f" {args.save_every} steps:"
    )
    shares = (0.25, 0.5, 0.75, 1.0)
    rows = []
    for arm in runs:
        if arm == BASELINE:
            continue
        row = [arm]
        for share in shares:
            budget = {s: share * runs[arm][s]["tool_calls"] for s in seeds}
            diffs = []
            for s in seeds:
                ours = interpolate(runs[arm][s]["held_out_curve"], budget[s])
                theirs = interpolate(base[s]["held_out_curve"], budget[s])
                if ours is not None and theirs is not None:
                    diffs.append(100 * (ours - theirs))
            left_out = len(seeds) - len(diffs)
            cell = paired(diffs) if diffs else "–"
            row.append(
                f"{statistics.fmean(budget.values()):.0f}: {cell}"
                + (f", {left_out} beyond GRPO's" if left_out else "")
            )
        rows.append(row)
    print(table(["arm", *(f"{share:.0%} of its calls" for share in shares)], rows))

    target = statistics.fmean(base[s]["accuracy"] for s in seeds)
    print(
        f"\nexecuted tool calls until the seed-mean held-out curve first reaches GRPO's final mean"
        f" ({100 * target:.1f} %):"
    )
    reach = []
    for arm, by_seed in runs.items():
        calls, accuracy = mean_curve(by_seed, "held_out_curve", 1, 2)
        needed = calls_to_reach(calls, accuracy, target)
        reach.append([arm, "never" if needed is None else f"{needed:.0f}", f"{100 * max(accuracy):.1f}"])
    print(table(["arm", "calls to reach", "best seed-mean held-out %"], reach))

    figure(
        [
            Panel(
                f"held-out accuracy (greedy, mean of {len(seeds)} seeds) vs executed tool calls",
                "accuracy",
                [Series(arm, *mean_curve(by_seed, "held_out_curve", 1, 2)) for arm, by_seed in runs.items()],
                xlabel="cumulative executed tool calls (mean of seeds)",
            ),
            Panel(
                f"training accuracy (initial samples, mean of {len(seeds)} seeds, 10-step mean)",
                "accuracy",
                [Series(arm, *mean_curve(by_seed, "train_curve", 0, 1)) for arm, by_seed in runs.items()],
                xlabel="cumulative executed tool calls (mean of seeds)",
                smooth=10,
            ),
        ],
        args.out / "budget.png",
    )
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "sft": start,
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"\nwrote {args.out / 'summary.json'} and {args.out / 'budget.png'}")


if __name__ == "__main__":
    main()
