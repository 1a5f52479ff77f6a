"""`arpo train` under `accelerate launch`: two CPU processes (gloo) on the built-in environment end
every step with identical parameters; the shipped accelerate configs pass accelerate's own checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, prepare_deepspeed_cmd_env
from transformers import AutoModelForCausalLM

from arpo.models.loading import PolicyConfig, load_policy
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.train.checkpoint import latest_checkpoint, load_state
from arpo.train.loop import LoopConfig, TrainLoop, parameter_digest
from arpo.train.metrics_log import read_metrics
from tests.train.helpers import SMALL_TOOLWORLD

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
QUIET = {"logging": {"tensorboard": False}}


def _train_config(run_dir: Path) -> dict:
    """Two RL steps on a small toolworld built into the run folder; the entropy bonus gives every
    process its own non-zero gradient even when all rewards are equal."""
    return {
        "run_dir": str(run_dir),
        "data": SMALL_TOOLWORLD,
        "train": {
            "steps": 2,
            "prompts_per_step": 4,
            "micro_batch_size": 16,
            "check_replicas_every": 1,
            "loss": {"entropy_coef": 0.01},
            "optim": {"lr": 1e-3},
            "rollout": {
                "max_response_tokens": 32,
                "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2},
            },
            **QUIET,
        },
    }


def _launch_train(tmp_path: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess]:
    """``accelerate launch --config_file configs/accelerate/cpu_2proc.yaml -m arpo.cli train``."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None
    run_dir = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(_train_config(run_dir)))
    done = subprocess.run(
        [accelerate, "launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml")]
        + ["-m", "arpo.cli", "train", "--config", str(config)],
        cwd=ROOT,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run_dir, done


@pytest.mark.slow
def test_accelerate_launch_runs_arpo_train_on_two_cpu_processes(tmp_path):
    run_dir, done = _launch_train(tmp_path, {**os.environ, "ACCELERATE_USE_CPU": "true"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count("building the toolworld environment") == 1, "only the main process builds it"

    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [1, 2], "only the main process writes metrics"
    for m in metrics:
        assert m["rollout/prompts"] == 2, "each process rolls out its half of the 4 prompts"
        assert m["grad_norm"] > 0
        assert len(m["replicas/params_sha256"]) == 64, "both processes held these parameters after the step"

    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name == "step-00000002"
    assert load_state(checkpoint)["step"] == 2
    saved = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert parameter_digest(saved) == metrics[-1]["replicas/params_sha256"]
    initial, _ = load_policy(PolicyConfig(tokenizer=str(run_dir / "env" / "tokenizer")))
    assert parameter_digest(initial) not in {m["replicas/params_sha256"] for m in metrics}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with GPUs, accelerate joins the processes")
def test_without_gpus_or_accelerate_use_cpu_the_launch_is_refused(tmp_path):
    run_dir, done = _launch_train(
        tmp_path, {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    )
    assert done.returncode != 0
    assert "set ACCELERATE_USE_CPU=true for CPU (gloo)" in " ".join(done.stderr.split())
    assert not (run_dir / "env").exists() and not (run_dir / "metrics.jsonl").exists()


class _Idle(TrainLoop):
    def train_step(self) -> dict:
        return {}


def test_replica_check_logs_the_digest_and_stops_when_processes_differ(tmp_path):
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer, seed=0)
    config = LoopConfig(steps=2, check_replicas_every=2, **QUIET)
    loop = _Idle(config, model, tokenizer, tmp_path / "run", num_examples=1)
    first, second = loop.train()
    assert "replicas/params_sha256" not in first
    assert second["replicas/params_sha256"] == parameter_digest(model)

    loop.all_gather = lambda value: [value, "0" * 64]
    with pytest.raises(RuntimeError, match="different parameters"):
        loop.check_replicas()


def test_parameter_digest_sees_a_one_ulp_change():
    model = build_tiny_llama(build_char_tokenizer(), seed=0)
    before = parameter_digest(model)
    assert parameter_digest(build_tiny_llama(build_char_tokenizer(), seed=0)) == before
    with torch.no_grad():
        weight = model.model.norm.weight
        weight[0] = torch.nextafter(weight[0], torch.tensor(2.0))
    assert parameter_digest(model) != before


def test_accelerates_fsdp_plugin_is_refused_with_the_way_to_shard(tmp_path, monkeypatch):
    tokenizer = build_char_tokenizer()
    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType.FSDP))
    with pytest.raises(ValueError, match="FSDP plugin is not used by arpo's trainers: shard with train.fsdp"):
        _Idle(LoopConfig(steps=1, **QUIET), build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path, 1)


def _launch_args(name: str):
    """``accelerate launch --config_file configs/accelerate/<name>.yaml`` as the launcher reads it
    (accelerate's own validation; nothing is started)."""
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "-m", "arpo.cli", "train"])
    known = set(vars(parser.parse_args(["script"])))
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    unknown = set(defaults.deepspeed_config) - known
    assert not unknown, f"{name}: keys accelerate launch does not know: {unknown}"
    return args, defaults, mixed_precision_from_config


def test_cpu_config_starts_two_processes_through_torchrun():
    args, _, _ = _launch_args("cpu_2proc")
    assert args.multi_gpu and not args.cpu and args.num_processes == 2


def test_deepspeed_config_is_accepted_by_accelerate(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name their DeepSpeed JSON relative to the repository root
    args, defaults, mixed_precision_from_config = _launch_args("deepspeed_zero2")
    assert args.use_deepspeed
    fields = list(defaults.deepspeed_config) + ["mixed_precision"] * mixed_precision_from_config
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    with mock.patch.dict(os.environ, env):
        plugin = DeepSpeedPlugin()  # raises on settings that conflict with the JSON file
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == 2 and ds["bf16"]["enabled"] is True
    assert isinstance(ds["train_micro_batch_size_per_gpu"], int), "arpo prepares no DataLoader"
