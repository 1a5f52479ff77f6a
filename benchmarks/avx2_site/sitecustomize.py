"""Makes ``torch.cpu`` report a CPU without AVX-512 or AMX, in a process of an emulated AVX2-only run.

``harness.slow_cpu_environ`` puts this folder first on ``PYTHONPATH``, so Python imports this
module at start-up. ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` and ``MKL_ENABLE_INSTRUCTIONS``
limit torch's, oneDNN's and MKL's kernels, but vLLM's CPU backend picks its own from the hardware
flags that ``torch.cpu`` reads: its AVX-512 kernel library and its AMX attention and GEMMs on this
machine, the AVX2 library and the vectorised attention on an AVX2-only CPU. With this module those
checks answer as on the AVX2-only CPU, so vLLM's phases are emulated too.

The patch is applied when ``torch.cpu`` is first imported (an import hook), so a process that
never imports torch pays nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType

NOT_ON_AN_AVX2_CPU = (
    "_is_avx512_supported",
    "_is_avx512_vnni_supported",
    "_is_avx512_bf16_supported",
    "_is_amx_tile_supported",
    "_is_amx_fp16_supported",
)


def _no(*_: object) -> bool:
    return False


def _patch(module: ModuleType) -> None:
    for name in NOT_ON_AN_AVX2_CPU:
        if hasattr(module, name):
            setattr(module, name, _no)


class _PatchTorchCpu(importlib.abc.MetaPathFinder):
    """Finds ``torch.cpu`` with the regular finders, and patches it once its code has run."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "torch.cpu":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchTorchCpu())
