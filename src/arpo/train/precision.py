"""``train.mixed_precision: auto``: bf16 autocast only where the hardware computes bf16 natively.

bf16 autocast pays where the matrix units take bf16 and is a trap where they do not.
``benchmarks/mixed_precision.py`` on the development machine (2026-12-06, SmolLM2-135M-Instruct,
forward and backward of 4 rows × 210 tokens, float32 weights): natively (AVX-512 with AMX) bf16
autocast took 0.55× float32's time; with an AVX2-only CPU emulated (``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=SSE4_2``) 14.6× (backward 248 s against 11 s):
oneDNN has no bf16 kernels for that instruction set.

``auto`` resolves, once per run, to

* ``bf16`` on a CUDA device that supports it (``torch.cuda.is_bf16_supported()``);
* ``bf16`` on a CPU whose bf16 oneDNN runs natively
  (:func:`~arpo.models.native_bf16.cpu_has_native_bf16`: AMX or AVX512-BF16);
* ``no`` (float32) otherwise.

An explicit ``bf16`` on a CPU without native bf16 is kept, with a warning that says why it is slow.
"""

from __future__ import annotations

import logging

import torch
from accelerate.utils import parse_flag_from_env

from arpo.models.native_bf16 import cpu_has_native_bf16

logger = logging.getLogger(__name__)

SLOW_BF16 = (
    "train.mixed_precision bf16 on a CPU without native bf16 (no AMX or AVX512-BF16 that oneDNN uses): "
    "bf16 autocast is emulated there (measured with an AVX2-only CPU emulated: SmolLM2-135M's learner step "
    "15x slower than in float32, benchmarks/mixed_precision.py); set train.mixed_precision to auto or no"
)


def on_cuda() -> bool:
    """The run will train on a CUDA device (accelerate's choice: CUDA unless told to use the CPU)."""
    return torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")


def resolve_mixed_precision(value: str) -> str:
    """accelerate's ``mixed_precision`` for ``train.mixed_precision`` (module docstring)."""
    if value == "auto":
        native = torch.cuda.is_bf16_supported() if on_cuda() else cpu_has_native_bf16()
        resolved = "bf16" if native else "no"
        logger.info("train.mixed_precision auto: %s", resolved)
        return resolved
    if value == "bf16" and not on_cuda() and not cpu_has_native_bf16():
        logger.warning(SLOW_BF16)
    return value
