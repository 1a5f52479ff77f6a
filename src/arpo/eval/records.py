"""Per-sample evaluation records: everything about one sampled trajectory, as one JSONL line.

A sample is scored exactly as the RL trainer scores a trajectory: the response (everything after
the prompt, tool results inserted, special tokens dropped) goes through the reward function with
the tools that were called (refused calls excluded) and the finish reason. ``score`` is the
correctness C of :mod:`arpo.core.rewards` (the answer type's metric: math equivalence for
``math``/``number``, token F1 for ``qa``, exact match for ``exact``; 0 when the format gate
fails), ``reward`` the full hierarchical reward, and ``correct`` whether ``score`` reaches the
evaluation's threshold (what pass@k counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from arpo.core.rewards import RewardFn, RewardResult
from arpo.core.tree import Role, Trajectory
from arpo.tasks.record import Task
from arpo.tools import ToolStatus


@dataclass(frozen=True)
class TokenCounts:
    prompt: int
    response: int
    """Model and tool tokens after the prompt (what the response budget counts)."""
    model: int
    tool: int


@dataclass
class SampleRecord:
    """One sample of one task (module docstring)."""

    dataset: str
    task_id: str
    source: str
    family: str | None
    sample: int
    answer_type: str
    question: str
    ground_truths: list[str]
    prompt: str
    """The rendered prompt (chat template and special tokens included)."""
    response: str
    """Everything after the prompt: model text with tool results inserted."""
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    answer: str | None
    format_ok: bool
    format_error: str | None
    score: float
    correct: bool
    reward: float
    tokens: TokenCounts
    judge: dict[str, Any] | None = field(default=None)
    """The LLM judge's verdict when a judge is configured: ``{"correct", "error", "reply"}``."""
    prompt_messages: list[dict[str, str]] = field(default_factory=list)
    """The task's chat messages, as rendered into ``prompt``."""
    segments: list[dict[str, str]] = field(default_factory=list)
    """The response node by node, ``{role: model|tool, text}``, each decoded on its own without
    special tokens (a tool segment's text is the wrapped result the model saw): what ``arpo sft``
    re-splits exactly for rejection-sampling fine-tuning (:mod:`arpo.tasks.demonstrations.rows`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_trajectory(
    task: Task, trajectory: Trajectory, tokenizer: Any, reward_fn: RewardFn
) -> tuple[str, RewardResult]:
    """The decoded response and its reward, as the trainer computes them."""
    response = tokenizer.decode(trajectory.token_ids[trajectory.prompt_length :], skip_special_tokens=True)
    used = [call.tag for call in trajectory.tool_calls if call.status != ToolStatus.LIMIT.value]
    finish = trajectory.finish_reason.value if trajectory.finish_reason else "length"
    return response, reward_fn(task.reward_input(response, used, finish))


def make_record(
    dataset: str,
    task: Task,
    family: str | None,
    sample: int,
    trajectory: Trajectory,
    tokenizer: Any,
    reward_fn: RewardFn,
    correct_threshold: float,
) -> SampleRecord:
    response, result = score_trajectory(task, trajectory, tokenizer, reward_fn)
    by_role = {role: 0 for role in Role}
    for node in trajectory.nodes:
        by_role[node.role] += len(node.token_ids)
    return SampleRecord(
        dataset=dataset,
        task_id=task.id,
        source=task.source,
        family=family,
        sample=sample,
        answer_type=task.answer_type,
        question=task.question,
        ground_truths=list(task.ground_truths),
        prompt=tokenizer.decode(trajectory.token_ids[: trajectory.prompt_length], skip_special_tokens=False),
        response=response,
        tool_calls=[asdict(call) for call in trajectory.tool_calls],
        finish_reason=trajectory.finish_reason.value if trajectory.finish_reason else "length",
        answer=result.answer,
        format_ok=result.format_ok,
        format_error=result.format_error,
        score=result.correctness,
        correct=result.correctness >= correct_threshold,
        reward=result.total,
        tokens=TokenCounts(
            prompt=by_role[Role.PROMPT],
            response=trajectory.response_length,
            model=by_role[Role.MODEL],
            tool=by_role[Role.TOOL],
        ),
        prompt_messages=task.chat(),
        segments=[
            {"role": node.role.value, "text": tokenizer.decode(node.token_ids, skip_special_tokens=True)}
            for node in trajectory.nodes[1:]
        ],
    )
