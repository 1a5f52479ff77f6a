"""Field mappings from data rows to tasks, and the built-in layouts of the known data sets.

A layout (:class:`FieldMap`) says where a row keeps the question (plain text, or chat messages),
the answer, the answer type, the id and the source; fields are dotted paths into nested rows
(``reward_model.ground_truth``). Answers may be a string, a number or a list of them (aliases).

Built-in layouts, checked against the files the ARPO authors redistribute (shared/data/README.md,
ARPO_REFERENCE.md §7):

========  ====================================================  ===========
layout    rows                                                  answer type
========  ====================================================  ===========
gsm8k     ``question``; ``answer`` is a solution ending in        number
          ``#### <number>``; ``idx``
math500   ``question``; ``answer`` in LaTeX                       math
aime24    ``problem``; ``answer`` an integer as a string; ``id``  number
qa        ``question``; ``answer`` a list of aliases              qa
          (hotpotqa, 2wiki, bamboogle, simpleqa)
arpo_rl   ``prompt`` (system + user chat), ``ability`` math/qa,   from ability
          ``reward_model.ground_truth``, ``extra_info.index``,
          ``data_source``
========  ====================================================  ===========

``auto`` picks ``arpo_rl`` for rows with ``prompt`` and ``reward_model`` columns, else the layout
of a known benchmark name (the file's stem, or its folder for ``test``/``train``/… files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arpo.core.rewards import AnswerType
from arpo.tasks.errors import TaskLoadError
from arpo.tasks.record import ROLES, ChatMessage, Task, TaskFieldError

SPLIT_STEMS = frozenset({"train", "test", "valid", "validation", "dev"})


class FieldMap(BaseModel):
    """Where a row keeps each part of a task; fields are dotted paths (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str | None = Field(
        None, description="Field with the question text; it becomes the user message."
    )
    prompt: str | None = Field(
        None, description="Field with chat messages [{role, content}], instead of question."
    )
    answer: str = Field(
        "answer", description="Field with the ground truth: a string, a number or a list of aliases."
    )
    answer_marker: str | None = Field(
        None, description="Keep only the text after the last occurrence of this marker (GSM8K: '####')."
    )
    answer_type: AnswerType | None = Field(None, description="The answer type of every row.")
    answer_type_field: str | None = Field(
        None, description="Field whose value selects the answer type per row."
    )
    answer_type_values: dict[str, AnswerType] = Field(
        default_factory=dict,
        description="Answer type for each value of answer_type_field (e.g. ability 'qa' → qa).",
    )
    id: str | None = Field(None, description="Field with the row's id; default: the row number.")
    source: str | None = Field(None, description="Source name of every row; default: the data set's name.")
    source_field: str | None = Field(None, description="Field with the row's source name, instead of source.")

    @model_validator(mode="after")
    def _one_of_each(self) -> FieldMap:
        if (self.question is None) == (self.prompt is None):
            raise ValueError("set exactly one of question (a text field) and prompt (a chat-messages field)")
        if (self.answer_type is None) == (self.answer_type_field is None):
            raise ValueError("set exactly one of answer_type and answer_type_field")
        if bool(self.answer_type_field) != bool(self.answer_type_values):
            raise ValueError("answer_type_values must map the values of answer_type_field, and needs it")
        if self.source is not None and self.source_field is not None:
            raise ValueError("set at most one of source and source_field")
        return self

    def task_from_row(
        self, data: Mapping[str, Any], *, path: str, row_number: int, default_source: str
    ) -> Task:
        """The task in row ``data``; raises TaskLoadError naming ``path``, ``row_number`` and the field."""
        row = RowReader(data, path, row_number)
        source = self.source or (row.text(self.source_field) if self.source_field else default_source)
        try:
            return Task(
                id=row.text(self.id) if self.id else str(row_number),
                prompt=self._prompt(row),
                ground_truths=self._ground_truths(row),
                answer_type=self._answer_type(row),
                source=source,
            )
        except TaskFieldError as error:
            task_fields = {"prompt": self.prompt or self.question, "ground_truths": self.answer}
            raise row.error(task_fields.get(error.field, error.field), error.problem) from None

    def _prompt(self, row: RowReader) -> tuple[ChatMessage, ...]:
        if self.question is not None:
            question = row.get(self.question)
            if not isinstance(question, str):
                raise row.error(self.question, f"expected a string, got {type(question).__name__}")
            return (ChatMessage("user", question),)
        assert self.prompt is not None
        return row.chat_messages(self.prompt)

    def _ground_truths(self, row: RowReader) -> tuple[str, ...]:
        value = row.get(self.answer)
        aliases = value if isinstance(value, list) else [value]
        texts = []
        for index, alias in enumerate(aliases):
            field = f"{self.answer}[{index}]" if isinstance(value, list) else self.answer
            text = _answer_text(alias)
            if text is None:
                raise row.error(
                    field, f"expected a string, a number or a list of them, got {type(alias).__name__}"
                )
            if self.answer_marker is not None:
                _, marker, text = text.rpartition(self.answer_marker)
                if not marker:
                    raise row.error(field, f"no {self.answer_marker!r} marker before the final answer")
            texts.append(text.strip())
        return tuple(texts)

    def _answer_type(self, row: RowReader) -> AnswerType:
        if self.answer_type is not None:
            return self.answer_type
        assert self.answer_type_field is not None
        value = row.get(self.answer_type_field)
        if value not in self.answer_type_values:
            expected = sorted(self.answer_type_values)
            raise row.error(self.answer_type_field, f"unknown value {value!r}; expected one of {expected}")
        return self.answer_type_values[value]


@dataclass(frozen=True)
class RowReader:
    """One raw row with where it came from, to read fields and to build errors that name them."""

    data: Mapping[str, Any]
    path: str
    number: int

    def error(self, field: str, problem: str) -> TaskLoadError:
        return TaskLoadError(self.path, problem, self.number, field)

    def get(self, field: str) -> Any:
        """The value at dotted path ``field``; missing and null values are errors."""
        value: Any = self.data
        for part in field.split("."):
            if not isinstance(value, Mapping) or value.get(part) is None:
                raise self.error(field, "missing or null")
            value = value[part]
        return value

    def chat_messages(self, field: str) -> tuple[ChatMessage, ...]:
        """The ``[{role, content}]`` list at ``field`` (roles: system, user, assistant)."""
        messages = self.get(field)
        if not isinstance(messages, list):
            raise self.error(
                field, f"expected a list of {{role, content}} messages, got {type(messages).__name__}"
            )
        for index, message in enumerate(messages):
            if not (
                isinstance(message, dict)
                and all(isinstance(message.get(k), str) for k in ("role", "content"))
            ):
                raise self.error(f"{field}[{index}]", "expected {role: string, content: string}")
            if message["role"] not in ROLES:
                raise self.error(
                    f"{field}[{index}].role",
                    f"unknown role {message['role']!r}; expected one of {list(ROLES)}",
                )
        return tuple(ChatMessage(message["role"], message["content"]) for message in messages)

    def text(self, field: str) -> str:
        """A string or integer field as text (ids, source names)."""
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(field, f"expected a string or an integer, got {type(value).__name__}")
        return str(value)


BUILTIN_LAYOUTS: dict[str, FieldMap] = {
    "gsm8k": FieldMap(question="question", answer_marker="####", answer_type="number", id="idx"),
    "math500": FieldMap(question="question", answer_type="math"),
    "aime24": FieldMap(question="problem", answer_type="number", id="id"),
    "qa": FieldMap(question="question", answer_type="qa"),
    "arpo_rl": FieldMap(
        prompt="prompt",
        answer="reward_model.ground_truth",
        answer_type_field="ability",
        answer_type_values={"math": "math", "qa": "qa"},
        id="extra_info.index",
        source_field="data_source",
    ),
}
BENCHMARK_LAYOUTS: dict[str, str] = {
    "gsm8k": "gsm8k",
    "math500": "math500",
    "aime24": "aime24",
    "hotpotqa": "qa",
    "2wiki": "qa",
    "bamboogle": "qa",
    "simpleqa": "qa",
}


def dataset_name(path: str) -> str:
    """The data set's name: the file's stem, or its folder's name for split files (``gsm8k/test.jsonl``)."""
    location = Path(path.rstrip("/"))
    return location.parent.name if location.stem in SPLIT_STEMS and location.parent.name else location.stem


def detect_layout(path: str, first_row: Mapping[str, Any]) -> str:
    """The built-in layout for a data set, from its first row's columns or its name (module docstring)."""
    if {"prompt", "reward_model"} <= first_row.keys():
        return "arpo_rl"
    name = dataset_name(path)
    if name in BENCHMARK_LAYOUTS:
        return BENCHMARK_LAYOUTS[name]
    raise TaskLoadError(
        path,
        f"unknown layout: data set {name!r} with fields {sorted(first_row)}; set layout to one of "
        f"{sorted(BUILTIN_LAYOUTS)} or to a field map (question or prompt, answer, answer_type)",
    )


def _answer_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if float(value).is_integer() else repr(value)
