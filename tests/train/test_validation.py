"""Validation during RL training (``validation``): fixed tasks sampled at step 0, every k steps and
at the end, with the trainer's generator, scored exactly as ``arpo eval`` scores a checkpoint."""

from __future__ import annotations

import json
from statistics import fmean

import pytest
import torch

from arpo.config import ConfigError, load_config
from arpo.eval.evaluate import EvalConfig, run_eval
from arpo.eval.sampling import SamplingConfig
from arpo.eval.sources import LoadedDataset
from arpo.models.tiny import build_tiny_llama
from arpo.tools import Calculator, ToolBox
from arpo.train.budget import BUDGETS
from arpo.train.checkpoint import checkpoint_dir
from arpo.train.jobs import RLJobConfig, SFTJobConfig, run_rl, run_sft
from arpo.train.metrics_log import read_metrics
from arpo.train.progress import describe
from arpo.train.validation import ValidationConfig, ValidationSet, Validator
from tests.train.helpers import arithmetic_tasks, arithmetic_trainer, count_ones, rl_config

SAMPLING = {"temperature": 1.0, "samples": 2, "max_response_tokens": 48, "seed": 5}
VAL_KEYS = {f"val/probe/{q}" for q in ("accuracy", "format_ok", "tool_calls", "response_tokens")}


@pytest.fixture(scope="module")
def sft_model(toolworld, tmp_path_factory):
    """A tiny model briefly fine-tuned on the demonstrations: it ends its answers, so sampled
    lengths vary and an update shows in the validation metrics."""
    run_dir = tmp_path_factory.mktemp("sft")
    config = {
        "run_dir": str(run_dir),
        "data": {"toolworld_dir": str(toolworld.root)},
        "train": {"steps": 20, "batch_size": 8, "optim": {"lr": 3e-3}, "logging": {"tensorboard": False}},
    }
    run_sft(SFTJobConfig.model_validate(config))
    return run_dir


def _job(toolworld, model, run_dir, steps):
    probe = {"name": "probe", "toolworld_dir": str(toolworld.root), "split": "train", "limit": 4}
    return RLJobConfig.model_validate(
        {
            "run_dir": str(run_dir),
            "model": {"name": str(model)},
            "data": {"toolworld_dir": str(toolworld.root)},
            "train": {
                "steps": steps,
                "prompts_per_step": 2,
                "save_every": 1,
                "optim": {"lr": 1e-2},
                "loss": {"entropy_coef": 0.1},  # a gradient even when every reward is equal
                "logging": {"tensorboard": False},
                "rollout": {
                    "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2},
                    "max_response_tokens": 48,
                },
            },
            "validation": {"every": 2, "datasets": [probe], "sampling": SAMPLING},
        }
    )


def _eval_of(checkpoint, toolworld, out):
    """``arpo eval`` of a checkpoint on the probe with the validation's sampling: the expected metrics."""
    config = EvalConfig.model_validate(
        {
            "model": {"name": str(checkpoint)},
            "datasets": [{"toolworld_dir": str(toolworld.root), "split": "train", "limit": 4}],
            "sampling": SAMPLING,
            "out_dir": str(out),
        }
    )
    run_eval(config)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 8
    return {
        "val/probe/accuracy": fmean(r["score"] for r in records),
        "val/probe/format_ok": fmean(float(r["format_ok"]) for r in records),
        "val/probe/tool_calls": fmean(sum(c["status"] != "limit" for c in r["tool_calls"]) for r in records),
        "val/probe/response_tokens": fmean(r["tokens"]["response"] for r in records),
    }


def test_validation_runs_at_step_0_every_k_and_the_end_and_equals_arpo_eval(toolworld, sft_model, tmp_path):
    run_dir = tmp_path / "rl"
    run_rl(_job(toolworld, sft_model, run_dir, steps=3))
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    assert [m["step"] for m in metrics if "val/probe/accuracy" in m] == [0, 2, 3]
    assert set(metrics[0]) == {"step", "time/validation_s", *VAL_KEYS, *BUDGETS}
    assert all(metrics[0][key] == 0 for key in BUDGETS)
    assert "time/validation_s" not in metrics[1]
    # each validation equals an `arpo eval` of that step's weights with the same settings
    for row in (metrics[2], metrics[3]):
        expected = _eval_of(checkpoint_dir(run_dir, row["step"]), toolworld, tmp_path / f"eval{row['step']}")
        assert {key: row[key] for key in VAL_KEYS} == pytest.approx(expected)
    assert metrics[3]["val/probe/response_tokens"] != metrics[0]["val/probe/response_tokens"]  # new weights
    assert (run_dir / "plots" / "validation.png").stat().st_size > 0
    assert "plots/validation.png" in (run_dir / "report.md").read_text()
    # a resumed run neither repeats step 0 nor skips the last step's validation
    run_rl(_job(toolworld, sft_model, run_dir, steps=4), resume=True)
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [0, 1, 2, 3, 4]
    assert "val/probe/accuracy" in metrics[4]


def test_validation_leaves_the_training_run_unchanged(tokenizer, tmp_path):
    histories, params = [], []
    for validated in (False, True):
        model = build_tiny_llama(tokenizer, seed=0)
        with ToolBox([Calculator()]) as tools:
            data = LoadedDataset("sums", arithmetic_tasks(3), [])
            sampling = SamplingConfig(temperature=1.0, samples=2, max_response_tokens=24)
            config = rl_config(steps=3)
            validation = ValidationConfig(
                every=1, datasets=[{"dataset": {"path": "unused.jsonl"}}], sampling=sampling
            )
            validator = Validator(
                1,
                [ValidationSet(data, tools)],
                sampling,
                validation.rollout_config(config.rollout),
                tokenizer,
                count_ones,
            )
            trainer = arithmetic_trainer(
                config,
                model,
                tokenizer,
                tools,
                tmp_path / str(validated),
                validator=validator if validated else None,
            )
            history = trainer.train()
        histories.append(
            [
                {k: v for k, v in m.items() if m["step"] > 0 and not k.startswith(("time/", "val/"))}
                for m in history
                if m["step"] > 0
            ]
        )
        params.append(model.state_dict())
    assert histories[0] == histories[1]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])


def test_validation_config_is_checked():
    with pytest.raises(ConfigError, match="needs validation.datasets"):
        load_config(RLJobConfig, None, ["validation.every=2"])
    with pytest.raises(ConfigError, match="validation.every is 0"):
        load_config(RLJobConfig, None, ["validation.datasets=[{toolworld_dir: env}]"])
    with pytest.raises(ConfigError, match="validation.sampling.engine"):
        load_config(
            RLJobConfig,
            None,
            [
                "validation.every=2",
                "validation.datasets=[{toolworld_dir: env}]",
                "validation.sampling.engine=vllm",
            ],
        )


def test_progress_line_shows_each_validation_accuracy():
    line = describe({"reward/mean": 0.5, "val/probe/accuracy": 0.25, "val/probe/tool_calls": 1.0})
    assert line == "reward 0.5  val probe 0.25"
