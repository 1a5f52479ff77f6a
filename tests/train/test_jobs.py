"""`arpo sft` then `arpo train` on the built-in environment, through the job layer."""

from __future__ import annotations

import pytest
import yaml

from arpo.config import ConfigError, load_config
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, SFTJobConfig, run_rl, run_sft
from arpo.train.metrics_log import read_metrics

QUIET = {"logging": {"tensorboard": False}}


def test_sft_then_arpo_starting_from_the_sft_run(toolworld, toolworld_tokenizer, tmp_path):
    data = {"toolworld_dir": str(toolworld.root)}
    sft = SFTJobConfig.model_validate(
        {
            "run_dir": str(tmp_path / "sft"),
            "data": data,
            "train": {"steps": 3, "batch_size": 8, "optim": {"lr": 1e-3}, **QUIET},
        }
    )
    assert len(run_sft(sft)) == 3
    sft_checkpoint = latest_checkpoint(tmp_path / "sft")
    assert (sft_checkpoint / "tokenizer.json").read_text() == (
        toolworld.tokenizer / "tokenizer.json"
    ).read_text()

    rl = RLJobConfig.model_validate(
        {
            "run_dir": str(tmp_path / "rl"),
            "model": {"name": str(tmp_path / "sft")},
            "data": data,
            "train": {
                "steps": 2,
                "prompts_per_step": 2,
                "save_every": 1,
                **QUIET,
                "rollout": {
                    "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2},
                    "max_response_tokens": 64,
                },
            },
        }
    )
    history = run_rl(rl)
    assert [m["step"] for m in read_metrics(tmp_path / "rl")] == [1, 2]
    assert history[-1]["rollout/trajectories"] == 8
    saved = yaml.safe_load((tmp_path / "rl" / "config.yaml").read_text())
    assert saved["model"]["name"] == str(tmp_path / "sft")
    with pytest.raises(FileExistsError, match="--resume"):
        run_rl(rl)
    assert (
        run_rl(rl.model_copy(update={"train": rl.train.model_copy(update={"steps": 3})}), resume=True)[0][
            "step"
        ]
        == 3
    )


def test_job_configs_are_validated():
    with pytest.raises(ConfigError, match="tools"):
        load_config(RLJobConfig, None, ["data.dataset.path=x.jsonl"])
    with pytest.raises(ConfigError, match="at most one"):
        load_config(
            RLJobConfig, None, ["data.dataset.path=x.jsonl", "data.toolworld_dir=env", "tools=[{name: calc}]"]
        )
    with pytest.raises(ConfigError, match="demonstrations"):
        load_config(SFTJobConfig, None, ["data.dataset.path=x.jsonl"])
    with pytest.raises(ConfigError, match="train.loss.clip_low"):
        load_config(RLJobConfig, None, ["train.loss.clip_low=2"])
