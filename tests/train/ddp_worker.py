"""One process of a 2-process data-parallel RL step (run by tests/train/test_data_parallel.py).

Launched with ``torchrun --nproc_per_node 2`` and ``ACCELERATE_USE_CPU=true`` (gloo); each
process writes its parameters after the step to ``<out>/rank<r>.pt``, with the step's metrics and
those of step 0 (greedy validation on 5 tasks, split 3/2 between the processes). With the argument
``nan-loss-on-rank-1``, process 1 reports a NaN loss for every update (its gradient stays finite),
so only the processes' agreement makes process 0 skip the updates too. With ``fsdp``, the model is
sharded (``train.fsdp``) and the saved parameters are those rollouts sample from after the step
(the full copy), with the gathered ones beside them (``gathered``). With ``deepspeed`` (launched
with accelerate's DeepSpeed environment) the saved file also holds the engine's step count
(``engine_steps``); ``deepspeed+nan-grad`` makes every loss of process 1 NaN, so the reduced gradient
is NaN and the engine must skip every update. With ``vllm`` every process rolls out with its own
vLLM engine (a model with vLLM's smallest CPU head size) and saves whether, after the step, its
engine's greedy continuation equals transformers' on the updated weights (``engine_synced``);
``fsdp+vllm`` feeds the engines from the sharded model's full copy.
``+more`` (e.g.
``fsdp+more``) adds two PPO epochs, a KL term against a reference model and bf16 autocast. The
learner's layout is ``tree``, or ``prefix`` with that argument (two forwards of the DDP module
before each backward).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from arpo.engines.base import SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.eval.sampling import SamplingConfig
from arpo.eval.sources import LoadedDataset
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.rollout import RolloutConfig
from arpo.tools import Calculator, ToolBox
from arpo.train.rl import RLConfig
from arpo.train.sharding import gather_full_state
from arpo.train.validation import ValidationSet, Validator
from tests.train.helpers import arithmetic_tasks, arithmetic_trainer, count_ones


def validator(tokenizer, tools: ToolBox) -> Validator:
    """Greedy validation on 5 tasks: the processes' shards are unequal (3 and 2)."""
    data = LoadedDataset("sums", arithmetic_tasks(5), [])
    sampling = SamplingConfig(max_response_tokens=24)
    rollout = RolloutConfig(
        temperature=0.0, max_response_tokens=24, branching={"rollouts_per_prompt": 1, "initial_rollouts": 1}
    )
    return Validator(1, [ValidationSet(data, tools)], sampling, rollout, tokenizer, count_ones)


def engine_synced(engine, model, tokenizer) -> bool:
    """Whether ``engine`` continues a prompt greedily as transformers does with ``model``."""
    prompt = tokenizer.encode("what is 1+1?")
    greedy = SamplingParams(temperature=0)
    ours = engine.generate([engine.add_path(prompt)], [20], greedy, [])[0]
    hf = HFGenerator(model, tokenizer)
    return ours.token_ids == hf.generate([hf.add_path(prompt)], [20], greedy, [])[0].token_ids


def main(out: Path, mode: str) -> None:
    tokenizer = build_char_tokenizer()
    vllm = mode.endswith("vllm")
    model = build_tiny_llama(tokenizer, seed=0, **({"hidden_size": 128, "num_heads": 4} if vllm else {}))
    fsdp, more = mode.startswith("fsdp"), mode.endswith("+more")
    extra = {"ppo_epochs": 2, "loss": {"kl_coef": 0.05}, "mixed_precision": "bf16"} if more else {}
    config = RLConfig.model_validate(
        {
            "steps": 1,
            "prompts_per_step": 4,
            "mini_batch_prompts": 2,
            "micro_batch_size": 3,
            "packing": "prefix" if mode == "prefix" else "tree",
            "rollout": {
                "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
                "max_response_tokens": 24,
                **({"engine": "vllm", "vllm": {"kv_cache_gib": 0.25, "max_model_len": 512}} if vllm else {}),
            },
            "optim": {"lr": 1e-2},
            "logging": {"tensorboard": False},
            "fsdp": {} if fsdp else None,
            **extra,
        }
    )
    reference = build_tiny_llama(tokenizer, seed=0) if more else None
    with ToolBox([Calculator()]) as tools:
        trainer = arithmetic_trainer(
            config,
            model,
            tokenizer,
            tools,
            out / "run",
            validator=validator(tokenizer, tools),
            reference=reference,
        )
        if mode == "nan-loss-on-rank-1" and trainer.rank == 1:
            step = trainer.clip_and_step
            trainer.clip_and_step = lambda loss: step(float("nan"))
        if mode == "deepspeed+nan-grad" and trainer.rank == 1:
            backward = trainer.backward
            trainer.backward = lambda loss: backward(loss * float("nan"))
        initial, metrics = trainer.train()  # step 0: validation of the starting policy
        gathered = gather_full_state(trainer.model, main_only=False) if fsdp else None
        synced = (
            engine_synced(trainer.rollout.generator, trainer.sampling_policy, tokenizer) if vllm else None
        )
        torch.save(
            {
                "params": trainer.sampling_policy.state_dict(),
                "gathered": gathered,
                "world": trainer.world,
                "engine_steps": trainer.model.global_steps if trainer.deepspeed else None,
                "engine_synced": synced,
                "metrics": metrics,
                "initial": initial,
            },
            out / f"rank{trainer.rank}.pt",
        )
    # Exit without tearing the trainer down: freeing a DDP model whose gloo process group it holds can
    # deadlock (seen about once in 8 launches, torch 2.13: the Reducer's destructor joins gloo's run-loop
    # thread while holding the GIL, and that thread waits for the GIL to free a finished all-reduce's
    # tensor). Everything the test reads is saved above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
