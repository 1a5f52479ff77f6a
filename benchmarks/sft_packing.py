"""Packed vs padded SFT steps on the built-in environment's demonstrations.

Builds the demo's environment (or takes ``--env``), then times the same SFT step — a batch of 32
demonstrations, the demo's 2-layer model — with ``sft.packing: flat`` (each demonstration a row,
padded to the longest of its micro-batch) and ``tree`` (packed into rows of ``--pack-tokens``),
alternating the two in one process over the same batches. Prints the median step time of each,
their ratio, and the loss after the timed steps (equal up to float32 sums: packing is exact).

    .venv/bin/python benchmarks/sft_packing.py --env runs/demo/env
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=SSE4_2 .venv/bin/python benchmarks/sft_packing.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, table, timed  # noqa: E402

from arpo.demo import DemoConfig  # noqa: E402
from arpo.models.loading import PolicyConfig, load_policy  # noqa: E402
from arpo.tasks.toolworld import build_toolworld, demo_example, load_demos  # noqa: E402
from arpo.train.batching import LearnerRow  # noqa: E402
from arpo.train.sft import SFTConfig, SFTTrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env", type=Path, help="a built toolworld folder (default: the demo's, built in a temp dir)"
    )
    parser.add_argument("--pack-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(describe(machine()))
    demo = DemoConfig()
    with tempfile.TemporaryDirectory() as tmp:
        env = args.env or build_toolworld(demo.env, Path(tmp) / "env", progress=False).root
        results = []
        for packing in ("flat", "tree"):
            model, tokenizer = load_policy(
                PolicyConfig(name="tiny", tokenizer=str(env / "tokenizer"), tiny=demo.model, seed=0)
            )
            rows = []
            for demo_row in load_demos(env / "demos.jsonl"):
                ids, mask = demo_example(demo_row, tokenizer)
                rows.append(LearnerRow(ids, [float(m) for m in mask]))
            config = SFTConfig.model_validate(
                {
                    **demo.sft.model_dump(),
                    "packing": packing,
                    "pack_tokens": args.pack_tokens,
                    "logging": {"tensorboard": False},
                }
            )
            trainer = SFTTrainer(config, model, tokenizer, rows, Path(tmp) / packing)
            last: dict = {}

            def step(trainer=trainer, last=last) -> None:
                last.update(trainer.train_step())

            results.append((packing, timed(step, args.repeats, warmup=3), last))
        (_, flat_s, flat), (_, tree_s, tree) = results
        print(
            table(
                ["layout", "step s (median)", "loss after the steps"],
                [
                    ["flat (padded)", f"{flat_s:.3f}", f"{flat['loss/sft']:.4f}"],
                    [
                        f"tree (packed, rows of {args.pack_tokens})",
                        f"{tree_s:.3f}",
                        f"{tree['loss/sft']:.4f}",
                    ],
                ],
            )
        )
        print(f"packed / padded step time: {tree_s / flat_s:.2f} ({flat_s / tree_s:.2f}x faster)")


if __name__ == "__main__":
    main()
