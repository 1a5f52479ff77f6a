"""Learner step with the trajectories laid out flat, tree-packed, prefix and ``auto``, over a grid of tree shapes.

Each cell is one mini-batch of ``--trees`` rollout trees of one shape, built with random tokens
(the learner's cost depends on the shape, not on the text) except for ``toolworld``, and the time
of one learner step on it: log-probs of every model token, the clipped policy loss, backward —
with the same trees laid out ``flat`` (one row per trajectory), ``tree`` (each tree's unique
tokens once in a packed row), ``prefix`` (each tree's prompt once, the responses attending to its
cache) and ``auto`` (whichever :mod:`arpo.train.layout_cost` predicts is cheapest). Shapes:

* ``grpo``: G paths of L response tokens from the prompt (nothing shared but the prompt);
* ``arpo``: G/2 initial paths, each a model segment of L/4 tokens, a 16-token tool result and the
  rest of its L tokens; G/2 branches fork right after the tool results, one per initial path;

each with a short (16-token) or a long (L-token) prompt, every response exactly L tokens (all cut at
the budget; flat rows of equal length then run attention without a mask, over half the pairs) or
with ``--vary`` ending between L/2 and L tokens; and

* ``toolworld``: real ARPO trees (M = 16, N = 8, 160-token budget by default), sampled in the
  built-in environment by a tiny Llama of the same size after a short SFT, so that it calls tools.

Trees get a packed row each (``--pack-tokens 1``) unless told otherwise. "shared" is the share of
the flat layout's tokens that tree packing computes once instead of several times. Prints one
table: the median step time of each layout over ``--repeats`` (after a warm-up step; the layouts
timed in turns, :func:`harness.interleaved`), the cost model's predicted and the measured ratios
to flat, the layout ``auto`` picks and its ratio (``auto`` runs exactly the units of the layout it
picks, so its time is that layout's). A tree layout whose attention mask would exceed
``--max-mask-gb`` is not run.

    .venv/bin/python benchmarks/packed_vs_flat.py                          # the full grid
    .venv/bin/python benchmarks/packed_vs_flat.py --groups 8 --lengths 128 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, interleaved, machine, table  # noqa: E402

from arpo.core.loss import PolicyLossConfig, policy_loss  # noqa: E402
from arpo.core.tree import Origin, RolloutTree, ToolCall  # noqa: E402
from arpo.engines.hf import HFGenerator  # noqa: E402
from arpo.models.loading import PolicyConfig, TinyModelConfig, load_policy  # noqa: E402
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama  # noqa: E402
from arpo.rollout import ArpoRollout, RolloutConfig  # noqa: E402
from arpo.tasks.prompts import render_prompt  # noqa: E402
from arpo.tasks.toolworld import (  # noqa: E402
    SplitSizes,
    ToolworldConfig,
    build_toolworld,
    load_toolworld_tasks,
    make_toolbox,
    read_config,
)
from arpo.train.batching import LearnerRow  # noqa: E402
from arpo.train.checkpoint import latest_checkpoint  # noqa: E402
from arpo.train.jobs import SFTJobConfig, run_sft  # noqa: E402
from arpo.train.layout import MiniBatch, build_minibatch, choose_layout, layout_costs  # noqa: E402
from arpo.train.layout_cost import LayoutCost  # noqa: E402
from arpo.train.packing import pack_trees  # noqa: E402

TOOL_TOKENS, SHORT_PROMPT = 16, 16
LAYOUTS = ("flat", "tree", "prefix")


def random_tokens(rng: random.Random, vocab: int, n: int) -> list[int]:
    return [rng.randrange(3, vocab) for _ in range(n)]


def model_node(tree: RolloutTree, parent, tokens: list[int], origin: Origin | None = None):
    node = tree.add_model(parent, origin)
    node.append(tokens, [0.0] * len(tokens), [0.0] * len(tokens))
    return node


def build_tree(
    shape: str, g: int, length: int, prompt: int, vocab: int, rng: random.Random, vary: bool
) -> RolloutTree:
    """One tree of ``shape`` with G leaves and L response tokens per path (with ``vary``, each path
    ends after a uniform draw from L/2 … L tokens, as sampled responses end at EOS)."""

    def budget() -> int:
        return rng.randint(length // 2, length) if vary else length

    tree = RolloutTree(random_tokens(rng, vocab, prompt), vocab)
    if shape == "grpo":
        for _ in range(g):
            model_node(tree, tree.root, random_tokens(rng, vocab, budget()), Origin.INITIAL)
        return tree
    head = length // 4
    for _ in range(g // 2):
        first = model_node(tree, tree.root, random_tokens(rng, vocab, head), Origin.INITIAL)
        result = tree.add_tool(first, random_tokens(rng, vocab, TOOL_TOKENS), [ToolCall("python", "1", "ok")])
        model_node(tree, result, random_tokens(rng, vocab, budget() - head - TOOL_TOKENS))
        model_node(tree, result, random_tokens(rng, vocab, budget() - head - TOOL_TOKENS), Origin.BRANCH)
    return tree


def learner_rows(trees: list[RolloutTree], rng: random.Random) -> list[LearnerRow]:
    rows = []
    for tree in trees:
        for trajectory in tree.trajectories():
            mask = trajectory.loss_mask
            advantage = rng.uniform(-1, 1)
            rows.append(
                LearnerRow(trajectory.token_ids, [float(m) for m in mask], [advantage * m for m in mask])
            )
    return rows


def learner_step(model: torch.nn.Module, batch: MiniBatch) -> None:
    model.zero_grad()
    config = PolicyLossConfig()
    for unit in batch.units:
        logprobs, _ = unit.logprobs(model)
        copies = unit.copies
        policy_loss(
            logprobs, logprobs.detach(), batch.advantages[copies], batch.scale[copies], config
        ).loss.backward()


def packed_widths(trees: list[RolloutTree], args: argparse.Namespace) -> list[int]:
    return [len(row) for row in pack_trees(trees, args.pack_tokens).rows]


def mask_gigabytes(trees: list[RolloutTree], args: argparse.Namespace) -> float:
    """Size of the largest micro-batch's float32 ``[B, 1, W, W]`` tree-packing mask."""
    widths = packed_widths(trees, args)
    return min(len(widths), args.micro_batch_size) * max(widths) ** 2 * 4 / 2**30


