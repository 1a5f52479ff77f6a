"""Two-process runs that sharded-training tests share: an SFT job on a small built-in environment
launched with ``torchrun`` (data parallelism, ``train.fsdp`` or DeepSpeed, chosen by the job and the
environment), the comparison of the weights it wrote with a one-process run's, and of a
two-process RL step with data parallelism's.

Tolerance: two processes sum gradients in another order than one process does (their own
micro-batches, then a reduction), so parameters agree to float32 rounding amplified by a few AdamW
steps: |Δ| ≤ 2e-5 after 4 SFT steps at lr 1e-3 (measured 4.3e-6 on an AVX-512 CPU, under FSDP and
under DeepSpeed ZeRO-2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM

from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from tests.train.helpers import SMALL_TOOLWORLD
from tests.train.test_data_parallel import CPU_DATA_PARALLEL

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 2e-5


def sft_config(run_dir: Path, steps: int, fsdp: bool) -> dict:
    """SFT of the tiny model on a small built-in environment; 8 demonstrations per step packed into
    rows of ≤ 128 tokens, one row per micro-batch, so the processes run different numbers of them."""
    return {
        "run_dir": str(run_dir),
        "data": SMALL_TOOLWORLD,
        "train": {
            "steps": steps,
            "batch_size": 8,
            "micro_batch_size": 1,
            "packing": "tree",
            "pack_tokens": 128,
            "save_every": 2,
            "keep_checkpoints": 3,
            "optim": {"lr": 1e-3},
            "logging": {"tensorboard": False},
            "fsdp": {} if fsdp else None,
        },
    }


def torchrun_sft(
    tmp_path: Path, config: dict, *extra: str, port: int, env: dict[str, str] = CPU_DATA_PARALLEL
) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    path = tmp_path / f"sft-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "arpo.cli", "sft"]
        + ["--config", str(path), *extra],
        cwd=ROOT,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def assert_same_update_as_data_parallelism(run: dict, ddp: dict) -> None:
    """``run`` (what a process of ``tests/train/ddp_worker.py`` saved) sampled the same rollouts as
    data parallelism and ended its step with the same parameters, within ``TOLERANCE``; the step
    changed them."""
    assert run["metrics"]["rollout/engine_tokens"] == ddp["metrics"]["rollout/engine_tokens"], "same rollouts"
    difference = max_difference(run["params"], ddp["params"])
    assert difference <= TOLERANCE, f"parameters differ from data parallelism's by {difference}"
    initial = build_tiny_llama(build_char_tokenizer(), seed=0).state_dict()
    assert max_difference(run["params"], initial) > 1e-4, "the step changed the parameters"
