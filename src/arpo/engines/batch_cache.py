"""The HF generator's batch KV cache: appended in place, into spare columns, instead of copied.

transformers' ``DynamicCache`` appends a forward's keys and values to a layer with ``torch.cat``,
which copies the whole layer's cache: a decode step of b rows with W cached columns copies
2 · layers · b · H_kv · W · D values to add 2 · layers · b · H_kv · D, so decoding n tokens copies
O(n · W) where O(n) is written. :class:`BatchCache` keeps each layer's keys and values as views
``buffer[:, :, :W]`` of buffers with spare columns; an append writes the new columns into the spare
ones and widens the view. Only when the spare columns run out (or the view no longer lies in the
buffer: ``batch_select_indices`` after rows leave gives fresh tensors) is a new buffer allocated, of
the needed width plus ``max(GROW_MIN, needed · GROW_SHARE)`` spare columns, and the cache copied
into it: a copy every ``GROW_MIN`` steps or more instead of every step.

The views hold the same values as the concatenated tensors, so attention over them computes the
same numbers: generation is bitwise unchanged (``tests/engines/test_batch_cache.py``). The price
is memory: at most ``GROW_SHARE`` of the cache plus ``GROW_MIN`` columns per layer, spare.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROW_MIN = 32
"""Spare columns allocated at least, when a layer's buffer is (re)allocated."""
GROW_SHARE = 0.25
"""Spare columns allocated as a share of the needed width, when that is more than ``GROW_MIN``."""


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` ``[B, H, W, D]`` are views of larger buffers."""

    def __init__(self) -> None:
        super().__init__()
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    @classmethod
    def holding(cls, key_buffer: torch.Tensor, value_buffer: torch.Tensor, width: int) -> GrowingLayer:
        """A layer whose cache is the first ``width`` columns of these buffers (the rest spare)."""
        layer = cls()
        layer.lazy_initialization(key_buffer, value_buffer)
        layer._key_buffer, layer._value_buffer = key_buffer, value_buffer
        layer.keys, layer.values = key_buffer[:, :, :width], value_buffer[:, :, :width]
        return layer

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        width = self.get_seq_length()
        needed = width + key_states.shape[-2]
        if not self._in_buffer(width, key_states) or needed > self._key_buffer.shape[-2]:  # type: ignore[union-attr]
            self._reallocate(width, needed, key_states, value_states)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[:, :, width:needed] = key_states
        self._value_buffer[:, :, width:needed] = value_states
        self.keys = self._key_buffer[:, :, :needed]
        self.values = self._value_buffer[:, :, :needed]
        return self.keys, self.values

    def _in_buffer(self, width: int, new: torch.Tensor) -> bool:
        """Whether ``keys``/``values`` are still the first ``width`` columns of the buffers."""
        buffer = self._key_buffer
        if buffer is None or width == 0:
            return buffer is not None and buffer.shape[:2] == new.shape[:2]
        return (
            self.keys.data_ptr() == buffer.data_ptr()
            and self.keys.shape[:2] == buffer.shape[:2]
            and self.keys.stride() == buffer.stride()
            and self.values.data_ptr() == self._value_buffer.data_ptr()  # type: ignore[union-attr]
        )

    def _reallocate(self, width: int, needed: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        capacity = spare_columns(needed)
        key_buffer = keys.new_empty((*keys.shape[:2], capacity, keys.shape[-1]))
        value_buffer = values.new_empty((*values.shape[:2], capacity, values.shape[-1]))
        if width:
            key_buffer[:, :, :width] = self.keys
            value_buffer[:, :, :width] = self.values
        self._key_buffer, self._value_buffer = key_buffer, value_buffer

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def spare_columns(width: int) -> int:
    """Columns a buffer for ``width`` cached ones is allocated with: ``width`` and the spare ones."""
    return width + max(GROW_MIN, int(width * GROW_SHARE))


class BatchCache(DynamicCache):
    """A ``DynamicCache`` of :class:`GrowingLayer`: empty (layers made as the model appends), or per
    layer the first ``width`` columns of ``(key buffer, value buffer)`` ``[B, H, ≥ width, D]``."""

    def __init__(self, buffers: Iterable[tuple[torch.Tensor, torch.Tensor]] = (), width: int = 0) -> None:
        layers = [GrowingLayer.holding(keys, values, width) for keys, values in buffers]
        if layers:
            super(DynamicCache, self).__init__(layers=layers)
        else:
            super(DynamicCache, self).__init__(layer_class_to_replicate=GrowingLayer)
