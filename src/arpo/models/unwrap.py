"""The transformers model inside the wrappers training puts around it: DDP's and DeepSpeed's
``.module``, then PEFT's adapter wrapper. FSDP2 (``fully_shard``) wraps nothing: it changes the
model's class in place."""

from __future__ import annotations

import torch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` without its DDP/DeepSpeed and PEFT wrappers."""
    base = getattr(model, "module", model)
    return base.get_base_model() if hasattr(base, "get_base_model") else base
