"""Soak run: many RL steps on the built-in environment with random tool faults, watching for leaks.

Builds the demo's ``toolworld`` environment (or takes ``--env``), trains the demo's tiny model with
cold-start SFT so that it calls the tools (or takes ``--model``, e.g. ``runs/demo/sft``), then runs
``--steps`` ARPO steps with the demo's RL settings, every tool wrapped in
:class:`arpo.tools.faults.FaultyTool`: a share ``--fault-rate`` of the calls hangs past the tool
box's timeout, crashes or returns garbage (seeded by ``--seed``). The run checkpoints every
``--sample-every`` steps and, after each of those steps, samples this process's current and peak
RSS (``/proc/self/status`` VmRSS and VmHWM), open file descriptors (``/proc/self/fd``), threads,
child processes still alive (psutil, else a ``/proc`` scan; zombies included) and ``arpo-*``
folders in the temporary directory (the python sandbox makes ``arpo-python-*``); once more at
the end, after the run has closed its tools. The temporary directory is a private folder
(``<out>/tmp``, also ``TMPDIR`` for child processes), so other programs' folders are not counted.

Prints the machine, a table of the samples, and a verdict: RSS, peak RSS, descriptors and threads
*flat* when the last sample exceeds the first by at most :data:`GROWTH` (memory) or
:data:`EXTRA` (counts); child processes and temporary folders *zero* at the end. ``--json``
also writes the samples and the verdict. Not run in CI (minutes to hours):

    .venv/bin/python benchmarks/soak.py --steps 300 --seed 0 --fault-rate 0.1 --json runs/soak/soak.json
    .venv/bin/python benchmarks/soak.py --steps 20 --sft-steps 100 --sample-every 5   # a short check

``<out>/rl`` is replaced by every soak; ``<out>/env`` and ``<out>/sft`` are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import describe, machine, table  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from arpo.demo import DemoConfig  # noqa: E402
from arpo.models.loading import PolicyConfig  # noqa: E402
from arpo.tasks.toolworld import ToolworldPaths, build_toolworld, read_config, tool_specs  # noqa: E402
from arpo.tools.base import ToolStatus  # noqa: E402
from arpo.tools.faults import KINDS  # noqa: E402
from arpo.train.jobs import DataConfig, RLJobConfig, SFTJobConfig, ToolboxConfig, run_rl, run_sft  # noqa: E402

GROWTH = 0.10
"""Memory is flat when its last sample is at most this fraction above its first."""
EXTRA = 2
"""Descriptors and threads are flat when their last sample is at most this many above their first."""
MIB = 2**20


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM (bytes) and Threads of this process, from ``/proc/self/status``."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            fields[key] = int(value)
    return fields


def live_children() -> list[str]:
    """Descendant processes of this one that still exist (zombies too), as ``pid state command``."""
    try:
        import psutil
    except ImportError:
        return _descendants_from_proc(os.getpid())
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            found.append(f"{child.pid} {child.status()} {' '.join(child.cmdline())[:120]}")
        except psutil.NoSuchProcess:  # gone meanwhile
            continue
    return found


def _descendants_from_proc(root: int) -> list[str]:
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            command, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            stats[int(entry.name)] = [rest[0], rest[1], command]  # state, parent, command
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (_, parent, _) in stats.items() if int(parent) in frontier} - found
        found |= frontier
    return [f"{pid} {stats[pid][0]} {stats[pid][2]}" for pid in sorted(found)]


def arpo_temp_folders() -> int:
    return sum(1 for _ in Path(tempfile.gettempdir()).glob("arpo-*"))


def sample(step: int | str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """What leaks would show, after ``step``; tool calls and skipped updates so far from ``history``."""
    status = proc_status()
    tools = {s.value: sum(m.get(f"rollout/tool_{s.value}") or 0 for m in history) for s in ToolStatus}
    return {
        "step": step,
        "rss_mib": status["VmRSS"] / MIB,
        "peak_rss_mib": status["VmHWM"] / MIB,
        "open_fds": len(os.listdir("/proc/self/fd")),
        "threads": status["Threads"],
        "children": len(children := live_children()),
        "child_processes": children,
        "arpo_temp_folders": arpo_temp_folders(),
        "tool_calls": tools,
        "skipped_updates": history[-1].get("train/skipped_updates_total", 0) if history else 0,
    }


def verdict(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per quantity: what it should be (flat or zero), whether it is, and what was measured.
    ``samples[-1]`` is the one after the run."""
    during, end = samples[:-1], samples[-1]
    first, last = during[0], during[-1]
    checks = {}
    for key, label in (("rss_mib", "RSS"), ("peak_rss_mib", "peak RSS")):
        growth = last[key] / first[key] - 1
        measured = f"{first[key]:.0f} → {last[key]:.0f} MiB ({100 * growth:+.1f} %)"
        checks[label] = {"expected": "flat", "passed": growth <= GROWTH, "measured": measured}
    for key, label in (("open_fds", "open file descriptors"), ("threads", "threads")):
        measured = f"{first[key]} → {last[key]}"
        checks[label] = {"expected": "flat", "passed": last[key] - first[key] <= EXTRA, "measured": measured}
    for key, label in (("children", "child processes"), ("arpo_temp_folders", "arpo temporary folders")):
        measured = f"{end[key]} at the end, at most {max(s[key] for s in during)} during the run"
        checks[label] = {"expected": "zero", "passed": end[key] == 0, "measured": measured}
    return checks


