"""LoRA through peft: only the adapter trains; checkpoints hold the merged model and the adapter."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from arpo.models.loading import LoraConfig, PolicyConfig, load_policy
from arpo.tools import Calculator, ToolBox
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.rl import RLTrainer
from tests.train.helpers import arithmetic_tasks, count_ones
from tests.train.test_rl_trainer import rl_config

pytest.importorskip("peft")


def test_lora_step_trains_only_the_adapter_and_saves_merged_weights(tmp_path):
    config = PolicyConfig(lora=LoraConfig(r=4))
    model, tokenizer = load_policy(config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ToolBox([Calculator()]) as tools:
        RLTrainer(
            rl_config(steps=1), model, tokenizer, arithmetic_tasks(), tools, count_ones, tmp_path
        ).train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable and all("lora_" in n for n in trainable)
    checkpoint = latest_checkpoint(tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(checkpoint)
    ids = torch.tensor([tokenizer.encode("<|user|>what is 2+2?", add_special_tokens=False)])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, model(input_ids=ids).logits, atol=1e-5)
    resumed, _ = load_policy(config, checkpoint)
    with torch.no_grad():
        assert torch.allclose(resumed(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    assert any(p.requires_grad for p in resumed.parameters())
