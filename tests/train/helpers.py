"""Small tasks and a reward with signal for training tests on the random tiny model."""

from __future__ import annotations

from arpo.core.rewards import RewardInput, RewardResult
from arpo.tasks.record import ChatMessage, Task


def arithmetic_tasks(n: int = 6) -> list[Task]:
    return [
        Task(str(i), (ChatMessage("user", f"what is {i}+{i}?"),), (str(2 * i),), "number", "test")
        for i in range(n)
    ]


def count_ones(sample: RewardInput) -> RewardResult:
    """A dense reward (share of '1' characters) so even a random policy's groups have variance."""
    value = sample.response.count("1") / max(1, len(sample.response))
    return RewardResult(
        total=value, format_ok=True, format_error=None, correctness=value, bonus=0.0, answer=None
    )
