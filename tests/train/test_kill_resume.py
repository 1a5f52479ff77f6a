"""A real `arpo train` process killed with SIGKILL and resumed ends exactly like an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from arpo.train.checkpoint import latest_checkpoint
from arpo.train.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12


def write_config(tmp_path: Path, run_dir: Path) -> Path:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(json.dumps({"question": f"what is {i}+{i}?", "answer": str(2 * i)}) + "\n" for i in range(8))
    )
    config = {
        "run_dir": str(run_dir),
        "data": {
            "dataset": {
                "path": str(tasks),
                "layout": {"question": "question", "answer": "answer", "answer_type": "number"},
            }
        },
        "tools": [{"name": "calc"}],
        "reward": {"function": "tests.train.helpers:count_ones"},
        "train": {
            "steps": STEPS,
            "save_every": 2,
            "prompts_per_step": 2,
            "micro_batch_size": 4,
            "rollout": {
                "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
                "max_response_tokens": 24,
            },
            "optim": {"lr": 0.01},
            "logging": {"tensorboard": False},
        },
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def arpo(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "arpo.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run_dir) / "model.safetensors")


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_unbroken_run(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    finish(arpo("train", "--config", str(write_config(tmp_path, straight))))

    config = write_config(tmp_path, broken)
    process = arpo("train", "--config", str(config))
    first = broken / "checkpoints" / "step-00000002" / "trainer_state.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run must still be going when it is killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(broken)
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < STEPS

    refused = arpo("train", "--config", str(config))
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "--resume" in err

    finish(arpo("train", "--config", str(config), "--resume"))
    assert latest_checkpoint(broken).name == latest_checkpoint(straight).name == f"step-{STEPS:08d}"
    a, b = weights(straight), weights(broken)
    for name, value in a.items():
        assert torch.allclose(value, b[name], atol=1e-6), name
    metrics_a, metrics_b = read_metrics(straight), read_metrics(broken)
    assert [m["step"] for m in metrics_b] == list(range(1, STEPS + 1))
    for ma, mb in zip(metrics_a, metrics_b, strict=True):
        assert {k: v for k, v in ma.items() if not k.startswith("time/")} == pytest.approx(
            {k: v for k, v in mb.items() if not k.startswith("time/")}
        )
