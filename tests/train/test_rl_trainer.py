"""A real RL step on a tiny model, and exact resume from a checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from arpo.core.logits import PolicyView
from arpo.core.rewards import RewardResult
from arpo.models.tiny import build_tiny_llama
from arpo.report.run_report import write_run_report
from arpo.tools import Calculator, ToolBox
from arpo.train.budget import BUDGETS
from arpo.train.checkpoint import latest_checkpoint, load_state
from arpo.train.metrics_log import read_metrics
from arpo.train.rl import RLConfig, RLTrainer
from tests.train.helpers import arithmetic_tasks, count_ones, rl_config, train_rl, without_time


@pytest.mark.parametrize("attribution", ["soft", "hard"])
def test_one_step_changes_every_parameter(tokenizer, tmp_path, attribution):
    model = build_tiny_llama(tokenizer, seed=0)
    before = copy.deepcopy(model.state_dict())
    config = rl_config(steps=1, advantage={"attribution": attribution})
    (metrics,) = train_rl(model, tokenizer, tmp_path, config)
    unchanged = [name for name, value in model.state_dict().items() if torch.equal(value, before[name])]
    assert not unchanged
    assert metrics["rollout/trajectories"] == 8 and metrics["reward/std"] > 0
    assert metrics["grad_norm"] > 0


def test_dynamic_sampling_drops_zero_variance_groups(tokenizer, tmp_path, monkeypatch):
    model = build_tiny_llama(tokenizer, seed=0)
    before = copy.deepcopy(model.state_dict())
    config = rl_config(steps=1, advantage={"dynamic_sampling": True})
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(
            config,
            model,
            tokenizer,
            arithmetic_tasks(),
            tools,
            lambda s: count_ones(
                s.__class__("", s.tool_calls, s.ground_truths, s.answer_type, s.finish_reason)
            ),
            tmp_path,
        )
        (metrics,) = trainer.train()
    assert metrics["reward/groups_kept"] == 0
    assert "loss/policy" not in metrics
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_dynamic_sampling_filters_on_correctness_not_on_the_shaped_reward(tokenizer, tmp_path):
    """Rewards that differ only by shaping ([1, 1, 0.8]-like) carry no accuracy signal: dropped."""

    def shaped_only(sample):
        result = count_ones(sample)
        return RewardResult(result.total, True, None, correctness=1.0, bonus=0.0, answer=None)

    config = rl_config(steps=1, advantage={"dynamic_sampling": True})
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(
            config, build_tiny_llama(tokenizer), tokenizer, arithmetic_tasks(), tools, shaped_only, tmp_path
        )
        (metrics,) = trainer.train()
    assert metrics["reward/std"] > 0 and metrics["reward/groups_kept"] == 0


def test_the_learner_scores_the_rollout_temperature_and_vocabulary(tokenizer, tmp_path):
    config = rl_config(steps=1, rollout={"temperature": 0.7, "max_response_tokens": 8})
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(
            config, build_tiny_llama(tokenizer), tokenizer, arithmetic_tasks(), tools, count_ones, tmp_path
        )
    assert trainer.view == PolicyView(0.7, len(tokenizer))
    with pytest.raises(ValidationError, match="temperature must be > 0"):
        rl_config(rollout={"temperature": 0.0})


@pytest.mark.parametrize(("epochs", "recomputed"), [(1, 0), (2, 1)])
def test_old_logprobs_are_recomputed_only_when_the_batch_makes_several_updates(
    tokenizer, tmp_path, monkeypatch, epochs, recomputed
):
    """One epoch, one mini-batch: π_old = π_θ, so the old log-probs are the current ones, detached
    (no extra forward); the update equals the one with a recomputed π_old."""
    calls = []
    original = RLTrainer._copy_logprobs
    monkeypatch.setattr(RLTrainer, "_copy_logprobs", lambda self, *a: calls.append(1) or original(self, *a))
    config = rl_config(steps=1, ppo_epochs=epochs)
    model = build_tiny_llama(tokenizer, seed=0, dtype=torch.float64)
    (metrics,) = train_rl(model, tokenizer, tmp_path / "skip", config)
    assert len(calls) == recomputed
    if epochs == 1:
        assert metrics["loss/clip_fraction"] == 0.0
        monkeypatch.setattr(RLConfig, "single_update", lambda self: False)
        recomputing = build_tiny_llama(tokenizer, seed=0, dtype=torch.float64)
        train_rl(recomputing, tokenizer, tmp_path / "recompute", config)
        assert len(calls) == 1
        for name, value in recomputing.state_dict().items():
            assert torch.allclose(value, model.state_dict()[name], atol=1e-10), name


def assert_budgets_are_running_sums(history: list[dict], start: dict[str, float]) -> None:
    """Each step's cumulative budgets are ``start`` plus the per-step metrics so far (one process)."""
    totals = dict(start)
    for metrics in history:
        for total, source in BUDGETS.items():
            totals[total] += metrics.get(source, 0.0)
            assert metrics[total] == pytest.approx(totals[total]), (metrics["step"], total)


