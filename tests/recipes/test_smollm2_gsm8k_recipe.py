"""The SmolLM2 GSM8K recipe (docs/recipes/smollm2_gsm8k.md), every stage a few steps on a tiny model.

The recipe's own configs run with only the model, the data paths, the steps and the engine
overridden: data → demonstrations → SFT → ARPO and GRPO from the SFT run → evaluation of the ARPO
run on the held-out file. What is checked is that each stage consumes the previous one's output
(the SFT run's checkpoint, the RL run folder) and produces what the next needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from arpo.cli import app
from arpo.config import load_config
from arpo.eval.evaluate import EvalConfig, run_eval
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, SFTJobConfig, run_rl, run_sft

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["model.name=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1"]
QUICK_RL = [
    "train.steps=1",
    "train.prompts_per_step=8",
    "train.rollout.engine=hf",
    "train.rollout.max_response_tokens=48",
]
QUICK_RL += ['train.mixed_precision="no"', "train.logging.tensorboard=false"]


def cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def test_every_stage_of_the_recipe_runs_on_a_tiny_model(tmp_path: Path) -> None:
    train, test, demos = tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "demos.jsonl"
    cli("data", "gsm8k-sample", "--out", str(train), "--n", "12", "--seed", "0")
    cli("data", "gsm8k-sample", "--out", str(test), "--n", "4", "--seed", "1", "--exclude", str(train))
    cli("data", "gsm8k-demos", "--in", str(train), "--out", str(demos), "--flawed-share", "0.25")

    sft_dir = tmp_path / "sft"
    sft = load_config(
        SFTJobConfig,
        CONFIGS / "smollm2_gsm8k_sft.yaml",
        [
            *TINY,
            f"run_dir={sft_dir}",
            f"data.demonstrations.path={demos}",
            "train.steps=2",
            "train.batch_size=4",
        ]
        + ["train.micro_batch_size=2", 'train.mixed_precision="no"', "train.logging.tensorboard=false"],
    )
    assert len(run_sft(sft)) == 2 and latest_checkpoint(sft_dir) is not None

    runs = {}
    for name in ("arpo", "grpo"):
        runs[name] = tmp_path / name
        config = load_config(
            RLJobConfig,
            CONFIGS / f"smollm2_gsm8k_{name}.yaml",
            [f"run_dir={runs[name]}", f"model.name={sft_dir}", f"data.dataset.path={train}", *QUICK_RL],
        )
        assert config.train.rollout.engine == "hf"  # the recipe's vllm is overridden here only
        (metrics,) = run_rl(config)
        branching = config.train.rollout.branching
        assert (
            metrics["rollout/trajectories"] == config.train.prompts_per_step * branching.rollouts_per_prompt
        )
        assert latest_checkpoint(runs[name]) is not None
    assert branching.initial_rollouts == branching.rollouts_per_prompt  # the last one, GRPO: N = M

    out = tmp_path / "eval"
    evaluation = load_config(
        EvalConfig,
        CONFIGS / "smollm2_gsm8k_eval.yaml",
        [f"model.name={runs['arpo']}", f"datasets.0.dataset.path={test}", f"out_dir={out}"]
        + ["sampling.engine=hf", "sampling.max_response_tokens=48"],
    )
    run_eval(evaluation)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["dataset"] for r in records} == {"synthetic-test"}
