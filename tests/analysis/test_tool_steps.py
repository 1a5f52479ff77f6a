"""``arpo analyze tool-steps``: tool results against the steps of GSM8K-format solutions, counted
by hand on a written evaluation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from arpo.analysis.tool_steps import analyze_tool_steps, hits, reference_values
from arpo.cli import app

ROWS = [
    {
        "question": "Eggs?",
        "answer": "She sells 16 - 3 = <<16-3=13>>13 eggs.\nShe earns 13 * 2 = <<13*2=26>>26.\n#### 26",
    },
    {"question": "Pages?", "answer": "Left: 120 - 45 = <<120-45=75>>75\n#### 75"},
    {"question": "Plain?", "answer": "No annotation here.\n#### 4"},
]


def record(question: str, results: list[str], correct: bool, dataset: str = "gsm8k-test") -> dict:
    segments = []
    for text in results:
        segments += [{"role": "model", "text": "<python>print(1)</python>"}, {"role": "tool", "text": text}]
    return {
        "dataset": dataset,
        "task_id": question,
        "question": question,
        "correct": correct,
        "tool_calls": [{"tag": "python"} for _ in results],
        "segments": segments + [{"role": "model", "text": "<answer>1</answer>"}],
    }


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    records = [
        record("Eggs?", ["<result>13</result>", "<result>27</result>"], False),  # first call on a step
        record("Eggs?", ["<result>1,300</result>", "<result>26.0</result>"], True),  # the answer hits
        record("Pages?", ["<result>Error: name 'x'</result>"], False),
        record("Pages?", [], True),
        record("Plain?", ["<result>4</result>"], True),  # no annotation: unmatched
        record("Unknown?", [], False),  # not in the data: unmatched
    ]
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return evaluation, data


def test_counts_equal_a_hand_count(files):
    evaluation, data = files
    (row,) = analyze_tool_steps([evaluation], [data])
    assert (row.dataset, row.samples, row.unmatched) == ("gsm8k-test", 4, 2)
    assert row.tool_use == 3 / 4
    assert row.accuracy_with_tools == 1 / 3 and row.accuracy_without_tools == 1.0
    assert row.calls == 5 / 3
    assert row.calls_on_step == 2 / 5  # 13 and 26.0; not 27, 1,300 or the error
    assert row.first_call_on_step == 1 / 3


def test_reference_values_and_hits(files):
    _, data = files
    references = reference_values([data])
    assert references == {"Eggs?": ["13", "26", "26"], "Pages?": ["75", "75"]}
    assert hits("<result>12.9999999</result>", ["13"]) and not hits("<result>12.9</result>", ["13"])
    assert hits("total: -5", ["-5"]) and not hits("no number", ["5"])


def test_bad_inputs_name_file_row_and_field(tmp_path, files):
    evaluation, _ = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl.*row 2.*answer"):
        reference_values([bad])
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps(ROWS[2]) + "\n")
    with pytest.raises(ValueError, match="no annotated GSM8K-format row"):
        reference_values([plain])
    with pytest.raises(FileNotFoundError, match="no evaluation records"):
        analyze_tool_steps([tmp_path / "missing"], [files[1]])


def test_cli_prints_the_table(files):
    evaluation, data = files
    result = CliRunner().invoke(app, ["analyze", "tool-steps", str(evaluation), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "first call on a step" in result.output.splitlines()[0]
    assert "| 4 | 2 | 75.0 % | 33.3 % | 100.0 % | 1.67 | 40.0 % | 33.3 % |" in result.output
