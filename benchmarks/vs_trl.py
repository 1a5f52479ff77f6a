"""Our GRPO and ARPO against TRL's ``GRPOTrainer``: seconds per step, side by side, plain and with the python tool.

Both trainers get the same tiny Llama (the character tokenizer's, built from a seed), the same
prompts (one per step), the same G completions per prompt and budget L, the same thread count,
seeds and settings where both have them — β = 0 (no reference model), one optimizer step per
generation batch (one PPO epoch), PPO clip ε = 0.2 on both sides, rewards normalised by the
group's mean and standard deviation, the loss averaged over the batch's tokens (TRL's ``dapo``,
our ``token-mean``), temperature 1 with no top-k/top-p, learning rate 1e-5, a dense reward (share
of the letter e, so every group has variance) — one trainer after the other in this process.
TRL generates with transformers' ``generate`` (no vLLM, as ours uses its HF engine).

Workloads:

* ``plain``: a random model (hidden size 64), no tools. It emits EOS about once in 60 tokens, so
  completions average 50-75 tokens in both whatever L (L cuts the longest). Our rollout would
  also stop at ``</answer>`` (a single token of this tokenizer, as likely as EOS), so it is told
  to stop at EOS only, as TRL does.
* ``tool``: the python tool, called natively in both trainers: the tokenizer has every printable
  character and Qwen2.5's chat template (TRL's copy, so TRL parses the calls with its own
  response template; ours reads them with the ``hermes`` parser, ``tool_format:
  chat_template``), whose system prompt lists the tool's schema (≈ 1,000 prompt tokens: the
  same schema on both sides, checked). The model (hidden size 128) is first fine-tuned on ``--sft-steps`` steps
  of demonstrations (a question ``what is 12 * 9?``, a ``python`` call that prints it, the
  result, ``the answer is 108``) so that it calls the tool; that model is each trainer's start.
  Calls run in the same sandbox (our ``python`` tool: TRL's tool function calls it), at most
  ``--max-tool-calls`` rounds per completion. One difference stays: a malformed call (bad JSON)
  gets an error result from us and the completion goes on, while TRL ends the completion there,
  so the table gives the tool calls per completion of each.

Trainers: TRL's GRPO; our GRPO (N = M = G) with each learner layout of ``--packings`` (``auto``,
the default, and ``flat``, one row per completion as TRL's); our ARPO (N = G/2 initial samples,
the rest branched after tool results or filled, the default layout), with fills started after
the initial samples (the default) and with ``speculative_fills``.
Per row: the mean response tokens per completion (model and tool tokens), tool calls per
completion, and the median over ``--steps`` steps after ``--warmup`` of wall seconds for the whole
step, for generation (ours: ``time/rollout_s``; TRL: its ``_generate``, tool calls included), and
for the rest (the learner and bookkeeping), and the ratio ours / TRL of the step time.

    .venv/bin/python benchmarks/vs_trl.py                      # needs the trl extra: pip install 'arpo[trl]'
    .venv/bin/python benchmarks/vs_trl.py --workloads tool --groups 8 --lengths 128 --steps 5
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import string
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, percentile, table  # noqa: E402

from arpo.core.rewards import RewardResult  # noqa: E402
from arpo.core.tool_parsers import get_parser  # noqa: E402
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama  # noqa: E402
from arpo.tasks.chat_tools import ChatToolFormat  # noqa: E402
from arpo.tasks.demonstrations.conversation import Conversation, Segment, conversation_example  # noqa: E402
from arpo.tasks.record import ChatMessage, Task  # noqa: E402
from arpo.tools import ToolBox  # noqa: E402
from arpo.tools.registry import build_toolbox  # noqa: E402
from arpo.train.batching import LearnerRow  # noqa: E402
from arpo.train.rl import RLConfig, RLTrainer  # noqa: E402
from arpo.train.sft import SFTConfig, SFTTrainer  # noqa: E402

HEADERS = [
    "workload",
    "trainer",
    "tokens per completion",
    "tool calls per completion",
    "s/step",
    "generation s",
    "generation ms/token",
    "rest s",
    "÷ TRL",
]
PLAIN_QUESTIONS = ["what is one plus two?", "name a colour", "count to three", "say hello", "spell tree"]
TOOLS = [{"name": "python"}]
TOOL_TOKENS = [
    "<|im_start|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<tools>",
    "</tools>",
]
LR, SEED = 1e-5, 0
TOOL_MODEL_WIDTH = 128
"""Hidden size of the tool workload's model: at 64 a fifth to a half of its sampled calls were
malformed after 200-400 fine-tuning steps (an error result in ours, the end of the completion in
TRL), at 128 after 300 steps one in eleven, so both trainers' completions make about one call."""
SETTINGS = (
    "settings, both trainers: beta 0, one optimizer step per generation batch, clip 0.2, group mean/std "
    "normalised rewards, token-mean loss (TRL loss_type dapo), temperature 1, lr 1e-5, seed 0"
)


