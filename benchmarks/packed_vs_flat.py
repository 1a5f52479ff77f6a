"""Tree-packed vs flat learner step on ARPO trees from the built-in environment.

Samples ARPO trees (M=16, N=8 by default) with a policy that calls tools (a short SFT on the
environment's demonstrations unless ``--model`` names a run or checkpoint), then times the same
learner step — log-probs, the clipped loss, backward — with the trajectories laid out flat and
tree-packed, alternating the two ``--repeats`` times in one process. Prints the tokens each
layout runs through the model and the median step-time ratio.

    .venv/bin/python benchmarks/packed_vs_flat.py            # builds a small environment in a temp dir
    .venv/bin/python benchmarks/packed_vs_flat.py --env runs/toolworld-sft/env --model runs/toolworld-sft
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from arpo.core.advantage import AdvantageConfig, attribute, group_advantages
from arpo.core.loss import PolicyLossConfig, policy_loss
from arpo.engines.hf import HFGenerator
from arpo.models.loading import PolicyConfig, TinyModelConfig, load_policy
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.prompts import render_prompt
from arpo.tasks.toolworld import (
    SplitSizes,
    ToolworldConfig,
    build_toolworld,
    load_toolworld_tasks,
    make_toolbox,
    read_config,
)
from arpo.train.batching import LearnerRow
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import SFTJobConfig, run_sft
from arpo.train.layout import build_minibatch


def policy(args: argparse.Namespace, env: Path, work: Path) -> tuple[torch.nn.Module, object]:
    if args.model:
        found = latest_checkpoint(Path(args.model)) or Path(args.model)
        return load_policy(PolicyConfig(name=str(found)))
    print(f"SFT for {args.sft_steps} steps so the policy calls tools (use --model to skip)")
    sft = SFTJobConfig(
        run_dir=str(work / "sft"),
        model=PolicyConfig(tiny=TinyModelConfig(hidden_size=128, num_layers=2)),
        data={"toolworld_dir": str(env)},
        train={
            "steps": args.sft_steps,
            "batch_size": 32,
            "micro_batch_size": 32,
            "optim": {"lr": 2e-3},
            "logging": {"tensorboard": False},
        },
    )
    run_sft(sft)
    return load_policy(PolicyConfig(name=str(latest_checkpoint(work / "sft"))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", help="a built toolworld folder (default: build a small one)")
    parser.add_argument("--model", help="a run folder or checkpoint (default: a short SFT)")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--budget", type=int, default=160, help="response tokens per trajectory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = (
            Path(args.env)
            if args.env
            else build_toolworld(
                ToolworldConfig(
                    seed=args.seed, train=SplitSizes(towns=30, people=60, tasks=600), system_prompt=False
                ),
                work / "env",
            ).root
        )
        model, tokenizer = policy(args, env, work)
        tasks = load_toolworld_tasks(env / "train.jsonl")[: args.prompts]
        config = RolloutConfig.model_validate(
            {
                "branching": {"rollouts_per_prompt": args.m, "initial_rollouts": args.n, "entropy_window": 8},
                "max_response_tokens": args.budget,
            }
        )
        with make_toolbox(read_config(env), env / "corpus.jsonl", cache_dir=work / "index") as tools:
            rollout = ArpoRollout(HFGenerator(model, tokenizer), tokenizer, tools, config)
            batch = rollout.run([render_prompt(tokenizer, t.chat()) for t in tasks], seed=args.seed)
        trees = batch.trees
        rng = random.Random(args.seed)
        rewards = [[rng.random() for _ in tree.trajectories()] for tree in trees]
        rows = [
            LearnerRow(traj.token_ids, tok.weights, tok.advantages)
            for tree, adv in zip(trees, group_advantages(rewards, AdvantageConfig()), strict=True)
            for traj, tok in zip(tree.trajectories(), attribute(tree, adv, "soft"), strict=True)
        ]
        print(
            f"{len(trees)} trees, {len(rows)} trajectories, {batch.stats['branches']} branches, "
            f"{batch.stats['tool_calls_per_trajectory']:.2f} tool calls per trajectory"
        )
        layouts = {
            name: build_minibatch(
                trees,
                rows,
                aggregation="token-mean",
                packing=name,
                micro_batch_size=16,
                pack_tokens=4096,
                pad_id=tokenizer.pad_token_id or 0,
                dtype=torch.float32,
                device="cpu",
            )
            for name in ("flat", "tree")
        }
        loss_config = PolicyLossConfig()
        times: dict[str, list[float]] = {name: [] for name in layouts}
        model.train()
        for _ in range(args.repeats):
            for name, mb in layouts.items():
                model.zero_grad()
                started = time.perf_counter()
                for unit in mb.units:
                    logprobs, _ = unit.logprobs(model)
                    old = logprobs.detach()
                    policy_loss(
                        logprobs, old, mb.advantages[unit.copies], mb.scale[unit.copies], loss_config
                    ).loss.backward()
                times[name].append(time.perf_counter() - started)
        flat_t, tree_t = statistics.median(times["flat"]), statistics.median(times["tree"])
        print(
            f"tokens through the model   flat {layouts['flat'].tokens_forwarded:>7}   "
            f"packed {layouts['tree'].tokens_forwarded:>7}   ratio {layouts['flat'].tokens_forwarded / layouts['tree'].tokens_forwarded:.2f}x"
        )
        print(
            f"learner step (median of {args.repeats})  flat {flat_t:.3f} s   packed {tree_t:.3f} s   "
            f"speed-up {flat_t / tree_t:.2f}x"
        )


if __name__ == "__main__":
    main()
