"""``arpo rollout``: sample ARPO trees for a few prompts and write them as JSON for inspection.

The output file holds the resolved config, the batch statistics of
:func:`arpo.core.tree_stats.summarize_trees` plus prefill/decode token counts, and every tree
(:meth:`arpo.core.tree.RolloutTree.to_dict` with each node's decoded text). It is written
atomically, so an interrupted run never leaves a partial file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from arpo.engines.factory import build_generator
from arpo.io import atomic_write_json
from arpo.models.loading import PolicyConfig, load_policy
from arpo.rollout import ArpoRollout, RolloutConfig, TokenCodec
from arpo.tools import Calculator, ToolBox

DEFAULT_PROMPTS = [
    "what is 1234*5678?",
    "compute (17+25)*3.",
    "what is 2 to the power 20?",
    "add 999 and 12345.",
]


class RolloutJobConfig(BaseModel):
    """Sample ARPO trees for a few prompts with the ``calc`` tool and write them as JSON."""

    model_config = ConfigDict(extra="forbid")

    model: PolicyConfig = Field(
        default_factory=PolicyConfig, description="The policy (see arpo.models.loading)."
    )
    prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS),
        min_length=1,
        description="User messages, one tree each.",
    )
    system_prompt: str | None = Field(None, description="Optional system message before each prompt.")
    seed: int = Field(0, description="Seeds sampling and branching.")
    rollout: RolloutConfig = Field(
        default_factory=lambda: RolloutConfig.model_validate(
            {
                "branching": {"rollouts_per_prompt": 8, "initial_rollouts": 4, "entropy_window": 8},
                "max_response_tokens": 96,
            }
        )
    )


def run_rollout_job(config: RolloutJobConfig, out: Path, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    model, tokenizer = load_policy(config.model)
    generator = build_generator(config.rollout.engine, model, tokenizer, config.rollout.vllm)
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    with ToolBox([Calculator()]) as tools, console.status("sampling rollout trees") as status:
        rollout = ArpoRollout(generator, tokenizer, tools, config.rollout)
        prompts = [rollout.prompt_ids([*system, {"role": "user", "content": p}]) for p in config.prompts]
        batch = rollout.run(
            prompts,
            seed=config.seed,
            metas=[{"index": i, "prompt": p} for i, p in enumerate(config.prompts)],
            on_progress=lambda r, n: status.update(f"round {r}: {n} running paths"),
        )
    decode = TokenCodec(tokenizer).decode
    atomic_write_json(
        out,
        {
            "config": config.model_dump(mode="json"),
            "stats": batch.stats,
            "trees": [tree.to_dict(decode) for tree in batch.trees],
        },
    )
    return batch.stats
