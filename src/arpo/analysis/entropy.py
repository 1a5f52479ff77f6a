"""``arpo analyze entropy``: token entropy around tool results, the observation behind ARPO.

ARPO's motivating figure (arXiv 2507.19849, Figure 1 and §2.2) shows that the policy's token
entropy rises right after a tool result enters the context, which is where ARPO branches. This
analysis samples trajectories of a model on a data set with its tools (plain sampling,
:mod:`arpo.eval.sampling`) and, for every tool result (each tree node once), lays the model's
tokens out by their position relative to the result:

* offsets −w … −1: the last w tokens the model wrote before the result (−1 is the call's
  closing tag);
* offsets +1 … +w: the first w tokens it wrote after the result;

and reports, per offset, the mean normalised entropy H_t / ln|V| ∈ [0, 1] (H_t the exact
full-vocabulary entropy of the temperature-1 distribution, :mod:`arpo.core.entropy`) and how many
tokens were averaged, for all tool results together and per tool tag. ``before`` and ``after``
are the means over all tokens of the two windows. Written to ``entropy.json`` and
``entropy.png`` in ``out_dir``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from arpo.core.tree import Role, RolloutTree
from arpo.eval.sampling import SamplingConfig, sample_trees
from arpo.eval.sources import EvalDataset, ToolSpecs, load_eval_dataset, resolve_policy
from arpo.io import atomic_write_json
from arpo.models.loading import PolicyConfig, load_policy
from arpo.report.markdown import Table, fmt
from arpo.report.plots import Series, line_plot
from arpo.train.jobs import ToolboxConfig

ALL = "all"


class EntropyAnalysisConfig(BaseModel):
    """Mean token entropy before and after tool results for a model on a data set (``arpo analyze entropy``)."""

    model_config = ConfigDict(extra="forbid")

    model: PolicyConfig = Field(
        default_factory=PolicyConfig,
        description="The policy; model.name may be a Hugging Face folder, a checkpoint or a run folder.",
    )
    dataset: EvalDataset | None = Field(None, description="The data set whose tasks are sampled (required).")
    tools: ToolSpecs | None = Field(None, description="Tool specs; default: the data set's (a toolworld's).")
    toolbox: ToolboxConfig = Field(default_factory=ToolboxConfig, description="Tool execution limits.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(samples=4, temperature=1.0),
        description="How tasks are sampled (the figure uses temperature 1).",
    )
    window: int = Field(20, ge=1, description="w: tokens shown before and after each tool result.")
    out_dir: str = Field("runs/entropy", description="Folder for entropy.json and entropy.png.")


def entropy_profile(trees: Sequence[RolloutTree], window: int) -> dict[str, Any]:
    """Mean normalised entropy per offset around tool results (module docstring)."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    results: dict[str, int] = defaultdict(int)
    for tree in trees:
        log_v = math.log(tree.vocab_size)
        for node in tree.nodes:
            if node.role is not Role.TOOL or node.parent is None:
                continue
            tag = "+".join(call.tag for call in node.tool_calls) or "unknown"
            before = node.parent.entropies[-window:]
            offsets = [(offset - len(before), h) for offset, h in enumerate(before)]
            for child in node.children:
                offsets += [(offset + 1, h) for offset, h in enumerate(child.entropies[:window])]
            for key in (ALL, tag):
                results[key] += 1
                for offset, h in offsets:
                    values[key][offset].append(h / log_v)
    profile: dict[str, Any] = {"window": window, "curves": {}}
    for key, by_offset in values.items():
        before = [h for offset, hs in by_offset.items() if offset < 0 for h in hs]
        after = [h for offset, hs in by_offset.items() if offset > 0 for h in hs]
        profile["curves"][key] = {
            "tool_results": results[key],
            "offsets": sorted(by_offset),
            "mean": [fmean(by_offset[o]) for o in sorted(by_offset)],
            "count": [len(by_offset[o]) for o in sorted(by_offset)],
            "before": fmean(before) if before else None,
            "after": fmean(after) if after else None,
        }
    return profile


def profile_table(profile: dict[str, Any]) -> Table:
    """Offsets as rows, one mean-entropy column (and token count) per curve."""
    curves = profile["curves"]
    offsets = sorted({o for curve in curves.values() for o in curve["offsets"]})
    lookup = {
        key: dict(zip(c["offsets"], zip(c["mean"], c["count"], strict=True), strict=True))
        for key, c in curves.items()
    }
    header = ["offset", *(f"{key} H/ln V (n)" for key in curves)]
    rows = [[f"{offset:+d}", *(_cell(lookup[key].get(offset)) for key in curves)] for offset in offsets]
    rows.append(["before", *(fmt(c["before"]) for c in curves.values())])
    rows.append(["after", *(fmt(c["after"]) for c in curves.values())])
    return Table(header, rows)


def _cell(value: tuple[float, int] | None) -> str:
    return "–" if value is None else f"{value[0]:.3f} ({value[1]})"


def run_entropy_analysis(config: EntropyAnalysisConfig, console: Console | None = None) -> dict[str, Any]:
    """Sample, profile, write ``entropy.json`` and ``entropy.png``; returns the profile."""
    if config.dataset is None:
        raise ValueError("no data set: give dataset.toolworld_dir=... or dataset.dataset.path=...")
    console = console or Console(stderr=True)
    policy = resolve_policy(config.model)
    model, tokenizer = load_policy(policy)
    data = load_eval_dataset(config.dataset, config.tools)
    with config.toolbox.build(data.tool_specs, tokenizer) as tools:
        trees = sample_trees(
            model, tokenizer, data.tasks, tools, config.sampling, label="entropy", console=console
        )
    profile = {"model": policy.name, "dataset": data.name, **entropy_profile(trees, config.window)}
    if not profile["curves"]:
        raise ValueError(
            f"the model made no tool call on {data.name}: no entropy around tool results to show"
        )
    out = Path(config.out_dir)
    series = [
        Series(f"{key} ({curve['tool_results']} results)", curve["offsets"], curve["mean"])
        for key, curve in profile["curves"].items()
    ]
    line_plot(
        series,
        out / "entropy.png",
        title=f"Token entropy around tool results: {Path(config.model.name).name} on {data.name}",
        xlabel="token position relative to the tool result (− before, + after)",
        ylabel="mean entropy H / ln|V|",
        marker_x=0,
    )
    atomic_write_json(out / "entropy.json", {**profile, "config": config.model_dump(mode="json")})
    return profile
