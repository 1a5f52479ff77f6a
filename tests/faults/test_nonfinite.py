"""NaN injected into the loss or one gradient: the update is skipped and logged as valid JSON; too
many in a row stop the run; non-finite weights are never checkpointed."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from arpo.models.tiny import build_tiny_llama
from arpo.report.run_report import write_run_report
from arpo.tools import Calculator, ToolBox
from arpo.train.checkpoint import list_checkpoints
from arpo.train.errors import NonFiniteError
from arpo.train.loop import TrainLoop
from arpo.train.metrics_log import read_metrics
from arpo.train.rl import RLTrainer
from tests.train.helpers import arithmetic_tasks, count_ones, rl_config, sft_trainer

NAN = float("nan")


@contextmanager
def nan_loss(trainer: TrainLoop, steps: set[int] | None = None) -> Iterator[None]:
    """NaN logits in the learner's training forwards of ``steps`` (default: all), not in the
    rollout's sampling (which runs in eval mode)."""

    def poison(module: torch.nn.Module, args: object, out: torch.Tensor) -> torch.Tensor | None:
        on = module.training and (steps is None or trainer.step + 1 in steps)
        return out * NAN if on else None

    handle = trainer.policy.get_output_embeddings().register_forward_hook(poison)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def nan_gradient(trainer: TrainLoop, name: str = "model.norm.weight") -> Iterator[None]:
    """A NaN gradient for one parameter; the loss stays finite."""
    handle = dict(trainer.policy.named_parameters())[name].register_hook(
        lambda grad: torch.full_like(grad, NAN)
    )
    try:
        yield
    finally:
        handle.remove()


def strict_lines(run_dir: Path) -> list[dict]:
    """metrics.jsonl parsed as strict JSON (NaN and Infinity are not JSON)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"metrics.jsonl holds {constant}, which is not JSON")

    text = (run_dir / "metrics.jsonl").read_text()
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def params(trainer: TrainLoop) -> dict[str, torch.Tensor]:
    return copy.deepcopy(trainer.policy.state_dict())


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, b[name]) for name, value in a.items())


@pytest.mark.parametrize("inject", [nan_loss, nan_gradient])
def test_sft_step_with_nan_is_skipped_then_training_goes_on(tokenizer, tmp_path, inject):
    trainer = sft_trainer(tokenizer, tmp_path, steps=1)
    before = params(trainer)
    with inject(trainer):
        (metrics,) = trainer.train()
    assert same(before, params(trainer)), "a skipped update must leave every weight as it was"
    assert not trainer.optimizer.state, "a skipped update must not touch the optimizer state"
    assert all(p.grad is None for p in trainer.policy.parameters()), "the gradient is cleared"
    assert metrics["train/skipped_updates"] == 1 and metrics["train/skipped_updates_total"] == 1

    (line,) = strict_lines(tmp_path)
    assert line["grad_norm"] is None and line["nonfinite"]["grad_norm"] == "nan"
    if inject is nan_loss:
        assert line["loss/sft"] is None and line["nonfinite"]["loss/sft"] == "nan"
    else:
        assert isinstance(line["loss/sft"], float) and "loss/sft" not in line["nonfinite"]

    trainer.loop_config = trainer.loop_config.model_copy(update={"steps": 2})
    (metrics,) = trainer.train()  # the next, finite step is applied
    assert not same(before, params(trainer))
    assert metrics["train/skipped_updates"] == 0 and metrics["train/skipped_updates_total"] == 1
    assert "nonfinite" not in strict_lines(tmp_path)[-1]


@pytest.mark.parametrize("inject", [nan_loss, nan_gradient])
def test_rl_update_with_nan_is_skipped(tokenizer, tmp_path, inject):
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(
            rl_config(steps=1),
            build_tiny_llama(tokenizer, seed=0),
            tokenizer,
            arithmetic_tasks(),
            tools,
            count_ones,
            tmp_path,
        )
        before = params(trainer)
        with inject(trainer):
            (metrics,) = trainer.train()
    assert same(before, params(trainer))
    assert metrics["train/skipped_updates"] == 1
    (line,) = strict_lines(tmp_path)
    assert line["grad_norm"] is None and "grad_norm" in line["nonfinite"]
    assert line["reward/mean"] is not None, "finite metrics of the step are kept"


def test_consecutive_nonfinite_updates_stop_the_run_after_logging_them(tokenizer, tmp_path, caplog):
    trainer = sft_trainer(tokenizer, tmp_path, steps=5, optim={"lr": 1e-2, "max_consecutive_nonfinite": 2})
    with nan_loss(trainer), pytest.raises(NonFiniteError) as stopped:
        trainer.train()
    message = str(stopped.value)
    assert message.startswith("step 2: the last 2 optimizer updates were skipped")
    assert "the loss is nan" in message and "max_consecutive_nonfinite is 2" in message
    assert [line["step"] for line in strict_lines(tmp_path)] == [1, 2], "the steps are logged before stopping"
    assert "step 1: skipped an optimizer update: the loss is nan (1 in a row)" in caplog.text


def test_a_finite_update_resets_the_count(tokenizer, tmp_path):
    trainer = sft_trainer(tokenizer, tmp_path, steps=5, optim={"lr": 1e-2, "max_consecutive_nonfinite": 2})
    with nan_loss(trainer, steps={1, 3, 5}):
        history = trainer.train()
    assert [m["train/skipped_updates"] for m in history] == [1, 0, 1, 0, 1]
    assert history[-1]["train/skipped_updates_total"] == 3


def test_nonfinite_weights_are_never_checkpointed(tokenizer, tmp_path):
    trainer = sft_trainer(tokenizer, tmp_path)
    trainer.save()
    with torch.no_grad():
        trainer.policy.get_parameter("model.norm.weight")[0] = float("inf")
    trainer.step = 1
    with pytest.raises(
        NonFiniteError,
        match=r"step 1: refusing to write checkpoint .*step-00000001: .*\(model\.norm\.weight\)",
    ):
        trainer.save()
    assert [c.name for c in list_checkpoints(tmp_path)] == ["step-00000000"]
    assert not list((tmp_path / "checkpoints").glob(".*")), "no temporary folder is left"


def test_the_report_of_a_run_with_nonfinite_values(tokenizer, tmp_path):
    trainer = sft_trainer(tokenizer, tmp_path, steps=3)
    with nan_loss(trainer, steps={1}):
        trainer.train()
    assert [m["loss/sft"] is None for m in read_metrics(tmp_path)] == [True, False, False]
    report = write_run_report(tmp_path).read_text()
    assert (
        "non-finite values at 1 step(s) (1) in grad_norm, loss/sft; 1 optimizer update(s) skipped" in report
    )
