"""The key numbers of a training step, as the text after its progress bar (:mod:`arpo.progress`)."""

from __future__ import annotations

from typing import Any

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
