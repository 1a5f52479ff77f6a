"""The RL trainer: ARPO (or GRPO) rollouts → rewards → advantages → clipped policy-gradient updates.

One training step (arXiv 2507.19849 §3; ARPO_REFERENCE.md §2 for the authors' settings):

1. take ``prompts_per_step`` tasks (a seeded permutation per epoch) and render their prompts;
2. grow one rollout tree per prompt with the generator (:mod:`arpo.rollout`), seeded per step;
3. score every trajectory with the reward function (plus DAPO's overlong penalty if set) and
   compute advantages per group (tree), dropping groups whose correctness does not vary with
   dynamic sampling;
4. attribute them to tokens (``soft`` / ``hard``; REINFORCE++ whitens them over the batch's
   tokens; AEPO's entropy-aware advantage, if on, then scales each by its token's sampling-entropy
   z-score over the batch) and lay trajectories out as the learner's rows;
5. recompute the old log-probs with the learner (no gradient) — unless the batch makes exactly
   one optimizer step (one epoch, one mini-batch), where π_old = π_θ and the old log-probs are
   the current ones, detached (as verl does) —, and the reference log-probs when a KL term is
   used;
6. for ``ppo_epochs`` passes over mini-batches of ``mini_batch_prompts`` trees (shuffled per
   step): the clipped loss of :mod:`arpo.core.loss` (PPO's or AEPO's entropy-balanced clip
   gradient) with the mini-batch's aggregation scale, accumulated over micro-batches of
   ``micro_batch_size`` rows, gradient clipping, one optimizer step;
7. step the LR schedule (once per training step), log metrics, checkpoint every ``save_every``.

Budgets: each step logs what it spent (``rollout/tool_calls_executed``, ``rollout/engine_tokens``,
``rollout/tokens_flat``, ``train/tokens_forwarded``, ``time/step_s``) and the run's totals so far
(``budget/*_total``, ``time/wall_s_total``; :mod:`arpo.train.budget`), which the checkpoint keeps.

Accuracy is logged twice: ``reward/accuracy`` over every leaf of the step's trees, and
``reward/accuracy_initial`` over the N initial samples only. The initial samples are drawn from
the policy independently, so their accuracy estimates the policy's own; ARPO's branches fork
after tool results, so the all-leaf accuracy over-weights tool-using prefixes (with GRPO, N = M,
the two are equal). Whether ARPO's branches explore is logged as ``reward/branch_same_outcome``
(share of branches that end as right or wrong as the path they forked from) beside
``reward/initial_same_outcome`` (the same share for pairs of initial samples of a prompt;
:func:`arpo.core.tree_stats.outcome_agreement`): branches that replay their parents agree more
often than independent samples do. Both follow that step's prompts; ``validation`` (:mod:`arpo.train.validation`)
samples fixed task sets at step 0, every few steps and at the end, logged as ``val/*``.

Tool faults do not stop a step: every call returns a result (:class:`arpo.tools.ToolBox`), and
the step's tool calls are counted by status in ``rollout/tool_ok``, ``rollout/tool_error``,
``rollout/tool_timeout`` and ``rollout/tool_limit`` (each call of a tree once).

Every log-prob the learner takes is of the sampled policy softmax(z[:|V|]/T), with the rollout's
temperature T and the tokenizer's vocabulary |V| (:mod:`arpo.core.logits`), so the ratio, KL and
entropy refer to the distribution the trajectories were drawn from.

The ``hf`` generator samples with the learner's own module (the unwrapped model; under
``train.fsdp`` its full copy, refreshed after each optimizer phase), so every rollout sees the
latest weights; its KV caches live only for one rollout call, so nothing stale survives an update. The ``vllm`` generator holds its own copy: it is told to sleep after the
rollout and gets the new weights (its prefix cache reset) after each step's optimizer phase.
Placement and mixed precision come from ``accelerate``.
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
from pydantic import Field, model_validator

from arpo.core.advantage import (
    AdvantageConfig,
    TokenAdvantages,
    attribute,
    entropy_balance,
    entropy_moments,
    group_advantages,
    has_signal,
    overlong_penalty,
    token_moments,
    trajectory_entropies,
    whiten_tokens,
)
from arpo.core.logits import PolicyView, tokenizer_vocab_size
from arpo.core.loss import PolicyLossConfig, policy_loss
from arpo.core.rewards import RewardInput, RewardResult
from arpo.core.tree import Origin, RolloutTree
from arpo.core.tree_stats import outcome_agreement
from arpo.engines.factory import build_generator
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.record import Task
from arpo.tools import ToolBox, ToolStatus
from arpo.train.batching import LearnerRow
from arpo.train.budget import RunBudget
from arpo.train.layout import MiniBatch, Packing
from arpo.train.loop import LoopConfig, TrainLoop
from arpo.train.validation import Validator

RewardFn = Callable[[RewardInput], RewardResult]


class RLConfig(LoopConfig):
    """An RL run, except where the model, data and tools come from."""

    steps: int = Field(100, ge=1, description="Training steps (rollout batches).")
    prompts_per_step: int = Field(8, ge=1, description="Prompts (trees) sampled per step.")
    mini_batch_prompts: int | None = Field(
        None, ge=1, description="Trees per optimizer step; null = all (one optimizer step per epoch)."
    )
    ppo_epochs: int = Field(1, ge=1, description="Passes over each rollout batch.")
    packing: Packing = Field(
        "auto",
        description="auto: per mini-batch the layout a cost model of the policy predicts is fastest (prefix not "
        "with train.fsdp); tree: each shared token computed once (exact; attention runs over whole packed rows); "
        "prefix: each tree's prompt computed once, each trajectory's response a row attending to its cached keys "
        "and values (not with train.fsdp); flat: one row per trajectory.",
    )
    pack_tokens: int = Field(4096, ge=1, description="Unique tokens per packed row (trees are never split).")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig)
    loss: PolicyLossConfig = Field(default_factory=PolicyLossConfig)

    @model_validator(mode="after")
    def _samples_a_policy(self) -> RLConfig:
        if self.rollout.temperature <= 0:
            raise ValueError(
                "rollout.temperature must be > 0 for training: greedy rollouts give a group of identical "
                "trajectories (no advantage) and no sampled policy for the learner to score"
            )
        return self

    def single_update(self) -> bool:
        """Whether each rollout batch makes exactly one optimizer step (then π_old = π_θ)."""
        return (
            self.ppo_epochs == 1
            and (self.mini_batch_prompts or self.prompts_per_step) >= self.prompts_per_step
        )


@dataclass
class _Scored:
    trees: dict[int, RolloutTree]
    """Kept groups' trees, by group index."""
    rows: list[LearnerRow]
    rows_by_group: dict[int, list[int]]
    metrics: dict[str, float]