def test_resume_continues_exactly(tokenizer, tmp_path):
    """Weights, metrics and the cumulative budgets continue as if the run had never stopped (and the
    run's report shows the budgets)."""
    config = rl_config()
    straight = train_rl(build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path / "a", config)
    assert_budgets_are_running_sums(straight, dict.fromkeys(BUDGETS, 0.0))
    assert straight[-1]["budget/tool_calls_total"] > 0 and straight[-1]["budget/learner_tokens_total"] > 0
    report = write_run_report(tmp_path / "a").read_text()
    assert "| tool calls executed |" in report and "plots/accuracy_vs_budget.png" in report

    class Killed(Exception):
        pass

    def kill_after_two(step, metrics):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        train_rl(build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path / "b", config, kill_after_two)
    checkpoint = latest_checkpoint(tmp_path / "b")
    assert checkpoint is not None and checkpoint.name == "step-00000002"
    saved = load_state(checkpoint)["budget"]
    assert saved["budget/tool_calls_total"] == straight[1]["budget/tool_calls_total"]
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    resumed = train_rl(model, AutoTokenizer.from_pretrained(checkpoint), tmp_path / "b", config)
    assert [m["step"] for m in resumed] == [3, 4]
    assert_budgets_are_running_sums(resumed, saved)  # wall time too: it continues from the checkpoint's
    for got, expected in zip(without_time(resumed), without_time(straight[2:]), strict=True):
        assert got == pytest.approx(expected)
    final_a = AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "a")).state_dict()
    for name, value in model.state_dict().items():
        assert torch.allclose(value, final_a[name], atol=1e-7), name
    assert [m["step"] for m in read_metrics(tmp_path / "b")] == [1, 2, 3, 4]


def test_kl_needs_a_reference(tokenizer, tmp_path):
    with ToolBox([Calculator()]) as tools, pytest.raises(ValueError, match="reference"):
        RLTrainer(
            rl_config(loss={"kl_coef": 0.1}),
            build_tiny_llama(tokenizer),
            tokenizer,
            arithmetic_tasks(),
            tools,
            count_ones,
            tmp_path,
        )


def test_kl_and_entropy_terms_are_reported(tokenizer, tmp_path):
    reference = build_tiny_llama(tokenizer, seed=0)
    config = rl_config(steps=1, ppo_epochs=2, loss={"kl_coef": 0.1, "entropy_coef": 0.01})
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(
            config,
            build_tiny_llama(tokenizer, seed=0),
            tokenizer,
            arithmetic_tasks(),
            tools,
            count_ones,
            tmp_path,
            reference=reference,
        )
        (metrics,) = trainer.train()
    assert metrics["loss/kl"] >= 0 and metrics["loss/entropy"] > 0
