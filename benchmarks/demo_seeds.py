"""The demo over several seeds, natively and on an emulated AVX2-only CPU: the numbers of docs/demo.md.

Runs ``arpo demo seed=S out_dir=OUT/<isa>-seed<S>`` for every seed and instruction set (a finished
demo folder is reused, so an interrupted sweep continues), then prints per seed the held-out
accuracy of SFT, ARPO and GRPO, the gains over SFT, the RL runs' training accuracy — on the fixed
validation tasks (step 0 → the last step), and per step (first 5 steps → last 10; of the initial
samples, and for ARPO also of every leaf) — and the wall time; then mean ± sd (min–max) over
seeds, and writes ``OUT/summary.json``, ``OUT/training-accuracy.png`` (every seed's smoothed
per-step curve of the initial samples) and ``OUT/validation-accuracy.png`` (every seed's
fixed-task curve).

``avx2`` runs the demo with :func:`harness.slow_cpu_environ`. Accuracies do not depend on the load of
the machine (the computation is the same), so ``--jobs 2`` may run two demos at once; wall times
are only meaningful for demos that ran alone (``--jobs 1``). Each demo keeps torch's threads (one
per core), so two at once oversubscribe the cores: on the 2-core development machine each one's SFT
steps took about 19× as long as alone (3.2 against 0.17 s, 2026-12-07), so there ``--jobs 1`` is
also the faster sweep.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 3 4 --isa native avx2 --out runs/demo-seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, slow_cpu_environ, spread, table  # noqa: E402

from arpo.report.plots import Panel, Series, figure  # noqa: E402

ARPO = str(Path(sys.executable).with_name("arpo"))


def run_demo(out: Path, isa: str, seed: int, overrides: list[str]) -> dict[str, Any]:
    folder = out / f"{isa}-seed{seed}"
    results = folder / "results.json"
    if not results.is_file():
        env = slow_cpu_environ() if isa == "avx2" else dict(os.environ)
        with open(out / f"{isa}-seed{seed}.log", "w") as log:
            subprocess.run(
                [ARPO, "demo", f"seed={seed}", f"out_dir={folder}", *overrides],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
    return json.loads(results.read_text())


def fixed_tasks(accuracy: dict[str, Any]) -> dict[str, Any]:
    """The fixed-task accuracy of an RL run's results (none in demos without validation)."""
    return accuracy.get("validation") or {"start": None, "end": None, "steps": [], "values": []}


def gain(accuracy: dict[str, Any]) -> float | None:
    """end − start, or None when the run has no such measurement."""
    start, end = accuracy.get("start"), accuracy.get("end")
    return None if start is None or end is None else end - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--isa", nargs="+", choices=["native", "avx2"], default=["native", "avx2"])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"))
    parser.add_argument("--jobs", type=int, default=1, help="demos run at once (wall times need 1)")
    parser.add_argument("overrides", nargs="*", help="passed to arpo demo, e.g. rl.steps=40")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(describe(machine()))
    runs = [(isa, seed) for isa in args.isa for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(
            zip(runs, pool.map(lambda r: run_demo(args.out, r[0], r[1], args.overrides), runs), strict=True)
        )
    summary: dict[str, Any] = {"machine": machine(), "overrides": args.overrides, "runs": {}}
    for isa in args.isa:
        rows, per_seed = [], [results[(isa, s)] for s in args.seeds]
        for seed, r in zip(args.seeds, per_seed, strict=True):
            m, train = r["models"], r["training_accuracy"]
            rows.append(
                [
                    seed,
                    *(f"{100 * m[k]['pass@1']:.1f}" for k in ("sft", "arpo", "grpo")),
                    f"{100 * r['arpo_minus_sft']:+.1f}",
                    f"{100 * r['grpo_minus_sft']:+.1f}",
                    *(
                        f"{100 * acc['start']:.0f} → {100 * acc['end']:.0f}" if gain(acc) is not None else "–"
                        for acc in (
                            fixed_tasks(train["arpo"]),
                            fixed_tasks(train["grpo"]),
                            train["arpo"],
                            train["grpo"],
                            train["arpo"]["all_leaves"],
                        )
                    ),
                    f"{r['total_wall_s']:.0f}",
                ]
            )

        def column(get: Any, scale: float = 100.0, digits: int = 1, runs: list = per_seed) -> str:
            values = [v for v in (get(r) for r in runs) if v is not None]
            return spread(values, scale, digits) if values else "–"

        rows.append(
            [
                "mean ± sd (min–max)",
                *(column(lambda r, k=k: r["models"][k]["pass@1"]) for k in ("sft", "arpo", "grpo")),
                column(lambda r: r["arpo_minus_sft"]),
                column(lambda r: r["grpo_minus_sft"]),
                *(
                    "gain " + column(lambda r, get=get: gain(get(r)))
                    for get in (
                        lambda r: fixed_tasks(r["training_accuracy"]["arpo"]),
                        lambda r: fixed_tasks(r["training_accuracy"]["grpo"]),
                        lambda r: r["training_accuracy"]["arpo"],
                        lambda r: r["training_accuracy"]["grpo"],
                        lambda r: r["training_accuracy"]["arpo"]["all_leaves"],
                    )
                ),
                column(lambda r: r["total_wall_s"], 1.0, 0),
            ]
        )
        print(f"\n{isa}:")
        print(
            table(
                [
                    "seed",
                    "SFT %",
                    "ARPO %",
                    "GRPO %",
                    "ARPO − SFT",
                    "GRPO − SFT",
                    "ARPO fixed-task train acc %",
                    "GRPO fixed-task train acc %",
                    "ARPO train acc %",
                    "GRPO train acc %",
                    "ARPO train acc, all leaves %",
                    "wall s",
                ],
                rows,
            )
        )
        summary["runs"][isa] = {str(s): r for s, r in zip(args.seeds, per_seed, strict=True)}
    panels = [
        Panel(
            f"{label} training accuracy (10-step mean)",
            "accuracy",
            [
                Series(
                    f"{isa} seed {seed}",
                    list(range(1, len(curve) + 1)),
                    curve,
                    linestyle="-" if isa == "native" else "--",
                )
                for (isa, seed), r in results.items()
                for curve in [r["training_accuracy"][name]["per_step"]]
            ],
            xlabel="step",
            smooth=10,
        )
        for name, label in (("arpo", "ARPO"), ("grpo", "GRPO"))
    ]
    figure(panels, args.out / "training-accuracy.png")
    validation = [
        Panel(
            f"{label} accuracy on the fixed training tasks",
            "accuracy",
            [
                Series(
                    f"{isa} seed {seed}",
                    curve["steps"],
                    curve["values"],
                    linestyle="-" if isa == "native" else "--",
                )
                for (isa, seed), r in results.items()
                for curve in [fixed_tasks(r["training_accuracy"][name])]
            ],
            xlabel="step",
        )
        for name, label in (("arpo", "ARPO"), ("grpo", "GRPO"))
    ]
    figure(validation, args.out / "validation-accuracy.png")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {args.out / 'summary.json'}, training-accuracy.png and validation-accuracy.png")


if __name__ == "__main__":
    main()
