"""JSON Lines files of the environment: one object per line, read back with errors naming the line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def read_jsonl(path: str | Path, parse: Callable[[dict[str, Any]], T], what: str) -> list[T]:
    """``parse`` applied to every row; a row that is not valid JSON or that ``parse`` rejects raises
    ValueError naming the file, the line and ``what`` was expected."""
    items = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(parse(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not {what} ({type(exc).__name__}: {exc})") from None
    return items