def time_cell(model, tokenizer, trees: list[RolloutTree], label: list, args: argparse.Namespace) -> list:
    """One table row: the layouts timed in turns, the cost model's predictions, auto's pick."""
    rows = learner_rows(trees, random.Random(args.seed))
    cost = LayoutCost.of(model)
    predicted = layout_costs(
        trees, [len(r.token_ids) for r in rows], args.micro_batch_size, args.pack_tokens, cost
    )
    batches = {
        name: build_minibatch(
            trees,
            rows,
            aggregation="token-mean",
            packing=name,
            micro_batch_size=args.micro_batch_size,
            pack_tokens=args.pack_tokens,
            pad_id=tokenizer.pad_token_id or 0,
            dtype=torch.float32,
            device="cpu",
        )
        for name in LAYOUTS
        if name != "tree" or mask_gigabytes(trees, args) <= args.max_mask_gb
    }
    times = interleaved(
        {name: (lambda b=b: learner_step(model, b)) for name, b in batches.items()}, args.repeats
    )
    chosen = choose_layout(predicted)
    flat_tokens = sum(len(r.token_ids) for r in rows)
    unique = sum(len(n.token_ids) for tree in trees for n in tree.nodes)
    flat_s = times["flat"]

    def ratios(name: str) -> list[str]:
        measured = times.get(name)
        shown = "–" if measured is None else f"{measured:.3f}"
        return [
            shown,
            f"{predicted[name] / predicted['flat']:.2f}",
            "–" if measured is None else f"{measured / flat_s:.2f}",
        ]

    return [
        *label,
        f"{1 - unique / flat_tokens:.0%}",
        f"{flat_s:.3f}",
        *ratios("tree"),
        *ratios("prefix"),
        chosen,
        f"{times[chosen] / flat_s:.2f}",
    ]


