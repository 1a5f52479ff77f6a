"""The name under which a transformers causal LM's forward takes its KV cache."""

from __future__ import annotations

import inspect

import torch


def cache_argument(model: torch.nn.Module) -> str:
    """``cache`` (transformers ≥ 5.2x) or ``past_key_values`` (older releases), read from the
    forward signature of the model's class, through DDP (``.module``) and PEFT wrappers."""
    base = getattr(model, "module", model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
