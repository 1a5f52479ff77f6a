"""The rollout engine named by a config: ``hf`` (transformers, default) or ``vllm``."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import torch

from arpo.engines.base import Generator
from arpo.engines.hf import HFGenerator
from arpo.engines.vllm_options import EngineName, VLLMOptions


def build_generator(
    engine: EngineName, model: torch.nn.Module, tokenizer: Any, vllm: VLLMOptions | None = None
) -> Generator:
    """A generator sampling from ``model``'s current weights.

    ``vllm`` starts an in-process vLLM engine from those weights (written once to a temporary
    Hugging Face folder, removed when the engine has loaded them); it raises a clear error in a
    multi-process run, where each process would need its own engine (see docs/vllm.md).
    """
    if engine == "hf":
        return HFGenerator(model, tokenizer)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and torch.distributed.get_world_size() > 1:
        raise ValueError(
            "rollout.engine=vllm runs one in-process engine and does not support multi-process "
            "training yet: launch one process (vLLM itself may use several GPUs through "
            "rollout.vllm.engine_args.tensor_parallel_size)"
        )
    from arpo.engines.vllm import VLLMGenerator

    folder = tempfile.mkdtemp(prefix="arpo-vllm-")
    try:
        return VLLMGenerator.from_policy(model, tokenizer, vllm or VLLMOptions(), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
