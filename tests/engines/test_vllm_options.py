"""The vLLM engine's options in a run of several training processes (no vLLM needed)."""

from __future__ import annotations

import pytest

from arpo.engines.vllm_options import VLLMOptions


def test_several_training_processes_get_one_engine_each_and_parallel_engines_are_refused():
    assert VLLMOptions().for_processes(2).engine_args == {"distributed_executor_backend": "external_launcher"}
    options = VLLMOptions(block_size=32)
    assert options.for_processes(2).block_size == 32 and options.engine_args == {}, "a copy; the rest kept"
    with pytest.raises(ValueError, match="tensor_parallel_size=2 with 4 training processes: .*must be 1"):
        VLLMOptions(engine_args={"tensor_parallel_size": 2}).for_processes(4)
    with pytest.raises(ValueError, match="distributed_executor_backend='mp' with 2 training processes"):
        VLLMOptions(engine_args={"distributed_executor_backend": "mp"}).for_processes(2)
