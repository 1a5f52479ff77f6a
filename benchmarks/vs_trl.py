"""Our GRPO (tree-packed and flat learner) against TRL's ``GRPOTrainer``: seconds per step, side by side.

The same tiny Llama (the character tokenizer's, built from a seed), the same prompts (one per
step), the same G completions per prompt and completion budget L, the same thread count, seeds
and settings where both have them — β = 0 (no reference model), one optimizer step per
generation batch, temperature 1, learning rate 1e-5, a dense reward (share of the letter e, so
every group has variance) — one trainer after the other in this process. TRL generates with
transformers' ``generate`` (no vLLM, as ours uses its HF engine). A random tiny model rarely
emits EOS, so nearly every completion runs to L tokens in both.

Our rollout would also stop at ``</answer>`` (a single token of this tokenizer, which a random
model emits as often as EOS), so it is told to stop at EOS only, as TRL does; completions then
have the same length distribution. Each row still says how long they were, and the generation
time per completion token. Per step: the mean completion length (tokens), and the median over ``--steps`` steps after ``--warmup`` of wall seconds for the whole step,
for generation (ours: ``time/rollout_s``; TRL: its ``_generate``), and for the rest (the
learner and bookkeeping), and the ratio ours / TRL of the step time. Workloads: plain generation
at G ∈ {8, 16} × L ∈ {128, 512} by default.

    .venv/bin/python benchmarks/vs_trl.py                      # needs the trl extra: pip install 'arpo[trl]'
    .venv/bin/python benchmarks/vs_trl.py --groups 8 --lengths 128 --steps 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, percentile, table  # noqa: E402

from arpo.core.rewards import RewardResult  # noqa: E402
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama  # noqa: E402
from arpo.tasks.record import ChatMessage, Task  # noqa: E402
from arpo.tools import ToolBox  # noqa: E402
from arpo.train.rl import RLConfig, RLTrainer  # noqa: E402

HEADERS = [
    "workload",
    "trainer",
    "tokens per completion",
    "s/step",
    "generation s",
    "generation ms/token",
    "rest s",
    "÷ TRL",
]
QUESTIONS = ["what is one plus two?", "name a colour", "count to three", "say hello", "spell tree"]
LR, SEED = 1e-5, 0


def share_of_e(text: str) -> float:
    return text.count("e") / max(1, len(text))


def reward_ours(sample: Any) -> RewardResult:
    value = share_of_e(sample.response)
    return RewardResult(
        total=value, format_ok=True, format_error=None, correctness=value, bonus=0.0, answer=None
    )


def reward_trl(completions: list[Any], **kwargs: Any) -> list[float]:
    return [share_of_e(c if isinstance(c, str) else c[-1]["content"]) for c in completions]


Timings = tuple[list[float], list[float], list[float]]
"""Per step: wall seconds, generation seconds, mean completion tokens."""


def ours(g: int, length: int, steps: int, packing: str, out: Path) -> Timings:
    """:data:`Timings` of our GRPO (N = M = G)."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer, seed=SEED)
    tasks = [
        Task(str(i), (ChatMessage("user", q),), ("e",), "exact", "bench") for i, q in enumerate(QUESTIONS)
    ]
    config = RLConfig.model_validate(
        {
            "steps": steps,
            "prompts_per_step": 1,
            "micro_batch_size": g,
            "packing": packing,
            "save_every": steps + 1,
            "seed": SEED,
            "rollout": {
                "branching": {"rollouts_per_prompt": g, "initial_rollouts": g},
                "max_response_tokens": length,
                "max_tool_calls": 0,
                "answer_close_tag": tokenizer.eos_token,  # TRL stops at EOS only, not at </answer>
            },
            "optim": {"lr": LR},
            "logging": {"tensorboard": False},
        }
    )
    with ToolBox([]) as tools:
        trainer = RLTrainer(config, model, tokenizer, tasks, tools, reward_ours, out)
        history = trainer.train()
    return (
        [m["time/step_s"] for m in history],
        [m["time/rollout_s"] for m in history],
        [m["rollout/response_length_mean"] for m in history],
    )


def trl_grpo(g: int, length: int, steps: int, out: Path) -> Timings:
    """:data:`Timings` of TRL's GRPOTrainer."""
    import datasets
    import trl
    from transformers import TrainerCallback

    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer, seed=SEED)
    rows = [{"prompt": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]} for i in range(steps)]
    args = trl.GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=g,
        gradient_accumulation_steps=1,
        num_generations=g,
        max_completion_length=length,
        max_steps=steps,
        learning_rate=LR,
        beta=0.0,
        temperature=1.0,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=SEED,
        disable_tqdm=True,
    )
    step_times: list[float] = []
    generation_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            step_times.append(time.perf_counter() - self.started)

    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=reward_trl,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[StepTimer()],
    )
    generate = trainer._generate

    def timed_generate(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        result = generate(*a, **k)
        generation_times.append(time.perf_counter() - started)
        return result

    trainer._generate = timed_generate
    trainer.train()
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # our trainer sets up its own
    lengths = [
        log["completions/mean_length"]
        for log in trainer.state.log_history
        if "completions/mean_length" in log
    ]
    return step_times, generation_times, lengths


def medians(times: Timings, warmup: int) -> tuple[float, float, float, float]:
    """Median step, generation and remaining seconds, and mean completion tokens, after ``warmup`` steps."""
    steps, generation, lengths = (series[warmup:] for series in times)
    rest = [s - g for s, g in zip(steps, generation, strict=True)]
    return (
        percentile(steps, 50),
        percentile(generation, 50),
        percentile(rest, 50),
        sum(lengths) / len(lengths),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 16], help="G: completions per prompt")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512], help="L: completion budget")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    try:
        import trl
    except ImportError:
        sys.exit("benchmarks/vs_trl.py compares with TRL: pip install 'arpo[trl]' (or trl>=1.16)")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    print(describe(machine()), f"; TRL {trl.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for g in args.groups:
            for length in args.lengths:
                total = args.steps + args.warmup
                results = {
                    "TRL GRPO": trl_grpo(g, length, total, Path(work) / f"trl-{g}-{length}"),
                    "ours GRPO, tree": ours(g, length, total, "tree", Path(work) / f"tree-{g}-{length}"),
                    "ours GRPO, flat": ours(g, length, total, "flat", Path(work) / f"flat-{g}-{length}"),
                }
                trl_step = medians(results["TRL GRPO"], args.warmup)[0]
                for name, times in results.items():
                    step, generation, rest, tokens = medians(times, args.warmup)
                    rows.append(
                        [
                            f"plain, G {g}, L {length}",
                            name,
                            f"{tokens:.0f}",
                            f"{step:.3f}",
                            f"{generation:.3f}",
                            f"{1000 * generation / (g * tokens):.2f}",
                            f"{rest:.3f}",
                            f"{step / trl_step:.2f}",
                        ]
                    )
                print(table(HEADERS, rows[-3:]))
    print()
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
