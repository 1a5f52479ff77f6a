"""Switch a model's attention implementation for the forwards inside a ``with`` block.

transformers picks each attention module's function from its config's ``_attn_implementation``
at every call (``AttentionInterface``), so naming a registered function there for the block, and
restoring every config's previous name afterwards, changes those forwards only: nothing else (the
learner's other passes, a saved ``config.json``) sees it. Used by the prefix layout's split
attention (:mod:`arpo.train.prefix_attention`) and the generator's grouped-query attention
(:mod:`arpo.models.grouped_attention`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

_CONFIGS: weakref.WeakKeyDictionary[torch.nn.Module, list[Any]] = weakref.WeakKeyDictionary()


def model_configs(model: torch.nn.Module) -> list[Any]:
    """The distinct configs of ``model``'s modules (one for a decoder-only LM), found once per model:
    walking SmolLM2's modules took 0.8 ms, and the generator asks at every decode step."""
    if model not in _CONFIGS:
        _CONFIGS[model] = list(
            {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values()
        )
    return _CONFIGS[model]


def runs_sdpa(model: torch.nn.Module) -> bool:
    """Whether every config of ``model`` names transformers' ``sdpa``."""
    return {getattr(c, "_attn_implementation", None) for c in model_configs(model)} == {"sdpa"}


@contextmanager
def attention_implementation(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Within the block every config of ``model`` names the registered attention function ``name``."""
    configs = model_configs(model)
    previous = [config._attn_implementation for config in configs]
    try:
        for config in configs:
            config._attn_implementation = name
        yield
    finally:
        for config, implementation in zip(configs, previous, strict=True):
            config._attn_implementation = implementation
