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
    Hugging Face folder, removed when the engine has loaded them). In a run of several processes
    every process starts its own engine on its own device, with vLLM's ``external_launcher``
    executor (the ``torch.distributed`` group the training already runs in), and samples its own
    prompts: :meth:`~arpo.engines.vllm_options.VLLMOptions.for_processes` (docs/vllm.md).
    """
    if engine == "hf":
        return HFGenerator(model, tokenizer)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    options = vllm or VLLMOptions()
    if distributed and torch.distributed.get_world_size() > 1:
        options = options.for_processes(torch.distributed.get_world_size())
    from arpo.engines.vllm import VLLMGenerator

    folder = tempfile.mkdtemp(prefix="arpo-vllm-")
    try:
        return VLLMGenerator.from_policy(model, tokenizer, options, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
