"""Crash-safe checkpoints: a Hugging Face model folder plus the trainer's state, committed by rename.

Layout of ``<run_dir>/checkpoints/step-00000010/``: the model and tokenizer as written by
``save_pretrained`` (loadable by transformers and vLLM; for a LoRA run the merged model, plus the
adapter in ``adapter/`` to resume from) and ``trainer_state.pt`` (optimizer,
LR scheduler, RNG states, data position, step, config). A checkpoint is written into a hidden
temporary folder ``.step-00000010.tmp`` and renamed into place only when complete, so a kill at
any moment leaves the previous checkpoints intact; leftover temporary folders are ignored and
removed by the next save. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arpo.models.loading import ADAPTER_DIR

PREFIX = "step-"
STATE_FILE = "trainer_state.pt"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    keep: int = 2,
    *,
    weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically; returns its folder.

    ``weights``: the full state dict to write instead of ``model``'s own parameters, e.g. the one
    accelerate gathers from sharded (FSDP, ZeRO-3) parameters; a LoRA model always writes its own.
    """
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    for stale in final.parent.glob(".*.tmp") if final.parent.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    if getattr(model, "peft_config", None):  # LoRA: the merged model for users, the adapter to resume
        model.save_pretrained(tmp / ADAPTER_DIR)
        copy.deepcopy(model).merge_and_unload().save_pretrained(tmp, safe_serialization=True)
    else:
        model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    _fsync_tree(tmp)
    if final.exists():  # re-saving a step (a resumed run): swap, then drop the old copy
        old = final.with_name(f".{final.name}.old.tmp")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
