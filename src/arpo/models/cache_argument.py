"""The name under which a transformers causal LM's forward takes its KV cache."""

from __future__ import annotations

import inspect

import torch

from arpo.models.unwrap import unwrap


def cache_argument(model: torch.nn.Module) -> str:
    """``cache`` (transformers ≥ 5.2x) or ``past_key_values`` (older releases), read from the
    forward signature of the model's class, through DDP (``.module``) and PEFT wrappers."""
    forward = type(unwrap(model)).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