def prepare(args: argparse.Namespace, out: Path, demo: DemoConfig) -> tuple[Path, str]:
    """The environment folder and the policy to start RL from (trained here unless given)."""
    env = args.env or out / "env"
    if args.env is None and not (ToolworldPaths(env).manifest.is_file() and read_config(env) == demo.env):
        build_toolworld(demo.env, env, overwrite=True, progress=False)
    if args.model is not None:
        return env, args.model
    sft = SFTJobConfig(
        run_dir=str(out / "sft"),
        model=PolicyConfig(name="tiny", tiny=demo.model, seed=args.seed),
        data=DataConfig(toolworld_dir=str(env)),
        train=demo.sft.model_copy(
            update={"seed": args.seed, "steps": args.sft_steps, "save_every": args.sft_steps}
        ),
    )
    run_sft(sft, resume=True)
    return env, str(out / "sft")


def faulty_specs(env: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The environment's tool specs, each wrapped in a FaultyTool with its own seed."""
    paths = ToolworldPaths(env)
    specs = tool_specs(read_config(env), paths.corpus, cache_dir=paths.root / "index")
    return [
        {
            "import": "arpo.tools.faults:FaultyTool",
            "tool": spec,
            "rate": args.fault_rate,
            "seed": args.seed * 1000 + i,
            "hang_s": 2 * args.tool_timeout,
        }
        for i, spec in enumerate(specs)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="RL steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of tool calls with a fault")
    parser.add_argument(
        "--sample-every", type=int, default=25, help="sample (and checkpoint) every this many steps"
    )
    parser.add_argument("--tool-timeout", type=float, default=5.0, help="the tool box's timeout per call (s)")
    parser.add_argument("--out", type=Path, default=Path("runs/soak"))
    parser.add_argument("--env", type=Path, help="a built toolworld folder (default: the demo's, in OUT/env)")
    parser.add_argument("--model", help="run folder or checkpoint to start RL from (default: SFT in OUT/sft)")
    parser.add_argument("--sft-steps", type=int, default=600, help="SFT steps when --model is not given")
    parser.add_argument("--json", type=Path, help="also write the samples and the verdict here")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()

    out = args.out.resolve()
    private_tmp = out / "tmp"
    for folder in (out / "rl", private_tmp):
        shutil.rmtree(folder, ignore_errors=True)
    private_tmp.mkdir(parents=True)
    os.environ["TMPDIR"] = str(private_tmp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    print(describe(machine()))
    print(
        f"soak: {args.steps} RL steps, seed {args.seed}, fault rate {args.fault_rate} ({', '.join(KINDS)}), "
        f"tool timeout {args.tool_timeout:g} s, samples every {args.sample_every} steps"
    )

    demo = DemoConfig()
    env, model = prepare(args, out, demo)
    job = RLJobConfig(
        run_dir=str(out / "rl"),
        model=PolicyConfig(name=model),
        data=DataConfig(toolworld_dir=str(env)),
        tools=faulty_specs(env, args),
        toolbox=ToolboxConfig(timeout_s=args.tool_timeout),
        train=demo.rl.model_copy(
            update={
                "steps": args.steps,
                "seed": args.seed,
                "save_every": args.sample_every,
                "keep_checkpoints": 1,
            }
        ),
    )
    history: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []

    def on_step(step: int, metrics: dict[str, Any]) -> None:
        history.append(metrics)
        if step % args.sample_every == 0:
            samples.append(sample(step, history))

    run_rl(job, on_step=on_step)
    samples.append(sample("end (tools closed)", history))
    if len(samples) < 3:
        raise SystemExit(f"--steps {args.steps} gives fewer than 2 samples every {args.sample_every} steps")

    headers = ["step", "RSS MiB", "peak RSS MiB", "open fds", "threads", "children", "arpo tmp folders"]
    headers += [f"tools {s.value}" for s in ToolStatus] + ["skipped updates"]
    rows = [
        [
            s["step"],
            f"{s['rss_mib']:.0f}",
            f"{s['peak_rss_mib']:.0f}",
            s["open_fds"],
            s["threads"],
            s["children"],
            s["arpo_temp_folders"],
            *(f"{s['tool_calls'][status.value]:g}" for status in ToolStatus),
            f"{s['skipped_updates']:g}",
        ]
        for s in samples
    ]
    print(table(headers, rows))
    checks = verdict(samples)
    for label, check in checks.items():
        print(f"{label}: {check['expected']}? {'yes' if check['passed'] else 'NO'} ({check['measured']})")
    for child in samples[-1]["child_processes"]:
        print(f"left running: {child}")
    print(f"verdict: {'all flat or zero' if all(c['passed'] for c in checks.values()) else 'LEAK SUSPECTED'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        options = {key: str(value) for key, value in vars(args).items()}
        args.json.write_text(
            json.dumps({"options": options, "samples": samples, "verdict": checks}, indent=1)
        )


if __name__ == "__main__":
    main()
