"""ARPO tree sampling inside TRL's ``GRPOTrainer``: ``rollout_func=ArpoRolloutFunc(tools, ...)``.

TRL (``pip install 'arpo[trl]'``, tested with 1.16) lets a ``GRPOTrainer`` take its completions
from a ``rollout_func(prompts, trainer) -> dict``. :class:`ArpoRolloutFunc` is one: for each group
of ``num_generations`` copies of a prompt that TRL's sampler hands this process, it grows one
ARPO tree with M = ``num_generations`` leaves — our generator, tools, tool format and
entropy-gated branching (:class:`arpo.rollout.ArpoRollout`) — and returns its trajectories in
TRL's fields:

* ``prompt_ids``: the prompt rendered as the rollout renders it (the chat template, with the
  tools' schemas for ``tool_format: chat_template``; plain text prompts encoded as they are);
* ``completion_ids``: everything after the prompt, model and tool tokens;
* ``logprobs``: the sampling log-probs of the model tokens (0 on tool tokens);
* ``env_mask``: 1 on model tokens, 0 on tool tokens, which TRL multiplies into its loss mask;
* ``tool_calls`` (the tags each trajectory called) and ``arpo_origin`` (``initial``, ``branch``
  or ``fill``), which TRL passes to the reward functions as keyword arguments with the dataset's
  columns.

The rollout's temperature and response budget are the trainer's (``temperature``,
``max_completion_length``), so TRL's log-probs score the distribution that was sampled.

What TRL does with the trees — it sees trajectories, not trees: its learner forwards every
trajectory in full, so a prefix shared by k leaves is computed k times in training (``arpo
train`` packs each tree so a shared token is computed once, docs/efficiency.md); and its
advantages are per trajectory (GRPO's group normalisation over the M leaves of a tree), every
token of a trajectory carrying it. A shared token therefore gets the sum of its trajectories'
advantages, the gradient ARPO's soft attribution gives (``advantage.attribution: soft``, our
default); hard attribution, REINFORCE++ token whitening, dynamic sampling on correctness and
AEPO's options are not available there. Sampling keeps all of ARPO's savings: shared prefixes
are decoded once and shared tool calls run once.

Constraints, checked on every call: TRL must hand this process whole groups — M consecutive
copies of each prompt — which it does on one process; on several, TRL splits a prompt's copies
across processes, so a tree cannot be grown: use ``arpo train`` for data parallelism
(docs/distributed.md). ``initial_rollouts`` (N) must be at most M.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from arpo.core.tree import RolloutTree
from arpo.engines.factory import build_generator
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tools import ToolBox


def group_size(trainer: Any) -> int:
    """Completions per prompt: ``num_generations`` in training, ``num_generations_eval`` in evaluation."""
    training = getattr(getattr(trainer, "model", None), "training", True)
    evaluation = getattr(trainer, "num_generations_eval", None)
    return trainer.num_generations if training or evaluation is None else evaluation


class ArpoRolloutFunc:
    """A ``GRPOTrainer`` ``rollout_func`` that samples ARPO trees (module docstring)."""

    def __init__(
        self, tools: ToolBox, rollout: RolloutConfig | Mapping[str, Any] | None = None, *, seed: int = 0
    ) -> None:
        self.tools = tools
        self.config = (
            rollout if isinstance(rollout, RolloutConfig) else RolloutConfig.model_validate(rollout or {})
        )
        self.seed = seed
        self.calls = 0
        self.last_trees: list[RolloutTree] = []
        """The trees of the latest call (for inspection and logging)."""
        self._rollout: ArpoRollout | None = None
        self._key: tuple[int, int, str] | None = None

    def rollout_for(self, trainer: Any) -> ArpoRollout:
        """The rollout for the trainer's current model, tokenizer and settings (built once)."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        m = group_size(trainer)
        branching = self.config.branching
        if branching.initial_rollouts > m:
            raise ValueError(
                f"rollout.branching.initial_rollouts ({branching.initial_rollouts}) exceeds the trainer's "
                f"num_generations ({m}), the leaves of each tree"
            )
        config = self.config.model_copy(
            update={
                "temperature": trainer.temperature,
                "max_response_tokens": trainer.max_completion_length,
                "branching": branching.model_copy(update={"rollouts_per_prompt": m}),
            }
        )
        key = (id(model), id(tokenizer), config.model_dump_json())
        if self._rollout is None or key != self._key:
            generator = build_generator(config.engine, model, tokenizer, config.vllm)
            self._rollout, self._key = ArpoRollout(generator, tokenizer, self.tools, config), key
        else:
            self._rollout.generator.update_weights(model)
        return self._rollout

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        m = group_size(trainer)
        groups = [prompts[i : i + m] for i in range(0, len(prompts), m)]
        if len(prompts) % m or any(any(p != group[0] for p in group) for group in groups):
            raise ValueError(
                f"ArpoRolloutFunc grows one tree per prompt from its {m} consecutive copies (num_generations), but "
                f"this process got {len(prompts)} prompts not in such groups: TRL splits groups across processes; "
                "run TRL on one process, or use arpo train"
            )
        rollout = self.rollout_for(trainer)
        tokenizer = rollout.codec.tokenizer
        prompt_ids = [
            rollout.prompt_ids(list(g[0]))
            if not isinstance(g[0], str)
            else tokenizer.encode(g[0], add_special_tokens=False)
            for g in groups
        ]
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
        with torch.no_grad():
            batch = rollout.run(prompt_ids, seed=(self.seed * 1_000_003 + self.calls) * world + rank)
        rollout.generator.sleep()
        model.train(was_training)
        self.calls += 1
        self.last_trees = batch.trees
        out: dict[str, list[Any]] = {
            "prompt_ids": [],
            "completion_ids": [],
            "logprobs": [],
            "env_mask": [],
            "tool_calls": [],
            "arpo_origin": [],
        }
        for ids, tree in zip(prompt_ids, batch.trees, strict=True):
            for trajectory in tree.trajectories():
                start = trajectory.prompt_length
                out["prompt_ids"].append(list(ids))
                out["completion_ids"].append(trajectory.token_ids[start:])
                out["logprobs"].append(trajectory.sampled_logprobs[start:])
                out["env_mask"].append(trajectory.loss_mask[start:])
                out["tool_calls"].append([call.tag for call in trajectory.tool_calls])
                origin = trajectory.origin
                out["arpo_origin"].append(origin.value if origin is not None else "initial")
        return out
