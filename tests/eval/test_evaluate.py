"""``arpo eval`` end to end on the small toolworld: files, records, summary, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from arpo.cli import app
from arpo.config import ConfigError, load_config
from arpo.eval.evaluate import EvalConfig, run_eval
from tests.eval.test_records import RECORD_FIELDS

runner = CliRunner()


def test_eval_command_writes_records_and_summary(toolworld, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            f"model.tokenizer={toolworld.tokenizer}",
            f"datasets=[{{toolworld_dir: {toolworld.root}, limit: 5}}]",
            "sampling.samples=3",
            "sampling.temperature=1.0",
            "sampling.max_response_tokens=24",
            "pass_k=[1, 3]",
            f"out_dir={out}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pass@3" in result.stdout
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 15 and all(set(r) == RECORD_FIELDS for r in records)
    assert sorted({r["sample"] for r in records}) == [0, 1, 2]
    assert all(r["family"] and r["dataset"] == "env-test" for r in records)
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["datasets"]
    assert row["tasks"] == 5 and row["samples"] == 3 and 0 <= row["pass@1"] <= row["pass@3"] <= 1
    assert row["metric"] in {"exact_match", "exact_match, math_equal", "math_equal"}
    assert summary["families"] and summary["config"]["sampling"]["samples"] == 3
    assert (out / "summary.md").read_text().startswith("# Evaluation")
    assert (out / "summary.html").is_file()
    assert not list(out.glob(".*.tmp"))


def test_eval_reads_task_files_with_explicit_tools(tmp_path):
    data = tmp_path / "mini.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"what is {i}+{i}?", "answer": [str(2 * i)]}) + "\n" for i in range(3)
        )
    )
    config = EvalConfig.model_validate(
        {
            "datasets": [{"dataset": {"path": str(data), "layout": "qa"}}],
            "tools": [{"name": "calc"}],
            "sampling": {"max_response_tokens": 16},
            "out_dir": str(tmp_path / "out"),
        }
    )
    summary = run_eval(config)
    assert summary["datasets"][0]["dataset"] == "mini" and summary["datasets"][0]["metric"] == "token_f1"
    assert summary["families"] == []


def test_eval_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no data sets"):
        load_config(EvalConfig, None, [])
    with pytest.raises(ConfigError, match="pass_k"):
        load_config(EvalConfig, None, ["datasets=[{toolworld_dir: x}]", "pass_k=[2]"])
    with pytest.raises(ConfigError, match="identical samples"):
        load_config(EvalConfig, None, ["datasets=[{toolworld_dir: x}]", "sampling.samples=4"])
    with pytest.raises(ConfigError, match="names must differ"):
        load_config(EvalConfig, None, ["datasets=[{toolworld_dir: a/x}, {toolworld_dir: b/x}]"])
    with pytest.raises(ConfigError, match="exactly one of dataset and toolworld_dir"):
        load_config(EvalConfig, None, ["datasets=[{split: test}]"])
    data = tmp_path / "mini.jsonl"
    data.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n")
    config = load_config(EvalConfig, None, [f"datasets=[{{dataset: {{path: {data}, layout: qa}}}}]"])
    with pytest.raises(ValueError, match="no tools"):
        run_eval(config)


def test_eval_command_reports_bad_config_with_exit_2():
    result = runner.invoke(app, ["eval", "sampling.samples=0"])
    assert result.exit_code == 2 and "sampling.samples" in result.output
