"""Rollout wall time under ``rollout.scheduling: rounds`` and ``continuous``, for GRPO and ARPO trees.

The transformers engine (``HFGenerator``) samples the same prompts with the same seeds seven ways:
GRPO (N = M = G) and ARPO (N = G/2, α = 0.5, β = 0.2, Z = 1), each by rounds (every path waits
for the round's longest segment) and continuously (a path that stopped goes on at the next decode
step; branches and fills join the running batch); ARPO continuously with its branching decisions
taken at a peek after the first k tokens that follow a tool result (``rollout.early_decisions``)
instead of when that segment ends; and each of the two continuous ARPO arms with speculative fills
(``rollout.speculative_fills``: the fills start with the initial samples, and each branch cancels
the newest). The seven are timed in turns (``harness.interleaved``), each repeat with the next seed. Workloads, on a tiny Llama (character
tokenizer, seed 0; ``--hidden``/``--layers`` size it):

* ``plain``: the random model, no tool: one segment per path, ended by EOS, ``</answer>`` or the
  budget L;
* ``tool``: the model first trained (~2 s, printed) to write thoughts of random length, call
  ``<calc>`` and answer, 1–3 calls per answer, so segments differ in length as sampled ones do;
  the calculator runs the calls.

Per row: median rollout seconds; the model's forward passes, sampled tokens and executed tool
calls per trajectory (cancelled fills' included), means over all of the arm's rollouts; ARPO ÷
GRPO under the same scheduling (speculative: against GRPO continuous), and continuous ÷ rounds for
the same trees' algorithm. Sampled tokens differ between the schedulings (each token is
drawn in another batch), so read the seconds with the tokens.

    .venv/bin/python benchmarks/rollout_scheduling.py
    .venv/bin/python benchmarks/rollout_scheduling.py --prompts 1 --groups 8 --lengths 128 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, interleaved, machine, table  # noqa: E402

from arpo.core.tree import Role  # noqa: E402
from arpo.engines.hf import HFGenerator  # noqa: E402
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama  # noqa: E402
from arpo.rollout import ArpoRollout, RolloutConfig  # noqa: E402
from arpo.tasks.prompts import render_prompt  # noqa: E402
from arpo.tools import Calculator, ToolBox  # noqa: E402

HEADERS = [
    "workload",
    "prompts",
    "G",
    "L",
    "trees",
    "scheduling",
    "rollout s",
    "forwards",
    "sampled tokens",
    "executed calls per leaf",
    "ARPO ÷ GRPO",
    "continuous ÷ rounds",
]
EARLY = "continuous, early decisions"
ARMS: dict[tuple[str, str], dict[str, Any]] = {
    ("GRPO", "rounds"): {"scheduling": "rounds"},
    ("GRPO", "continuous"): {},
    ("ARPO", "rounds"): {"scheduling": "rounds"},
    ("ARPO", "continuous"): {},
    ("ARPO", EARLY): {"early_decisions": True},
    ("ARPO", "continuous + speculative fills"): {"speculative_fills": True},
    ("ARPO", EARLY + " + speculative fills"): {"early_decisions": True, "speculative_fills": True},
}
"""Per (trees, scheduling) arm, its rollout settings beyond the defaults (continuous scheduling,
decisions when the segment ends, late fills)."""
QUESTIONS = ["what is 1+2?", "add 3 and 4", "sum 12 and 30", "compute 7+8", "what is 5+9?", "add 20 and 22"]


def tool_script(rng: random.Random) -> str:
    """A demonstration: 1–3 rounds of a thought of random length and a calculator call, then an answer."""
    parts = []
    for _ in range(rng.randint(1, 3)):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        thought = "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(0, 24)))
        parts.append(f"<think>{thought}</think><calc>{a}+{b}</calc><result>{a + b}</result>")
    return "".join(parts) + f"<answer>{rng.randint(1, 99)}</answer>"


def train_tool_user(model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], steps: int) -> None:
    """Teach ``model`` the demonstrations' shape (one random demonstration per step)."""
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        text = tool_script(rng) + tokenizer.eos_token
        ids = torch.tensor([rng.choice(prompts) + tokenizer.encode(text, add_special_tokens=False)])
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


class Arm:
    """One (trees, scheduling) rollout, called once per repeat with the next seed."""

    def __init__(
        self, model: Any, tokenizer: Any, tools: ToolBox, config: RolloutConfig, prompts: list
    ) -> None:
        self.rollout = ArpoRollout(HFGenerator(model, tokenizer), tokenizer, tools, config)
        self.model, self.prompts, self.seed = model, prompts, 0
        self.totals = {"forwards": 0.0, "sampled": 0.0, "calls": 0.0}

    def __call__(self) -> None:
        calls: list[int] = []
        hook = self.model.register_forward_hook(lambda *_: calls.append(1))
        try:
            batch = self.rollout.run(self.prompts, seed=self.seed)
        finally:
            hook.remove()
        self.seed += 1
        nodes = [n for tree in batch.trees for n in tree.nodes]
        self.totals["forwards"] += len(calls)
        self.totals["sampled"] += sum(len(n.token_ids) for n in nodes if n.role is Role.MODEL)
        self.totals["calls"] += batch.stats["tool_calls_executed"] / batch.stats["trajectories"]

    def mean(self, key: str) -> float:
        """Mean of ``key`` over every call (the warm-up's too: each call has its own seed)."""
        return self.totals[key] / self.seed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", nargs="+", default=["plain", "tool"], choices=["plain", "tool"])
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 4], help="prompts per rollout")
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 16], help="G = M: leaves per prompt")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128], help="L: response budget")
    parser.add_argument("--window", type=int, default=20, help="k: ARPO's entropy window")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=600, help="tool workload: demonstration steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe(machine()))
    tokenizer = build_char_tokenizer()
    prompts = [render_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    rows = []
    for workload in args.workloads:
        model = build_tiny_llama(tokenizer, hidden_size=args.hidden, num_layers=args.layers, seed=0)
        if workload == "tool":
            train_tool_user(model, tokenizer, prompts, args.train_steps)
        with ToolBox([Calculator()] if workload == "tool" else []) as tools:
            for n_prompts in args.prompts:
                for g in args.groups:
                    for length in args.lengths:
                        arms = {}
                        for (trees, scheduling), settings in ARMS.items():
                            config = RolloutConfig.model_validate(
                                {
                                    "branching": {
                                        "rollouts_per_prompt": g,
                                        "initial_rollouts": g if trees == "GRPO" else g // 2,
                                        "entropy_window": args.window,
                                    },
                                    "max_response_tokens": length,
                                    **settings,
                                }
                            )
                            arms[trees, scheduling] = Arm(
                                model, tokenizer, tools, config, prompts[:n_prompts]
                            )
                        seconds = interleaved({" ".join(k): arm for k, arm in arms.items()}, args.repeats)
                        for (trees, scheduling), arm in arms.items():
                            s = seconds[f"{trees} {scheduling}"]
                            plain = "rounds" if scheduling == "rounds" else "continuous"
                            rows.append(
                                [
                                    workload,
                                    n_prompts,
                                    g,
                                    length,
                                    trees,
                                    scheduling,
                                    f"{s:.3f}",
                                    f"{arm.mean('forwards'):.0f}",
                                    f"{arm.mean('sampled'):.0f}",
                                    f"{arm.mean('calls'):.2f}",
                                    f"{s / seconds[f'GRPO {plain}']:.2f}",
                                    f"{s / seconds[f'{trees} rounds']:.2f}",
                                ]
                            )
                        print(table(HEADERS, rows[-len(arms) :]), flush=True)
    print()
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
