"""SIGTERM, as a scheduler sends before preemption: the step finishes, a checkpoint is written, the
run stops with exit status 143, and --resume continues exactly."""

from __future__ import annotations

import signal
import threading

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from arpo.models.tiny import build_tiny_llama
from arpo.train.checkpoint import checkpoint_dir, checkpoint_step, latest_checkpoint, list_checkpoints
from arpo.train.errors import Preempted
from arpo.train.metrics_log import read_metrics
from tests.train.helpers import (
    PROCESS_STEPS,
    arpo,
    assert_same_run,
    finish,
    rl_config,
    sft_trainer,
    start_until_checkpoint,
    train_rl,
    without_time,
    write_config,
)


def test_sigterm_checkpoints_the_finished_step_and_resume_continues_exactly(tokenizer, tmp_path):
    config = rl_config(steps=4, save_every=3)
    straight = train_rl(build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path / "a", config)
    installed_before = signal.getsignal(signal.SIGTERM)
    seen = {}

    def sigterm_after_step_1(step: int, metrics: dict) -> None:
        if step == 1:
            signal.raise_signal(signal.SIGTERM)
            seen["handler after the first SIGTERM"] = signal.getsignal(signal.SIGTERM)

    with pytest.raises(Preempted) as stopped:
        train_rl(build_tiny_llama(tokenizer, seed=0), tokenizer, tmp_path / "b", config, sigterm_after_step_1)
    checkpoint = checkpoint_dir(tmp_path / "b", 1)
    assert str(stopped.value) == (
        f"SIGTERM after step 1 of 4: checkpoint {checkpoint} holds it; continue with --resume"
    )
    assert stopped.value.exit_status == 143
    assert list_checkpoints(tmp_path / "b") == [checkpoint], "written for the SIGTERM (save_every is 3)"
    assert seen["handler after the first SIGTERM"] == installed_before, "a second SIGTERM acts at once"
    assert signal.getsignal(signal.SIGTERM) == installed_before, "the handler is restored"

    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    resumed = train_rl(model, AutoTokenizer.from_pretrained(checkpoint), tmp_path / "b", config)
    assert [m["step"] for m in resumed] == [2, 3, 4]
    for got, expected in zip(without_time(read_metrics(tmp_path / "b")), without_time(straight), strict=True):
        assert got == pytest.approx(expected)


def test_a_loop_outside_the_main_thread_trains_without_a_handler(tokenizer, tmp_path):
    trainer = sft_trainer(tokenizer, tmp_path, steps=2)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(trainer.train()))
    worker.start()
    worker.join()
    assert [m["step"] for m in outcome[0]] == [1, 2]


@pytest.mark.slow
def test_sigterm_to_a_real_process_exits_143_and_resume_equals_an_unbroken_run(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    finish(arpo("train", "--config", str(write_config(tmp_path, straight))))

    config = write_config(tmp_path, broken)
    process = start_until_checkpoint(config, broken)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    stopped_at = latest_checkpoint(broken)
    step = checkpoint_step(stopped_at)
    assert 2 <= step < PROCESS_STEPS
    assert f"stopped: SIGTERM after step {step} of {PROCESS_STEPS}" in " ".join(err.split())
    assert [m["step"] for m in read_metrics(broken)] == list(range(1, step + 1))

    finish(arpo("train", "--config", str(config), "--resume"))
    assert_same_run(straight, broken)
