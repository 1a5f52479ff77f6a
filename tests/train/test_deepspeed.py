"""DeepSpeed ZeRO-2 through accelerate on two CPU processes (gloo, DeepSpeed's CPU accelerator):
one engine step per planned optimizer step, the same update as one process (SFT) and as data
parallelism (RL, on the same rollouts), ZeRO partitions that resume exactly, the engine's skip of a
non-finite gradient, and clear errors for what is refused (arpo.train.deepspeed_zero).

Tolerances: SFT parameters agree with one process's within ``TOLERANCE`` (tests/train/sharded_runs.py
says why); one RL step equals data parallelism's within the same bound (measured: bitwise)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.train.checkpoint import checkpoint_dir, latest_checkpoint, load_state
from arpo.train.deepspeed_zero import load_zero_optimizer, prepare_config, process_backend
from arpo.train.jobs import SFTJobConfig, run_sft
from arpo.train.loop import LoopConfig, TrainLoop
from arpo.train.metrics_log import read_metrics
from arpo.train.sharding import OPTIMIZER_DIR
from tests.train.sharded_runs import (
    ROOT,
    TOLERANCE,
    assert_same_update_as_data_parallelism,
    final_weights,
    max_difference,
    sft_config,
    torchrun_sft,
)
from tests.train.test_data_parallel import launch

pytest.importorskip("deepspeed", reason="the deepspeed extra is not installed")

ZERO_FP32 = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_optimization": {"stage": 2},
}
"""ZeRO-2 in float32 (the comparisons with one process and with data parallelism are exact there)."""


def _deepspeed_env(tmp_path: Path, stage: int = 2) -> dict[str, str]:
    """What ``accelerate launch`` with a DeepSpeed config (ZeRO ``stage``, float32) sets for its processes."""
    path = tmp_path / f"zero{stage}.json"
    path.write_text(json.dumps({**ZERO_FP32, "zero_optimization": {"stage": stage}}))
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path)}


@pytest.mark.slow
def test_zero2_sft_on_two_processes_equals_one_process_and_resumes_exactly(tmp_path):
    env = _deepspeed_env(tmp_path)
    zero = tmp_path / "zero2"
    torchrun_sft(tmp_path, sft_config(zero, 4, fsdp=False), port=29561, env=env)
    run_sft(SFTJobConfig.model_validate(sft_config(tmp_path / "one", 4, fsdp=False)))

    step4 = checkpoint_dir(zero, 4)
    partitions = ["zero-00000-of-00002.pt", "zero-00001-of-00002.pt"]
    assert sorted(p.name for p in (step4 / OPTIMIZER_DIR).iterdir()) == partitions
    state = load_state(step4)
    assert "optimizer" not in state and state["optimizer_layout"] == "DeepSpeed"
    for step in (2, 4):
        one = final_weights(checkpoint_dir(tmp_path / "one", step))
        got = final_weights(checkpoint_dir(zero, step))
        assert max_difference(got, one) <= TOLERANCE, f"step {step}"
    assert [m["step"] for m in read_metrics(zero)] == [1, 2, 3, 4]
    assert (step4 / "model.safetensors").stat().st_size == (
        checkpoint_dir(tmp_path / "one", 4) / "model.safetensors"
    ).stat().st_size, "tied weights stored once, as without DeepSpeed"

    # resume from the step-2 checkpoint in a fresh folder: the same step 4, bitwise
    resumed = tmp_path / "resumed"
    shutil.copytree(zero / "env", resumed / "env")
    shutil.copytree(checkpoint_dir(zero, 2), checkpoint_dir(resumed, 2))
    torchrun_sft(tmp_path, sft_config(resumed, 4, fsdp=False), "--resume", port=29562, env=env)
    final = latest_checkpoint(resumed)
    assert final == checkpoint_dir(resumed, 4)
    expected, got = final_weights(step4), final_weights(final)
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name
    for name in partitions:
        a, b = (torch.load(c / OPTIMIZER_DIR / name, weights_only=False) for c in (step4, final))
        for x, y in zip(
            a["single_partition_of_fp32_groups"], b["single_partition_of_fp32_groups"], strict=True
        ):
            assert torch.equal(x, y), f"{name}: master weights"
        assert a["base_optimizer_state"]["state"][0]["step"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_rl_steps_the_engine_once_per_optimizer_step_and_matches_data_parallelism(tmp_path, stage):
    """One RL step with two mini-batches (two optimizer steps) of micro-batches whose count differs
    per process: the engine steps twice (not once per micro-batch), and the update equals data
    parallelism's on the same rollouts."""
    ddp, _ = launch(tmp_path / "ddp", 29563 + 2 * stage, "ddp")
    zero0, zero1 = launch(
        tmp_path / "zero", 29564 + 2 * stage, "deepspeed", env=_deepspeed_env(tmp_path, stage)
    )
    assert zero0["world"] == 2 and zero0["engine_steps"] == zero1["engine_steps"] == 2
    for name, value in zero0["params"].items():
        assert torch.equal(value, zero1["params"][name]), f"{name}: the processes' replicas agree"
    assert_same_update_as_data_parallelism(zero0, ddp)


