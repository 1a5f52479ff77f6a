"""Per-process memory of data parallelism (DDP) vs FSDP2 (``train.fsdp``) vs DeepSpeed ZeRO-2 for the
same model, in one run.

Launches the same SFT workload once per mode with ``torchrun --nproc_per_node 2`` on the CPU (gloo): a
randomly initialised Llama (``--hidden``, ``--layers``; float32, AdamW) trained on random token
rows, 4 rows of ``--tokens`` tokens per step, micro-batches of 1. Each process reports

* the training state it holds after the steps: its parameters (its shards under FSDP) and AdamW
  moments, under ZeRO-2 also its partition of the float32 master weights, counted from the
  tensors (gradients are freed after each step; ZeRO-2 keeps its gradient partition, not counted);
* what the model and training added to its resident memory: at its peak (``ru_maxrss``) and after
  the steps, both minus its resident memory just before the model was built. The workers run with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc returns freed tensors to the system: with its
  default (a threshold that grows as memory is freed) resident memory also counts freed memory the
  allocator keeps, which hid FSDP's saving entirely (measured: DDP +758 MB, FSDP +1,009 MB at peak);
* the median step time (``--repeats`` steps after one warm-up step).

    .venv/bin/python benchmarks/fsdp_memory.py
    .venv/bin/python benchmarks/fsdp_memory.py --hidden 1024 --layers 8

RL under FSDP also holds a full float32 copy of the weights to sample from (4 bytes per
parameter; docs/distributed.md): add it to the FSDP rows for an RL run. The ZeRO-2 mode runs in
float32 (DeepSpeed's CPU accelerator) and is left out, with a note, when DeepSpeed is not installed
(the ``deepspeed`` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, table, timed  # noqa: E402

MODES = ("ddp", "fsdp", "zero2")
ZERO2 = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 2},
}
"""DeepSpeed ZeRO-2 in float32, clipping as the SFT config's (``gradient_clipping`` filled in by arpo)."""


def _environment(mode: str, out: str) -> dict[str, str]:
    """What the launcher sets for ``mode``: gloo data parallelism for DDP and FSDP, DeepSpeed's
    environment (as ``accelerate launch`` with a DeepSpeed config sets it) for ZeRO-2."""
    if mode != "zero2":
        return {"ACCELERATE_USE_CPU": "true"}
    config = Path(out) / "zero2.json"
    config.write_text(json.dumps({**ZERO2, "gradient_clipping": "auto"}))
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(config)}


def _rss_mb() -> float:
    """Resident memory now, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _local_bytes(tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def worker(mode: str, args: argparse.Namespace) -> None:
    """One process of one mode: train, then write what it measured to ``<out>/<mode>-<rank>.json``."""
    import torch

    from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
    from arpo.train.batching import LearnerRow
    from arpo.train.sft import SFTConfig, SFTTrainer

    before = _rss_mb()
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(
        tokenizer, hidden_size=args.hidden, num_layers=args.layers, num_heads=8, num_kv_heads=4
    )
    generator = torch.Generator().manual_seed(0)
    rows = [
        LearnerRow(
            torch.randint(4, len(tokenizer), (args.tokens,), generator=generator).tolist(),
            [1.0] * args.tokens,
        )
        for _ in range(64)
    ]
    config = SFTConfig(
        steps=100,
        batch_size=4,
        micro_batch_size=1,
        packing="flat",
        fsdp={} if mode == "fsdp" else None,
        logging={"tensorboard": False},
    )
    trainer = SFTTrainer(config, model, tokenizer, rows, Path(args.out) / f"run-{mode}")
    step_s = timed(trainer.train_step, args.repeats, warmup=1)
    params = sum(_local_bytes(p) for p in trainer.model.parameters())
    optimizer = sum(
        _local_bytes(t) for s in trainer.optimizer.state.values() for t in s.values() if t.dim() > 0
    )
    zero = getattr(trainer.optimizer, "optimizer", None)  # DeepSpeed's ZeRO optimizer (its master weights)
    optimizer += sum(_local_bytes(t) for t in getattr(zero, "single_partition_of_fp32_groups", []))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    result = {
        "parameters": sum(p.numel() for p in model.parameters()) if mode == "ddp" else None,
        "state_mb": (params + optimizer) / 1e6,
        "peak_mb": peak - before,
        "after_mb": _rss_mb() - before,
        "step_s": step_s,
    }
    (Path(args.out) / f"{mode}-{trainer.rank}.json").write_text(json.dumps(result))
    trainer.accelerator.end_training()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per training row")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per mode")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    print(describe(machine()))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        sys.exit("torchrun was not found beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    modes = [m for m in MODES if m != "zero2" or importlib.util.find_spec("deepspeed") is not None]
    if "zero2" not in modes:
        print("DeepSpeed is not installed (the deepspeed extra): the ZeRO-2 rows are left out")
    with tempfile.TemporaryDirectory() as out:
        for port, mode in enumerate(modes, start=29561):
            options = [
                "--hidden",
                str(args.hidden),
                "--layers",
                str(args.layers),
                "--tokens",
                str(args.tokens),
            ]
            options += ["--repeats", str(args.repeats), "--worker", mode, "--out", out]
            command = [torchrun, "--nproc_per_node", "2", "--master_port", str(port), __file__, *options]
            done = subprocess.run(
                command, env={**env, **_environment(mode, out)}, capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"{mode} failed:\n{done.stderr[-4000:]}")
        results = {
            (m, r): json.loads((Path(out) / f"{m}-{r}.json").read_text()) for m in modes for r in (0, 1)
        }
    parameters = results["ddp", 0]["parameters"]
    print(
        f"model: Llama, hidden {args.hidden}, {args.layers} layers, {parameters / 1e6:.1f} M parameters "
        f"(float32 weights {parameters * 4 / 1e6:.0f} MB); 2 processes, 4 rows x {args.tokens} tokens per step"
    )
    rows = [
        [m, r, f"{v['state_mb']:.0f}", f"{v['peak_mb']:.0f}", f"{v['after_mb']:.0f}", f"{v['step_s']:.2f}"]
        for (m, r), v in results.items()
    ]
    headers = [
        "mode",
        "rank",
        "params + AdamW held, MB",
        "RSS added at peak, MB",
        "RSS added after the steps, MB",
    ]
    print(table([*headers, "step s (median)"], rows))
    labels = {
        "state_mb": "training state held",
        "peak_mb": "memory added at peak",
        "after_mb": "memory added after",
    }
    for mode in modes[1:]:
        name = {"fsdp": "FSDP", "zero2": "ZeRO-2"}[mode]
        for key, label in labels.items():
            ratio = max(results[mode, r][key] for r in (0, 1)) / max(results["ddp", r][key] for r in (0, 1))
            print(f"{name} / DDP, {label} (largest rank): {ratio:.2f}")
        step = results[mode, 0]["step_s"] / results["ddp", 0]["step_s"]
        print(f"{name} / DDP, step time (rank 0): {step:.2f}")


if __name__ == "__main__":
    main()
