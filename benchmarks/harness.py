"""What every benchmark shares: the machine it ran on, seeds, summary statistics, the table it prints.

A benchmark script adds a workload; it takes its timing and reporting from here:

* :func:`machine` — CPU model, instruction-set extensions that change speed and floating-point
  paths (AVX-512, AMX), cores, torch version and threads, and the instruction-set limits set in
  the environment (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``);
* :data:`SLOW_CPU_ENV` and :func:`slow_cpu_environ` — the environment that makes this machine
  compute like a 2-core AVX2-only laptop or server (docs/demo.md, "Machines differ"), vLLM's CPU
  kernels included (``avx2_site/sitecustomize.py``); :func:`per_isa` runs a benchmark's
  measurement natively and under it, each in a child process (:func:`add_isa_arguments`);
  ``python benchmarks/harness.py COMMAND [ARG...]`` runs any command under it (e.g. a recipe);
* :func:`timed` — median of repeated calls after warm-up calls (:func:`sample_times` gives them
  all, :func:`percentile` any percentile of them); :func:`interleaved` — the same for several
  alternatives compared in one run, timed in turns;
* :func:`mean_sd` / :func:`spread` — mean ± sample standard deviation and min–max of per-seed results;
* :func:`table` — a Markdown table, printed and pasted into docs as is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SLOW_CPU_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}
"""Emulates a CPU without AVX-512/AMX on which MKL takes its generic path (as it does on AMD
CPUs): torch's own kernels limited to AVX2, oneDNN to AVX2, MKL's GEMMs to SSE4.2. Measured on a
2-core AMD EPYC (AVX2 only), the demo's SFT step took 0.41 s; on the AVX-512/AMX development
machine 0.16 s natively, 0.16 s with the first two variables only (MKL still used AVX-512) and
0.45 s with all three."""

AVX2_SITE = Path(__file__).resolve().parent / "avx2_site"
"""Holds the ``sitecustomize`` that makes ``torch.cpu`` report no AVX-512/AMX, which vLLM's CPU
backend reads to pick its kernels (the variables above do not reach them)."""


def slow_cpu_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`SLOW_CPU_ENV` set and
    :data:`AVX2_SITE` first on ``PYTHONPATH``: a child started with it computes as on an
    AVX2-only CPU whose MKL runs generic code."""
    base = dict(os.environ if base is None else base)
    path = os.pathsep.join(p for p in (str(AVX2_SITE), base.get("PYTHONPATH", "")) if p)
    return {**base, **SLOW_CPU_ENV, "PYTHONPATH": path}


def add_isa_arguments(parser: argparse.ArgumentParser) -> None:
    """``--isa`` (the instruction sets :func:`per_isa` runs) and the hidden ``--child`` flag that
    marks the measuring process."""
    parser.add_argument("--isa", nargs="+", default=["native", "avx2"], choices=["native", "avx2"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def per_isa(script: str, argv: Sequence[str], isas: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each of ``isas`` (``native``; ``avx2``: under :func:`slow_cpu_environ`), run
    ``script --child *argv`` in a child process (the variables take effect only at start-up) and
    yield the instruction set and the JSON object the child printed last."""
    for isa in isas:
        env = slow_cpu_environ() if isa == "avx2" else dict(os.environ)
        print(f"{isa}: running {Path(script).name} ...", file=sys.stderr, flush=True)
        command = [sys.executable, script, "--child", *argv]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        yield isa, json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """The facts about this machine that decide speed and floating-point results."""
    import torch

    flags: set[str] = set()
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "amx": "amx_bf16" in flags,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "isa_limits": {k: os.environ[k] for k in SLOW_CPU_ENV if k in os.environ},
        "avx512_hidden": "avx512f" in flags and not torch.cpu._is_avx512_supported(),
    }


def describe(info: dict[str, Any]) -> str:
    extensions = ", ".join(name for name in ("avx512", "amx") if info["avx512" if name == "avx512" else name])
    hidden = ["torch.cpu reports no AVX-512/AMX"] if info.get("avx512_hidden") else []
    limits = " ".join([*(f"{k}={v}" for k, v in info["isa_limits"].items()), *hidden]) or "none"
    return (
        f"{info['cpu']} ({info['cores']} cores; {extensions or 'no AVX-512/AMX'}), torch {info['torch']} "
        f"with {info['threads']} threads; instruction-set limits: {limits}"
    )


def sample_times(work: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``work`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def timed(work: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls of ``work`` after ``warmup`` untimed calls."""
    return statistics.median(sample_times(work, repeats, warmup))


def interleaved(works: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each of ``works``, timed in turns (one call of each per round, after
    ``warmup`` untimed rounds), so that a slow phase of a shared machine hits them all alike."""
    for _ in range(warmup):
        for work in works.values():
            work()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            started = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, linearly interpolated between ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± sd (min–max)`` of ``values`` times ``scale``."""
    mean, sd = mean_sd([v * scale for v in values])
    low, high = min(values) * scale, max(values) * scale
    return f"{mean:.{digits}f} ± {sd:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/harness.py COMMAND [ARG...]: runs COMMAND as on an AVX2-only CPU")
    os.execvpe(sys.argv[1], sys.argv[1:], slow_cpu_environ())
