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
    """:data:`SHOWN`'s metrics, then each validation set's accuracy (``val <name> 0.42``)."""
    shown = [(label, metrics[key]) for key, label in SHOWN.items() if metrics.get(key) is not None]
    shown += [
        (f"val {key.split('/')[1]}", value)
        for key, value in metrics.items()
        if key.startswith("val/") and key.endswith("/accuracy") and value is not None
    ]
    return "  ".join(f"{label} {value:.3g}" for label, value in shown)
