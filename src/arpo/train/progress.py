"""A progress bar for training loops with the key numbers of the last step."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

SHOWN = {
    "reward/mean": "reward",
    "reward/accuracy": "acc",
    "rollout/tool_calls_per_trajectory": "tools",
    "rollout/branches_per_prompt": "branches",
    "loss/sft": "loss",
    "time/step_s": "s/step",
}


def describe(metrics: dict[str, Any]) -> str:
    return "  ".join(
        f"{label} {metrics[key]:.3g}" for key, label in SHOWN.items() if metrics.get(key) is not None
    )


class StepProgress:
    """``with StepProgress(total, start) as bar: bar.update(step, metrics)``; silent when disabled."""

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True, label: str = "train") -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("", total=total, completed=start)

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        self._progress.update(self._task, completed=step, description=describe(metrics))

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