@dataclass
class Workload:
    """What both trainers train: the starting model (each trainer gets a copy), its tokenizer,
    the prompts and the tools (our specs; TRL gets the same python tool as a function)."""

    name: str
    tokenizer: Any
    model: torch.nn.Module
    questions: list[str]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tool_calls: int = 0


@dataclass
class Timings:
    """Per step: wall seconds, generation seconds, mean response tokens, mean tool calls per completion."""

    steps: list[float]
    generation: list[float]
    tokens: list[float]
    tool_calls: list[float]


def share_of_e(text: str) -> float:
    return text.count("e") / max(1, len(text))


def reward_ours(sample: Any) -> RewardResult:
    value = share_of_e(sample.response)
    return RewardResult(
        total=value, format_ok=True, format_error=None, correctness=value, bonus=0.0, answer=None
    )


def reward_trl(completions: list[Any], **kwargs: Any) -> list[float]:
    return [share_of_e(c if isinstance(c, str) else c[-1]["content"]) for c in completions]


def plain_workload() -> Workload:
    tokenizer = build_char_tokenizer()
    return Workload("plain", tokenizer, build_tiny_llama(tokenizer, seed=SEED), PLAIN_QUESTIONS)


def arithmetic(rng: random.Random) -> tuple[str, str, str]:
    """A question, the code that answers it and what the code prints."""
    a, b, op = rng.randint(1, 99), rng.randint(1, 99), rng.choice("+-*")
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"what is {a} {op} {b}?", f"print({a}{op}{b})", str(value)


def tool_tokenizer() -> Any:
    """Every printable character a token, ChatML's markers and the tool tags added, and TRL's
    copy of Qwen2.5's chat template (which TRL knows how to parse)."""
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer = build_char_tokenizer(
        tool_tags=(), alphabet="".join(c for c in string.printable if c not in "\t\r\x0b\x0c")
    )
    tokenizer.add_tokens(TOOL_TOKENS)
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>"})
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def tool_workload(sft_steps: int, prompts: int, max_tool_calls: int) -> Workload:
    """A model fine-tuned to answer arithmetic questions with one python call (module docstring)."""
    tokenizer = tool_tokenizer()
    model = build_tiny_llama(tokenizer, seed=SEED, hidden_size=TOOL_MODEL_WIDTH)
    rng = random.Random(SEED)
    with build_toolbox(TOOLS) as tools:
        chat = ChatToolFormat(tokenizer, tools.schemas(), get_parser("hermes"))
        rows = []
        for i in range(256):
            question, code, printed = arithmetic(rng)
            demo = Conversation(
                f"demo-{i}",
                (ChatMessage("user", question),),
                (
                    Segment("model", f"<python>{code}</python>"),
                    Segment("tool", printed, tag="python", call=code),
                    Segment("model", f"the answer is {printed}"),
                ),
            )
            ids, mask = conversation_example(demo, tokenizer, None, chat)
            rows.append(LearnerRow(ids, [float(m) for m in mask]))
    config = SFTConfig.model_validate(
        {
            "steps": sft_steps,
            "batch_size": 16,
            "save_every": sft_steps,
            "seed": SEED,
            "optim": {"lr": 3e-3},
            "logging": {"tensorboard": False},
        }
    )
    with tempfile.TemporaryDirectory() as work:
        SFTTrainer(config, model, tokenizer, rows, Path(work)).train()
    questions = [arithmetic(rng)[0] for _ in range(prompts)]
    return Workload("python tool", tokenizer, model.eval(), questions, TOOLS, max_tool_calls)


