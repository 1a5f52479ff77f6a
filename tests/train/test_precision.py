"""train.mixed_precision auto: bf16 only where the hardware computes it natively."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from arpo.train import precision
from arpo.train.loop import LoopConfig
from arpo.train.precision import resolve_mixed_precision


@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(precision, "on_cuda", lambda: False)

    def native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: value)

    return native


def test_auto_takes_bf16_only_where_the_cpu_computes_it(cpu):
    cpu(True)
    assert resolve_mixed_precision("auto") == "bf16"
    cpu(False)
    assert resolve_mixed_precision("auto") == "no"


def test_explicit_values_are_kept_and_slow_bf16_is_named(cpu, caplog):
    cpu(False)
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert resolve_mixed_precision("bf16") == "bf16"
        assert resolve_mixed_precision("no") == "no"
    assert [r.getMessage() for r in caplog.records] == [precision.SLOW_BF16]
    cpu(True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=precision.__name__):
        assert resolve_mixed_precision("bf16") == "bf16"
    assert not caplog.records


def test_an_avx2_only_cpu_gets_float32():
    """oneDNN limited to AVX2 (the slow-CPU emulation) has no native bf16: auto is no."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ACCELERATE_USE_CPU": "true"}
    code = "from arpo.train.precision import resolve_mixed_precision as r; print(r('auto'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "no"


def test_the_config_accepts_auto():
    assert LoopConfig.model_validate({"mixed_precision": "auto"}).mixed_precision == "auto"
