"""Cold-start SFT on protocol demonstrations: the loss drops, and only model tokens are learned."""

from __future__ import annotations

import pytest
import torch

from arpo.models.tiny import build_tiny_llama
from arpo.train.batching import LearnerRow
from arpo.train.metrics_log import read_metrics
from arpo.train.sft import SFTConfig, SFTTrainer
from tests.train.helpers import demo_row


def test_sft_lowers_the_loss_on_demonstrations(tokenizer, tmp_path):
    demos = [demo_row(tokenizer, a, b) for a in range(2, 9) for b in range(11, 15)]
    config = SFTConfig.model_validate(
        {
            "steps": 40,
            "batch_size": 8,
            "micro_batch_size": 4,
            "save_every": 40,
            "optim": {"lr": 3e-3, "warmup_steps": 5, "schedule": "cosine"},
            "logging": {"tensorboard": False},
        }
    )
    model = build_tiny_llama(tokenizer, seed=0)
    history = SFTTrainer(config, model, tokenizer, demos, tmp_path).train()
    first = sum(m["loss/sft"] for m in history[:5]) / 5
    last = sum(m["loss/sft"] for m in history[-5:]) / 5
    assert last < 0.6 * first
    assert len(read_metrics(tmp_path)) == 40
    assert (tmp_path / "checkpoints" / "step-00000040" / "model.safetensors").is_file()


def test_masked_tokens_are_not_learned(tokenizer, tmp_path):
    """A row ending in a tool result: its last token is a target only, and masked, so changing it
    leaves the update unchanged; changing the last *model* token's target does not."""
    row = demo_row(tokenizer, 3, 12)
    last_model = max(i for i, w in enumerate(row.weights) if w == 1)
    first_tool = row.weights.index(0.0, row.weights.index(1.0))
    cut = LearnerRow(row.token_ids[: first_tool + 3], row.weights[: first_tool + 3])

    def updated(r, name):
        model = build_tiny_llama(tokenizer, seed=0)
        config = SFTConfig.model_validate({"steps": 1, "batch_size": 1, "logging": {"tensorboard": False}})
        SFTTrainer(config, model, tokenizer, [r], tmp_path / name).train()
        return model.lm_head.weight.detach().clone()

    def with_token(r, index, token):
        ids = list(r.token_ids)
        ids[index] = tokenizer.convert_tokens_to_ids(token)
        return LearnerRow(ids, r.weights)

    base = updated(cut, "base")
    assert torch.equal(base, updated(with_token(cut, len(cut.token_ids) - 1, "9"), "masked"))
    full = updated(row, "full")
    assert not torch.equal(full, updated(with_token(row, last_model, "q"), "model"))


def test_demos_without_model_tokens_are_rejected(tokenizer, tmp_path):
    row = LearnerRow([1, 2, 3], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="no model tokens"):
        SFTTrainer(SFTConfig(), build_tiny_llama(tokenizer), tokenizer, [row], tmp_path)


def test_packed_demonstrations_give_the_padded_loss_and_update(tokenizer, tmp_path):
    """Demonstrations packed into shared rows (block-diagonal attention, positions from 0) give the
    same loss and the same parameters after two steps as one padded row each, without the padding."""
    demos = [demo_row(tokenizer, a, b) for a in range(2, 9) for b in range(11, 13)]
    demos += [LearnerRow(d.token_ids[:-9], d.weights[:-9]) for d in demos[:6]]  # shorter ones
    results = {}
    for packing in ("flat", "tree"):
        config = SFTConfig.model_validate(
            {
                "steps": 2,
                "batch_size": 20,
                "micro_batch_size": 8,
                "packing": packing,
                "pack_tokens": 96,
                "optim": {"lr": 1e-2},
                "logging": {"tensorboard": False},
            }
        )
        model = build_tiny_llama(tokenizer, seed=0, dtype=torch.float64)
        history = SFTTrainer(config, model, tokenizer, demos, tmp_path / packing).train()
        results[packing] = (history, model.state_dict())
    (flat, flat_weights), (tree, tree_weights) = results["flat"], results["tree"]
    for a, b in zip(flat, tree, strict=True):
        assert a["loss/sft"] == pytest.approx(b["loss/sft"], rel=1e-6)  # the loss is summed in float32
    for name, value in flat_weights.items():
        assert torch.allclose(value, tree_weights[name], atol=1e-6), name
