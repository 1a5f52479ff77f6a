"""The ``arpo`` command line. Each subcommand takes ``--config FILE.yaml`` plus ``dotted.key=value``
overrides (see :mod:`arpo.config`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from arpo.config import ConfigError, load_config

app = typer.Typer(
    name="arpo",
    help="Agentic Reinforced Policy Optimization: RL for tool-using LLM agents.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        help="Config overrides as dotted.key=value, e.g. rollout.branching.alpha=1.0", show_default=False
    ),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", exists=True, dir_okay=False)
]


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

    try:
        cfg = load_config(RolloutJobConfig, config, overrides or [])
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    stats = run_rollout_job(cfg, out, console)
    console.print(json.dumps(stats, indent=1))
    console.print(f"[green]wrote[/green] {len(cfg.prompts)} trees to {out}")


@app.callback()
def main() -> None:
    """Agentic Reinforced Policy Optimization: RL for tool-using LLM agents."""
