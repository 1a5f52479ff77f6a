"""Progress of long work (training steps, evaluation batches, tool calls), on stderr.

On a terminal it is a live rich bar. When stderr is not a terminal (a log file, ``nohup``, CI) a
live bar shows nothing until the end, so the same object prints a plain line instead — at the
first update, then at most every ``interval_s`` seconds, and at the end:

    sft 12/40 0:02:10 loss 0.031  s/step 10.8

One class for every long loop, so they all report alike.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressBar:
    """``with ProgressBar("eval", total) as bar: bar.advance(n)`` (or ``bar.update(done, text)``).

    ``enabled=False`` (other processes of a distributed run, a quiet console) prints nothing;
    ``show_remaining`` adds rich's time-remaining estimate to the live bar.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        completed: int = 0,
        console: Console | None = None,
        enabled: bool = True,
        show_remaining: bool = False,
        interval_s: float = 30.0,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.label, self.total, self.completed = label, total, completed
        self.enabled = enabled and not self.console.quiet
        self.live = self.console.is_terminal
        self.interval_s = interval_s
        self._description = ""
        self._started = time.monotonic()
        self._printed_at: float | None = None
        self._printed_completed: int | None = None
        columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if show_remaining:
            columns.append(TimeRemainingColumn())
        columns.append(TextColumn("{task.description}"))
        self._bar = Progress(*columns, console=self.console, disable=not (self.enabled and self.live))
        self._task = self._bar.add_task("", total=total, completed=completed)

    def __enter__(self) -> ProgressBar:
        self._started = time.monotonic()
        self._bar.start()
        return self

    def update(self, completed: int, description: str | None = None) -> None:
        """Set the number of finished units (and the text after the bar)."""
        self.completed = completed
        if description is not None:
            self._description = description
        self._bar.update(self._task, completed=completed, description=self._description)
        now = time.monotonic()
        if self._printed_at is None or now - self._printed_at >= self.interval_s:
            self._print_line(now)

    def advance(self, units: int = 1, description: str | None = None) -> None:
        self.update(self.completed + units, description)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
        if self._printed_completed != self.completed:
            self._print_line(time.monotonic())

    def _print_line(self, now: float) -> None:
        self._printed_at, self._printed_completed = now, self.completed
        if self.enabled and not self.live:
            elapsed = timedelta(seconds=round(now - self._started))
            line = f"{self.label} {self.completed}/{self.total} {elapsed} {self._description}".rstrip()
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
