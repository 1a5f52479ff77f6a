"""Sharded training (``train.fsdp``, FSDP2) on two CPU processes (gloo): the same update as one
process or data parallelism, rollouts that never touch the sharded module (no hang), sharded
optimizer checkpoints that resume exactly, and an exported folder transformers loads.

Tolerances: SFT parameters agree with one process's within ``TOLERANCE`` (tests/train/sharded_runs.py
says why). On the same rollouts, one RL step under FSDP equals data parallelism's bitwise (measured;
asserted within the same tolerance)."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.train.checkpoint import checkpoint_dir, latest_checkpoint, load_state
from arpo.train.jobs import SFTJobConfig, run_sft
from arpo.train.loop import LoopConfig, TrainLoop
from arpo.train.metrics_log import read_metrics
from arpo.train.rl import RLConfig
from arpo.train.sharding import OPTIMIZER_DIR, sharding_unsupported
from tests.train.sharded_runs import (
    TOLERANCE,
    assert_same_update_as_data_parallelism,
    final_weights,
    max_difference,
    sft_config,
    torchrun_sft,
)
from tests.train.test_data_parallel import launch


@pytest.mark.slow
def test_fsdp_sft_on_two_processes_equals_one_process_and_resumes_exactly(tmp_path):
    sharded = tmp_path / "fsdp"
    torchrun_sft(tmp_path, sft_config(sharded, 4, fsdp=True), port=29541)
    run_sft(SFTJobConfig.model_validate(sft_config(tmp_path / "one", 4, fsdp=False)))

    # the exported folder: a plain Hugging Face model, sharded optimizer state beside it
    step4 = checkpoint_dir(sharded, 4)
    assert sorted(p.name for p in (step4 / OPTIMIZER_DIR).iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert "optimizer" not in load_state(step4)
    stored = lambda c: safe_open(c / "model.safetensors", "pt").keys()  # noqa: E731
    assert sorted(stored(step4)) == sorted(stored(checkpoint_dir(tmp_path / "one", 4))), (
        "tied weights stored once"
    )
    for step in (2, 4):
        difference = max_difference(
            final_weights(checkpoint_dir(sharded, step)),
            final_weights(checkpoint_dir(tmp_path / "one", step)),
        )
        assert difference <= TOLERANCE, f"step {step}: parameters differ by {difference}"
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        logits = [
            AutoModelForCausalLM.from_pretrained(c)(input_ids=ids).logits
            for c in (step4, checkpoint_dir(tmp_path / "one", 4))
        ]
    assert torch.allclose(logits[0], logits[1], atol=1e-4), float((logits[0] - logits[1]).abs().max())
    assert [m["step"] for m in read_metrics(sharded)] == [1, 2, 3, 4]

    # resume from the step-2 checkpoint in a fresh folder: the same step 4, bitwise
    resumed = tmp_path / "resumed"
    shutil.copytree(sharded / "env", resumed / "env")
    shutil.copytree(checkpoint_dir(sharded, 2), checkpoint_dir(resumed, 2))
    torchrun_sft(tmp_path, sft_config(resumed, 4, fsdp=True), "--resume", port=29542)
    final = latest_checkpoint(resumed)
    assert final == checkpoint_dir(resumed, 4)
    expected, got = final_weights(step4), final_weights(final)
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name
    for shard in ("__0_0.distcp", "__1_0.distcp"):
        assert (final / OPTIMIZER_DIR / shard).read_bytes() == (step4 / OPTIMIZER_DIR / shard).read_bytes(), (
            shard
        )


@pytest.mark.slow
@pytest.mark.parametrize("more", ["", "+more"], ids=["plain", "epochs-kl-bf16"])
def test_fsdp_rl_with_unequal_rollouts_finishes_and_matches_data_parallelism(tmp_path, more):
    """The configuration that deadlocked before (each process decodes its own prompts for its own
    number of rounds; micro-batches differ in count) finishes within launch()'s timeout, and its
    update equals data parallelism's on the same rollouts — also with 2 PPO epochs of 2 mini-batches,
    a KL reference model and bf16 autocast (rollouts included)."""
    port = 29543 if not more else 29545
    ddp, _ = launch(tmp_path / "ddp", port, more or "ddp")
    fsdp0, fsdp1 = launch(tmp_path / "fsdp", port + 1, f"fsdp{more}")
    assert fsdp0["world"] == 2
    for rank in (fsdp0, fsdp1):
        for name, value in rank["gathered"].items():
            assert torch.equal(value, rank["params"][name]), f"the full copy holds the new {name}"
    assert_same_update_as_data_parallelism(fsdp0, ddp)
    for key in ("val/sums/accuracy", "reward/accuracy", "rollout/tool_calls_flat"):
        assert fsdp0["metrics"][key] == ddp["metrics"][key], key


def test_fsdp_refusals_name_the_conflict(tmp_path):
    with pytest.raises(ValueError, match="check_replicas_every compares full copies"):
        LoopConfig(fsdp={}, check_replicas_every=1)
    with pytest.raises(
        ValueError, match="packing: prefix runs two forwards .* train.fsdp needs every process"
    ):
        RLConfig(fsdp={}, packing="prefix")
    tokenizer = build_char_tokenizer()
    with pytest.raises(
        ValueError, match="train.fsdp shards the model over several processes, but this run has one"
    ):
        TrainLoop(LoopConfig(fsdp={}), build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path, 1)
    # a checkpoint with sharded optimizer state (none in its trainer state) is resumed with train.fsdp only
    loop = TrainLoop(LoopConfig(), build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path, 1)
    (checkpoint_dir(tmp_path, 2) / OPTIMIZER_DIR).mkdir(parents=True)
    torch.save({"step": 2}, checkpoint_dir(tmp_path, 2) / "trainer_state.pt")
    with pytest.raises(
        ValueError, match="step-00000002 was written with train.fsdp .*resume it with train.fsdp"
    ):
        loop.resume(checkpoint_dir(tmp_path, 2))
    model = build_tiny_llama(tokenizer, seed=0)
    assert sharding_unsupported(model) is None
    model._no_split_modules = []
    assert "names no decoder layer class" in sharding_unsupported(model)
    model.config.num_local_experts = 8  # a mixture of experts (Mixtral's field)
    assert "a mixture-of-experts model" in sharding_unsupported(model)
    model.peft_config = {"default": object()}  # what peft sets on a LoRA model
    assert "a LoRA model (model.lora) is not sharded" in sharding_unsupported(model)