@pytest.mark.slow
def test_zero2_engine_skips_a_nan_gradient_and_arpo_counts_it(tmp_path):
    zero0, zero1 = launch(tmp_path, 29571, "deepspeed+nan-grad", env=_deepspeed_env(tmp_path))
    initial = build_tiny_llama(build_char_tokenizer(), seed=0).state_dict()
    for rank in (zero0, zero1):
        for name, value in rank["params"].items():
            assert torch.equal(value, initial[name]), f"{name} changed: a NaN update was applied"
        assert rank["metrics"]["train/skipped_updates"] == 2.0, "both optimizer steps skipped"


def test_deepspeed_settings_arpo_refuses_name_the_setting_and_the_way_out():
    def check(config: dict, **kwargs) -> dict:
        prepare_config(config, **{"fsdp": False, "lora": False, "grad_clip": 1.0, **kwargs})
        return config

    zero2 = {"zero_optimization": {"stage": 2}}
    clipped = {"gradient_clipping": 1.0}
    with pytest.raises(ValueError, match="stage 3 .*shard with train.fsdp"):
        check({"zero_optimization": {"stage": 3}})
    with pytest.raises(ValueError, match="stage 0 .*use data parallelism"):
        check({})
    with pytest.raises(ValueError, match="gradient_accumulation_steps is 4: set it to 1"):
        check({**zero2, "gradient_accumulation_steps": 4})
    with pytest.raises(ValueError, match="gradient_clipping is 0.5 but train.optim.grad_clip is 1.0"):
        check({**zero2, "gradient_clipping": 0.5})
    with pytest.raises(ValueError, match="gradient_clipping is 1.0 but train.optim.grad_clip is None"):
        check({**zero2, "gradient_clipping": 1.0}, grad_clip=None)
    with pytest.raises(
        ValueError, match="offload_optimizer is not supported by arpo: .*learning-rate schedule"
    ):
        check({**clipped, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}})
    with pytest.raises(ValueError, match="compute_grad_norm: false is not supported"):
        check({**clipped, "zero_optimization": {"stage": 2, "compute_grad_norm": False}})
    assert check({**clipped, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "none"}}})
    with pytest.raises(ValueError, match="train.fsdp and DeepSpeed both shard"):
        check(zero2, fsdp=True)
    with pytest.raises(ValueError, match="model.lora with DeepSpeed is not supported"):
        check(zero2, lora=True)
    filled = check(
        {
            **zero2,
            "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto",
            "bf16": {"enabled": True},
        }
    )
    assert filled["gradient_accumulation_steps"] == 1 and filled["gradient_clipping"] == 1.0
    assert filled["bf16"]["check_grad_overflow"] is True, "the engine must skip non-finite bf16 gradients"
    assert check({**zero2, "gradient_clipping": 0.0}, grad_clip=None)["gradient_clipping"] == 0.0
    shipped = json.loads((ROOT / "configs/accelerate/deepspeed_zero2.json").read_text())
    assert check(shipped)["zero_optimization"]["stage"] == 2


def test_deepspeed_with_accelerate_use_cpu_is_refused(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    with pytest.raises(ValueError, match="accelerate ignores DeepSpeed and runs plain data parallelism"):
        process_backend()
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert process_backend() == "gloo"
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert process_backend() is None


def test_missing_zero_partitions_name_the_files_and_the_process_count(tmp_path):
    torch.save({}, tmp_path / "zero-00000-of-00002.pt")
    torch.save({}, tmp_path / "zero-00001-of-00002.pt")
    with pytest.raises(
        ValueError,
        match=r"lacks the ZeRO optimizer partitions \['zero-00000-of-00004.pt', .* of a 4-process run "
        r"\(found: \['zero-00000-of-00002.pt', 'zero-00001-of-00002.pt'\]\)",
    ):
        load_zero_optimizer(object(), tmp_path, 4, clip=1.0)


def test_a_deepspeed_checkpoint_is_resumed_with_deepspeed_only(tmp_path):
    tokenizer = build_char_tokenizer()
    loop = TrainLoop(LoopConfig(), build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path, 1)
    (checkpoint_dir(tmp_path, 2) / OPTIMIZER_DIR).mkdir(parents=True)
    torch.save({"step": 2, "optimizer_layout": "DeepSpeed"}, checkpoint_dir(tmp_path, 2) / "trainer_state.pt")
    with pytest.raises(
        ValueError,
        match=r"step-00000002 was written with DeepSpeed \(its optimizer state is ZeRO partitions\): "
        "resume it with DeepSpeed",
    ):
        loop.resume(checkpoint_dir(tmp_path, 2))
