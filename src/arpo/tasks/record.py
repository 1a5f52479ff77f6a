"""The task record: one prompt with its verifiable answer, as every dataset loader produces it.

A task is what ARPO samples a group of trajectories for (arXiv 2507.19849 §3.1): the chat
``prompt`` rendered once with the tokenizer's chat template, and the ``ground_truths`` (answer
aliases, any of which counts) the reward compares the extracted answer against with the metric
selected by ``answer_type`` (:mod:`arpo.core.rewards`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from arpo.core.rewards import ANSWER_TYPES, AnswerType, RewardInput

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = get_args(Role)


class TaskFieldError(ValueError):
    """A task field holds an invalid value; ``field`` names the :class:`Task` attribute."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Task.{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ChatMessage:
    """One chat message of a prompt."""

    role: Role
    content: str


def with_system_message(prompt: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    """``prompt`` with its system messages replaced by one system message ``text`` first."""
    return (ChatMessage("system", text), *(message for message in prompt if message.role != "system"))


def chat_dicts(prompt: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """``prompt`` as ``[{"role", "content"}]`` for ``tokenizer.apply_chat_template``."""
    return [{"role": message.role, "content": message.content} for message in prompt]


@dataclass(frozen=True)
class Task:
    """A prompt and its verifiable answer.

    ``prompt`` holds at least one user message; ``ground_truths`` at least one non-blank answer
    alias; ``id`` is unique within its ``source`` (the data set the task came from).
    """

    id: str
    prompt: tuple[ChatMessage, ...]
    ground_truths: tuple[str, ...]
    answer_type: AnswerType
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", tuple(self.prompt))
        object.__setattr__(self, "ground_truths", tuple(self.ground_truths))
        for message in self.prompt:
            if message.role not in ROLES:
                raise TaskFieldError(
                    "prompt", f"unknown role {message.role!r}; expected one of {list(ROLES)}"
                )
            if not isinstance(message.content, str):
                raise TaskFieldError("prompt", f"{message.role} message content must be a string")
        if not any(message.role == "user" and message.content.strip() for message in self.prompt):
            raise TaskFieldError("prompt", "needs a non-empty user message")
        if not self.ground_truths:
            raise TaskFieldError("ground_truths", "no answer given")
        for index, truth in enumerate(self.ground_truths):
            if not isinstance(truth, str) or not truth.strip():
                raise TaskFieldError(
                    "ground_truths", f"answer {index} is {truth!r}, expected a non-blank string"
                )
        if self.answer_type not in ANSWER_TYPES:
            raise TaskFieldError("answer_type", f"{self.answer_type!r} is not one of {list(ANSWER_TYPES)}")

    @property
    def question(self) -> str:
        """The content of the last user message."""
        return next(message.content for message in reversed(self.prompt) if message.role == "user")

    def chat(self) -> list[dict[str, str]]:
        """The prompt as ``[{"role", "content"}]`` for ``tokenizer.apply_chat_template``."""
        return chat_dicts(self.prompt)

    def with_system_prompt(self, text: str) -> Task:
        """This task with its system messages replaced by one system message ``text`` first."""
        return dataclasses.replace(self, prompt=with_system_message(self.prompt, text))

    def reward_input(
        self, response: str, tool_calls: Sequence[str], finish_reason: str = "answer"
    ) -> RewardInput:
        """The :class:`RewardInput` for one finished trajectory of this task."""
        return RewardInput(response, tool_calls, self.ground_truths, self.answer_type, finish_reason)
