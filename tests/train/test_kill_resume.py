"""A real `arpo train` process killed with SIGKILL and resumed ends exactly like an unbroken run."""

from __future__ import annotations

import os
import signal

import pytest

from arpo.train.checkpoint import checkpoint_step, latest_checkpoint
from tests.train.helpers import (
    PROCESS_STEPS,
    arpo,
    assert_same_run,
    finish,
    start_until_checkpoint,
    write_config,
)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_unbroken_run(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    finish(arpo("train", "--config", str(write_config(tmp_path, straight))))

    config = write_config(tmp_path, broken)
    process = start_until_checkpoint(config, broken)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(broken)
    assert killed_at is not None and checkpoint_step(killed_at) < PROCESS_STEPS

    refused = arpo("train", "--config", str(config))
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "--resume" in err

    finish(arpo("train", "--config", str(config), "--resume"))
    assert_same_run(straight, broken)
