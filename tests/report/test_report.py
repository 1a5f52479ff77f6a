"""Reports: Markdown/HTML rendering, plots, and the training-run report with an overlay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arpo.cli import app
from arpo.report.curves import accuracy_keys, accuracy_vs_budget, metric_series
from arpo.report.markdown import Heading, Image, Paragraph, Table, fmt, to_html, to_markdown, write_report
from arpo.report.plots import Panel, Series, figure, moving_average
from arpo.report.run_report import write_run_report
from arpo.train.metrics_log import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def test_markdown_and_html_render_the_same_blocks():
    blocks = [
        Heading("Title <1>", 1),
        Paragraph("uses `code` and **bold** & more"),
        Table(["a", "b|c"], [["1", "x|y"]]),
        Image("plots/p.png", "a plot"),
    ]
    md = to_markdown(blocks)
    assert md.splitlines()[0] == "# Title <1>"
    assert "| a | b|c |" in md and "| 1 | x\\|y |" in md and "![a plot](plots/p.png)" in md
    page = to_html(blocks, "T")
    assert (
        "<h1>Title &lt;1&gt;</h1>" in page
        and "<code>code</code>" in page
        and "<b>bold</b> &amp; more" in page
    )
    assert '<img src="plots/p.png"' in page and "<td>x|y</td>" in page


def test_fmt():
    assert [fmt(None), fmt(0.123456), fmt(12345.6), fmt(3), fmt(float("nan"))] == [
        "–",
        "0.123",
        "12,346",
        "3",
        "–",
    ]


def test_write_report_writes_both_files_atomically(tmp_path):
    path = write_report([Heading("x")], tmp_path / "r", "T")
    assert path.read_text() == "## x\n" and (tmp_path / "r" / "report.html").is_file()
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_moving_average_is_centred():
    assert moving_average([1, 2, 3, 4, 5, 6], 3) == [1.5, 2, 3, 4, 5, 5.5]
    assert moving_average([4.0], 5) == [4.0]


def test_figure_writes_a_png(tmp_path):
    series = [Series("a", [1, 2, 3], [0.1, 0.5, 0.2]), Series("b", [1, 2, 3], [0.3, 0.2, 0.1], "--")]
    path = figure(
        [Panel("p1", "y", series, smooth=2), Panel("p2", "y", series[:1], marker_x=2)], tmp_path / "f.png"
    )
    assert path.read_bytes()[:8] == PNG


def fake_run(folder: Path, steps: int, rl: bool = True, shift: float = 0.0, executed: float = 1.5) -> Path:
    """A run folder with ``steps`` lines of metrics; an RL run executes ``executed`` of its 3 tool
    calls per step (the others shared), and evaluates a held-out accuracy every 10 steps."""
    folder.mkdir(parents=True)
    lines = []
    for step in range(1, steps + 1):
        metrics = {"step": step, "grad_norm": 1.0, "lr": 1e-3}
        if rl:
            metrics |= {
                "rollout/tool_calls_executed": executed,
                "rollout/engine_tokens": 100.0,
                "budget/tool_calls_total": step * executed,
                "budget/tool_calls_flat_total": step * 3.0,
                "budget/engine_tokens_total": step * 100.0,
                "budget/tokens_flat_total": step * 400.0,
                "budget/learner_tokens_total": step * 120.0,
                "time/wall_s_total": step * 2.0,
                **({"eval/accuracy": step / steps} if step % 10 == 0 else {}),
                "reward/mean": step / steps + shift,
                "reward/accuracy": step / steps / 2,
                "reward/format_ok": 1.0,
                "rollout/tool_calls_per_trajectory": 1.5,
                "rollout/response_length_mean": 60.0,
                "rollout/branches_per_prompt": 2.0 - shift,
                "rollout/branch_top3_share": 0.8,
                "rollout/entropy_before_tool": 0.1,
                "rollout/entropy_after_tool": 0.2,
                "time/step_s": 2.0,
            }
        else:
            metrics["loss/sft"] = 3.0 / step
        lines.append(json.dumps(metrics))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "config.yaml").write_text(
        f"model: {{name: tiny}}\ntrain: {{steps: {steps}, optim: {{lr: 0.001}}}}\n"
    )
    return folder


def test_rl_run_report_with_overlay(tmp_path):
    arpo = fake_run(tmp_path / "arpo", 30)
    grpo = fake_run(tmp_path / "grpo", 30, shift=0.5, executed=3.0)
    path = write_run_report(arpo, [grpo], tmp_path / "cmp")
    text = path.read_text()
    assert text.startswith("# Training report: arpo vs grpo")
    for name in ("reward", "tools", "budget", "accuracy_vs_budget", "branching", "entropy"):
        assert f"plots/{name}.png" in text
        assert (tmp_path / "cmp" / "plots" / f"{name}.png").read_bytes()[:8] == PNG
    assert "plots/sft.png" not in text and "plots/optimizer.png" in text  # no SFT loss logged
    assert "| reward/mean | 0.0667 | 0.967 | 0.567 | 1.47 |" in text  # first/last tenth per run
    assert "| learning rate | 0.001 | 0.001 |" in text
    assert "## Budgets (cumulative, at the last logged step)" in text
    assert "| budget | arpo | grpo |" in text
    assert (
        "| tool calls executed | 45 | 90 |" in text
        and "| tool calls per trajectory (summed) | 90 | 90 |" in text
    )
    assert (
        "| engine tokens (prefill + decode) | 3,000 | 3,000 |" in text
        and "| wall time (s) | 60 | 60 |" in text
    )
    assert "| tool calls saved by sharing | 50.0 % | 0.0 % |" in text
    assert "| tokens saved by sharing | 75.0 % | 75.0 % |" in text
    assert "| rollout/tool_calls_executed | 1.5 | 1.5 | 3 | 3 |" in text
    assert (tmp_path / "cmp" / "report.html").stat().st_size > 0


def test_sft_run_report_via_the_command(tmp_path):
    run = fake_run(tmp_path / "sft", 5, rl=False)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "plots/sft.png" in text and "loss/sft" in text and "reward" not in text
    assert "Budgets" not in text and "budget" not in text  # no budget table, rows or plots


def test_accuracy_is_plotted_against_the_cumulative_budgets(tmp_path):
    runs = {"arpo": read_metrics(fake_run(tmp_path / "arpo", 30))}
    assert accuracy_keys(runs) == [("reward/accuracy", "all leaves"), ("eval/accuracy", "eval/accuracy")]
    spec = accuracy_vs_budget(runs)
    assert [panel.x for panel in spec.panels] == [
        "budget/tool_calls_total",
        "budget/engine_tokens_total",
        "time/wall_s_total",
    ]
    calls, accuracy = metric_series(runs["arpo"], "eval/accuracy", "budget/tool_calls_total")
    assert calls == [15.0, 30.0, 45.0] and accuracy == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_report_of_a_folder_without_metrics_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        write_run_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2


def test_a_constant_learning_rate_is_plotted_without_an_offset_axis():
    """matplotlib labels a flat 3e-4 series "1e-16+3e-4"; the plots show plain values from 0."""
    import matplotlib.pyplot as plt

    from arpo.report.plots import plain_y_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3e-4] * 3)
    plain_y_axis(ax, [3e-4] * 3)
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert ax.get_ylim() == (0, pytest.approx(4.5e-4))
    plt.close(fig)
