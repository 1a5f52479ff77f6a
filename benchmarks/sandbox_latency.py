"""Per-call latency of the sandboxed ``python`` tool: this checkout against a baseline revision.

Each implementation runs in its own interpreter (``--worker``), importing ``arpo`` from its own
source tree: the baseline's is extracted with ``git archive`` (default: ``dec2694``, the last
revision that started a new interpreter per call), this checkout's is ``src/``. Both run the
same workload with ``isolation: namespaces`` (or ``--isolation``):

* **1 worker**: ``--calls`` calls of ``print(1)`` one after another, after warm-up calls;
  p50/p95 of the per-call wall time, calls per second;
* **8 workers**: ``--calls`` calls through a :class:`~arpo.tools.ToolBox` with 8 workers;
  p50/p95 of each call's latency as the ToolBox measures it, calls per second over the batch.

Order: baseline then this checkout for each worker count, so the machine's state is alike.

    .venv/bin/python benchmarks/sandbox_latency.py
    .venv/bin/python benchmarks/sandbox_latency.py --baseline HEAD~3 --calls 60
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, percentile, sample_times, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CODE = "print(1)"


def worker(src: Path, isolation: str, workers: int, calls: int) -> dict[str, float]:
    """Run in a fresh interpreter whose ``arpo`` comes from ``src``; the measured numbers."""
    sys.path.insert(0, str(src))
    from arpo.tools import PythonTool, ToolBox

    tool = PythonTool(isolation=isolation)
    if workers == 1:
        started = time.perf_counter()
        times = sample_times(lambda: tool.run(CODE), repeats=calls, warmup=3)
        wall = time.perf_counter() - started
    else:
        with ToolBox([tool], max_workers=workers, timeout_s=60.0) as box:
            box.run_many([("python", CODE)] * workers)  # warm-up
            started = time.perf_counter()
            results = box.run_many([("python", CODE)] * calls)
            wall = time.perf_counter() - started
        assert all(r.text == "1" for r in results), [r.text for r in results if r.text != "1"]
        times = [r.latency_s for r in results]
    tool.close()
    return {
        "p50_ms": percentile(times, 50) * 1e3,
        "p95_ms": percentile(times, 95) * 1e3,
        "calls_per_s": calls / wall,
    }


def extract(revision: str, into: Path) -> Path:
    """``src/arpo`` of ``revision`` under ``into``; returns the ``src`` folder."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "src/arpo"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        sys.exit(
            f"git archive {revision} failed (a git checkout is needed): {archive.stderr.decode().strip()}"
        )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path, isolation: str, workers: int, calls: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", str(src), "--isolation", isolation]
    command += ["--workers", str(workers), "--calls", str(calls)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"worker failed ({' '.join(command)}):\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="dec2694", help="git revision to compare against")
    parser.add_argument("--isolation", default="namespaces", choices=["namespaces", "guard"])
    parser.add_argument("--calls", type=int, default=40, help="timed calls per measurement")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.isolation, args.workers, args.calls)))
        return
    print(describe(machine()))
    print(f"isolation: {args.isolation}; {args.calls} timed calls of {CODE!r} per row\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {
            f"baseline {args.baseline}": extract(args.baseline, Path(tmp)),
            "this checkout": REPO / "src",
        }
        for workers in (1, 8):
            measured = {
                name: measure(src, args.isolation, workers, args.calls) for name, src in sources.items()
            }
            old, new = measured.values()
            for name, numbers in measured.items():
                rows.append(
                    [
                        name,
                        workers,
                        f"{numbers['p50_ms']:.1f}",
                        f"{numbers['p95_ms']:.1f}",
                        f"{numbers['calls_per_s']:.1f}",
                    ]
                )
            rows.append(
                [
                    "ratio (baseline / this)",
                    workers,
                    f"{old['p50_ms'] / new['p50_ms']:.1f}×",
                    f"{old['p95_ms'] / new['p95_ms']:.1f}×",
                    f"{new['calls_per_s'] / old['calls_per_s']:.1f}×",
                ]
            )
    print(table(["implementation", "workers", "p50 ms", "p95 ms", "calls/s"], rows))


if __name__ == "__main__":
    main()
