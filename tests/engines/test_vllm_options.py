"""The vLLM engine's options in a run of several training processes (no vLLM needed)."""

from __future__ import annotations

import logging

import pytest
import torch

from arpo.engines import vllm_options
from arpo.engines.vllm_options import VLLMOptions, resolve_dtype


def test_several_training_processes_get_one_engine_each_and_parallel_engines_are_refused():
    assert VLLMOptions().for_processes(2).engine_args == {"distributed_executor_backend": "external_launcher"}
    options = VLLMOptions(block_size=32)
    assert options.for_processes(2).block_size == 32 and options.engine_args == {}, "a copy; the rest kept"
    with pytest.raises(ValueError, match="tensor_parallel_size=2 with 4 training processes: .*must be 1"):
        VLLMOptions(engine_args={"tensor_parallel_size": 2}).for_processes(4)
    with pytest.raises(ValueError, match="distributed_executor_backend='mp' with 2 training processes"):
        VLLMOptions(engine_args={"distributed_executor_backend": "mp"}).for_processes(2)


@pytest.fixture
def bf16(monkeypatch):
    def native(cpu: bool, cuda: bool = False) -> None:
        monkeypatch.setattr(vllm_options, "cpu_has_native_bf16", lambda: cpu)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: cuda)

    return native


def test_auto_dtype_takes_bfloat16_only_where_it_is_native(bf16):
    bf16(cpu=True)
    assert resolve_dtype("auto", "float32", on_cpu=True) == "bfloat16"
    bf16(cpu=False)
    assert resolve_dtype("auto", "float32", on_cpu=True) == "float32"
    assert resolve_dtype("auto", "float32", on_cpu=False) == "float16"
    bf16(cpu=False, cuda=True)
    assert resolve_dtype("auto", "float32", on_cpu=False) == "bfloat16"
    assert resolve_dtype(None, "float32", on_cpu=True) == "float32", "null: the policy's dtype"
    assert VLLMOptions.model_validate({"dtype": "auto"}).dtype == "auto"


def test_explicit_dtypes_are_kept_and_slow_bfloat16_is_named(bf16, caplog):
    bf16(cpu=False)
    with caplog.at_level(logging.WARNING, logger=vllm_options.__name__):
        assert resolve_dtype("bfloat16", "float32", on_cpu=True) == "bfloat16"
        assert resolve_dtype("float32", "bfloat16", on_cpu=True) == "float32"
        assert resolve_dtype("bfloat16", "float32", on_cpu=False) == "bfloat16"
    assert [r.getMessage() for r in caplog.records] == [vllm_options.SLOW_BF16]
    bf16(cpu=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=vllm_options.__name__):
        assert resolve_dtype("bfloat16", "float32", on_cpu=True) == "bfloat16"
    assert not caplog.records