def trl_python(tools: ToolBox) -> Callable[[str], str]:
    """Our sandboxed python tool as the function TRL calls, with the same schema in the prompt."""
    from transformers.utils import get_json_schema

    (schema,) = tools.schemas()

    def python(code: str):  # type: ignore[no-untyped-def]  # a return annotation would add to the schema
        return tools.run("python", code).text

    function = schema["function"]
    argument = function["parameters"]["properties"]["code"]["description"]
    python.__doc__ = f"{function['description']}\n\nArgs:\n    code: {argument}"
    if get_json_schema(python) != schema:
        raise RuntimeError(f"TRL would show another schema: {get_json_schema(python)} instead of {schema}")
    return python


def ours(
    workload: Workload,
    g: int,
    initial: int,
    length: int,
    steps: int,
    packing: str,
    out: Path,
    speculative_fills: bool = False,
) -> Timings:
    """:class:`Timings` of our trainer: GRPO when ``initial == g``, else ARPO (fills after the
    initial samples, or with them when ``speculative_fills``)."""
    tokenizer = workload.tokenizer
    tasks = [
        Task(str(i), (ChatMessage("user", q),), ("e",), "exact", "bench")
        for i, q in enumerate(workload.questions)
    ]
    rollout: dict[str, Any] = {
        "branching": {"rollouts_per_prompt": g, "initial_rollouts": initial},
        "max_response_tokens": length,
        "max_tool_calls": workload.max_tool_calls,
        "answer_close_tag": tokenizer.eos_token,  # TRL stops at EOS only, not at </answer>
        "speculative_fills": speculative_fills,
    }
    if workload.tools:
        rollout |= {"tool_format": "chat_template", "tool_parser": "hermes"}
    config = RLConfig.model_validate(
        {
            "steps": steps,
            "prompts_per_step": 1,
            "micro_batch_size": g,
            "packing": packing,
            "save_every": steps + 1,
            "seed": SEED,
            "rollout": rollout,
            "optim": {"lr": LR},
            "logging": {"tensorboard": False},
        }
    )
    with build_toolbox(workload.tools) as tools:
        trainer = RLTrainer(config, copy.deepcopy(workload.model), tokenizer, tasks, tools, reward_ours, out)
        history = trainer.train()
    return Timings(
        [m["time/step_s"] for m in history],
        [m["time/rollout_s"] for m in history],
        [m["rollout/response_length_mean"] for m in history],
        [m["rollout/tool_calls_per_trajectory"] for m in history],
    )


def trl_grpo(workload: Workload, g: int, length: int, steps: int, out: Path) -> Timings:
    """:class:`Timings` of TRL's GRPOTrainer."""
    import datasets
    import trl
    from accelerate.state import AcceleratorState
    from transformers import PrinterCallback, TrainerCallback

    rows = [
        {"prompt": [{"role": "user", "content": workload.questions[i % len(workload.questions)]}]}
        for i in range(steps)
    ]
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
        max_tool_calling_iterations=workload.max_tool_calls or None,
    )
    timings = Timings([], [], [], [])

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            timings.steps.append(time.perf_counter() - self.started)

    with build_toolbox(workload.tools) as tools:
        trainer = trl.GRPOTrainer(
            model=copy.deepcopy(workload.model),
            reward_funcs=reward_trl,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=workload.tokenizer,
            callbacks=[StepTimer()],
            tools=[trl_python(tools)] if workload.tools else None,
        )
        trainer.remove_callback(PrinterCallback)  # it prints every step's logs
        generate = trainer._generate

        def timed_generate(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            result = generate(*a, **k)
            timings.generation.append(time.perf_counter() - started)
            completion_ids = result[1]  # model and tool tokens
            timings.tokens.append(sum(len(ids) for ids in completion_ids) / len(completion_ids))
            return result

        trainer._generate = timed_generate
        trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)  # our trainer sets up its own
    timings.tool_calls = [
        log.get("tools/call_frequency", 0.0)
        for log in trainer.state.log_history
        if "completions/mean_length" in log
    ]
    return timings


