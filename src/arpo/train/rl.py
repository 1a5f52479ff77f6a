"""The RL trainer: ARPO (or GRPO) rollouts → rewards → advantages → clipped policy-gradient updates.

One training step (arXiv 2507.19849 §3; ARPO_REFERENCE.md §2 for the authors' settings):

1. take ``prompts_per_step`` tasks (a seeded permutation per epoch) and render their prompts;
2. grow one rollout tree per prompt with the generator (:mod:`arpo.rollout`), seeded per step;
3. score every trajectory with the reward function (plus DAPO's overlong penalty if set) and
   compute advantages per group (tree), dropping zero-variance groups with dynamic sampling;
4. attribute them to tokens (``soft`` / ``hard``) and lay trajectories out as padded rows;
5. recompute the old log-probs with the learner (no gradient), and the reference log-probs when
   a KL term is used;
6. for ``ppo_epochs`` passes over mini-batches of ``mini_batch_prompts`` trees (shuffled per
   step): the clipped loss of :mod:`arpo.core.loss` with the mini-batch's aggregation scale,
   accumulated over micro-batches of ``micro_batch_size`` rows, gradient clipping, one optimizer
   step;
7. step the LR schedule (once per training step), log metrics, checkpoint every ``save_every``.

The generator samples with the learner's own module (the unwrapped model), so every rollout
sees the latest weights; its KV caches live only for one rollout call, so nothing stale survives
an update. Placement and mixed precision come from ``accelerate``.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from arpo.core.advantage import AdvantageConfig, attribute, group_advantages, has_signal, overlong_penalty
from arpo.core.loss import PolicyLossConfig, policy_loss, token_scale
from arpo.core.rewards import RewardInput, RewardResult
from arpo.core.tree import RolloutTree
from arpo.engines.hf import HFGenerator
from arpo.rollout import ArpoRollout, RolloutConfig, render_prompt
from arpo.tasks.record import Task
from arpo.tools import ToolBox, ToolStatus
from arpo.train.batching import LearnerRow, PaddedBatch, micro_batches, pad_rows
from arpo.train.logprobs import token_logprobs
from arpo.train.loop import LoopConfig, TrainLoop

RewardFn = Callable[[RewardInput], RewardResult]


class RLConfig(LoopConfig):
    """An RL run, except where the model, data and tools come from."""

    steps: int = Field(100, ge=1, description="Training steps (rollout batches).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts (trees) sampled per step.")
    mini_batch_prompts: int | None = Field(
        None, ge=1, description="Trees per optimizer step; null = all (one optimizer step per epoch)."
    )
    ppo_epochs: int = Field(1, ge=1, description="Passes over each rollout batch.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig)
    loss: PolicyLossConfig = Field(default_factory=PolicyLossConfig)


@dataclass
class _Scored:
    rows: list[LearnerRow]
    metrics: dict[str, float]


class RLTrainer(TrainLoop):
    """Runs :class:`RLConfig` on a policy, tasks, tools and a reward function, in ``run_dir``."""

    label = "rl"

    def __init__(
        self,
        config: RLConfig,
        model: torch.nn.Module,
        tokenizer: Any,
        tasks: Sequence[Task],
        tools: ToolBox,
        reward_fn: RewardFn,
        run_dir: Path,
        *,
        reference: torch.nn.Module | None = None,
    ) -> None:
        if config.loss.kl_coef > 0 and reference is None:
            raise ValueError("loss.kl_coef > 0 needs a reference model")
        super().__init__(config, model, tokenizer, run_dir, len(tasks))
        self.config = config
        self.tasks = list(tasks)
        self.reward_fn = reward_fn
        self.reference = reference.to(self.accelerator.device).eval() if reference is not None else None
        self.rollout = ArpoRollout(HFGenerator(self.policy, tokenizer), tokenizer, tools, config.rollout)

    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        tasks = [self.tasks[i] for i in self.sampler.take(cfg.prompts_per_step)]
        prompts = [render_prompt(self.tokenizer, task.chat()) for task in tasks]
        self.model.eval()
        batch = self.rollout.run(
            prompts,
            seed=cfg.seed * 1_000_003 + self.step,
            metas=[{"task": t.id, "source": t.source} for t in tasks],
        )
        rollout_time = time.perf_counter() - started
        scored = self._score(batch.trees, tasks)
        update = self._update(scored.rows) if scored.rows else {}
        stats = {k: v for k, v in batch.stats.items() if isinstance(v, int | float) and v is not None}
        return {
            **scored.metrics,
            **update,
            **{f"rollout/{k}": v for k, v in stats.items()},
            "time/rollout_s": rollout_time,
            "time/step_s": time.perf_counter() - started,
        }

    # ----- rewards and advantages -----------------------------------------------------------------
    def _score(self, trees: list[RolloutTree], tasks: list[Task]) -> _Scored:
        cfg = self.config.advantage
        groups: list[list[float]] = []
        results: list[RewardResult] = []
        for tree, task in zip(trees, tasks, strict=True):
            rewards = []
            for traj in tree.trajectories():
                response = self.tokenizer.decode(
                    traj.token_ids[traj.prompt_length :], skip_special_tokens=True
                )
                used = [c.tag for c in traj.tool_calls if c.status != ToolStatus.LIMIT.value]
                finish = traj.finish_reason.value if traj.finish_reason else "length"
                result = self.reward_fn(task.reward_input(response, used, finish))
                results.append(result)
                bonus = overlong_penalty(traj.response_length, cfg.overlong) if cfg.overlong else 0.0
                rewards.append(result.total + bonus)
            groups.append(rewards)
        kept = [i for i, g in enumerate(groups) if not cfg.dynamic_sampling or has_signal(g)]
        advantages = group_advantages([groups[i] for i in kept], cfg)
        rows = []
        for g, adv in zip(kept, advantages, strict=True):
            tree = trees[g]
            for traj, tokens in zip(tree.trajectories(), attribute(tree, adv, cfg.attribution), strict=True):
                rows.append(LearnerRow(traj.token_ids, tokens.weights, tokens.advantages, group=g))
        flat = [r for g in groups for r in g]
        metrics = {
            "reward/mean": statistics.fmean(flat),
            "reward/std": statistics.pstdev(flat),
            "reward/accuracy": statistics.fmean(r.correctness for r in results),
            "reward/format_ok": statistics.fmean(float(r.format_ok) for r in results),
            "reward/groups_kept": float(len(kept)),
        }
        return _Scored(rows, metrics)

    # ----- the update ----------------------------------------------------------------------------
    @torch.no_grad()
    def _logprobs(self, model: torch.nn.Module, batch: PaddedBatch) -> torch.Tensor:
        out = []
        for micro in micro_batches(len(batch), self.config.micro_batch_size):
            part = batch.rows(micro)
            with self.accelerator.autocast():
                out.append(token_logprobs(model, part.input_ids, part.attention_mask)[0].float())
        return torch.cat(out)

    def _update(self, rows: list[LearnerRow]) -> dict[str, float]:
        cfg = self.config
        device = self.accelerator.device
        groups = sorted({r.group for r in rows})
        by_group = {g: [r for r in rows if r.group == g] for g in groups}
        old = {g: self._logprobs(self.model, pad_rows(by_group[g], self.pad_id, device)) for g in groups}
        ref = (
            {g: self._logprobs(self.reference, pad_rows(by_group[g], self.pad_id, device)) for g in groups}
            if self.reference is not None
            else None
        )
        self.model.train()
        order_rng = random.Random(cfg.seed * 7_919 + self.step)
        size = cfg.mini_batch_prompts or len(groups)
        sums: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            shuffled = list(groups)
            order_rng.shuffle(shuffled)
            for start in range(0, len(shuffled), size):
                chosen = shuffled[start : start + size]
                for key, value in self._optimizer_step(chosen, by_group, old, ref).items():
                    sums.setdefault(key, []).append(value)
        return {key: statistics.fmean(values) for key, values in sums.items()}

    def _optimizer_step(
        self,
        chosen: list[int],
        by_group: dict[int, list[LearnerRow]],
        old: dict[int, torch.Tensor],
        ref: dict[int, torch.Tensor] | None,
    ) -> dict[str, float]:
        cfg, device = self.config, self.accelerator.device
        rows = [r for g in chosen for r in by_group[g]]
        batch = pad_rows(rows, self.pad_id, device)
        width = batch.input_ids.shape[1]
        old_lp = _stack_padded([old[g] for g in chosen], width)
        ref_lp = _stack_padded([ref[g] for g in chosen], width) if ref is not None else None
        scale = token_scale(batch.weights, cfg.loss.aggregation)
        totals = {"loss/policy": 0.0, "loss/clip_fraction": 0.0, "loss/kl": 0.0, "loss/entropy": 0.0}
        slices = list(micro_batches(len(batch), cfg.micro_batch_size))
        for i, micro in enumerate(slices):
            part = batch.rows(micro)
            with self.micro_step(last=i == len(slices) - 1), self.accelerator.autocast():
                logprobs, entropies = token_logprobs(
                    self.model, part.input_ids, part.attention_mask, with_entropy=cfg.loss.entropy_coef > 0
                )
                parts = policy_loss(
                    logprobs.float(),
                    old_lp[micro],
                    part.advantages,
                    scale[micro],
                    cfg.loss,
                    ref_logprobs=ref_lp[micro] if ref_lp is not None else None,
                    entropies=entropies,
                )
                self.accelerator.backward(parts.loss)
            totals["loss/policy"] += parts.pg_loss.item()
            totals["loss/clip_fraction"] += parts.clip_fraction.item()
            totals["loss/kl"] += parts.kl.item() if parts.kl is not None else 0.0
            totals["loss/entropy"] += parts.entropy.item() if parts.entropy is not None else 0.0
        if cfg.optim.grad_clip is not None:
            norm = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        else:
            norm = torch.norm(
                torch.stack([p.grad.norm() for p in self.model.parameters() if p.grad is not None])
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] = float(norm)
        return totals


def _stack_padded(parts: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])
