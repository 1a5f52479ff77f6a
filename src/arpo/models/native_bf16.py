"""Whether this machine computes bf16 natively: what ``auto`` precisions ask before taking bf16.

bf16 pays where the matrix units take it and is a trap where they do not (on a CPU without AMX or
AVX512-BF16 there are no native bf16 products; why each library is as slow as it is there was not
profiled). Measured: SmolLM2-135M's learner step under bf16 autocast took 14.6× float32's time with an
AVX2-only CPU emulated (:mod:`arpo.train.precision`); on a real 2-core AMD EPYC (AVX2, 2026-12-07)
the recipe's first ARPO rollout with vLLM in bf16 had not finished after 7 min, and took 99 s with
vLLM in float32 (:mod:`arpo.engines.vllm_options`, docs/recipes/smollm2_gsm8k.md).
"""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """oneDNN may use bf16 here (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, which honours
    ``ONEDNN_MAX_CPU_ISA``) and the CPU computes it natively (AMX or AVX512-BF16)."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
