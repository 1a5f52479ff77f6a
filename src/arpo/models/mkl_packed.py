"""Linear layers whose decode-sized products run on MKL-packed weights (``model.cpu_matmul: mkl_packed``).

A decode step of b paths multiplies b rows by every weight matrix: y = x·Wᵀ + b with x ``[b, in]``.
For 3 ≤ b ≤ 64 MKL's sgemm is slow at this shape: a general product copies panels of W into its
kernel's layout on every call (one row takes a matrix-vector kernel instead), so 8 rows cost 2–3×
one row although both read W once. MKL can lay W out once for a given row count m
(``cblas_sgemm_pack``) and then multiply any ``[m, in]`` input by it (``cblas_sgemm_compute``);
PyTorch exposes the pair as ``torch.ops.mkl._mkl_reorder_linear_weight(W, m)`` and
``torch.ops.mkl._mkl_linear(x, packed, W, b, m)``, which falls back to ``F.linear`` unless x has
exactly m rows. So :class:`MKLPackedLinear` pads the rows of a forward up to the next bucket of
:data:`PACK_BUCKETS` (rows are independent in a product, so padding rows change nothing in the
real ones) and multiplies by W packed for that bucket.

Measured on the development machine (2 cores of an AVX-512/AMX Xeon, 2026-12-06, one thread
pool, median of 5; ms, ``F.linear`` / packed at the rows' bucket): SmolLM2-135M's 1,536 → 576
projection 0.093 / 0.062 at 8 rows, 0.328 / 0.140 at 16, 0.495 / 0.225 at 32; 576 → 576 0.054 /
0.023 at 8; its 576 → 49,152 output layer 13.8 / 7.3 at 8 rows; at 1–2 rows the two are level,
so those stay with ``F.linear``. So do weights below :data:`PACK_MIN_WEIGHTS` elements: they gain
tens of µs per call at most (512 → 256: 0.070 / 0.029 ms at 16 rows; SmolLM2's 576 → 192: 0.033 /
0.017 at 8), and leaving them alone keeps the tiny models' seeded results (the demo's, the
benchmarks') as documented. Packing costs about one read and write of W (0.16–0.19 s for all of
SmolLM2's layers). In the model, where every weight comes from memory once per decode step, the
gain is smaller: ``benchmarks/roofline.py`` decodes SmolLM2 at batch 8 in 0.84–0.95× the time,
at 32 in 0.95–0.99× (docs/performance.md).

When the packed product applies: no autograd (``torch.no_grad`` or inference mode: the packed op
has no backward, and the learner's forwards keep MKL's plain sgemm), a CPU tensor in float32
outside autocast, 3 ≤ rows ≤ ``PACK_BUCKETS[-1]``, and a weight of ≥ :data:`PACK_MIN_WEIGHTS`
elements. Everything else is ``F.linear``, so training is untouched.

Freshness: a pack is keyed by the weight's storage and version counter, which every in-place
update (optimizer steps, ``load_state_dict``) bumps, and is rebuilt when either changes; the HF
engine also drops all packs when the weights are synced and when it sleeps
(:func:`release_packs`). An update through ``weight.data`` bypasses the version counter: call
:func:`release_packs` after one. A layer keeps packs for at most :data:`PACK_KEEP` buckets (the
least recently used is dropped), so decoding holds at most that many extra copies of the weights
— less than the learner's gradients and Adam moments, which the engine's sleep makes room for.

The packed product sums in another order than ``F.linear``: results agree to float32 rounding,
not bitwise (tests: 1e-6 of their size).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import nn

PACK_BUCKETS = (8, 16, 32, 64)
"""Row counts weights are packed for; a forward's rows are padded up to the next one."""
PACK_MIN_ROWS = 3
"""Fewer rows than this stay with ``F.linear`` (level with the packed product, module docstring)."""
PACK_MIN_WEIGHTS = 1 << 18
"""Weights with fewer elements stay with ``F.linear`` (nothing to gain, module docstring)."""
PACK_KEEP = 2
"""Buckets whose packs a layer keeps at once."""
PACKS = "_weight_packs"
"""The attribute (in a layer's ``__dict__``, so never in its state dict) holding its packs."""


def mkl_packing_available() -> bool:
    """Whether this PyTorch build has MKL and its packed-sgemm operators."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


class MKLPackedLinear(nn.Linear):
    """``nn.Linear`` whose no-grad float32 CPU forwards of 3–64 rows multiply by MKL-packed weights;
    the same parameters and state (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if (
            torch.is_grad_enabled()
            or not PACK_MIN_ROWS <= rows <= PACK_BUCKETS[-1]
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or self.weight.dtype != torch.float32
            or torch.is_autocast_enabled("cpu")
            or self.weight.numel() < PACK_MIN_WEIGHTS
        ):
            return F.linear(x, self.weight, self.bias)
        bucket = next(b for b in PACK_BUCKETS if b >= rows)
        flat = x.reshape(rows, self.in_features)
        if rows < bucket:
            flat = F.pad(flat, (0, 0, 0, bucket - rows))
        y = torch.ops.mkl._mkl_linear(
            flat.contiguous(), self.packed_weight(bucket), self.weight, self.bias, bucket
        )
        return y[:rows].reshape(*x.shape[:-1], self.out_features)

    def packed_weight(self, bucket: int) -> torch.Tensor:
        """The weight packed for ``bucket`` rows, rebuilt when the weight changed."""
        return weight_pack(
            self, bucket, lambda weight: torch.ops.mkl._mkl_reorder_linear_weight(weight, bucket), PACK_KEEP
        )


def weight_pack(
    layer: nn.Linear, slot: Hashable, build: Callable[[torch.Tensor], torch.Tensor], keep: int
) -> torch.Tensor:
    """``build(layer.weight)`` for ``slot``, kept on the layer until the weight changes (its storage
    or version counter) or :func:`release_packs`; at most ``keep`` slots per layer, the least
    recently used dropped first. Shared by :class:`MKLPackedLinear` (a slot per row bucket) and
    :class:`~arpo.models.cpu_matmul.OneDNNLinear` (one slot: the weight in oneDNN's layout)."""
    packs: dict[Hashable, tuple[tuple[int, int], torch.Tensor]] = layer.__dict__.setdefault(PACKS, {})
    key = (layer.weight.data_ptr(), layer.weight._version)
    hit = packs.pop(slot, None)
    if hit is None or hit[0] != key:
        while len(packs) >= keep:
            packs.pop(next(iter(packs)))  # least recently used: entries are re-inserted on use
        hit = (key, build(layer.weight.detach()))
    packs[slot] = hit
    return hit[1]


def release_packs(model: nn.Module) -> None:
    """Drop every packed weight of ``model``'s layers (:func:`weight_pack`; they are rebuilt on the
    next forward that needs them)."""
    for module in model.modules():
        module.__dict__.pop(PACKS, None)
