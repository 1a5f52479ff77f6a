"""DeepSpeed ZeRO stages 1 and 2 through accelerate: one engine step per planned optimizer step.

``accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml`` (or ``torchrun`` with
accelerate's DeepSpeed environment) wraps the policy in a ``DeepSpeedEngine`` whose ZeRO optimizer
partitions the AdamW moments and the float32 master weights (stage 1) and the gradients (stage 2)
over the W processes; the model's parameters stay whole in every process, so rollouts,
validation and the old log-probs sample from them with no collective, as under data parallelism.

**Accumulation.** arpo forms its own micro-batches — a different number per optimizer step, the
same in every process (:meth:`arpo.train.loop.TrainLoop.accumulation`). accelerate's ``backward``
would step the engine after every micro-batch (its ``sync_gradients`` is always true outside
``accelerator.accumulate``), so arpo drives the engine itself:

* before each micro-batch's backward, ``engine.set_gradient_accumulation_boundary(last)``, so the
  engine knows where an optimizer step ends (stage 1 then reduces only there; stage 2 reduces each
  micro-batch's gradient into the partitions either way). The reduction is linear, so the update
  does not depend on it and the tests cannot see it: it saves communication;
* ``engine.backward(loss)`` (no 1/g scaling: the config's ``gradient_accumulation_steps`` must be 1
  or ``"auto"``, arpo's losses are already normalised over the whole mini-batch);
* once per optimizer step, ``engine.step()``: clipping at the config's ``gradient_clipping`` (which
  must equal ``train.optim.grad_clip`` — ``"auto"`` takes it; 0 ≡ none), the AdamW step, zeroing
  the gradients.
  arpo's learning-rate schedule drives the wrapped optimizer's ``param_groups``.

**Non-finite updates.** The engine applies the step before arpo could look at the gradient, so
the skip is the engine's: its ZeRO optimizer checks the reduced gradient for inf/NaN and skips the
update (arpo makes sure the check is on in bf16, ``bf16.check_grad_overflow``) and reports an
infinite gradient norm; arpo counts every update the engine did not apply (``was_step_applied``)
as skipped — with fp16 loss scaling a skip with finite losses is an overflow of the scaled
gradient, not counted towards ``optim.max_consecutive_nonfinite``, as without DeepSpeed. A
non-finite loss almost always makes the gradient non-finite and is caught there; one whose
gradient stays finite (a 0·inf term) is applied by the engine, with a warning, where arpo without
DeepSpeed would skip it.

**Checkpoints.** The weights are whole in every process and written as the usual Hugging Face
folder. The ZeRO optimizer state (moments and float32 master weights) is partitioned: every
process writes its partition, ``optimizer/zero-<rank>-of-<W>.pt``, into the checkpoint being
written, and a resume hands every process all W partitions (DeepSpeed's own loading, which also
restores the master weights exactly).

**Refused**, with the reason in the error: ZeRO stage 0 (data parallelism does it), stage 3 (the
parameters themselves are partitioned: rollouts and checkpoints would need them gathered;
``train.fsdp`` shards parameters and is tested), ``train.fsdp`` together with DeepSpeed, LoRA
(the adapter is small: use data parallelism), ``gradient_accumulation_steps`` other than 1, a
``gradient_clipping`` that differs from ``train.optim.grad_clip``, offloading (DeepSpeed's CPU Adam
would not follow arpo's learning-rate schedule after a resume) and ``compute_grad_norm: false``.
``ACCELERATE_USE_CPU=true`` with DeepSpeed is refused too: accelerate would then silently run data
parallelism.

On a machine without GPUs DeepSpeed runs on its CPU accelerator; :func:`process_backend` makes
accelerate start ``torch.distributed`` with gloo there (accelerate 1.16 otherwise starts no backend
and reports one process while DeepSpeed's engine sees all of them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import parse_flag_from_env

SUPPORTED_STAGES = (1, 2)
ZERO_FILE = "zero-{rank:05d}-of-{world:05d}.pt"
"""File of one process's ZeRO optimizer partition in a checkpoint's ``optimizer/`` folder."""


def deepspeed_launched() -> bool:
    """Whether accelerate's launcher (or its environment) asked for DeepSpeed."""
    return parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")


def process_backend() -> str | None:
    """The ``torch.distributed`` backend to give accelerate's process state: gloo for DeepSpeed
    without GPUs (accelerate picks none there), otherwise accelerate's choice (None).

    Raises for ``ACCELERATE_USE_CPU=true`` with DeepSpeed: accelerate would silently ignore
    DeepSpeed and run data parallelism."""
    if not deepspeed_launched():
        return None
    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        raise ValueError(
            "DeepSpeed was launched with ACCELERATE_USE_CPU=true, under which accelerate ignores DeepSpeed and runs "
            "plain data parallelism: unset ACCELERATE_USE_CPU (on a machine without GPUs DeepSpeed runs on its CPU "
            "accelerator; docs/distributed.md)"
        )
    multi = int(os.environ.get("LOCAL_RANK", "-1")) != -1
    return "gloo" if multi and not torch.cuda.is_available() else None


