"""Sharded training with PyTorch FSDP2 (``torch.distributed.fsdp.fully_shard``), the same on CPU (gloo) and GPUs.

With ``train.fsdp`` set, each process holds 1/W of every parameter, of its gradient and of the
AdamW moments (W processes), instead of a full copy of each (data parallelism): for P parameters
in float32, 16·P bytes become 16·P/W, plus the one layer being computed, gathered in full for its
forward and backward. Every decoder layer (the classes in the model's ``_no_split_modules``) is
one unit; the root unit holds the rest (embeddings, output layer, final norm).

Sharding is applied by arpo directly, not through accelerate's FSDP plugin: accelerate 1.16 turns
an FSDP config into FSDP only on GPU-like devices, so the plugin path could not be tested on a CPU;
``fully_shard`` is one path on both (docs/distributed.md).

**Collectives.** Under FSDP every forward and backward of the sharded module all-gathers parameters
and every synchronised backward reduce-scatters gradients, so every process must run them the same
number of times, in the same order:

* the learner's passes are padded to the count of the process with the most
  (:meth:`arpo.train.loop.TrainLoop.accumulation`); every micro-batch's backward reduce-scatters its
  gradients into the shards, where they accumulate. (Synchronising only the last micro-batch, as
  data parallelism does, would keep an unsharded gradient of the whole model in every process
  between micro-batches: 4·P bytes, measured +49 MB at peak for a 32 M-parameter model.)
* rollouts, validation and the old log-probs never touch the sharded module: they use a *full
  copy* of the weights (:class:`FullCopy`), refreshed after each step's optimizer phase — the same
  moment the vLLM engine receives its weights — by all-gathering one parameter at a time. Each
  process decodes its own prompts for its own number of rounds with no collective. The copy
  costs 4·P bytes (float32) per process, held for the whole run; a refresh holds one more full
  tensor at most. (At start-up each process also holds the full model it loaded, until it is
  sharded.)

Mixed precision is accelerate's autocast (``train.mixed_precision``), as without sharding: the
learner's passes run under it and the full copy's forward is wrapped in it as DDP's is; the
gathered parameters are float32 and the matmuls run in bf16.

Models whose layers route tokens (mixture of experts) are refused: FSDP2 reduce-scatters the
gradients a process has, and processes whose tokens went to different experts would disagree.

Saving the optimizer state initialises it when no update was applied yet (torch's
``get_optimizer_state_dict``): a checkpoint written before the first applied update starts AdamW's
step count at 1 there, unlike data parallelism. Runs checkpoint after updates, so only a run whose
every update so far was skipped as non-finite meets this.

**Checkpoints.** The weights are gathered to the main process and written as the usual Hugging
Face folder (loadable by transformers and vLLM, and the checkpoint resumed from). The optimizer
state stays sharded: every process writes its shards with ``torch.distributed.checkpoint`` into
``optimizer/`` of the checkpoint being written (before the folder is committed by rename and its
manifest lists them), and a resume reads them back (:func:`save_sharded_optimizer`,
:func:`load_sharded_optimizer`). torch.distributed.checkpoint can reshard them for another number of
processes; the tests resume on the same number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

OPTIMIZER_DIR = "optimizer"
"""Folder of a checkpoint holding the sharded optimizer state (``torch.distributed.checkpoint`` files)."""


class FSDPConfig(BaseModel):
    """``train.fsdp``: shard parameters, gradients and optimizer state over the processes."""

    model_config = ConfigDict(extra="forbid")

    reshard_after_forward: bool = Field(
        True,
        description="Free each layer's gathered parameters after its forward and gather them again for the "
        "backward (ZeRO-3-like, least memory); false keeps them until the backward (ZeRO-2-like, one all-gather "
        "fewer per layer and micro-batch).",
    )


EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
"""Config fields that name a mixture-of-experts model's experts (Qwen-MoE, Mixtral, DeepSeek, …)."""


