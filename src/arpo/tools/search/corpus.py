"""Local corpora for the ``bm25`` and ``dense`` backends, and their on-disk index cache.

A corpus is a JSONL file, one ``{"id": ..., "title": ..., "text": ...}`` object per line
(``title`` may be omitted). An index is built once and cached under ``cache_dir/<key>``, where
the key is the SHA-256 of the corpus bytes and the index parameters: an edited corpus gets a
new index, an unchanged one is only loaded. It is built in a temporary directory beside its
final place and renamed into it, so a crash or a concurrent build never leaves a half-written
index where a reader would find it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arpo.tools.search.base import Passage


def load_corpus(path: Path) -> list[Passage]:
    """Read a JSONL corpus; a bad line raises ValueError naming the file, line and field."""
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    passages = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object with id, title, text")
            for field in ("id", "text"):
                if field not in record:
                    raise ValueError(
                        f"{path}:{number}: missing field {field!r} (each line needs id, title, text)"
                    )
            if not isinstance(record["text"], str) or not isinstance(record.get("title", ""), str):
                raise ValueError(f"{path}:{number}: 'title' and 'text' must be strings")
            passages.append(Passage(record.get("title", ""), record["text"]))
    if not passages:
        raise ValueError(f"{path}: the corpus is empty")
    return passages


def index_key(corpus: Path, params: dict[str, Any]) -> str:
    """SHA-256 (hex, first 32 digits) of the parameters and the corpus bytes."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    with corpus.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def cached_index_dir(
    cache_dir: Path, corpus: Path, params: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    """The cached index directory for ``corpus`` and ``params``; ``build(tmp_dir)`` fills it if missing."""
    target = cache_dir / index_key(corpus, params)
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    try:
        build(building)
        try:
            building.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target