def prepare_config(ds_config: dict[str, Any], *, fsdp: bool, lora: bool, grad_clip: float | None) -> None:
    """Check the DeepSpeed config (accelerate's resolved dict) against what arpo supports and turn
    on the bf16 gradient check the non-finite guard relies on; raises ``ValueError`` naming the
    setting otherwise. Call before ``accelerator.prepare``."""
    if fsdp:
        raise ValueError(
            "train.fsdp and DeepSpeed both shard the training state: use one of them (set train.fsdp: null)"
        )
    if lora:
        raise ValueError(
            "model.lora with DeepSpeed is not supported: the adapter's training state is small, use data "
            "parallelism (docs/distributed.md)"
        )
    stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
    if stage not in SUPPORTED_STAGES:
        why = (
            "stage 0 partitions nothing: use data parallelism"
            if stage == 0
            else "stage 3 partitions the parameters themselves, which rollouts and checkpoints would have to "
            "gather: shard with train.fsdp (FSDP2) instead"
        )
        raise ValueError(
            f"DeepSpeed zero_optimization.stage {stage} is not supported by arpo ({why}); stages 1 and 2 are"
        )
    if ds_config.get("gradient_accumulation_steps") == "auto":
        ds_config["gradient_accumulation_steps"] = 1
    accumulation = ds_config.get("gradient_accumulation_steps", 1)
    if accumulation != 1:
        raise ValueError(
            f'DeepSpeed gradient_accumulation_steps is {accumulation}: set it to 1 or "auto" — arpo accumulates its '
            "own micro-batches (train.micro_batch_size) and steps the engine once per optimizer step"
        )
    wanted = float(grad_clip or 0.0)
    if ds_config.get("gradient_clipping") == "auto":
        ds_config["gradient_clipping"] = wanted
    clipping = float(ds_config.get("gradient_clipping", 0.0) or 0.0)
    if clipping != wanted:
        raise ValueError(
            f"DeepSpeed gradient_clipping is {clipping} but train.optim.grad_clip is {grad_clip}: the engine clips, so "
            'set them equal or gradient_clipping to "auto" (0 in the DeepSpeed config means no clipping, as null '
            "does in arpo's)"
        )
    zero = ds_config.get("zero_optimization", {})
    for offload in ("offload_optimizer", "offload_param"):
        if (zero.get(offload) or {}).get("device", "none") != "none":
            raise ValueError(
                f"DeepSpeed zero_optimization.{offload} is not supported by arpo: an offloaded optimizer is "
                "DeepSpeed's own CPU Adam, which arpo's learning-rate schedule does not reach after a resume"
            )
    if zero.get("compute_grad_norm") is False:
        raise ValueError(
            "DeepSpeed zero_optimization.compute_grad_norm: false is not supported: arpo logs the gradient norm "
            "and DeepSpeed clips with it (remove the setting)"
        )
    if ds_config.get("bf16", {}).get("enabled") in (True, "auto"):
        ds_config["bf16"]["check_grad_overflow"] = True


def zero_file(folder: Path, rank: int, world: int) -> Path:
    return folder / ZERO_FILE.format(rank=rank, world=world)


def save_zero_optimizer(optimizer: Any, folder: Path, rank: int, world: int) -> None:
    """Write this process's ZeRO optimizer partition into ``folder`` (made by the caller)."""
    torch.save(_zero_optimizer(optimizer).state_dict(), zero_file(folder, rank, world))


def load_zero_optimizer(optimizer: Any, folder: Path, world: int, *, clip: float) -> None:
    """Give the ZeRO optimizer every partition written by ``world`` processes (DeepSpeed picks its
    own and restores the float32 master weights from them); raises ``ValueError`` when a partition
    is missing or was written by another number of processes. ``clip`` (this run's
    ``gradient_clipping``) replaces the one the partitions saved, so the config in force wins."""
    files = [zero_file(folder, rank, world) for rank in range(world)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        found = sorted(p.name for p in folder.glob("zero-*.pt")) if folder.is_dir() else []
        raise ValueError(
            f"{folder} lacks the ZeRO optimizer partitions {missing} of a {world}-process run (found: {found or 'none'}): "
            "resume a DeepSpeed checkpoint with the number of processes that wrote it"
        )
    states = [torch.load(f, map_location="cpu", weights_only=False) for f in files]
    zero = _zero_optimizer(optimizer)
    zero.load_state_dict(states, load_from_fp32_weights=True)
    zero.clip_grad = clip


def _zero_optimizer(optimizer: Any) -> Any:
    """DeepSpeed's ZeRO optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