def medians(times: Timings, warmup: int) -> tuple[float, float, float, float, float]:
    """Median step, generation and remaining seconds, mean response tokens and tool calls per
    completion, after ``warmup`` steps."""
    steps, generation = times.steps[warmup:], times.generation[warmup:]
    tokens, calls = times.tokens[warmup:], times.tool_calls[warmup:]
    rest = [s - g for s, g in zip(steps, generation, strict=True)]
    return (
        percentile(steps, 50),
        percentile(generation, 50),
        percentile(rest, 50),
        sum(tokens) / len(tokens),
        sum(calls) / len(calls),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", nargs="+", default=["plain", "tool"], choices=["plain", "tool"])
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 16], help="G: completions per prompt")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512], help="L: completion budget")
    parser.add_argument(
        "--packings",
        nargs="+",
        default=["auto", "flat"],
        choices=["auto", "tree", "prefix", "flat"],
        help="our GRPO learner layouts (ARPO uses the default, auto; flat is TRL's layout)",
    )
    parser.add_argument("--steps", type=int, default=10, help="steps timed per trainer")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sft-steps", type=int, default=300, help="tool workload: fine-tuning steps before RL"
    )
    parser.add_argument("--max-tool-calls", type=int, default=3, help="tool workload: calls per completion")
    args = parser.parse_args()
    try:
        import trl
    except ImportError:
        sys.exit("benchmarks/vs_trl.py compares with TRL: pip install 'arpo[trl]' (or trl>=1.16)")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    total = args.steps + args.warmup
    workloads = []
    for name in args.workloads:
        if name == "plain":
            workloads.append(plain_workload())
        else:
            print(
                f"tool workload: fine-tuning the model to call python ({args.sft_steps} steps)",
                file=sys.stderr,
            )
            workloads.append(tool_workload(args.sft_steps, total, args.max_tool_calls))
    torch.set_num_threads(args.threads)
    print(describe(machine()), f"; TRL {trl.__version__}")
    print(SETTINGS)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for workload in workloads:
            params = sum(p.numel() for p in workload.model.parameters())
            print(
                f"{workload.name}: a {params / 1e3:.0f} k-parameter Llama, {len(workload.tokenizer)} tokens"
            )
            for g in args.groups:
                for length in args.lengths:
                    shape = f"{workload.name}, G {g}, L {length}"
                    folder = Path(work) / shape.replace(", ", "-").replace(" ", "")
                    results = {"TRL GRPO": trl_grpo(workload, g, length, total, folder / "trl")}
                    for packing in args.packings:
                        results[f"ours GRPO, {packing}"] = ours(
                            workload, g, g, length, total, packing, folder / f"grpo-{packing}"
                        )
                    results[f"ours ARPO, N = {g // 2}"] = ours(
                        workload, g, g // 2, length, total, "auto", folder / "arpo"
                    )
                    results[f"ours ARPO, N = {g // 2}, speculative fills"] = ours(
                        workload, g, g // 2, length, total, "auto", folder / "arpo-speculative", True
                    )
                    trl_step = medians(results["TRL GRPO"], args.warmup)[0]
                    for name, times in results.items():
                        step, generation, rest, tokens, calls = medians(times, args.warmup)
                        rows.append(
                            [
                                shape,
                                name,
                                f"{tokens:.0f}",
                                f"{calls:.2f}",
                                f"{step:.3f}",
                                f"{generation:.3f}",
                                f"{1000 * generation / (g * tokens):.2f}",
                                f"{rest:.3f}",
                                f"{step / trl_step:.2f}",
                            ]
                        )
                    print(table(HEADERS, rows[-len(results) :]), flush=True)
    print()
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
