"""Schedules, sampler, checkpoints, metrics files and learner log-probs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from arpo.core.entropy import entropy_from_logits
from arpo.models.tiny import build_tiny_llama
from arpo.train.batching import LearnerRow, pad_rows
from arpo.train.checkpoint import latest_checkpoint, list_checkpoints, load_state, save_checkpoint
from arpo.train.logprobs import token_logprobs
from arpo.train.metrics_log import LoggingConfig, MetricsLogger, read_metrics
from arpo.train.optim import OptimConfig, lr_factor
from arpo.train.sampler import TaskSampler


def test_lr_schedules_by_hand():
    warm = OptimConfig(warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, 14, warm) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(4, 14, warm) == pytest.approx(1.0)
    assert lr_factor(9, 14, warm) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(14, 14, warm) == pytest.approx(0.1)
    assert lr_factor(5, 10, OptimConfig(schedule="linear")) == pytest.approx(0.5)
    assert lr_factor(7, 10, OptimConfig()) == 1.0


def test_sampler_visits_every_task_once_per_epoch_and_resumes():
    sampler = TaskSampler(5, seed=3)
    first = sampler.take(3) + sampler.take(2)
    assert sorted(first) == [0, 1, 2, 3, 4]
    state = sampler.state_dict()
    rest = sampler.take(7)
    again = TaskSampler(5, seed=3)
    again.load_state_dict(state)
    assert again.take(7) == rest
    assert sorted(rest[:5]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="trained on 5 tasks"):
        TaskSampler(4, seed=3).load_state_dict(state)


def test_checkpoints_are_committed_by_rename_and_pruned(tokenizer, tmp_path):
    model = build_tiny_llama(tokenizer)
    (tmp_path / "checkpoints" / ".step-00000009.tmp").mkdir(parents=True)  # a killed save
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, tokenizer, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert not list((tmp_path / "checkpoints").glob(".*"))
    assert load_state(latest_checkpoint(tmp_path))["step"] == 3
    half = tmp_path / "checkpoints" / "step-00000004"
    half.mkdir()  # a folder without trainer state is not a checkpoint
    assert latest_checkpoint(tmp_path).name == "step-00000003"


def test_metrics_resume_drops_steps_after_the_checkpoint_and_partial_lines(tmp_path):
    logger = MetricsLogger(tmp_path, LoggingConfig(tensorboard=False))
    for step in (1, 2, 3):
        logger.log(step, {"x": step})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "x"')
    MetricsLogger(tmp_path, LoggingConfig(tensorboard=False), resume_step=2).close()
    assert read_metrics(tmp_path) == [{"step": 1, "x": 1}, {"step": 2, "x": 2}]


def test_a_fresh_run_drops_every_old_line_including_step_0(tmp_path):
    logger = MetricsLogger(tmp_path, LoggingConfig(tensorboard=False))
    for step in (0, 1):  # step 0: validation of the starting policy
        logger.log(step, {"x": step})
    logger.close()
    MetricsLogger(tmp_path, LoggingConfig(tensorboard=False)).close()  # no checkpoint: starts over
    assert read_metrics(tmp_path) == []


def test_tensorboard_events_are_written(tmp_path):
    logger = MetricsLogger(tmp_path, LoggingConfig(tensorboard=True))
    logger.log(1, {"reward/mean": 0.5, "hist": {"1": 2}})
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["hist"] == {"1": 2}


def test_learner_logprobs_and_entropies_match_a_plain_forward(tokenizer):
    model = build_tiny_llama(tokenizer, dtype=torch.float64)
    rows = [LearnerRow([5, 6, 7, 8, 9], [0, 1, 1, 1, 1]), LearnerRow([5, 9, 10], [0, 1, 1])]
    batch = pad_rows(rows, pad_id=0)
    logprobs, entropies = token_logprobs(model, batch.input_ids, batch.attention_mask, with_entropy=True)
    for i, row in enumerate(rows):
        logits = model(torch.tensor([row.token_ids])).logits[0]
        expected = torch.log_softmax(logits, dim=-1)
        for t in range(1, len(row.token_ids)):
            assert logprobs[i, t].item() == pytest.approx(expected[t - 1, row.token_ids[t]].item(), abs=1e-10)
            assert entropies[i, t].item() == pytest.approx(
                entropy_from_logits(logits[t - 1]).item(), abs=1e-10
            )
    assert logprobs[:, 0].tolist() == [0.0, 0.0]
