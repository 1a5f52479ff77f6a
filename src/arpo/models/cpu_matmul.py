"""``model.cpu_matmul``: which library computes the policy's float32 linear layers on a CPU.

A linear layer is y = x·Wᵀ + b; its backward is ∂x = ∂y·W and ∂W = ∂yᵀ·x. On x86 PyTorch hands
all three products to MKL's sgemm, which dispatches its fast kernels on Intel CPUs only: on other
vendors, or with ``MKL_ENABLE_INSTRUCTIONS`` limited to SSE4_2 or AVX, it runs generic code. The
demo's SFT step took 0.41 s on a 2-core AMD EPYC (AVX2) against 0.16 s on the Intel development
machine, and 0.45 s with that machine's MKL limited to SSE4_2 (docs/demo.md, "Machines differ").
oneDNN, which PyTorch also carries, picks its kernels by instruction set whatever the vendor.
Measured on the development machine with an AVX2-only CPU and MKL's generic path emulated
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=SSE4_2``, 2026-12-06,
one run): 1,024 × 576 → 1,536 took 41 ms in MKL and 11 ms in oneDNN, SmolLM2's 576 → 49,152
output layer 1,071 and 439 ms, its two backward products 1,159 + 1,039 against 400 + 587 ms;
natively (AVX-512, MKL's fast path) oneDNN took 0.9–1.6× MKL's time.
``benchmarks/mixed_precision.py`` times the whole learner step both ways.

``cpu_matmul`` takes

* ``torch``: PyTorch's own choice (MKL on x86);
* ``onednn``: every ``nn.Linear`` of the model computes its forward and both backward products
  with oneDNN (:class:`OneDNNLinear`) when it runs on a CPU in float32 outside autocast and the
  product has at least :data:`ONEDNN_MIN_MACS` multiply-adds; anything else (CUDA, bf16,
  autocast, small products) goes to ``F.linear`` as before. Small products stay with MKL because
  oneDNN's fixed cost per call (~25 µs here) exceeds them: emulated as above, 8 × 256 → 256 took
  39 µs in MKL and 56 µs in oneDNN, 8 × 256 → 1,024 137 and 112 µs, 1 × 256 → 256 11 and 38 µs.
  Forwards without autograd of 3–64 rows (the HF engine's decode steps) with a weight of ≥ 2¹⁸
  elements multiply by the weight laid out once in oneDNN's blocked format
  (``torch.ops.mkldnn._reorder_linear_weight``; kept like MKL's packs and dropped with them,
  :func:`~arpo.models.mkl_packed.weight_pack`) instead of reordering it inside every call. On a
  2-core AMD EPYC (AVX2, 2026-12-07) that made 90 products of SmolLM2's layer shapes at 8 rows
  take 23 against 36 ms, and the HF engine's SmolLM2 decode step at batch 8 and 32 0.80× and 0.83×
  as long (``benchmarks/roofline.py --cpu-matmul onednn onednn_plain``, one run, docs/performance.md);
  its results equal the plain oneDNN product's (bitwise there for 3, 8, 16 and 33 rows of the 576 → 1,536 weight, checked by hand);
* ``mkl_packed``: like ``torch``, except that forwards without autograd of 3–64 rows (decode
  steps) multiply by weights laid out once by MKL for that row count
  (:class:`~arpo.models.mkl_packed.MKLPackedLinear`): 0.4–0.8× ``F.linear``'s time for SmolLM2's
  layers at 8–32 rows on the development machine;
* ``auto`` (the default): ``onednn`` on an x86 CPU where MKL would take its generic path
  (:func:`mkl_generic_path`) and oneDNN is available; ``mkl_packed`` on any other x86 CPU whose
  PyTorch has MKL; else ``torch``.

All three compute the same products in another summation order: results agree to float32 rounding
(tests: 1e-5 of their size), not bitwise, so a seed's run on a machine depends on the choice.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from arpo.models.mkl_packed import (
    PACK_BUCKETS,
    PACK_MIN_ROWS,
    PACK_MIN_WEIGHTS,
    MKLPackedLinear,
    mkl_packing_available,
    release_packs,
    weight_pack,
)

logger = logging.getLogger(__name__)

CpuMatmul = Literal["auto", "torch", "onednn", "mkl_packed"]
Resolved = Literal["torch", "onednn", "mkl_packed"]
ONEDNN_MIN_MACS = 1 << 20
"""Rows × in × out below which a linear layer's product stays with ``F.linear`` (module docstring)."""
X86 = {"x86_64", "amd64", "i386", "i686"}
"""``platform.machine()`` names of x86 CPUs, where PyTorch's CPU builds use MKL."""
REORDER_ROWS = PACK_BUCKETS[0]
"""Row count oneDNN is told to expect when it lays out a weight for the no-grad forwards (any row
count can then use the layout; module docstring)."""
MKL_BELOW_AVX2 = {"SSE4_2", "AVX"}
"""``MKL_ENABLE_INSTRUCTIONS`` values that keep MKL off its AVX2 and AVX-512 kernels."""


