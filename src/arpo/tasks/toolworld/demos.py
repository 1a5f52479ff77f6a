"""Cold-start demonstrations in the exact rollout protocol, and their token ids and loss masks.

A demonstration is the trajectory a rollout would record: model segments (each ending with a
tool's closing tag, the last with ``</answer>``) alternating with tool segments holding the text
the *real* tool returned for that call. It becomes training data the way a rollout does
(:mod:`arpo.rollout`), through a :class:`~arpo.core.tree.RolloutTree` with one leaf:

- the prompt is rendered once with the tokenizer's chat template, generation prompt opened;
- each model segment is encoded on its own, without special tokens;
- each tool result is wrapped by the result template (``<result>{result}</result>``) and encoded
  on its own, without special tokens;

so an SFT example's token ids are exactly those a rollout of the same text would hold, and its
loss mask (1 on model tokens, 0 on prompt and tool tokens) is the tree's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from arpo.core.answer_format import FormatSpec
from arpo.core.rewards import HierarchicalReward, RewardInput
from arpo.core.tree import FinishReason, Origin, RolloutTree, ToolCall
from arpo.tasks.prompts import render_prompt
from arpo.tasks.record import ChatMessage, Task
from arpo.tasks.toolworld.families import SOURCE
from arpo.tasks.toolworld.jsonl import read_jsonl

DEFAULT_RESULT_TEMPLATE = f"<{FormatSpec().result_tag}>{{result}}</{FormatSpec().result_tag}>"
"""The rollout's default ``result_template`` (:class:`arpo.rollout.RolloutConfig`)."""


@dataclass(frozen=True)
class Segment:
    """A model segment (``text`` the model writes) or a tool segment (``text`` the tool returned)."""

    role: Literal["model", "tool"]
    text: str
    tag: str | None = None
    call: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class Demo:
    """One demonstration of ``task``: ``kind`` is ``perfect`` or the imperfection it shows."""

    task: Task
    family: str
    kind: str
    segments: tuple[Segment, ...]

    def response(self, result_template: str = DEFAULT_RESULT_TEMPLATE) -> str:
        """Everything after the prompt, tool results wrapped: what the reward reads."""
        return "".join(_segment_text(segment, result_template) for segment in self.segments)

    @property
    def tool_calls(self) -> list[str]:
        return [s.tag or "" for s in self.segments if s.role == "tool"]

    def reward_input(self, result_template: str = DEFAULT_RESULT_TEMPLATE) -> RewardInput:
        return self.task.reward_input(self.response(result_template), self.tool_calls, FinishReason.ANSWER)

    def to_row(self) -> dict[str, Any]:
        task = self.task
        return {
            "task_id": task.id,
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
            source=SOURCE,
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
    tree = RolloutTree(
        render_prompt(tokenizer, demo.task.chat()),
        len(tokenizer),
        {"task_id": demo.task.id, "kind": demo.kind},
    )
    parent = tree.root
    for index, segment in enumerate(demo.segments):
        ids = list(tokenizer.encode(_segment_text(segment, result_template), add_special_tokens=False))
        if segment.role == "model":
            parent = tree.add_model(parent, Origin.INITIAL if index == 0 else None)
            parent.append(ids, [0.0] * len(ids), [0.0] * len(ids))
        else:
            call = ToolCall(segment.tag or "", segment.call or "", segment.status or "ok")
            parent = tree.add_tool(parent, ids, call)
    parent.finish_reason = FinishReason.ANSWER
    return tree


def demo_example(
    demo: Demo, tokenizer: Any, result_template: str = DEFAULT_RESULT_TEMPLATE
) -> tuple[list[int], list[int]]:
    """``(token_ids, loss_mask)`` of ``demo``: 1 on model tokens, 0 on prompt and tool tokens."""
    trajectory = demo_tree(demo, tokenizer, result_template).trajectories()[0]
    return trajectory.token_ids, trajectory.loss_mask


def _segment_text(segment: Segment, result_template: str) -> str:
    return segment.text if segment.role == "model" else result_template.format(result=segment.text)
