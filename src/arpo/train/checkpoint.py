"""Crash-safe, verifiable checkpoints: a Hugging Face model folder plus the trainer's state, committed by rename.

Layout of ``<run_dir>/checkpoints/step-00000010/``: the model and tokenizer as written by
``save_pretrained`` (loadable by transformers and vLLM; for a LoRA run the merged model, plus the
adapter in ``adapter/`` to resume from), ``trainer_state.pt`` (optimizer, LR scheduler, RNG
states, data position, step, config) and ``manifest.json`` (size and SHA-256 of every other file).
Under FSDP the optimizer state is not in ``trainer_state.pt`` but in ``optimizer/``, written by
every process into the staging folder (:func:`prepare_staging`) before the main process
completes it (:mod:`arpo.train.sharding`).

Writing: weights with a non-finite value are refused (:class:`NonFiniteError`, naming the
tensors). A checkpoint is written into a hidden temporary folder ``.step-00000010.tmp`` and
renamed into place only when complete, so a kill at any moment leaves the previous checkpoints
intact; leftover temporary folders are ignored and removed by the next save. A write that fails
(a full disk, ENOSPC) removes its temporary folder and raises :class:`CheckpointWriteError`
saying why and which checkpoint is intact. After a write, checkpoints newer than it (left over
from before a fallback, below) are removed and only the newest ``keep`` are kept.

Reading: :func:`newest_intact_checkpoint` picks the checkpoint to resume or start from: the
newest whose files all match its manifest. A truncated or corrupt one is skipped with a warning
naming the bad file, and the one before it is used; with checkpoints but none intact it raises
:class:`CorruptCheckpointError`. A checkpoint without a manifest (written by an arpo before
manifests) is accepted unverified, with a warning.

Loading only the weights (``model.name`` naming a run folder, to fine-tune or evaluate its model):
:func:`newest_model_checkpoint` ignores what only ``--resume`` reads, the trainer state and the
sharded optimizer state (``trainer_state.pt``, ``optimizer/``): a checkpoint whose trainer state
was deleted to save disk (it is the largest file: AdamW's two moments per weight) still gives its
model. A run folder with a ``checkpoints/`` folder but no checkpoint to load is an error naming it,
rather than the folder being handed to transformers as a model.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arpo.models.loading import ADAPTER_DIR
from arpo.train.errors import CheckpointWriteError, CorruptCheckpointError, NonFiniteError
from arpo.train.sharding import OPTIMIZER_DIR

logger = logging.getLogger(__name__)

PREFIX = "step-"
STATE_FILE = "trainer_state.pt"
MANIFEST_FILE = "manifest.json"
TRAINER_ONLY = (STATE_FILE, f"{OPTIMIZER_DIR}/")
"""What only ``--resume`` reads (a file name, or a folder prefix ending in ``/``); not the model's."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:08d}"


def checkpoint_step(checkpoint: Path) -> int:
    return int(Path(checkpoint).name[len(PREFIX) :])


