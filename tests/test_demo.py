"""A shortened ``arpo demo`` end to end: every phase runs, the report and its numbers exist, a
second invocation resumes (skips finished phases), a changed config is refused."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from arpo.cli import app
from arpo.demo import DemoConfig
from arpo.report.demo_report import MODELS, PHASES

runner = CliRunner()
SHORT = [
    "env.train={towns: 8, people: 16, tasks: 40}",
    "env.test={towns: 8, people: 16, tasks: 12}",
    "model={hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1}",
    "sft.steps=3",
    "sft.batch_size=8",
    "rl.steps=2",
    "rl.prompts_per_step=2",
    "rl.rollout.branching={rollouts_per_prompt: 4, initial_rollouts: 2, entropy_window: 4}",
    "rl.rollout.max_response_tokens=48",
    "eval.max_response_tokens=48",
    "eval_tasks=6",
    "validation={every: 1, tasks: 3, samples: 2}",
]
RL_KEYS = {
    "reward/mean",
    "reward/accuracy",
    "reward/accuracy_initial",
    "reward/format_ok",
    "rollout/trajectories",
    "rollout/branches_per_prompt",
    "rollout/tool_calls_per_trajectory",
    "rollout/response_length_mean",
    "time/step_s",
    "lr",
}


def test_short_demo_end_to_end_then_resume(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", f"out_dir={out}", *SHORT])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and str(out / "report.md") in result.output.replace("\n", "")

    for name in ("report.md", "report.html", "results.json", "timings.json", "demo_config.yaml"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "Held-out accuracy on 6 test tasks" in report
    images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert {
        "plots/rl-reward.png",
        "plots/rl-branching.png",
        "plots/rl-entropy.png",
        "plots/rl-validation.png",
        "plots/sft-sft.png",
    } <= set(images)
    assert all((out / image).stat().st_size > 0 for image in images)

    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == set(MODELS)
    for model in results["models"].values():
        assert model["tasks"] == 6 and 0 <= model["pass@1"] <= 1 and model["families"]
    assert set(PHASES) <= set(results["wall_s"]) and set(PHASES) <= set(results["cpu_s"])
    assert (
        results["arpo_minus_sft"] == results["models"]["arpo"]["pass@1"] - results["models"]["sft"]["pass@1"]
    )

    for run in MODELS:
        assert (out / run / "report.md").stat().st_size > 0
        assert len((out / "eval" / run / "records.jsonl").read_text().splitlines()) == 6
    for run in ("arpo", "grpo"):
        lines = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in lines] == [0, 1, 2]  # step 0: validation of the SFT model
        assert all("val/train/accuracy" in m for m in lines)
        validation = results["training_accuracy"][run]["validation"]
        assert validation["steps"] == [0, 1, 2]
        assert validation["values"] == [m["val/train/accuracy"] for m in lines]
        lines = lines[1:]
        assert all(set(m) >= RL_KEYS for m in lines), RL_KEYS - set(lines[0])
        assert all(m["rollout/trajectories"] == 8 for m in lines)
        assert all(0 <= m["reward/initial_same_outcome"] <= 1 for m in lines)  # 2 initial samples per tree
        if run == "grpo":  # every leaf is an initial sample, and none is a branch
            assert all(m["reward/accuracy_initial"] == m["reward/accuracy"] for m in lines)
            assert not any("reward/branch_same_outcome" in m for m in lines)
    assert "loss/sft" in json.loads((out / "sft" / "metrics.jsonl").read_text().splitlines()[-1])
    configs = {run: (out / run / "config.yaml").read_text() for run in ("arpo", "grpo")}
    assert "initial_rollouts: 2" in configs["arpo"] and "initial_rollouts: 4" in configs["grpo"]

    again = runner.invoke(app, ["demo", f"out_dir={out}", *SHORT])
    assert again.exit_code == 0, again.output
    assert again.output.count("already done") == len(PHASES)
    assert json.loads((out / "results.json").read_text())["models"] == results["models"]

    changed = runner.invoke(app, ["demo", f"out_dir={out}", *SHORT, "seed=1"])
    assert changed.exit_code == 2 and "another config" in changed.output


def test_grpo_is_arpo_with_n_equal_m():
    config = DemoConfig()
    grpo = config.grpo()
    branching = grpo.rollout.branching
    assert (
        branching.initial_rollouts
        == branching.rollouts_per_prompt
        == config.rl.rollout.branching.rollouts_per_prompt
    )
    assert config.rl.rollout.branching.initial_rollouts < branching.rollouts_per_prompt
    assert grpo.model_dump(exclude={"rollout"}) == config.rl.model_dump(exclude={"rollout"})


def test_a_folder_that_is_not_a_demo_is_never_overwritten(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", f"out_dir={tmp_path}", "--overwrite"])
    assert result.exit_code == 2 and "demo_config.yaml" in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
