"""What every training loop shares: accelerate set-up, the step loop, metrics, checkpoints, resume.

Data parallelism (``accelerate launch`` or ``torchrun``; docs/distributed.md): every process
draws the same global batch and works on its shard (``shard``); normalisers that span the batch
are summed over processes (``all_sum``), and loss scales are multiplied by the number of
processes because the gradient all-reduce averages. Metrics are averaged over processes; only
the main process writes metrics and checkpoints. With ``fsdp`` the model is sharded instead
(:mod:`arpo.train.sharding`): every process runs the same number of learner passes
(:meth:`TrainLoop.accumulation`), checkpoints gather the weights and write the optimizer state
sharded. Under accelerate's DeepSpeed (ZeRO-1/2) the engine accumulates, clips and steps, once per
optimizer step (:mod:`arpo.train.deepspeed_zero`; :meth:`TrainLoop.backward`,
:meth:`TrainLoop.clip_and_step`).
``check_replicas_every`` checks that DDP processes' parameters stay bitwise identical.

A subclass provides ``train_step() -> metrics`` and uses ``self.model`` (wrapped by accelerate, or
sharded), ``self.policy`` (the unwrapped module, e.g. for its config and saving),
``self.sampling_policy`` (unsharded weights to sample from), ``self.optimizer``,
``self.scheduler`` (stepped once per training step by the loop) and ``self.sampler`` (the task
or example order). The loop logs each step to :class:`MetricsLogger`, shows a progress bar and
checkpoints every ``save_every`` steps and at the end; :meth:`resume` restores the full state so
a resumed run continues exactly where the checkpoint left it.

Faults (docs/reliability.md):

* an optimizer update whose loss or gradient norm is NaN or infinite is skipped — the gradient is
  zeroed, nothing is applied — and counted (``train/skipped_updates`` in the step,
  ``train/skipped_updates_total`` over the run); ``optim.max_consecutive_nonfinite`` such updates
  in a row stop the run with :class:`~arpo.train.errors.NonFiniteError` once the step is logged.
  The decision is the same in every process: the gradient norm is taken after the all-reduce and
  the loss's verdict is summed over the processes. With fp16 loss scaling (GPUs), a non-finite
  gradient of a finite loss is an overflow of the scaled gradient: the scaler skips the update
  and lowers its scale; it is counted as skipped but not towards the limit;
* a checkpoint that cannot be written stops the run in every process
  (:class:`~arpo.train.errors.CheckpointWriteError`); weights with a non-finite value are never
  written;
* SIGTERM (a scheduler's notice before preemption), while the loop runs in the main thread: the
  current step finishes, a checkpoint is written and :class:`~arpo.train.errors.Preempted` is
  raised (every process stops after the same step); ``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, gather_object, parse_flag_from_env
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arpo.core.logits import RAW, PolicyView
from arpo.core.loss import Aggregation
from arpo.core.tree import RolloutTree
from arpo.progress import ProgressBar
from arpo.train.batching import LearnerRow
from arpo.train.checkpoint import (
    checkpoint_dir,
    load_state,
    newest_intact_checkpoint,
    prepare_staging,
    rng_state,
    save_checkpoint,
    set_rng_state,
    staging_dir,
)
from arpo.train.deepspeed_zero import (
    load_zero_optimizer,
    prepare_config,
    process_backend,
    save_zero_optimizer,
)
from arpo.train.errors import CheckpointWriteError, NonFiniteError, Preempted
from arpo.train.layout import AUTO_CANDIDATES, MiniBatch, Packing, build_minibatch
from arpo.train.layout_cost import LayoutCost
from arpo.train.metrics_log import LoggingConfig, MetricsLogger
from arpo.train.optim import OptimConfig, build_optimizer
from arpo.train.packing import tree_packing_unsupported
from arpo.train.precision import resolve_mixed_precision
from arpo.train.preemption import SigtermFlag
from arpo.train.progress import describe
from arpo.train.sampler import TaskSampler
from arpo.train.sharding import (
    OPTIMIZER_DIR,
    FSDPConfig,
    FullCopy,
    checkpoint_weights,
    load_sharded_optimizer,
    save_sharded_optimizer,
    shard_model,
)

logger = logging.getLogger(__name__)


class LoopConfig(BaseModel):
    """Settings every training loop has."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(100, ge=1, description="Training steps.")
    seed: int = Field(0, description="Seeds the data order (and, for RL, rollouts and branching).")
    micro_batch_size: int = Field(
        8,
        ge=1,
        description="Rows per forward/backward (gradient accumulation): trajectories or demonstrations, or packed "
        "rows when the layout is tree.",
    )
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = Field(
        "no",
        description="accelerate mixed precision: no (float32), bf16 or fp16; auto: bf16 where the hardware computes "
        "it natively (CUDA with bf16, a CPU with AMX or AVX512-BF16), else no (bf16 autocast on other CPUs was "
        "measured many times slower); an unquoted YAML no (read as false) is no.",
    )
    save_every: int = Field(50, ge=1, description="Checkpoint every this many steps (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    check_replicas_every: int | None = Field(
        None,
        ge=1,
        description="Every this many steps, check that all processes hold bitwise identical parameters "
        "(SHA-256, logged as replicas/params_sha256; stops with an error if not); null = never. DDP only.",
    )
    fsdp: FSDPConfig | None = Field(
        None,
        description="Shard parameters, gradients and optimizer state over the processes with FSDP2 "
        "(docs/distributed.md); null = data parallelism, a full copy in every process.",
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _unquoted_no(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted ``no`` (``train.mixed_precision=no``) as the boolean false."""
        return "no" if value is False else value

    @model_validator(mode="after")
    def _replicas_need_copies(self) -> LoopConfig:
        if self.fsdp is not None and self.check_replicas_every is not None:
            raise ValueError(
                "train.check_replicas_every compares full copies of the parameters, which train.fsdp does not "
                "keep: set one of them to null"
            )
        if self.fsdp is not None and getattr(self, "packing", None) == "prefix":
            raise ValueError(
                "train.packing: prefix runs two forwards (the prompt, then the responses) before each backward, "
                "but train.fsdp needs every process to run the same forwards: use auto, tree or flat"
            )
        return self


OptimizerLayout = Literal["one file", "train.fsdp", "DeepSpeed"]
_LAYOUTS = {
    "one file": ("neither train.fsdp nor DeepSpeed", "one file"),
    "train.fsdp": ("train.fsdp", "sharded"),
    "DeepSpeed": ("DeepSpeed", "ZeRO partitions"),
}
"""Each optimizer layout: how a run that writes it is launched, and what its optimizer state is."""


def process_state() -> PartialState:
    """accelerate's process state, set up on first use (``torch.distributed`` when several processes
    were launched); ``ACCELERATE_USE_CPU=true`` selects the CPU and gloo, as it does for ``Accelerator``.

    Raises when a launcher started several processes (``WORLD_SIZE``) but accelerate runs each on
    its own, as it does on a machine without GPUs unless ``ACCELERATE_USE_CPU=true``: each process
    would train alone and write the same run folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    backend = process_backend()  # gloo for DeepSpeed without GPUs (arpo.train.deepspeed_zero)
    state = PartialState(
        cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), **({"backend": backend} if backend else {})
    )
    if launched > 1 and state.num_processes == 1:
        raise ValueError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but accelerate runs this one alone "
            f"(distributed type {state.distributed_type.value}): without GPUs, set ACCELERATE_USE_CPU=true "
            "for CPU (gloo) data parallelism"
        )
    return state


