"""Why a training run stopped before its last step, and the exit status ``arpo sft`` / ``arpo train`` give.

Every reason is a :class:`RunStopped` whose message says what happened, where (step, file) and
what is left on disk; the command line prints it and exits with the reason's ``exit_status``
(docs/reliability.md):

* 3 — a fault stopped the run: non-finite numbers (:class:`NonFiniteError`), a checkpoint that
  could not be written (:class:`CheckpointWriteError`), no intact checkpoint to resume from
  (:class:`CorruptCheckpointError`);
* 143 (128 + SIGTERM, what a shell reports for a process a SIGTERM ended) — the run was asked to
  stop and wrote a checkpoint first (:class:`Preempted`); ``--resume`` continues it exactly.
"""

from __future__ import annotations

import signal


class RunStopped(RuntimeError):
    """A training run stopped early; ``exit_status`` is the command's exit status."""

    exit_status = 3


class NonFiniteError(RunStopped):
    """Non-finite numbers: too many optimizer updates in a row, or weights about to be saved."""


class CheckpointWriteError(RunStopped):
    """A checkpoint could not be written (the previous ones are intact)."""


class CorruptCheckpointError(RunStopped):
    """A run folder has checkpoints but none of them is intact."""


class Preempted(RunStopped):
    """SIGTERM asked the run to stop; it wrote a checkpoint of the step it had finished."""

    exit_status = 128 + signal.SIGTERM
