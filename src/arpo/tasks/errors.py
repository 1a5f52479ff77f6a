"""The one error a dataset loader raises: it names the file, the row and the field."""

from __future__ import annotations


class TaskLoadError(ValueError):
    """A data file, or one of its rows, cannot be turned into tasks.

    ``row`` is 1-based (for JSONL, the line number) and None for a file-level problem; ``field``
    is the dotted path of the offending field, or None when the whole row is at fault.
    """

    def __init__(self, path: str, problem: str, row: int | None = None, field: str | None = None) -> None:
        where = path + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.row = row
        self.field = field
        self.problem = problem