def end_processes() -> None:
    """Leave the ``torch.distributed`` group the trainer set up, if any (accelerate's
    ``destroy_process_group``), so that the backend's threads (gloo, DeepSpeed's communication) stop
    before the interpreter exits: left running, one aborted a ZeRO-2 process at exit after its run
    had finished ("terminate called without an active exception").

    A group accelerate did not set up (it runs this process alone) is left to its owner: vLLM's
    in-process engine makes one of its own and destroys its groups at exit, which fails with
    "Invalid process group specified" once the group is gone."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    state = process_state()
    if state.distributed_type != DistributedType.NO:
        state.destroy_process_group()


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of ``module``'s parameters (names, dtypes, shapes and bytes): equal iff bitwise equal."""
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        data = param.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(param.shape)};".encode())
        digest.update(data.view(torch.uint8).numpy())
    return digest.hexdigest()


class TrainLoop:
    label = "train"
    samples_from_policy = False
    """Whether the loop samples from the policy (rollouts, validation): under FSDP it then keeps a
    full copy of the weights to sample from (:class:`~arpo.train.sharding.FullCopy`)."""

    def __init__(
        self, config: LoopConfig, model: torch.nn.Module, tokenizer: Any, run_dir: Path, num_examples: int
    ) -> None:
        self.loop_config = config
        self.tokenizer = tokenizer
        self.run_dir = Path(run_dir)
        process_state()
        self.accelerator = Accelerator(mixed_precision=resolve_mixed_precision(config.mixed_precision))
        if self.accelerator.distributed_type == DistributedType.FSDP:
            raise ValueError(
                "accelerate's FSDP plugin is not used by arpo's trainers: shard with train.fsdp (FSDP2, launched "
                "with accelerate launch --multi_gpu or torchrun), or use data parallelism (docs/distributed.md, "
                "'Sharded training')"
            )
        self.deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        """Whether ``self.model`` is a DeepSpeed ZeRO-1/2 engine (:mod:`arpo.train.deepspeed_zero`)."""
        if self.deepspeed:
            prepare_config(
                self.accelerator.state.deepspeed_plugin.deepspeed_config,
                fsdp=config.fsdp is not None,
                lora=hasattr(model, "peft_config"),
                grad_clip=config.optim.grad_clip,
            )
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.full_copy: FullCopy | None = None
        """Under FSDP, the unsharded weights that rollouts and validation sample from."""
        self.layout_cost: LayoutCost | None = None
        """The policy's cost model when the layout is chosen per mini-batch (``packing: auto``)."""
        self.layout_candidates: tuple[str, ...] = AUTO_CANDIDATES
        """The layouts ``auto`` may pick for this model and process layout."""
        if config.fsdp is not None:
            if self.world == 1:
                raise ValueError(
                    "train.fsdp shards the model over several processes, but this run has one: launch it with "
                    "torchrun --nproc_per_node N or accelerate launch --multi_gpu (docs/distributed.md), or set "
                    "train.fsdp to null"
                )
            device = self.accelerator.device
            if self.samples_from_policy:  # placed, and its forward under autocast like DDP's
                self.full_copy = FullCopy(
                    self.accelerator.prepare_model(copy.deepcopy(model), evaluation_mode=True)
                )
            self.model = shard_model(model, device, self.world, config.fsdp)
            self.refresh_sampling_policy()  # the copy holds exactly what the shards hold
            optimizer, self.scheduler = build_optimizer(self.model.parameters(), config.optim, config.steps)
            self.optimizer = self.accelerator.prepare(optimizer)
        else:
            optimizer, self.scheduler = build_optimizer(model.parameters(), config.optim, config.steps)
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.policy = self.accelerator.unwrap_model(self.model)
        self.sampler = TaskSampler(num_examples, config.seed)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.step = 0
        self.skipped_updates_total = 0
        """Optimizer updates skipped for non-finite numbers over the run (restored on resume)."""
        self.nonfinite_streak = 0
        """Non-finite updates in a row, up to the last one (fp16 overflows not counted)."""
        self.last_nonfinite = ""
        """What was not finite in the last skipped update."""
        self.skipped_in_step = 0

    # ----- data parallelism -------------------------------------------------------------------
    @property
    def sampling_policy(self) -> torch.nn.Module:
        """The plain module with the current full weights that rollouts and validation sample from:
        the policy itself, or under FSDP its full copy (refreshed by :meth:`refresh_sampling_policy`)."""
        return self.full_copy.module if self.full_copy is not None else self.policy

    def refresh_sampling_policy(self) -> None:
        """After an optimizer phase: under FSDP, gather the new weights into the full copy (a
        collective every process runs at the same point); otherwise nothing (it is the policy)."""
        if self.full_copy is not None:
            self.full_copy.refresh(self.model)

    def check_divisible(self, name: str, value: int) -> None:
        if value % self.world:
            raise ValueError(f"{name} ({value}) must be a multiple of the number of processes ({self.world})")

    def shard(self, items: list[Any]) -> list[Any]:
        """This process's share of a global batch (every ``world``-th item)."""
        return items[self.rank :: self.world]

    def all_sum(self, *values: float) -> tuple[float, ...]:
        """Sums over all processes."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return tuple(float(v) for v in self.accelerator.reduce(tensor, reduction="sum"))

    def all_max(self, value: int) -> int:
        """The largest ``value`` over all processes."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.accelerator.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return int(tensor.item())

    def all_gather(self, value: Any) -> list[Any]:
        """``value`` of every process, in rank order."""
        return [value] if self.world == 1 else gather_object([value])

    def mean_over_processes(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Numeric metrics averaged over the processes that report them; others from process 0."""
        every = self.all_gather(metrics)
        merged = dict(every[0])
        for key in {k for m in every for k in m}:
            values = [
                m[key] for m in every if isinstance(m.get(key), int | float) and not isinstance(m[key], bool)
            ]
            if values:
                merged[key] = sum(values) / len(values)
        return merged

    def check_replicas(self) -> str:
        """SHA-256 of the parameters, after checking that every process holds the same ones.

        Data-parallel replicas start equal and apply the same all-reduced gradient, so they stay
        bitwise identical; a difference means they desynchronised.
        """
        digests = self.all_gather(parameter_digest(self.policy))
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"step {self.step}: the processes hold different parameters (SHA-256 by process: {digests})"
            )
        return digests[0]

    def row_totals(self, rows: list[LearnerRow]) -> tuple[float, float]:
        """(Σ w, sequences with loss tokens) of ``rows`` summed over the processes: the normalisers
        of a global mini-batch (:func:`arpo.core.loss.token_scale`)."""
        weight = sum(sum(r.weights) for r in rows)
        return self.all_sum(weight, float(sum(any(w > 0 for w in r.weights) for r in rows)))

    # ----- the learner's layout ---------------------------------------------------------------
    def resolve_packing(self, packing: Packing) -> Packing:
        """``packing``, or ``flat`` (logged) when the model cannot run tree-packed rows; with
        ``auto`` the cost model of the policy (:mod:`arpo.train.layout_cost`) is kept for
        :meth:`lay_out`."""
        sharded = self.loop_config.fsdp is not None
        reason = tree_packing_unsupported(self.policy)
        if packing == "tree" and reason is not None:
            logger.warning("packing: tree is not available (%s); using flat", reason)
            return "flat"
        if packing == "auto":
            self.layout_cost = LayoutCost.of(self.policy)
            self.layout_candidates = tuple(
                name
                for name in AUTO_CANDIDATES
                if not (name == "tree" and reason is not None) and not (name == "prefix" and sharded)
            )
        return packing

    def lay_out(
        self,
        trees: list[RolloutTree],
        rows: list[LearnerRow],
        *,
        aggregation: Aggregation,
        packing: Packing,
        pack_tokens: int,
        totals: tuple[float, float] | None = None,
        view: PolicyView = RAW,
        max_length: int | None = None,
    ) -> MiniBatch:
        """:func:`arpo.train.layout.build_minibatch` on this process's device, dtype, padding id and
        micro-batch size, with loss scales multiplied by the number of processes."""
        return build_minibatch(
            trees,
            rows,
            aggregation=aggregation,
            packing=packing,
            micro_batch_size=self.loop_config.micro_batch_size,
            pack_tokens=pack_tokens,
            pad_id=self.pad_id,
            dtype=next(self.policy.parameters()).dtype,
            device=self.accelerator.device,
            totals=totals,
            loss_multiplier=float(self.world),
            view=view,
            max_length=max_length,
            cost=self.layout_cost,
            candidates=self.layout_candidates,
        )

    def accumulation(self, count: int) -> list[tuple[int | None, bool]]:
        """This process's ``count`` micro-batches of one optimizer step padded to the largest count of
        any process: ``(index, last)`` pairs, index None for a padding pass.

        Every process then runs the same number of forwards and backwards, which sharded
        parameters turn into collectives (:mod:`arpo.train.sharding`), and synchronises gradients on
        the same (``last``) one; a process with no data for an optimizer step joins it with padding."""
        total = self.all_max(count)
        return [(i if i < count else None, i == total - 1) for i in range(total)]

    def padding_pass(self) -> None:
        """A one-token forward and zero-loss backward through the learner's model: joins the
        collectives of a micro-batch this process has no data for."""
        ids = torch.full((1, 1), self.pad_id, dtype=torch.long, device=self.accelerator.device)
        self.backward(self.model(input_ids=ids).logits.sum() * 0.0)

    def train_step(self) -> dict[str, Any]:
        raise NotImplementedError

    # ----- state -----------------------------------------------------------------------------
    @property
    def optimizer_layout(self) -> OptimizerLayout:
        """How checkpoints hold the optimizer state: in ``trainer_state.pt`` ("one file"), or written by
        every process into ``optimizer/`` ("train.fsdp": torch.distributed.checkpoint shards;
        "DeepSpeed": ZeRO partitions)."""
        return (
            "train.fsdp"
            if self.loop_config.fsdp is not None
            else "DeepSpeed"
            if self.deepspeed
            else "one file"
        )

    def state_dict(self) -> dict[str, Any]:
        """The trainer's state for ``trainer_state.pt``; under FSDP or DeepSpeed the optimizer's is
        written by every process beside it (:meth:`save`) and left out here."""
        layout = self.optimizer_layout
        optimizer = {"optimizer": self.optimizer.state_dict()} if layout == "one file" else {}
        return {
            "step": self.step,
            "optimizer_layout": layout,
            **optimizer,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
            "nonfinite": {
                "skipped_total": self.skipped_updates_total,
                "streak": self.nonfinite_streak,
                "last": self.last_nonfinite,
            },
            "config": self.loop_config.model_dump(mode="json"),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (subclasses that save more restore it here too)."""
        if self.optimizer_layout == "one file":  # otherwise read from optimizer/ (:meth:`resume`)
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        nonfinite = state.get("nonfinite", {})  # absent in checkpoints written before the guard
        self.skipped_updates_total = nonfinite.get("skipped_total", 0)
        self.nonfinite_streak = nonfinite.get("streak", 0)
        self.last_nonfinite = nonfinite.get("last", "")

    def resume(self, checkpoint: Path | None = None) -> Path | None:
        """Restore optimizer, schedule, data position and RNG from ``checkpoint`` — by default the
        run's newest intact one (:func:`~arpo.train.checkpoint.newest_intact_checkpoint`), if any.

        The model weights must already have been loaded from that checkpoint's folder: the jobs
        pick it once and pass it to both.
        """
        checkpoint = checkpoint or newest_intact_checkpoint(self.run_dir)
        if checkpoint is None:
            return None
        state = load_state(checkpoint)
        # checkpoints written before DeepSpeed was supported name no layout: one file, or FSDP shards
        written = state.get("optimizer_layout", "one file" if "optimizer" in state else "train.fsdp")
        if written != self.optimizer_layout:
            run, kept = _LAYOUTS[written]
            raise ValueError(
                f"{checkpoint} was written with {run} (its optimizer state is {kept}): resume it with {run}"
            )
        folder = checkpoint / OPTIMIZER_DIR
        if written != "one file" and not folder.is_dir():
            raise ValueError(
                f"{checkpoint} has no {OPTIMIZER_DIR}/ folder: its sharded optimizer state is missing"
            )
        self.load_state_dict(state)
        if written == "train.fsdp":
            load_sharded_optimizer(self.model, self.optimizer, folder)
        elif written == "DeepSpeed":
            load_zero_optimizer(self.optimizer, folder, self.world, clip=self.model.gradient_clipping())
        return checkpoint

    def save(self) -> Path:
        """Checkpoint; returns its folder. Every process takes part in gathering the weights (and,
        under FSDP, writes its shards of the optimizer state into the folder being written), the main
        process writes the rest, and all learn whether it succeeded: a failure raises in every
        process (the main one's error says why)."""
        sharded = self.optimizer_layout != "one file"
        error: Exception | None = None
        if sharded:
            error = self._stage_sharded_optimizer()
        if self.loop_config.fsdp is not None:
            weights = checkpoint_weights(self.model)
        elif self.deepspeed:  # ZeRO-1/2: whole in every process (accelerate's copy would untie tied weights)
            weights = self.policy.state_dict()
        else:
            weights = self.accelerator.get_state_dict(self.model)
        if self.accelerator.is_main_process and error is None:
            keep = self.loop_config.keep_checkpoints
            try:
                save_checkpoint(
                    self.run_dir,
                    self.step,
                    self.policy,
                    self.tokenizer,
                    self.state_dict(),
                    keep,
                    weights=weights,
                    staged=sharded,
                )
            except Exception as exc:  # every process must learn of it, or the others would wait forever
                error = exc
        (failed,) = self.all_sum(float(error is not None))  # also waits until the checkpoint is written
        if isinstance(error, NonFiniteError | CheckpointWriteError):
            raise type(error)(f"step {self.step}: {error}; training stopped") from error
        if error is not None:
            raise CheckpointWriteError(
                f"step {self.step}: {type(error).__name__}: {error}; training stopped"
            ) from error
        if failed:
            raise CheckpointWriteError(
                f"step {self.step}: the main process could not write its checkpoint (its error says why); "
                "training stopped"
            )
        return checkpoint_dir(self.run_dir, self.step)

    def _stage_sharded_optimizer(self) -> CheckpointWriteError | None:
        """Under FSDP or DeepSpeed: the main process makes the checkpoint's staging folder, then every
        process writes its optimizer shards (ZeRO partition) into it. Returns this process's error,
        if any; every process runs the same collectives whatever fails, and an error in one is an
        error in all (so the main process never commits a checkpoint with missing shards)."""
        error: CheckpointWriteError | None = None
        staging = staging_dir(self.run_dir, self.step)
        if self.accelerator.is_main_process:
            try:
                prepare_staging(self.run_dir, self.step)
            except CheckpointWriteError as exc:
                error = exc
        (failed,) = self.all_sum(float(error is not None))
        if failed and error is None:
            return CheckpointWriteError(f"the main process could not create {staging} (its error says why)")
        if failed:
            return error
        try:
            if self.deepspeed:
                (staging / OPTIMIZER_DIR).mkdir(exist_ok=True)
                save_zero_optimizer(self.optimizer, staging / OPTIMIZER_DIR, self.rank, self.world)
            else:
                save_sharded_optimizer(self.model, self.optimizer, staging / OPTIMIZER_DIR)
        except Exception as exc:  # torch.distributed.checkpoint raises its own wrapper of OSError
            error = CheckpointWriteError(f"could not write the optimizer shards into {staging}: {exc}")
        (failed,) = self.all_sum(float(error is not None))
        if failed and self.accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        if failed and error is None:
            error = CheckpointWriteError(
                f"another process could not write its optimizer shards into {staging}"
            )
        return error

    # ----- the loop ----------------------------------------------------------------------------
    def train(self, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run from the current step to ``config.steps``; returns the metrics of the steps run.

        Raises :class:`~arpo.train.errors.Preempted` after writing a checkpoint when SIGTERM
        arrived, and :class:`~arpo.train.errors.NonFiniteError` after too many non-finite updates
        in a row (module docstring)."""
        cfg = self.loop_config
        main = self.accelerator.is_main_process
        logger = MetricsLogger(self.run_dir, cfg.logging, resume_step=self.step) if main else None
        history = []
        try:
            with (
                ProgressBar(
                    self.label, cfg.steps, completed=self.step, enabled=main, show_remaining=True
                ) as bar,
                SigtermFlag() as sigterm,
            ):
                if self.step == 0 and (initial := self.initial_metrics()):
                    initial = self.mean_over_processes(initial)
                    if logger is not None:
                        logger.log(0, initial)
                    history.append({"step": 0, **initial})
                    bar.update(0, describe(initial))
                while self.step < cfg.steps:
                    self.skipped_in_step = 0
                    metrics = self.mean_over_processes(self.train_step())
                    with warnings.catch_warnings():  # a step may legitimately skip the update
                        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                        self.scheduler.step()
                    self.step += 1
                    metrics["lr"] = self.scheduler.get_last_lr()[0]
                    metrics["train/skipped_updates"] = float(self.skipped_in_step)
                    metrics["train/skipped_updates_total"] = float(self.skipped_updates_total)
                    if cfg.check_replicas_every is not None and self.step % cfg.check_replicas_every == 0:
                        metrics["replicas/params_sha256"] = self.check_replicas()
                    if logger is not None:
                        logger.log(self.step, metrics)
                    history.append({"step": self.step, **metrics})
                    bar.update(self.step, describe(metrics))
                    self.check_nonfinite_streak()
                    saved = self.step % cfg.save_every == 0 or self.step == cfg.steps
                    if saved:
                        self.save()
                    if on_step is not None:
                        on_step(self.step, metrics)
                    if self.step < cfg.steps and self.all_sum(float(sigterm.received))[0] > 0:
                        checkpoint = checkpoint_dir(self.run_dir, self.step) if saved else self.save()
                        raise Preempted(
                            f"SIGTERM after step {self.step} of {cfg.steps}: checkpoint {checkpoint} "
                            "holds it; continue with --resume"
                        )
        finally:
            if logger is not None:
                logger.close()
        return history

    def initial_metrics(self) -> dict[str, Any]:
        """Metrics of the starting policy, logged as step 0 of a run that starts from scratch (none
        here; the RL trainer's validation). Every process must return the same keys."""
        return {}

    def check_nonfinite_streak(self) -> None:
        """Raise :class:`NonFiniteError` once ``optim.max_consecutive_nonfinite`` updates in a row were skipped."""
        limit = self.loop_config.optim.max_consecutive_nonfinite
        if self.nonfinite_streak >= limit:
            raise NonFiniteError(
                f"step {self.step}: the last {self.nonfinite_streak} optimizer updates were skipped because of "
                f"non-finite numbers (the last one: {self.last_nonfinite}), and optim.max_consecutive_nonfinite "
                f"is {limit}: training stopped. The weights are those after the last finite update; "
                f"{self.run_dir / 'metrics.jsonl'} lists the non-finite values of each step under 'nonfinite'"
            )

    def micro_step(self, last: bool) -> AbstractContextManager[Any]:
        """Context for one micro-batch's forward and backward: under data parallelism gradients are
        synchronised only on the ``last`` micro-batch of an optimizer step; under FSDP every backward
        reduce-scatters its gradients into the shards, where they accumulate (:mod:`arpo.train.sharding`);
        under DeepSpeed the engine is told whether this is the step's last micro-batch
        (:mod:`arpo.train.deepspeed_zero`)."""
        if self.deepspeed:
            self.model.set_gradient_accumulation_boundary(last)
            return nullcontext()
        if last or self.loop_config.fsdp is not None:
            return nullcontext()
        return self.accelerator.no_sync(self.model)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of one micro-batch's loss: accelerate's (loss scaling, fp16), or under DeepSpeed the
        engine's own — accelerate's would step the engine after every micro-batch."""
        if self.deepspeed:
            self.model.backward(loss)
        else:
            self.accelerator.backward(loss)

    def clip_and_step(self, loss: float) -> float:
        """Clip the accumulated gradient (if configured) and apply it — unless ``loss`` (this
        process's loss of the update) or the gradient norm is not finite: then the update is
        skipped (module docstring). Clears the gradient; returns its norm (before clipping).

        Under DeepSpeed the engine clips, steps and skips a non-finite gradient itself (reporting an
        infinite norm), which is counted here the same way."""
        if self.deepspeed:
            (bad_loss,) = self.all_sum(float(not math.isfinite(loss)))
            self.model.step()
            applied = bool(self.model.was_step_applied())
            norm = float(self.model.get_global_grad_norm())  # inf when the engine skipped the update
            if bad_loss and applied:
                logger.warning(
                    "step %d: the loss is not finite (%s in this process) but the gradient is: DeepSpeed applied "
                    "the update",
                    self.step + 1,
                    loss,
                )
            self._count_update(loss, norm, bad_loss, applied, loss_scaled=self.model.fp16_enabled())
            return norm
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.loop_config.optim.grad_clip
        if clip is not None:
            norm = float(self.accelerator.clip_grad_norm_(params, clip))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
        # the norm is global already (gradients are all-reduced, or reduce-scattered into shards whose
        # norm torch combines); a loss is known to its process only
        bad_loss, bad_norm = self.all_sum(float(not math.isfinite(loss)), float(not math.isfinite(norm)))
        applied = not (bad_loss or bad_norm)
        if applied or (not bad_loss and self.accelerator.scaler is not None):
            # fp16: the scaler sees the infinite gradient, skips the update, lowers its scale
            self.optimizer.step()
        self._count_update(loss, norm, bad_loss, applied, loss_scaled=self.accelerator.scaler is not None)
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _count_update(
        self, loss: float, norm: float, bad_loss: float, applied: bool, *, loss_scaled: bool
    ) -> None:
        """Count an applied or skipped update (``bad_loss``: how many processes saw a non-finite loss)
        and warn about a skipped one; with fp16 loss scaling (``loss_scaled``) a skip with finite
        losses is an overflow of the scaled gradient, not counted towards the limit."""
        if applied:
            self.nonfinite_streak = 0
        else:
            self.skipped_in_step += 1
            self.skipped_updates_total += 1
            self.last_nonfinite = (
                f"the loss is {loss}"
                if not math.isfinite(loss)
                else "the loss is not finite in another process"
                if bad_loss
                else f"the gradient norm is {norm}"
            )
            overflow = not bad_loss and loss_scaled
            if not overflow:
                self.nonfinite_streak += 1
            logger.warning(
                "step %d: skipped an optimizer update: %s (%s)",
                self.step + 1,
                self.last_nonfinite,
                "an fp16 overflow" if overflow else f"{self.nonfinite_streak} in a row",
            )
