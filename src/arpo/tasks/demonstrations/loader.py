"""Load demonstrations for SFT from a JSONL / Parquet / Hugging Face data set in any known layout.

    conversations = load_demonstrations(DemonstrationsConfig(path="data/sft.jsonl"))

Rows are read with the task loaders' machinery (:func:`arpo.tasks.loaders.load_rows`: formats,
``limit``, ``on_invalid_row``); each row becomes a :class:`~arpo.tasks.demonstrations.Conversation`
in the layout given or, with ``auto``, the one the first row shows:

==========  ==========================================================  =========================
layout      first row has                                               module
==========  ==========================================================  =========================
records     ``response``, ``finish_reason``, ``score``, ``correct``      :mod:`.rows`
demos       ``prompt`` and ``segments``                                 :mod:`.rows`
messages    ``messages`` (OpenAI chat)                                   :mod:`.chat`
sharegpt    ``conversations`` (ShareGPT / LLaMA-Factory)                 :mod:`.chat`
==========  ==========================================================  =========================

The filter (``correct_only``, ``min_score``) reads sample records' scores; with another layout
it is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field

from arpo.tasks.demonstrations.chat import conversation_from_turns, openai_turns, sharegpt_turns
from arpo.tasks.demonstrations.conversation import Conversation, ResponseProtocol
from arpo.tasks.demonstrations.rows import conversation_from_demo_row, conversation_from_record, keep_record
from arpo.tasks.errors import TaskLoadError
from arpo.tasks.layouts import RowReader
from arpo.tasks.loaders import DataFileConfig, RowConverter, load_rows
from arpo.tasks.readers import Row

Layout = Literal["messages", "sharegpt", "records", "demos"]
LAYOUTS: tuple[Layout, ...] = ("messages", "sharegpt", "records", "demos")
RECORD_FIELDS = frozenset({"response", "finish_reason", "score", "correct"})


class DemonstrationsConfig(ResponseProtocol, DataFileConfig):
    """A data set of demonstrations for SFT, its layout and the tool protocol it must follow."""

    layout: Layout | Literal["auto"] = Field(
        "auto",
        description="messages (OpenAI chat), sharegpt (conversations: from/value), records (arpo eval's "
        "records.jsonl), demos (the project's demonstration rows), or auto: from the first row's fields.",
    )
    correct_only: bool = Field(
        False, description="records only: keep the samples marked correct (rejection-sampling fine-tuning)."
    )
    min_score: float | None = Field(
        None, description="records only: keep the samples whose score is at least this."
    )


def detect_demonstration_layout(path: str, first_row: Mapping[str, Any]) -> Layout:
    """The layout a data set's first row shows (module docstring)."""
    if first_row.keys() >= RECORD_FIELDS:
        return "records"
    if {"prompt", "segments"} <= first_row.keys():
        return "demos"
    if "messages" in first_row:
        return "messages"
    if "conversations" in first_row:
        return "sharegpt"
    raise TaskLoadError(
        path,
        f"unknown demonstration layout: the first row has fields {sorted(first_row)}; expected messages "
        f"(OpenAI chat), conversations (ShareGPT), prompt + segments (demonstration rows) or an arpo eval "
        f"record, or set layout to one of {list(LAYOUTS)}",
    )


def load_demonstrations(config: DemonstrationsConfig) -> list[Conversation]:
    """The conversations of a demonstration data set; bad rows raise TaskLoadError naming the file,
    the row and the field (or are skipped and logged with ``on_invalid_row: skip``)."""
    path = config.path

    def converter_for(first_row: Row | TaskLoadError) -> RowConverter[Conversation]:
        if config.layout != "auto":
            layout = config.layout
        elif isinstance(first_row, TaskLoadError):
            raise first_row
        else:
            layout = detect_demonstration_layout(path, first_row)
        if layout != "records" and (config.correct_only or config.min_score is not None):
            raise TaskLoadError(
                path, f"correct_only and min_score filter sample records; layout {layout!r} has no scores"
            )
        convert = _CONVERTERS[layout]

        def converter(number: int, row: Row) -> Conversation | None:
            reader = RowReader(row, path, number)
            if layout == "records" and not keep_record(reader, config.correct_only, config.min_score):
                return None
            return convert(reader, config)

        return converter

    return load_rows(config, converter_for, "demonstrations")


def _row_id(row: RowReader) -> str:
    return row.text("id") if row.data.get("id") is not None else str(row.number)


_CONVERTERS: dict[Layout, Callable[[RowReader, ResponseProtocol], Conversation]] = {
    "messages": lambda row, protocol: conversation_from_turns(
        openai_turns(row), row, protocol, "messages", _row_id(row)
    ),
    "sharegpt": lambda row, protocol: conversation_from_turns(
        sharegpt_turns(row), row, protocol, "conversations", _row_id(row)
    ),
    "records": conversation_from_record,
    "demos": conversation_from_demo_row,
}