def cpu_vendor() -> str | None:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, …), or None when unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id":
                return value.strip()
    text = platform.processor()  # Windows: "Intel64 Family 6 …, GenuineIntel"
    return next((v for v in ("GenuineIntel", "AuthenticAMD") if v in text), None)


def mkl_generic_path() -> str | None:
    """Why MKL's sgemm runs its generic code on this machine, or None where it should not."""
    limit = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip().upper()
    if limit in MKL_BELOW_AVX2:
        return f"MKL_ENABLE_INSTRUCTIONS={limit}"
    vendor = cpu_vendor()
    if vendor is not None and vendor != "GenuineIntel":
        return f"the CPU's vendor is {vendor}"
    return None


def resolve_cpu_matmul(value: CpuMatmul) -> Resolved:
    """``torch``, ``onednn`` or ``mkl_packed`` for ``model.cpu_matmul`` (module docstring)."""
    if value != "auto":
        if value == "onednn" and not torch.backends.mkldnn.is_available():
            raise ValueError("model.cpu_matmul onednn: this PyTorch build has no oneDNN (mkldnn)")
        if value == "mkl_packed" and not mkl_packing_available():
            raise ValueError("model.cpu_matmul mkl_packed: this PyTorch build has no MKL packed sgemm")
        return value
    if platform.machine().lower() not in X86:
        return "torch"
    reason = mkl_generic_path()
    if reason is None:
        return "mkl_packed" if mkl_packing_available() else "torch"
    if not torch.backends.mkldnn.is_available():
        return "torch"
    logger.info("model.cpu_matmul auto: onednn (%s: MKL's sgemm would run its generic code)", reason)
    return "onednn"


def _onednn_mm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a · bᵀ (+ bias) for 2-D ``a [M, K]`` and ``b [N, K]``, by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x·Wᵀ + b with the forward and both backward products by oneDNN."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _onednn_mm(x.reshape(-1, x.shape[-1]), weight, bias)
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_mm(grad_rows, weight.t()).reshape(x.shape)  # ∂y · W
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn_mm(grad_rows.t(), x.reshape(-1, x.shape[-1]).t())  # ∂yᵀ · x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(dim=0)
        return grad_x, grad_weight, grad_bias


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose float32 CPU products of ≥ :data:`ONEDNN_MIN_MACS` multiply-adds run in
    oneDNN; the same parameters and state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or self.weight.dtype != torch.float32
            or torch.is_autocast_enabled("cpu")
            or x.numel() * self.out_features < ONEDNN_MIN_MACS  # rows × in × out
        ):
            return F.linear(x, self.weight, self.bias)
        rows = x.numel() // self.in_features
        if (
            torch.is_grad_enabled()
            or not PACK_MIN_ROWS <= rows <= PACK_BUCKETS[-1]
            or self.weight.numel() < PACK_MIN_WEIGHTS
        ):
            return _OneDNNLinearFunction.apply(x, self.weight, self.bias)
        y = _onednn_mm(x.reshape(rows, self.in_features), self.reordered_weight(), self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def reordered_weight(self) -> torch.Tensor:
        """The weight in oneDNN's own blocked layout, made once per weight update (module docstring)."""
        return weight_pack(
            self, "onednn", lambda weight: torch.ops.mkldnn._reorder_linear_weight(weight, REORDER_ROWS), 1
        )


LINEAR_CLASSES: dict[Resolved, type[nn.Linear]] = {
    "torch": nn.Linear,
    "onednn": OneDNNLinear,
    "mkl_packed": MKLPackedLinear,
}


def apply_cpu_matmul(model: nn.Module, value: CpuMatmul) -> Resolved:
    """Make every linear layer of ``model`` of one of :data:`LINEAR_CLASSES` follow ``value``;
    returns what it resolved to.

    The layers' class is swapped in place (parameters, hooks and state dicts are untouched, so
    checkpoints and adapters see ordinary linear layers); subclasses of ``nn.Linear`` other than
    these are left alone.
    """
    resolved = resolve_cpu_matmul(value)
    target = LINEAR_CLASSES[resolved]
    classes = tuple(LINEAR_CLASSES.values())
    release_packs(model)
    for module in model.modules():
        if type(module) in classes:
            module.__class__ = target
    return resolved
