"""Cold-start demonstrations of the built-in environment in the exact rollout protocol.

A demonstration is the trajectory a rollout would record: model segments (each ending with a
tool's closing tag, the last with ``</answer>``) alternating with tool segments holding the text
the *real* tool returned for that call. Its token ids and loss mask are those of its
:class:`~arpo.tasks.demonstrations.Conversation` (:func:`~arpo.tasks.demonstrations.conversation_tree`):
exactly what a rollout of the same text holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arpo.core.rewards import HierarchicalReward, RewardInput
from arpo.core.tree import FinishReason, RolloutTree
from arpo.tasks.demonstrations.conversation import (
    DEFAULT_RESULT_TEMPLATE,
    Conversation,
    ResponseProtocol,
    Segment,
    conversation_tree,
)
from arpo.tasks.record import ChatMessage, Task
from arpo.tasks.toolworld.families import SOURCE
from arpo.tasks.toolworld.jsonl import read_jsonl

__all__ = [
    "DEFAULT_RESULT_TEMPLATE",
    "Demo",
    "Segment",
    "check_demos",
    "demo_example",
    "demo_tree",
    "load_demos",
]


@dataclass(frozen=True)
class Demo:
    """One demonstration of ``task``: ``kind`` is ``perfect`` or the imperfection it shows."""

    task: Task
    family: str
    kind: str
    segments: tuple[Segment, ...]

    def conversation(self) -> Conversation:
        return Conversation(self.task.id, self.task.prompt, self.segments)

    def response(self, result_template: str = DEFAULT_RESULT_TEMPLATE) -> str:
        """Everything after the prompt, tool results wrapped: what the reward reads."""
        return self.conversation().response(result_template)

    @property
    def tool_calls(self) -> list[str]:
        return [s.tag or "" for s in self.segments if s.role == "tool"]

    def reward_input(self, result_template: str = DEFAULT_RESULT_TEMPLATE) -> RewardInput:
        return self.task.reward_input(self.response(result_template), self.tool_calls, FinishReason.ANSWER)

    def to_row(self) -> dict[str, Any]:
        task = self.task
        return {
            "task_id": task.id,
            "source": task.source,
            "family": self.family,
            "kind": self.kind,
            "prompt": task.chat(),
            "answer": list(task.ground_truths),
            "answer_type": task.answer_type,
            "segments": [
                {key: value for key, value in vars(segment).items() if value is not None}
                for segment in self.segments
            ],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Demo:
        task = Task(
            id=row["task_id"],
            prompt=tuple(ChatMessage(m["role"], m["content"]) for m in row["prompt"]),
            ground_truths=tuple(row["answer"]),
            answer_type=row["answer_type"],
            source=row.get("source", SOURCE),  # rows written before sources were stored are toolworld's
        )
        segments = tuple(Segment(**segment) for segment in row["segments"])
        return cls(task, row["family"], row["kind"], segments)


def load_demos(path: str | Path) -> list[Demo]:
    """The demonstrations of a ``demos.jsonl`` file; a bad line raises ValueError naming it."""
    return read_jsonl(path, Demo.from_row, "a demonstration row")


def check_demos(demos: list[Demo], reward: HierarchicalReward | None = None) -> None:
    """Raise RuntimeError unless every perfect demonstration scores correctness 1 and every
    flawed one passes the format gate with correctness 0 (``reward``: default the default reward)."""
    reward = reward or HierarchicalReward()
    for demo in demos:
        result = reward(demo.reward_input())
        expected = 1.0 if demo.kind == "perfect" else 0.0
        if not result.format_ok or result.correctness != expected:
            raise RuntimeError(
                f"demonstration of {demo.task.id} ({demo.kind}) scored correctness {result.correctness} "
                f"(format error: {result.format_error}), expected {expected}; response: {demo.response()!r}"
            )


def demo_tree(demo: Demo, tokenizer: Any, result_template: str = DEFAULT_RESULT_TEMPLATE) -> RolloutTree:
    """A rollout tree with one leaf holding ``demo`` (zero log-probs and entropies on model tokens)."""
    return conversation_tree(
        demo.conversation(),
        tokenizer,
        ResponseProtocol(result_template=result_template),
        {"task_id": demo.task.id, "kind": demo.kind},
    )


def demo_example(
    demo: Demo, tokenizer: Any, result_template: str = DEFAULT_RESULT_TEMPLATE
) -> tuple[list[int], list[int]]:
    """``(token_ids, loss_mask)`` of ``demo``: 1 on model tokens, 0 on prompt and tool tokens."""
    trajectory = demo_tree(demo, tokenizer, result_template).trajectories()[0]
    return trajectory.token_ids, trajectory.loss_mask