def list_checkpoints(run_dir: Path, *, weights_only: bool = False) -> list[Path]:
    """Complete checkpoints (renamed into place, with a trainer state), oldest first; not verified.

    ``weights_only``: every checkpoint renamed into place, with or without its trainer state.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (weights_only or (p / STATE_FILE).is_file())
    ]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, not verified (:func:`newest_intact_checkpoint` verifies)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def newest_intact_checkpoint(run_dir: Path, *, weights_only: bool = False) -> Path | None:
    """The newest checkpoint whose files match its manifest; None when the run has none.

    Each newer one that does not match is skipped with a warning naming the bad file; raises
    :class:`CorruptCheckpointError` when there are checkpoints but none is intact.
    ``weights_only``: the trainer state is neither required nor verified (:data:`TRAINER_ONLY`).
    """
    found = list_checkpoints(run_dir, weights_only=weights_only)
    problems = []
    for checkpoint in reversed(found):
        problem = checkpoint_problem(checkpoint, weights_only=weights_only)
        if problem is None:
            return checkpoint
        problems.append(f"{checkpoint}: {problem}")
        logger.warning("checkpoint %s is damaged (%s); trying the one before it", checkpoint, problem)
    if problems:
        raise CorruptCheckpointError(f"{run_dir} has no intact checkpoint to load: " + "; ".join(problems))
    return None


def newest_model_checkpoint(name: str) -> Path | None:
    """The checkpoint whose model ``model.name`` means when it names a run folder: the newest with
    intact model files, its trainer state not needed; None when ``name`` is not a run folder.

    Raises FileNotFoundError for a run folder (it has ``checkpoints/``) without any checkpoint.
    """
    run_dir = Path(name)
    if not (run_dir / "checkpoints").is_dir():
        return None
    found = newest_intact_checkpoint(run_dir, weights_only=True)
    if found is None:
        raise FileNotFoundError(
            f"{run_dir} is a run folder without a checkpoint (nothing in {run_dir / 'checkpoints'} to "
            f"load): name a run that wrote one, or a model folder"
        )
    return found


def checkpoint_problem(checkpoint: Path, *, weights_only: bool = False) -> str | None:
    """What is wrong with ``checkpoint`` (the first file that is missing, truncated or altered, or a
    bad manifest), or None when every file matches its manifest or it has none (warned).
    ``weights_only``: the files of :data:`TRAINER_ONLY` are not checked."""
    manifest = Path(checkpoint) / MANIFEST_FILE
    if not manifest.is_file():
        logger.warning(
            "checkpoint %s has no %s (written by an older arpo): its files cannot be verified",
            checkpoint,
            MANIFEST_FILE,
        )
        return None
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        files = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{manifest} is unreadable ({type(exc).__name__}: {exc})"
    for name, (size, sha256) in files.items():
        if weights_only and name.startswith(TRAINER_ONLY):
            continue
        path = Path(checkpoint) / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, the manifest says {size}"
        if _sha256(path) != sha256:
            return f"{path} does not match its SHA-256 in the manifest"
    return None


def nonfinite_tensors(weights: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``weights`` holding a NaN or an infinity."""
    return [
        name
        for name, tensor in weights.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def staging_dir(run_dir: Path, step: int) -> Path:
    """The hidden folder checkpoint ``step`` is written into before it is renamed into place."""
    final = checkpoint_dir(run_dir, step)
    return final.with_name(f".{final.name}.tmp")


def prepare_staging(run_dir: Path, step: int) -> Path:
    """Remove leftover temporary folders and create checkpoint ``step``'s empty staging folder, for
    files other processes write into it (sharded optimizer state) before :func:`save_checkpoint`
    with ``staged=True`` completes it. Raises :class:`CheckpointWriteError` when it cannot be made."""
    tmp = staging_dir(run_dir, step)
    _remove_leftovers(tmp.parent)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise CheckpointWriteError(f"could not create {tmp} for checkpoint {step}: {exc}") from exc
    return tmp


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    keep: int = 2,
    *,
    weights: dict[str, torch.Tensor] | None = None,
    staged: bool = False,
) -> Path:
    """Write checkpoint ``step`` atomically; returns its folder (see the module docstring).

    ``weights``: the full state dict to write instead of ``model``'s own parameters, e.g. the one
    gathered from sharded (FSDP) parameters; a LoRA model always writes its own. ``staged``: the
    staging folder was made by :func:`prepare_staging` and already holds files to include.
    """
    final = checkpoint_dir(run_dir, step)
    tmp = staging_dir(run_dir, step)
    lora = bool(getattr(model, "peft_config", None))
    bad = nonfinite_tensors(model.state_dict() if weights is None or lora else weights)
    if bad:
        shutil.rmtree(tmp, ignore_errors=True)
        raise NonFiniteError(
            f"refusing to write checkpoint {final}: {len(bad)} weight tensor(s) hold NaN or infinite "
            f"values ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})"
        )
    if not staged:
        _remove_leftovers(final.parent)
    try:
        tmp.mkdir(parents=True, exist_ok=staged)
        if lora:  # the merged model for users, the adapter to resume
            model.save_pretrained(tmp / ADAPTER_DIR)
            copy.deepcopy(model).merge_and_unload().save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        _write_manifest(tmp)
        _fsync_tree(tmp)
        _commit(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        before = [c for c in list_checkpoints(run_dir) if checkpoint_step(c) <= step]
        intact = (
            f"checkpoint {before[-1]}, written before, is untouched"
            if before
            else "no checkpoint was written before"
        )
        reason = errno.errorcode.get(exc.errno, "") if exc.errno else ""
        raise CheckpointWriteError(
            f"could not write checkpoint {final}: {exc}{f' ({reason})' if reason else ''}; {intact}"
        ) from exc
    _fsync_dir(final.parent)
    written = list_checkpoints(run_dir)
    older = [c for c in written if checkpoint_step(c) < step]
    stale = [c for c in written if checkpoint_step(c) > step]
    for old in stale + (older[: max(0, len(older) - (keep - 1))] if keep > 0 else []):
        shutil.rmtree(old, ignore_errors=True)
    return final


def _remove_leftovers(checkpoints: Path) -> None:
    """Remove the temporary folders a killed or failed write left in ``checkpoints``."""
    for stale in checkpoints.glob(".*.tmp") if checkpoints.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)


def _commit(tmp: Path, final: Path) -> None:
    """Rename the written ``tmp`` to ``final``; a checkpoint of the same step (a resumed run writing
    it again) is swapped out and removed only once the new one is in place."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old.tmp")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_manifest(folder: Path) -> None:
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (subfolders too: ``optimizer/``, ``adapter/``)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