def sharding_unsupported(model: torch.nn.Module) -> str | None:
    """Why ``model`` cannot be sharded by :func:`shard_model`, or None when it can."""
    if getattr(model, "peft_config", None):
        return "a LoRA model (model.lora) is not sharded by arpo; its trainable adapter is small: use data parallelism"
    config = getattr(model, "config", None)
    if any(getattr(config, field, None) for field in EXPERT_COUNTS):
        return (
            "a mixture-of-experts model routes each process's tokens to different experts, whose gradients "
            "FSDP2 would reduce-scatter unequally: use data parallelism"
        )
    if not _layer_classes(model):
        return f"{type(model).__name__} names no decoder layer class (_no_split_modules) to shard by"
    return None


def _layer_classes(model: torch.nn.Module) -> set[str]:
    return set(getattr(model, "_no_split_modules", None) or ())


def shard_model(
    model: torch.nn.Module, device: torch.device, world: int, config: FSDPConfig
) -> torch.nn.Module:
    """``model`` moved to ``device`` and sharded in place over the ``world`` processes: each decoder
    layer one FSDP2 unit, the root the rest. Its parameters become DTensors holding 1/W each."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if (reason := sharding_unsupported(model)) is not None:
        raise ValueError(f"train.fsdp: {reason}")
    model.to(device)
    mesh = init_device_mesh(device.type, (world,))
    layers = _layer_classes(model)
    for module in list(model.modules()):
        if type(module).__name__ in layers:
            fully_shard(module, mesh=mesh, reshard_after_forward=config.reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=config.reshard_after_forward)
    return model


def gather_full_state(model: torch.nn.Module, *, main_only: bool) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded ``model`` (a collective: every process must call it).

    ``main_only``: the full tensors are built on the CPU of process 0 only (the others get an empty
    dict), as for writing a checkpoint; otherwise every process gets them on its device."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=main_only)
    return get_model_state_dict(model, options=options)


def checkpoint_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded ``model``'s full weights on the main process's CPU, as a Hugging Face folder
    stores them: a tied parameter (e.g. the output layer sharing the embeddings) once, under its
    first name (a collective; other processes get an empty dict)."""
    weights = gather_full_state(model, main_only=True)
    first: dict[int, str] = {}
    aliases = [
        name
        for name, param in model.named_parameters(remove_duplicate=False)
        if first.setdefault(id(param), name) != name
    ]
    return {name: value for name, value in weights.items() if name not in aliases}


class FullCopy:
    """An unsharded copy of the policy that rollouts, validation and the old log-probs use under FSDP.

    ``module``: a copy of the model made before it is sharded, placed and wrapped in autocast by the
    caller. :meth:`refresh` loads the sharded model's current weights into it."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    def refresh(self, sharded: torch.nn.Module) -> None:
        """All-gather each parameter of ``sharded`` into the copy, one at a time (each is a collective:
        every process walks the parameters in the same order, at the same point of the step)."""
        params = dict(sharded.named_parameters())
        with torch.no_grad():
            for name, param in self.module.named_parameters():
                param.copy_(params[name].full_tensor())


def _plain_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def save_sharded_optimizer(model: torch.nn.Module, optimizer: Any, folder: Path) -> None:
    """Every process writes its shards of the optimizer state into ``folder`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(model, _plain_optimizer(optimizer))}
    dcp.save(state, checkpoint_id=str(folder))


def load_sharded_optimizer(model: torch.nn.Module, optimizer: Any, folder: Path) -> None:
    """Restore the optimizer state that :func:`save_sharded_optimizer` wrote into this run's shards (a
    collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    plain = _plain_optimizer(optimizer)
    state = {"optimizer": get_optimizer_state_dict(model, plain)}
    dcp.load(state, checkpoint_id=str(folder))
    set_optimizer_state_dict(model, plain, state["optimizer"])
