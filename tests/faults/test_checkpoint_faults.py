"""Checkpoint faults: a write that fails half-way (disk full), damaged checkpoints on --resume, and
loading a model from a run whose trainer states were deleted."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from arpo.cli import app
from arpo.config import load_config
from arpo.eval.sources import resolve_policy
from arpo.models.loading import PolicyConfig
from arpo.models.tiny import build_tiny_llama
from arpo.train.checkpoint import (
    MANIFEST_FILE,
    STATE_FILE,
    checkpoint_dir,
    checkpoint_problem,
    list_checkpoints,
    newest_intact_checkpoint,
    newest_model_checkpoint,
    save_checkpoint,
)
from arpo.train.errors import CorruptCheckpointError
from arpo.train.jobs import RLJobConfig, run_rl
from arpo.train.metrics_log import read_metrics
from tests.train.helpers import weights, without_time, write_config

runner = CliRunner()


def flat(text: str) -> str:
    """``text`` without whitespace: the console wraps long lines, paths included."""
    return "".join(text.split())


def job(tmp_path: Path, name: str, steps: int) -> RLJobConfig:
    """The RL run of :func:`write_config` for ``steps`` steps, checkpointed after each."""
    overrides = [f"train.steps={steps}", "train.save_every=1", "train.keep_checkpoints=3"]
    return load_config(RLJobConfig, write_config(tmp_path, tmp_path / name), overrides)


@pytest.fixture
def straight(tmp_path: Path) -> Path:
    """An unbroken 2-step run."""
    run_rl(job(tmp_path, "straight", 2))
    return tmp_path / "straight"


def test_a_checkpoint_write_failing_half_way_stops_the_run_and_keeps_the_previous_one(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    config = write_config(tmp_path, run_dir)
    real_save = torch.save

    def disk_full_at_step_2(obj, path, *args, **kwargs):  # the weights are written, the state half-way
        if checkpoint_dir(run_dir, 2).name in str(path):
            Path(path).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_step_2)
    result = runner.invoke(app, ["train", "--config", str(config), "train.steps=2", "train.save_every=1"])
    assert result.exit_code == 3, result.output
    assert flat(
        f"stopped: step 2: could not write checkpoint {checkpoint_dir(run_dir, 2)}: [Errno 28] No space left on device"
    ) in flat(result.output)
    assert flat(
        f"(ENOSPC); checkpoint {checkpoint_dir(run_dir, 1)}, written before, is untouched; training stopped"
    ) in flat(result.output)
    assert list_checkpoints(run_dir) == [checkpoint_dir(run_dir, 1)]
    assert checkpoint_problem(checkpoint_dir(run_dir, 1)) is None
    assert not list((run_dir / "checkpoints").glob(".*")), "the half-written folder is removed"

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run continues from step 1
    result = runner.invoke(app, ["train", "--config", str(config), "train.steps=2", "--resume"])
    assert result.exit_code == 0, result.output
    assert [m["step"] for m in read_metrics(run_dir)] == [1, 2]


@pytest.fixture
def two_checkpoints(tokenizer, tmp_path) -> Path:
    """A run folder with the checkpoints of steps 1 and 2 of a tiny model; returns the run folder."""
    model = build_tiny_llama(tokenizer, seed=0)
    for step in (1, 2):
        save_checkpoint(tmp_path, step, model, tokenizer, {"step": step})
    return tmp_path


def test_every_file_of_a_checkpoint_is_in_its_manifest(two_checkpoints):
    checkpoint = checkpoint_dir(two_checkpoints, 2)
    files = json.loads((checkpoint / MANIFEST_FILE).read_text())["files"]
    on_disk = {p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file()}
    assert set(files) == on_disk - {MANIFEST_FILE}
    assert {STATE_FILE, "model.safetensors", "config.json", "tokenizer.json"} <= set(files)
    assert all(entry["size"] == (checkpoint / name).stat().st_size for name, entry in files.items())
    assert newest_intact_checkpoint(two_checkpoints) == checkpoint


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def garble_manifest(path: Path) -> None:
    path.write_text(path.read_text()[:40])


@pytest.mark.parametrize(
    ("damage", "file", "problem"),
    [
        (truncate, STATE_FILE, "bytes, the manifest says"),
        (flip_a_byte, "model.safetensors", "does not match its SHA-256 in the manifest"),
        (Path.unlink, "tokenizer.json", "is missing"),
        (garble_manifest, MANIFEST_FILE, "is unreadable (JSONDecodeError"),
    ],
)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(
    two_checkpoints, caplog, damage, file, problem
):
    bad = checkpoint_dir(two_checkpoints, 2) / file
    damage(bad)
    assert newest_intact_checkpoint(two_checkpoints) == checkpoint_dir(two_checkpoints, 1)
    assert f"checkpoint {checkpoint_dir(two_checkpoints, 2)} is damaged ({bad} " in caplog.text
    assert problem in caplog.text and "trying the one before it" in caplog.text


def test_no_intact_checkpoint_is_a_clear_error(two_checkpoints):
    for step in (1, 2):
        truncate(checkpoint_dir(two_checkpoints, step) / "model.safetensors")
    with pytest.raises(CorruptCheckpointError) as error:
        newest_intact_checkpoint(two_checkpoints)
    message = str(error.value)
    first, second = (checkpoint_dir(two_checkpoints, s) / "model.safetensors" for s in (2, 1))
    assert message.startswith(
        f"{two_checkpoints} has no intact checkpoint to load: {first.parent}: {first} has "
    )
    assert f"; {second.parent}: {second} has " in message


def test_after_a_fallback_the_next_write_removes_the_damaged_newer_checkpoint(two_checkpoints, tokenizer):
    truncate(checkpoint_dir(two_checkpoints, 2) / STATE_FILE)
    assert newest_intact_checkpoint(two_checkpoints) == checkpoint_dir(two_checkpoints, 1)
    save_checkpoint(two_checkpoints, 1, build_tiny_llama(tokenizer, seed=0), tokenizer, {"step": 1}, keep=2)
    assert list_checkpoints(two_checkpoints) == [checkpoint_dir(two_checkpoints, 1)]


def test_a_checkpoint_without_a_manifest_is_accepted_with_a_warning(two_checkpoints, caplog):
    (checkpoint_dir(two_checkpoints, 2) / MANIFEST_FILE).unlink()
    assert newest_intact_checkpoint(two_checkpoints) == checkpoint_dir(two_checkpoints, 2)
    assert f"checkpoint {checkpoint_dir(two_checkpoints, 2)} has no manifest.json" in caplog.text


def test_resume_takes_weights_and_state_from_the_same_intact_checkpoint(tmp_path, straight, caplog):
    # The newest checkpoint's weights are intact but its trainer state is cut short: the run must
    # resume from step 1 entirely (the weights of step 2 with the state of step 1 would diverge).
    run_dir = tmp_path / "run"
    run_rl(job(tmp_path, "run", 2))
    truncate(checkpoint_dir(run_dir, 2) / STATE_FILE)
    history = run_rl(job(tmp_path, "run", 2), resume=True)
    assert f"checkpoint {checkpoint_dir(run_dir, 2)} is damaged" in caplog.text
    assert [m["step"] for m in history] == [2]
    for got, expected in zip(
        without_time(read_metrics(run_dir)), without_time(read_metrics(straight)), strict=True
    ):
        assert got == pytest.approx(expected)
    final, expected = weights(run_dir), weights(straight)
    assert all(torch.allclose(value, expected[name], atol=1e-6) for name, value in final.items())


def test_the_model_of_a_run_whose_trainer_states_were_deleted_still_loads(tmp_path, straight):
    # Deleting trainer_state.pt frees most of a checkpoint's space; only --resume needs it.
    for checkpoint in list_checkpoints(straight):
        (checkpoint / STATE_FILE).unlink()
    assert list_checkpoints(straight) == [], "nothing left to resume"
    assert newest_model_checkpoint(str(straight)) == checkpoint_dir(straight, 2)
    policy = resolve_policy(PolicyConfig(name=str(straight)))
    assert policy.name == str(checkpoint_dir(straight, 2))
    config = load_config(
        RLJobConfig, write_config(tmp_path, tmp_path / "next"), ["train.steps=1", f"model.name={straight}"]
    )
    assert [m["step"] for m in run_rl(config)] == [1]


def test_loading_weights_skips_a_damaged_trainer_state_but_not_a_damaged_model(two_checkpoints, caplog):
    truncate(checkpoint_dir(two_checkpoints, 2) / STATE_FILE)
    assert newest_model_checkpoint(str(two_checkpoints)) == checkpoint_dir(two_checkpoints, 2)
    assert newest_intact_checkpoint(two_checkpoints) == checkpoint_dir(two_checkpoints, 1), "--resume"
    flip_a_byte(checkpoint_dir(two_checkpoints, 2) / "model.safetensors")
    assert newest_model_checkpoint(str(two_checkpoints)) == checkpoint_dir(two_checkpoints, 1)
    assert f"checkpoint {checkpoint_dir(two_checkpoints, 2)} is damaged" in caplog.text


def test_a_run_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="is a run folder without a checkpoint"):
        newest_model_checkpoint(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'run'} is a run folder"):
        resolve_policy(PolicyConfig(name=str(tmp_path / "run")))
    assert newest_model_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct") is None, "a model name"
    assert newest_model_checkpoint(str(tmp_path)) is None, "a folder that is not a run"
