"""Two CPU processes (gloo) train on shards of one batch and end with identical parameters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arpo.engines.hf import HFGenerator
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.tools import Calculator, ToolBox
from tests.train.ddp_worker import validator

ROOT = Path(__file__).resolve().parents[2]


CPU_DATA_PARALLEL = {"ACCELERATE_USE_CPU": "true"}
"""The environment that makes accelerate run data parallelism over gloo on a CPU."""


def launch(
    tmp_path: Path, port: int, *worker_args: str, env: dict[str, str] = CPU_DATA_PARALLEL
) -> tuple[dict, dict]:
    """Run tests/train/ddp_worker.py in 2 gloo processes (``env`` added to this one's); returns what
    each process saved."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(ROOT / "tests/train/ddp_worker.py"),
            str(tmp_path),
            *worker_args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    return rank0, rank1


@pytest.mark.slow
def test_two_processes_end_with_identical_parameters(tmp_path):
    rank0, rank1 = launch(tmp_path, 29531)
    assert rank0["world"] == rank1["world"] == 2
    initial = build_tiny_llama(build_char_tokenizer(), seed=0).state_dict()
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
        assert not torch.equal(value, initial[name]), f"{name} did not change"
    assert rank0["metrics"] == rank1["metrics"], "metrics are averaged over the processes"
    assert rank0["metrics"]["rollout/prompts"] == 2, "each process rolls out its half of the 4 prompts"
    metrics = rank0["metrics"]  # budgets are summed over the processes, per-step metrics averaged
    assert metrics["budget/engine_tokens_total"] == pytest.approx(2 * metrics["rollout/engine_tokens"])
    assert metrics["budget/tool_calls_flat_total"] == pytest.approx(2 * metrics["rollout/tool_calls_flat"])
    assert (tmp_path / "run" / "checkpoints" / "step-00000001").is_dir()
    # validation: each process samples its share of the tasks, the sums are all-reduced, so both
    # report what one process validating every task reports
    assert rank0["initial"]["step"] == 0
    tokenizer = build_char_tokenizer()
    for weights, row in ((initial, rank0["initial"]), (rank0["params"], metrics)):
        model = build_tiny_llama(tokenizer, seed=0)
        model.load_state_dict(weights)
        with ToolBox([Calculator()]) as tools:
            alone = validator(tokenizer, tools).run(
                HFGenerator(model.eval(), tokenizer), lambda items: items, lambda *v: v, rank=0
            )
        for key in ("accuracy", "format_ok", "tool_calls", "response_tokens"):
            assert row[f"val/sums/{key}"] == pytest.approx(alone[f"val/sums/{key}"]), key


@pytest.mark.slow
def test_a_nonfinite_loss_in_one_process_skips_the_update_in_every_process(tmp_path):
    rank0, rank1 = launch(tmp_path, 29532, "nan-loss-on-rank-1")
    initial = build_tiny_llama(build_char_tokenizer(), seed=0).state_dict()
    for name, value in rank0["params"].items():
        assert torch.equal(value, initial[name]), f"{name} changed in process 0"
        assert torch.equal(rank1["params"][name], initial[name]), f"{name} changed in process 1"
    assert rank0["metrics"]["train/skipped_updates"] == rank1["metrics"]["train/skipped_updates"] == 2


@pytest.mark.slow
def test_the_prefix_layout_two_forwards_per_backward_under_ddp(tmp_path):
    """The prompt's forward and the responses' forward of the DDP module before one backward: the
    processes still end identical, and equal to the tree-packed run up to summation order (measured:
    1.3e-5 at most after the Adam step of lr 1e-2, which scales gradient noise up to the step size)."""
    rank0, rank1 = launch(tmp_path / "prefix", 29533, "prefix")
    tree, _ = launch(tmp_path / "tree", 29534)
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
        assert torch.allclose(value, tree["params"][name], atol=1e-4, rtol=0), name
