"""What training tests share: small tasks and a reward with signal for the random tiny model, an RL
config and an SFT demonstration for in-process trainers, and a real ``arpo train`` process on a
small data set (its config, launching it, its final weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from arpo.core.rewards import RewardInput, RewardResult
from arpo.core.tree import Origin, RolloutTree, ToolCall
from arpo.models.tiny import build_tiny_llama
from arpo.tasks.prompts import render_prompt
from arpo.tasks.record import ChatMessage, Task
from arpo.tools import Calculator, ToolBox
from arpo.train.batching import LearnerRow
from arpo.train.checkpoint import checkpoint_dir, latest_checkpoint
from arpo.train.metrics_log import read_metrics
from arpo.train.rl import RLConfig, RLTrainer
from arpo.train.sft import SFTConfig, SFTTrainer

ROOT = Path(__file__).resolve().parents[2]
PROCESS_STEPS = 12
"""Steps of the run :func:`write_config` describes."""


SMALL_TOOLWORLD = {
    "toolworld": {
        "seed": 3,
        "train": {"towns": 10, "people": 20, "tasks": 40},
        "test": {"towns": 10, "people": 20, "tasks": 10},
    }
}
"""A job's ``data`` section: a built-in environment small enough to build in a second."""


def arithmetic_tasks(n: int = 6) -> list[Task]:
    return [
        Task(str(i), (ChatMessage("user", f"what is {i}+{i}?"),), (str(2 * i),), "number", "test")
        for i in range(n)
    ]


def count_ones(sample: RewardInput) -> RewardResult:
    """A dense reward (share of '1' characters) so even a random policy's groups have variance."""
    value = sample.response.count("1") / max(1, len(sample.response))
    return RewardResult(
        total=value, format_ok=True, format_error=None, correctness=value, bonus=0.0, answer=None
    )


def rl_config(**overrides) -> RLConfig:
    """A 4-step RL config for the char tokenizer's tiny model; ``overrides`` replace top-level keys."""
    base = {
        "steps": 4,
        "prompts_per_step": 2,
        "micro_batch_size": 3,
        "save_every": 2,
        "rollout": {
            "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4, "alpha": 0.8},
            "max_response_tokens": 24,
        },
        "optim": {"lr": 1e-2},
        "logging": {"tensorboard": False},
    }
    for key, value in overrides.items():
        base[key] = value
    return RLConfig.model_validate(base)


def arithmetic_trainer(config, model, tokenizer, tools, run_dir, **options) -> RLTrainer:
    """An RL trainer on :func:`arithmetic_tasks` with the dense :func:`count_ones` reward."""
    return RLTrainer(config, model, tokenizer, arithmetic_tasks(), tools, count_ones, run_dir, **options)


def train_rl(model, tokenizer, run_dir, config, on_step=None):
    """Train an RL run with the calculator on :func:`arithmetic_tasks` (resuming from ``run_dir``'s checkpoint if any)."""
    with ToolBox([Calculator()]) as tools:
        trainer = arithmetic_trainer(config, model, tokenizer, tools, run_dir)
        trainer.resume()
        return trainer.train(on_step)


def without_time(history):
    """Metrics without the wall-time ones, for comparing runs."""
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in history]


def demo_row(tokenizer, a: int, b: int) -> LearnerRow:
    """A one-call demonstration laid out as a rollout tree: prompt, call, result, answer."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    tree = RolloutTree(
        render_prompt(tokenizer, [{"role": "user", "content": f"what is {a}*{b}?"}]), len(tokenizer)
    )
    call = tree.add_model(tree.root, Origin.INITIAL)
    ids = encode(f"<calc>{a}*{b}</calc>")
    call.append(ids, [0.0] * len(ids), [0.0] * len(ids))
    result = tree.add_tool(call, encode(f"<result>{a * b}</result>"), [ToolCall("calc", f"{a}*{b}", "ok")])
    answer = tree.add_model(result)
    ids = encode(f"<answer>{a * b}</answer>") + [tokenizer.eos_token_id]
    answer.append(ids, [0.0] * len(ids), [0.0] * len(ids))
    (traj,) = tree.trajectories()
    return LearnerRow(traj.token_ids, [float(m) for m in traj.loss_mask])


def sft_trainer(tokenizer, run_dir: Path, **overrides) -> SFTTrainer:
    """A 3-step SFT trainer of the tiny model on 8 :func:`demo_row` demonstrations; ``overrides`` replace config keys."""
    config = SFTConfig.model_validate(
        {
            "steps": 3,
            "batch_size": 4,
            "micro_batch_size": 2,
            "save_every": 100,
            "optim": {"lr": 1e-2},
            "logging": {"tensorboard": False},
            **overrides,
        }
    )
    demos = [demo_row(tokenizer, a, b) for a in range(2, 6) for b in range(11, 13)]
    return SFTTrainer(config, build_tiny_llama(tokenizer, seed=0), tokenizer, demos, run_dir)


def write_config(tmp_path: Path, run_dir: Path) -> Path:
    """An `arpo train` config of :data:`PROCESS_STEPS` steps on 8 arithmetic tasks, into ``run_dir``."""
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
            "steps": PROCESS_STEPS,
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
    """A real ``arpo`` process (stderr captured)."""
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
    """Wait for ``process``; it must succeed."""
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of the run's newest checkpoint."""
    return load_file(latest_checkpoint(run_dir) / "model.safetensors")


def start_until_checkpoint(config: Path, run_dir: Path) -> subprocess.Popen:
    """Start ``arpo train --config config`` and return once its first checkpoint (step 2) is
    written; the process must still be running then."""
    process = arpo("train", "--config", str(config))
    first = checkpoint_dir(run_dir, 2) / "trainer_state.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run must still be going when it is interrupted"
    return process


def assert_same_run(straight: Path, resumed: Path) -> None:
    """The interrupted and resumed run ends like the unbroken one: same final checkpoint, weights,
    and metrics of every step (times aside)."""
    final = f"step-{PROCESS_STEPS:08d}"
    assert latest_checkpoint(resumed).name == latest_checkpoint(straight).name == final
    a, b = weights(straight), weights(resumed)
    for name, value in a.items():
        assert torch.allclose(value, b[name], atol=1e-6), name
    metrics_a, metrics_b = read_metrics(straight), read_metrics(resumed)
    assert [m["step"] for m in metrics_b] == list(range(1, PROCESS_STEPS + 1))
    for ma, mb in zip(metrics_a, metrics_b, strict=True):
        assert {k: v for k, v in ma.items() if not k.startswith("time/")} == pytest.approx(
            {k: v for k, v in mb.items() if not k.startswith("time/")}
        )