class RLTrainer(TrainLoop):
    """Runs :class:`RLConfig` on a policy, tasks, tools and a reward function, in ``run_dir``."""

    label = "rl"
    samples_from_policy = True

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
        validator: Validator | None = None,
    ) -> None:
        if config.loss.kl_coef > 0 and reference is None:
            raise ValueError("loss.kl_coef > 0 needs a reference model")
        super().__init__(config, model, tokenizer, run_dir, len(tasks))
        self.check_divisible("train.prompts_per_step", config.prompts_per_step)
        self.check_divisible("train.mini_batch_prompts", config.mini_batch_prompts or config.prompts_per_step)
        self.config = config
        self.tasks = list(tasks)
        self.reward_fn = reward_fn
        self.reference = reference.to(self.accelerator.device).eval() if reference is not None else None
        generator = build_generator(
            config.rollout.engine, self.sampling_policy, tokenizer, config.rollout.vllm
        )
        self.rollout = ArpoRollout(generator, tokenizer, tools, config.rollout)
        output_rows = int(self.sampling_policy.get_output_embeddings().weight.shape[0])
        self.view = PolicyView(config.rollout.temperature, tokenizer_vocab_size(tokenizer, output_rows))
        """The sampled policy the learner scores (temperature, vocabulary)."""
        self.packing: Packing = self.resolve_packing(config.packing)
        self.budget = RunBudget()
        """The run's cumulative budgets (restored on resume)."""
        self.validator = validator

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "budget": self.budget.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.budget.load_state_dict(state.get("budget", {}))  # absent in checkpoints written before budgets

    def train_step(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        tasks = self.shard([self.tasks[i] for i in self.sampler.take(cfg.prompts_per_step)])
        prompts = [self.rollout.prompt_ids(task.chat()) for task in tasks]
        self.model.eval()
        batch = self.rollout.run(
            prompts,
            seed=cfg.seed * 1_000_003 + self.step * self.world + self.rank,
            metas=[{"task": t.id, "source": t.source} for t in tasks],
        )
        self.rollout.generator.sleep()
        rollout_time = time.perf_counter() - started
        scored = self._score(batch.trees, tasks)
        update = self._update(scored)
        self.refresh_sampling_policy()
        self.rollout.generator.update_weights(self.sampling_policy)
        stats = {k: v for k, v in batch.stats.items() if isinstance(v, int | float) and v is not None}
        statuses = batch.stats["tool_status"]
        stats.update({f"tool_{s.value}": float(statuses.get(s.value, 0)) for s in ToolStatus})
        metrics = {
            **scored.metrics,
            **update,
            **{f"rollout/{k}": v for k, v in stats.items()},
            "time/rollout_s": rollout_time,
            "time/step_s": time.perf_counter() - started,
        }
        metrics.update(self.budget.add(metrics, self.all_sum, self.world))
        if self.validator is not None and self.validator.due(self.step + 1, cfg.steps):
            metrics.update(self.validate())
        return metrics

    def initial_metrics(self) -> dict[str, Any]:
        """The starting policy's validation metrics (step 0), with the budgets spent so far (0),
        so that the validation curves against the budgets start at the origin."""
        return {**self.budget.totals, **self.validate()} if self.validator is not None else {}

    def validate(self) -> dict[str, float]:
        """The ``val/*`` metrics of the current weights (:mod:`arpo.train.validation`)."""
        assert self.validator is not None
        self.model.eval()
        return self.validator.run(self.rollout.generator, self.shard, self.all_sum, self.rank)

    # ----- rewards and advantages -----------------------------------------------------------------
    def _score(self, trees: list[RolloutTree], tasks: list[Task]) -> _Scored:
        cfg = self.config.advantage
        groups: list[list[float]] = []
        correctness: list[list[float]] = []
        results: list[RewardResult] = []
        for tree, task in zip(trees, tasks, strict=True):
            rewards = []
            start = len(results)
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
            correctness.append([r.correctness for r in results[start:]])
        kept = [i for i, c in enumerate(correctness) if not cfg.dynamic_sampling or has_signal(c)]
        advantages = group_advantages([groups[i] for i in kept], cfg)
        attributed: list[tuple[int, list[TokenAdvantages]]] = [
            (g, attribute(trees[g], adv, cfg.attribution)) for g, adv in zip(kept, advantages, strict=True)
        ]
        if cfg.estimator == "reinforce_pp":  # whitened over the tokens of every process's batch
            moments = self.all_sum(*token_moments([t for _, group in attributed for t in group]))
            attributed = [(g, whiten_tokens(group, moments, cfg.eps)) for g, group in attributed]
        if cfg.entropy_weight > 0:  # AEPO: z-scored over the tokens of every process's batch
            entropies = {g: trajectory_entropies(trees[g]) for g, _ in attributed}
            moments = self.all_sum(
                *entropy_moments(
                    [t for _, group in attributed for t in group],
                    [h for g, _ in attributed for h in entropies[g]],
                )
            )
            attributed = [
                (g, entropy_balance(group, entropies[g], moments, cfg.entropy_weight, cfg.eps))
                for g, group in attributed
            ]
        rows: list[LearnerRow] = []
        rows_by_group: dict[int, list[int]] = {}
        for g, tokens_by_trajectory in attributed:
            for traj, tokens in zip(trees[g].trajectories(), tokens_by_trajectory, strict=True):
                rows_by_group.setdefault(g, []).append(len(rows))
                rows.append(LearnerRow(traj.token_ids, tokens.weights, tokens.advantages, group=g))
        flat = [r for g in groups for r in g]
        initial = [
            result.correctness
            for result, traj in zip(results, (t for tree in trees for t in tree.trajectories()), strict=True)
            if traj.origin is Origin.INITIAL
        ]
        agreement = [outcome_agreement(tree, c) for tree, c in zip(trees, correctness, strict=True)]
        same_branch = [same for branches, _ in agreement for same in branches]
        same_initial = [same for _, pairs in agreement for same in pairs]
        metrics = {
            "reward/mean": statistics.fmean(flat),
            "reward/std": statistics.pstdev(flat),
            "reward/accuracy": statistics.fmean(r.correctness for r in results),
            "reward/accuracy_initial": statistics.fmean(initial),
            "reward/format_ok": statistics.fmean(float(r.format_ok) for r in results),
            "reward/groups_kept": float(len(kept)),
        }
        if same_branch:
            metrics["reward/branch_same_outcome"] = statistics.fmean(same_branch)
        if same_initial:
            metrics["reward/initial_same_outcome"] = statistics.fmean(same_initial)
        return _Scored({g: trees[g] for g in kept}, rows, rows_by_group, metrics)

    # ----- the update ----------------------------------------------------------------------------
    def _layout(
        self, groups: list[int], scored: _Scored, totals: tuple[float, float] | None = None
    ) -> tuple[MiniBatch, list[int]]:
        """Layout of the given groups' trajectories, and their rows' indices in ``scored.rows``."""
        cfg = self.config
        index = [i for g in groups for i in scored.rows_by_group[g]]
        batch = self.lay_out(
            [scored.trees[g] for g in groups],
            [scored.rows[i] for i in index],
            aggregation=cfg.loss.aggregation,
            packing=self.packing,
            pack_tokens=cfg.pack_tokens,
            totals=totals,
            view=self.view,
            max_length=cfg.rollout.max_response_tokens,
        )
        return batch, index

    @torch.no_grad()
    def _copy_logprobs(
        self, model: torch.nn.Module, batch: MiniBatch, index: list[int], shape: tuple[int, int]
    ) -> torch.Tensor:
        """Log-probs of every copy of ``batch`` under ``model`` (an unsharded module: no collectives),
        on the ``[rows, tokens]`` grid."""
        grid = torch.zeros(shape, device=self.accelerator.device)
        rows = torch.tensor(index, device=self.accelerator.device)
        for unit in batch.units:
            with self.accelerator.autocast():
                logprobs, _ = unit.logprobs(model)
            grid[rows[batch.copy_rows[unit.copies]], batch.copy_cols[unit.copies]] = logprobs.float()
        return grid

    def _update(self, scored: _Scored) -> dict[str, float]:
        """``ppo_epochs`` passes of optimizer steps over mini-batches of this step's trees.

        The number of optimizer steps per pass is fixed by the config, the same in every process;
        a mini-batch that is empty everywhere (dynamic sampling dropped its groups) is skipped, a
        process with no share of a non-empty one joins it with padding passes (:meth:`accumulation`).
        The old log-probs come from :attr:`sampling_policy`, which holds the weights the rollout
        sampled with (under FSDP the full copy, so that pass runs no collective).
        """
        cfg = self.config
        groups = sorted(scored.rows_by_group)
        per_step = cfg.mini_batch_prompts or cfg.prompts_per_step
        chunks = -(-cfg.prompts_per_step // per_step)
        local_size = per_step // self.world
        metrics: dict[str, float] = {}
        old = ref = None
        if groups and (self.reference is not None or not cfg.single_update()):
            shape = (len(scored.rows), max(len(r.token_ids) for r in scored.rows))
            everything, index = self._layout(groups, scored)
            if not cfg.single_update():
                old = self._copy_logprobs(self.sampling_policy, everything, index, shape)
            if self.reference is not None:
                ref = self._copy_logprobs(self.reference, everything, index, shape)
        self.model.train()
        order_rng = random.Random((cfg.seed * 7_919 + self.step) * self.world + self.rank)
        sums: dict[str, list[float]] = {}
        for epoch in range(cfg.ppo_epochs):
            shuffled = list(groups)
            order_rng.shuffle(shuffled)
            for j in range(chunks):
                chosen = sorted(shuffled[j * local_size : (j + 1) * local_size])
                rows = [scored.rows[i] for g in chosen for i in scored.rows_by_group[g]]
                totals = self.row_totals(rows)
                if totals[0] <= 0:
                    continue
                if not chosen:  # this process joins the step with padding passes
                    self._optimizer_step(None, [], old, ref)
                    continue
                batch, index = self._layout(chosen, scored, totals)
                if epoch == 0:
                    metrics["train/tokens_forwarded"] = (
                        metrics.get("train/tokens_forwarded", 0.0) + batch.tokens_forwarded
                    )
                for key, value in self._optimizer_step(batch, index, old, ref).items():
                    sums.setdefault(key, []).append(value)
        metrics.update({key: statistics.fmean(values) for key, values in sums.items()})
        return metrics

    def _optimizer_step(
        self, batch: MiniBatch | None, index: list[int], old: torch.Tensor | None, ref: torch.Tensor | None
    ) -> dict[str, float]:
        """One optimizer step on ``batch`` (None: no share of it here, padding passes only); ``old``
        None means π_old = π_θ (a single update)."""
        cfg = self.config
        rows = torch.tensor(index, device=self.accelerator.device, dtype=torch.long)
        totals = {"loss/policy": 0.0, "loss/clip_fraction": 0.0, "loss/kl": 0.0, "loss/entropy": 0.0}
        loss = 0.0
        units = batch.units if batch is not None else []
        for i, last in self.accumulation(len(units)):
            if i is None:
                with self.micro_step(last), self.accelerator.autocast():
                    self.padding_pass()
                continue
            unit = units[i]
            assert batch is not None
            copy_rows = rows[batch.copy_rows[unit.copies]]
            copy_cols = batch.copy_cols[unit.copies]
            with self.micro_step(last), self.accelerator.autocast():
                logprobs, entropies = unit.logprobs(self.model, with_entropy=cfg.loss.entropy_coef > 0)
                logprobs = logprobs.float()
                parts = policy_loss(
                    logprobs,
                    old[copy_rows, copy_cols] if old is not None else logprobs.detach(),
                    batch.advantages[unit.copies],
                    batch.scale[unit.copies],
                    cfg.loss,
                    ref_logprobs=ref[copy_rows, copy_cols] if ref is not None else None,
                    entropies=entropies,
                )
                self.backward(parts.loss)
            loss += parts.loss.item()
            totals["loss/policy"] += parts.pg_loss.item()
            totals["loss/clip_fraction"] += parts.clip_fraction.item()
            totals["loss/kl"] += parts.kl.item() if parts.kl is not None else 0.0
            totals["loss/entropy"] += parts.entropy.item() if parts.entropy is not None else 0.0
        totals["grad_norm"] = self.clip_and_step(loss)
        return totals
