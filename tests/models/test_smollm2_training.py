"""One ARPO step of the GSM8K example on the real SmolLM2-135M-Instruct (skipped without its packages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from arpo.config import load_config
from arpo.tasks.gsm8k_sample import write_gsm8k_sample
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, run_rl

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gsm8k_smollm2_arpo.yaml"


@pytest.mark.slow
def test_one_step_of_the_gsm8k_example_trains_smollm2(smollm2, tmp_path):
    data = write_gsm8k_sample(tmp_path / "gsm8k" / "train.jsonl", n=4)
    run_dir = tmp_path / "run"
    overrides = [
        f"run_dir={run_dir}",
        f"data.dataset.path={data}",
        "train.steps=1",
        "train.rollout.max_response_tokens=24",
        "train.logging.tensorboard=false",
    ]
    (metrics,) = run_rl(load_config(RLJobConfig, CONFIG, overrides))
    assert metrics["rollout/trajectories"] == 8
    assert metrics["train/tokens_forwarded"] > 0
    checkpoint = latest_checkpoint(run_dir)
    assert AutoModelForCausalLM.from_pretrained(checkpoint).config.num_hidden_layers == 30
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(checkpoint).chat_template