def toolworld_cell(args: argparse.Namespace, work: Path) -> tuple[torch.nn.Module, object, list[RolloutTree]]:
    """ARPO trees sampled in the built-in environment by a policy that calls tools (a short SFT)."""
    env = build_toolworld(
        ToolworldConfig(
            seed=args.seed, train=SplitSizes(towns=30, people=60, tasks=600), system_prompt=False
        ),
        work / "env",
    ).root
    print(f"toolworld: SFT for {args.sft_steps} steps so that the policy calls tools", flush=True)
    sft = SFTJobConfig(
        run_dir=str(work / "sft"),
        model=PolicyConfig(tiny=TinyModelConfig(hidden_size=args.hidden_size, num_layers=args.layers)),
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
    model, tokenizer = load_policy(PolicyConfig(name=str(latest_checkpoint(work / "sft"))))
    tasks = load_toolworld_tasks(env / "train.jsonl")[: args.trees]
    config = RolloutConfig.model_validate(
        {
            "branching": {"rollouts_per_prompt": args.toolworld_m, "initial_rollouts": args.toolworld_m // 2},
            "max_response_tokens": args.toolworld_budget,
        }
    )
    with make_toolbox(read_config(env), env / "corpus.jsonl", cache_dir=work / "index") as tools:
        rollout = ArpoRollout(HFGenerator(model, tokenizer), tokenizer, tools, config)
        batch = rollout.run([render_prompt(tokenizer, t.chat()) for t in tasks], seed=args.seed)
    model.train()
    return model, tokenizer, batch.trees


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 16], help="G: trajectories per tree")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048], help="L: response tokens")
    parser.add_argument(
        "--shapes", nargs="+", default=["grpo", "arpo", "toolworld"], choices=["grpo", "arpo", "toolworld"]
    )
    parser.add_argument("--prompts", nargs="+", default=["short", "long"], choices=["short", "long"])
    parser.add_argument("--trees", type=int, default=2, help="trees per mini-batch")
    parser.add_argument("--vary", action="store_true", help="responses end between L/2 and L tokens")
    parser.add_argument("--micro-batch-size", type=int, default=8, help="rows per forward, either layout")
    parser.add_argument("--pack-tokens", type=int, default=1, help="packed row budget (1: one tree per row)")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--toolworld-m", type=int, default=16, help="toolworld: M (N = M/2)")
    parser.add_argument("--toolworld-budget", type=int, default=160, help="toolworld: response tokens")
    parser.add_argument(
        "--sft-steps", type=int, default=150, help="toolworld: SFT steps of the sampling policy"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-mask-gb", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer, seed=args.seed, hidden_size=args.hidden_size, num_layers=args.layers)
    model.train()
    cost = LayoutCost.of(model)
    print(describe(machine()))
    print(
        f"model: tiny Llama, hidden {args.hidden_size}, {args.layers} layers, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; cost model {cost.token:.3g} FLOPs "
        f"per token, {cost.pair:.3g} per attention pair; {args.trees} trees per mini-batch, "
        f"{args.micro_batch_size} rows per forward, median of {args.repeats}"
    )
    results = []
    for shape in [s for s in args.shapes if s != "toolworld"]:
        for prompt_kind in args.prompts:
            for g in args.groups:
                for length in args.lengths:
                    rng = random.Random(args.seed)
                    prompt = SHORT_PROMPT if prompt_kind == "short" else length
                    trees = [
                        build_tree(shape, g, length, prompt, len(tokenizer), rng, args.vary)
                        for _ in range(args.trees)
                    ]
                    results.append(time_cell(model, tokenizer, trees, [shape, prompt, g, length], args))
                    print(table(HEADERS, results[-1:]).splitlines()[-1], flush=True)
    if "toolworld" in args.shapes:
        with tempfile.TemporaryDirectory() as tmp:
            sampled, env_tokenizer, trees = toolworld_cell(args, Path(tmp))
            prompt = f"{statistics.mean(len(t.root.token_ids) for t in trees):.0f}"
            label = ["toolworld", prompt, args.toolworld_m, args.toolworld_budget]
            results.append(time_cell(sampled, env_tokenizer, trees, label, args))
    print()
    print(table(HEADERS, results))


HEADERS = [
    "shape",
    "prompt",
    "G",
    "L",
    "shared",
    "flat s",
    "tree s",
    "tree ÷ flat predicted",
    "tree ÷ flat",
    "prefix s",
    "prefix ÷ flat predicted",
    "prefix ÷ flat",
    "auto picks",
    "auto ÷ flat",
]

if __name__ == "__main__":
    main()
