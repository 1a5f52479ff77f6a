"""Step metrics to a JSONL file, to TensorBoard, and to Weights & Biases when configured.

``metrics.jsonl`` gets one JSON object per step (``{"step": …, …}``), flushed as it is written.
Every line is valid JSON: a NaN or infinite value is written as ``null`` and named, with its
kind, under ``"nonfinite"`` (``{"loss/sft": "nan", "grad_norm": "inf"}``; the key is absent when
every value is finite), so readers never have to parse ``NaN``; TensorBoard and W&B get the
non-finite values as they are. On resume, lines of steps after the checkpoint (written before the kill, not covered by the
checkpoint) and a trailing partial line are dropped, so the file always matches the run's state.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arpo.io import atomic_write_text


class LoggingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tensorboard: bool = Field(True, description="Write TensorBoard event files to <run_dir>/tensorboard.")
    wandb_project: str | None = Field(None, description="Log to this Weights & Biases project (needs wandb).")
    wandb_run_name: str | None = Field(None, description="W&B run name (default: the run folder's name).")


NONFINITE_KEY = "nonfinite"


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def json_record(step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """The line written for ``step``: non-finite floats as None, named under :data:`NONFINITE_KEY`."""
    nonfinite = {k: str(v) for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    record = {"step": step, **{k: None if k in nonfinite else v for k, v in metrics.items()}}
    return {**record, NONFINITE_KEY: nonfinite} if nonfinite else record


class MetricsLogger:
    def __init__(self, run_dir: Path, config: LoggingConfig, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step or 0)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._tb = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self._wandb = None
        if config.wandb_project:
            try:
                import wandb
            except ImportError:
                raise ImportError(
                    "logging.wandb_project is set but wandb is not installed: pip install wandb"
                ) from None
            self._wandb = wandb.init(
                project=config.wandb_project, name=config.wandb_run_name or Path(run_dir).name, resume="allow"
            )

    def _truncate(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a partial last line from a kill
            if step > 0 and record.get("step", 0) <= step:  # a fresh run (step 0) keeps nothing
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self._file.write(json.dumps(json_record(step, metrics), allow_nan=False) + "\n")
        self._file.flush()
        scalars = _scalars(metrics)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The lines of ``metrics.jsonl`` as written (non-finite values are None, see the module docstring)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
