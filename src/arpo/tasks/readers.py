"""Row readers for the storage formats: JSONL, Parquet (pyarrow) and Hugging Face ``datasets``.

Each reader yields ``(row number, row)`` with 1-based row numbers (for JSONL the line number;
blank lines are skipped). A JSONL line that is not a JSON object is yielded as a
:class:`TaskLoadError` instead of a row, so the loader's invalid-row policy treats it like any
other bad row. pyarrow and datasets are imported only when needed; a missing one raises
ImportError naming the extra to install.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from arpo.tasks.errors import TaskLoadError

FileFormat = Literal["jsonl", "parquet", "hf"]
SUFFIX_FORMATS: dict[str, FileFormat] = {".jsonl": "jsonl", ".parquet": "parquet"}
DATA_EXTRA = "arpo[data]"

Row = dict[str, Any]


def resolve_format(path: str, file_format: FileFormat | Literal["auto"]) -> FileFormat:
    """The format of ``path``: given, or by suffix; a directory or a non-path name means ``hf``."""
    if file_format != "auto":
        return file_format
    location = Path(path)
    if location.is_dir():
        return "hf"
    if location.is_file():
        if location.suffix in SUFFIX_FORMATS:
            return SUFFIX_FORMATS[location.suffix]
        raise TaskLoadError(
            path, f"unknown file type {location.suffix!r}: use .jsonl or .parquet, or set format"
        )
    if location.suffix in SUFFIX_FORMATS:
        raise TaskLoadError(path, "no such file")
    return "hf"


def read_rows(path: str, file_format: FileFormat, split: str) -> Iterator[tuple[int, Row | TaskLoadError]]:
    """Rows of the data set at ``path`` (``split`` selects a split of a Hugging Face data set)."""
    if file_format == "jsonl":
        return _read_jsonl(path)
    if file_format == "parquet":
        return _read_parquet(path)
    return _read_hf(path, split)


def _read_jsonl(path: str) -> Iterator[tuple[int, Row | TaskLoadError]]:
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, _json_row(path, number, line)
    except (OSError, UnicodeDecodeError) as error:
        raise TaskLoadError(path, f"cannot read as UTF-8 text ({error})") from error


def _json_row(path: str, number: int, line: str) -> Row | TaskLoadError:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return TaskLoadError(path, f"invalid JSON ({error.msg} at column {error.colno})", number)
    if isinstance(row, dict):
        return row
    return TaskLoadError(path, f"expected a JSON object, got {type(row).__name__}", number)


def _read_parquet(path: str) -> Iterator[tuple[int, Row | TaskLoadError]]:
    parquet = _require("pyarrow.parquet", "Parquet files")
    try:
        batches = parquet.ParquetFile(path).iter_batches(batch_size=1024)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError
        raise TaskLoadError(path, f"not a readable Parquet file ({error})") from error


def _read_hf(path: str, split: str) -> Iterator[tuple[int, Row | TaskLoadError]]:
    datasets = _require("datasets", "Hugging Face data sets")
    try:
        loaded = (
            datasets.load_from_disk(path) if Path(path).is_dir() else datasets.load_dataset(path, split=split)
        )
    except Exception as error:  # datasets raises many unrelated types (network, format, missing files)
        raise TaskLoadError(
            path, f"cannot load Hugging Face data set ({type(error).__name__}: {error})"
        ) from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise TaskLoadError(path, f"no split {split!r}; available: {sorted(loaded)}")
        loaded = loaded[split]
    yield from enumerate(loaded, start=1)


def _require(module: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        raise ImportError(
            f"reading {purpose} needs the {top!r} package: pip install '{DATA_EXTRA}'"
        ) from error
