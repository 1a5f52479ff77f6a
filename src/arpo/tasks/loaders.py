"""Load tasks from JSONL, Parquet or Hugging Face data sets, configured by a :class:`DatasetConfig`.

    tasks = load_tasks(DatasetConfig(path="../shared/data/benchmarks/gsm8k/test.jsonl"))

The loader reads rows (:mod:`arpo.tasks.readers`), picks a layout (:mod:`arpo.tasks.layouts`:
``auto``, a built-in name, or a field map given in the config) and turns each row into a
:class:`~arpo.tasks.record.Task`. A bad row stops the load with a :class:`TaskLoadError` naming
the file, the row and the field, unless ``on_invalid_row`` is ``skip``: then it is logged and
left out. Ids must be unique per source. Nothing is returned unless the whole load succeeds.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arpo.tasks.errors import TaskLoadError
from arpo.tasks.layouts import BUILTIN_LAYOUTS, FieldMap, dataset_name, detect_layout
from arpo.tasks.readers import FileFormat, Row, read_rows, resolve_format
from arpo.tasks.record import Task

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DataFileConfig(BaseModel):
    """Where a data set is, which rows to take and what to do with a bad row."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="A .jsonl or .parquet file, a folder written by datasets' save_to_disk, or a Hugging Face "
        "hub name (needs network)."
    )
    format: FileFormat | Literal["auto"] = Field("auto", description="Storage format; auto: by suffix.")
    split: str = Field("train", description="Split of a Hugging Face data set.")
    limit: int | None = Field(None, ge=1, description="Keep only the first this many rows that load.")
    on_invalid_row: Literal["error", "skip"] = Field(
        "error", description="error: a bad row stops the load; skip: log it and leave it out."
    )


class DatasetConfig(DataFileConfig):
    """Where a data set of tasks is and how its rows map to tasks."""

    layout: str | FieldMap = Field(
        "auto",
        description=f"'auto', a built-in layout ({', '.join(BUILTIN_LAYOUTS)}) or a field map "
        "{question|prompt, answer, answer_type|answer_type_field, ...}.",
    )

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, layout: str | FieldMap) -> str | FieldMap:
        if isinstance(layout, str) and layout != "auto" and layout not in BUILTIN_LAYOUTS:
            raise ValueError(
                f"unknown layout {layout!r}: use 'auto', one of {sorted(BUILTIN_LAYOUTS)} or a field map"
            )
        return layout


RowConverter = Callable[[int, Row], T | None]
"""``(row number, row) → item``, or None for a valid row the caller leaves out (a filter); raises
TaskLoadError for a bad row."""


def load_rows(
    config: DataFileConfig, converter_for: Callable[[Row | TaskLoadError], RowConverter[T]], what: str
) -> list[T]:
    """The ``what`` (e.g. tasks) in a data set's rows, with the policy on bad rows of the module
    docstring and ``config.limit``; ``converter_for(first row)`` picks the row converter once
    (e.g. by the layout the first row shows)."""
    path = config.path
    rows = read_rows(path, resolve_format(path, config.format), config.split)
    first = next(rows, None)
    if first is None:
        raise TaskLoadError(path, "no rows")
    convert = converter_for(first[1])
    items: list[T] = []
    skipped = filtered = 0
    for number, row in itertools.chain([first], rows):
        try:
            if isinstance(row, TaskLoadError):
                raise row
            item = convert(number, row)
        except TaskLoadError as error:
            if config.on_invalid_row == "error":
                hint = " (on_invalid_row='skip' leaves such rows out)"
                raise TaskLoadError(error.path, error.problem + hint, error.row, error.field) from None
            logger.warning("skipping invalid row: %s", error)
            skipped += 1
            continue
        if item is None:
            filtered += 1
            continue
        items.append(item)
        if config.limit is not None and len(items) == config.limit:
            break
    if skipped:
        logger.warning("%s: skipped %d invalid rows, loaded %d %s", path, skipped, len(items), what)
    if not items:
        raise TaskLoadError(
            path, "no valid rows" + (f" ({filtered} left out by the filter)" if filtered else "")
        )
    return items


def load_tasks(config: DatasetConfig, system_prompt: str | None = None) -> list[Task]:
    """The tasks of a data set; ``system_prompt``, when given, replaces each prompt's system messages."""
    path, source = config.path, dataset_name(config.path)

    def converter_for(first_row: Row | TaskLoadError) -> RowConverter[Task]:
        layout = _layout(config.layout, path, first_row)
        first_row_of_id: dict[tuple[str, str], int] = {}

        def convert(number: int, row: Row) -> Task:
            task = layout.task_from_row(row, path=path, row_number=number, default_source=source)
            earlier = first_row_of_id.setdefault((task.source, task.id), number)
            if earlier != number:
                raise TaskLoadError(
                    path, f"duplicate id {task.id!r} (first at row {earlier})", number, layout.id
                )
            return task if system_prompt is None else task.with_system_prompt(system_prompt)

        return convert

    return load_rows(config, converter_for, "tasks")


def _layout(layout: str | FieldMap, path: str, first_row: Row | TaskLoadError) -> FieldMap:
    if isinstance(layout, FieldMap):
        return layout
    if layout != "auto":
        return BUILTIN_LAYOUTS[layout]
    if isinstance(first_row, TaskLoadError):
        raise first_row
    return BUILTIN_LAYOUTS[detect_layout(path, first_row)]
