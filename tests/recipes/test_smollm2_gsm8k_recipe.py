"""The SmolLM2 GSM8K recipe (docs/recipes/smollm2_gsm8k.md), every stage a few steps on a tiny model.

``scripts/smollm2_gsm8k.sh`` runs with the recipe's own configs, only the model, the problem
counts, the steps and the engine overridden: data → demonstrations → SFT → ARPO and GRPO from the
SFT run → greedy evaluation (the synthetic test set and a GSM8K-layout file) → sampled evaluation.
What is checked is that each stage consumes the previous one's output (the SFT run's checkpoint,
the RL run folders), produces what the next needs, records its time, and that a second call
skips what is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arpo.config import load_config
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "smollm2_gsm8k.sh"
PHASES = ["data", "sft", "arpo", "grpo", "eval", "sampled"]
QUICK = {
    "N_TRAIN": "12",
    "N_TEST": "4",
    "N_VAL": "4",
    "SFT_ARGS": "model.name=tiny model.tiny.hidden_size=32 model.tiny.num_layers=1 train.steps=2"
    ' train.batch_size=4 train.micro_batch_size=2 train.mixed_precision="no" train.logging.tensorboard=false',
    "RL_ARGS": "train.steps=1 train.prompts_per_step=8 train.rollout.engine=hf train.rollout.max_response_tokens=48"
    ' train.mixed_precision="no" train.logging.tensorboard=false',
    "EVAL_ARGS": "sampling.engine=hf sampling.max_response_tokens=48",
}


def run_script(run: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), str(run), "3"],
        cwd=ROOT,
        env={**os.environ, "ARPO": f"{sys.executable} -m arpo.cli", **QUICK, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stderr


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_recipe_script_runs_every_stage_on_a_tiny_model(tmp_path: Path) -> None:
    gsm8k = tmp_path / "gsm8k-like.jsonl"  # a file of the GSM8K test split's layout
    sample = ["data", "gsm8k-sample", "--out", str(gsm8k), "--n", "3", "--seed", "9"]
    subprocess.run([sys.executable, "-m", "arpo.cli", *sample], check=True, capture_output=True)
    run = tmp_path / "recipe"
    log = run_script(run, {"GSM8K": str(gsm8k)})

    timings = [line.split("\t") for line in (run / "timings.tsv").read_text().splitlines()]
    assert [name for name, _ in timings] == PHASES and all(int(s) >= 0 for _, s in timings)
    assert "total" in log
    assert sum(1 for _ in (run / "train.jsonl").open()) == 12 and (run / "demos.jsonl").stat().st_size > 0
    assert latest_checkpoint(run / "sft") is not None

    for name in ("arpo", "grpo"):
        assert latest_checkpoint(run / name) is not None
        config = load_config(RLJobConfig, run / name / "config.yaml")
        assert str(config.model.name) == str(run / "sft") and config.train.seed == 3
        (metrics,) = [json.loads(line) for line in (run / name / "metrics.jsonl").read_text().splitlines()]
        branching = config.train.rollout.branching
        assert metrics["rollout/trajectories"] == 8 * branching.rollouts_per_prompt
    assert branching.initial_rollouts == branching.rollouts_per_prompt  # the last one, GRPO: N = M

    for model in ("sft", "arpo", "grpo"):
        greedy = records(run / "eval" / model)
        assert sorted(r["dataset"] for r in greedy) == ["gsm8k-test"] * 3 + ["synthetic-test"] * 4
        sampled = records(run / "eval-sampled" / model)
        assert len(sampled) == 4 * 4 and {r["dataset"] for r in sampled} == {"synthetic-test"}
        summary = json.loads((run / "eval-sampled" / model / "summary.json").read_text())
        assert summary["config"]["sampling"]["temperature"] == config.train.rollout.temperature  # RL's policy

    again = run_script(run, {})
    assert all(f"{name}: done before" in again for name in PHASES)
    assert (run / "timings.tsv").read_text().count("\n") == len(PHASES)


def test_an_unknown_phase_is_refused_before_anything_runs(tmp_path: Path) -> None:
    run = tmp_path / "recipe"
    done = subprocess.run(
        ["bash", str(SCRIPT), str(run)],
        env={**os.environ, "PHASES": "data evaluate"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "unknown phase 'evaluate'" in done.stderr
    assert not run.exists()
