"""``arpo data gsm8k-demos``: GSM8K solutions become python-tool demonstrations run in the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arpo.cli import app
from arpo.config import load_config
from arpo.core.rewards import make_reward_fn
from arpo.tasks.errors import TaskLoadError
from arpo.tasks.gsm8k_demos import FLAW_KINDS, GSM8K_REWARD, Conversion, convert_gsm8k
from arpo.tasks.gsm8k_sample import write_gsm8k_sample
from arpo.tasks.loaders import DatasetConfig, load_tasks
from arpo.tasks.toolworld.demos import Demo, demo_example, load_demos
from arpo.tools import Tool, ToolBox, ToolResult
from arpo.tools.python import PythonTool
from arpo.train.jobs import RLJobConfig

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gsm8k_smollm2_arpo.yaml"
NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
MONEY = {  # `$`, thousands commas and `%` inside and around annotations, a line without one
    "question": "A house costs $1,200,000 and the repairs $50,000. It sells for 20% more than both. Profit?",
    "answer": "The cost is 1,200,000+50,000=$<<1,200,000+50,000=1,250,000>>1,250,000\n"
    "It sells for 20% more.\nThe profit is $<<20%*$1,250,000=$250,000>>250,000.\n#### 250,000",
}


class RecordingPython(Tool):
    """The sandboxed python tool, recording every call it runs."""

    tag = "python"
    description = "python"

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.calls = PythonTool(), []

    def run(self, call: str) -> ToolResult:
        self.calls.append(call)
        return self.inner.run(call)

    def close(self) -> None:
        self.inner.close()


def write_rows(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def recording() -> Iterator[RecordingPython]:
    tool = RecordingPython()
    yield tool
    tool.close()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gsm8k_sample(tmp_path_factory.mktemp("gsm8k") / "train.jsonl", n=48, seed=1)


def test_annotations_become_python_calls_whose_results_the_sandbox_printed(tmp_path, recording) -> None:
    path = write_rows(tmp_path / "gsm8k" / "train.jsonl", [NATALIA, MONEY])
    recording.calls.clear()
    conversion = convert_gsm8k(path, tools=ToolBox([recording]))
    natalia, money = conversion.demos
    assert natalia.response() == (  # 24.0: what Python prints for 48/2, not the annotation's 24
        "<think>Natalia sold 48/2 clips in May.</think><python>print(48/2)</python><result>24.0</result>"
        "<think>Natalia sold 48+24 clips altogether in April and May.</think><python>print(48+24)</python>"
        "<result>72</result><answer>72</answer>"
    )
    assert money.response() == (
        "<think>The cost is 1,200,000+50,000</think><python>print(1200000+50000)</python><result>1250000</result>"
        "<think>It sells for 20% more. The profit is 20%*$1,250,000.</think>"
        "<python>print((20/100)*1250000)</python><result>250000.0</result><answer>250000</answer>"
    )
    codes = [s.call for demo in conversion.demos for s in demo.segments if s.role == "tool"]
    assert sorted(recording.calls) == sorted(codes)  # every call ran once (concurrently: any order)
    assert [d.task.id for d in conversion.demos] == ["1", "2"]  # no idx column: row numbers
    assert money.task.ground_truths == ("250,000",) and money.task.answer_type == "number"
    assert [m.role for m in natalia.task.prompt] == ["user"] and natalia.task.question == NATALIA["question"]
    assert (conversion.rows, conversion.kinds["perfect"], sum(conversion.skipped.values())) == (2, 2, 0)


def test_rows_whose_calls_fail_or_disagree_are_skipped_and_counted(tmp_path) -> None:
    rows = [
        NATALIA,
        {"question": "q", "answer": "So 2+2 = <<2+2=5>>5.\n#### 5"},  # the sandbox prints 4
        {"question": "q", "answer": "A third: <<10/3=3.33>>3.33 m.\n#### 3.33"},  # agrees to 2 decimals
        {"question": "q", "answer": "He has <<3/4=3/4>>3/4 left.\n#### 0.75"},
        {"question": "q", "answer": "Twice <<foo*2=4>>4.\n#### 4"},
        {"question": "q", "answer": "Nothing to compute.\n#### 7"},
    ]
    conversion = convert_gsm8k(write_rows(tmp_path / "rows.jsonl", rows))
    assert conversion.rows == 6 and [d.task.id for d in conversion.demos] == ["1", "3"]
    assert conversion.demos[1].response() == (
        "<think>A third: 10/3 m.</think><python>print(10/3)</python><result>3.3333333333333335</result>"
        "<answer>3.33</answer>"
    )
    assert conversion.skipped == {
        "value_mismatch": 1,
        "annotation_value": 1,
        "expression_error": 1,
        "no_annotation": 1,
    }


@pytest.mark.parametrize(
    ("line", "row", "field"),
    [
        ('{"question": "q", "answer": "2+2 = <<2+2=4>>4", "idx": 0}', 1, "answer"),  # no ####
        ("not json", 1, None),
        ('{"answer": "<<1+1=2>>2\\n#### 2", "idx": 0}', 1, "question"),
    ],
)
def test_a_malformed_row_stops_with_an_error_naming_file_row_and_field(tmp_path, line, row, field) -> None:
    path = write_rows(tmp_path / "bad.jsonl", [line])
    with pytest.raises(TaskLoadError) as error:
        convert_gsm8k(path)
    assert (error.value.path, error.value.row, error.value.field) == (str(path), row, field)
    result = CliRunner().invoke(app, ["data", "gsm8k-demos", "--in", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"row {row}" in result.output and not (tmp_path / "o").exists()


def test_perfect_demos_score_one_with_the_example_reward_and_load_as_demo_rows(
    sample, tmp_path, tokenizer
) -> None:
    config = load_config(RLJobConfig, CONFIG)
    assert config.reward == GSM8K_REWARD
    reward = make_reward_fn(config.reward)
    out = tmp_path / "demos.jsonl"
    result = CliRunner().invoke(app, ["data", "gsm8k-demos", "--in", str(sample), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "48 demonstrations of 48 rows (perfect 48); skipped: none" in result.output
    demos = load_demos(out)
    tasks = load_tasks(DatasetConfig(path=str(sample), layout="gsm8k"))  # the RL run's tasks
    assert [d.task for d in demos] == tasks
    for demo in demos:
        scored = reward(demo.reward_input())
        assert scored.format_ok and scored.total == 1.0, demo.response()
    ids, mask = demo_example(demos[0], tokenizer)
    assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)


def test_the_same_seed_writes_the_same_bytes_and_a_system_prompt_file_is_used(sample, tmp_path) -> None:
    prompt = tmp_path / "system.txt"
    prompt.write_text("Use <python> for arithmetic.")

    def run(name: str, seed: int) -> bytes:
        out = tmp_path / name
        args = [
            "--flawed-share",
            "0.5",
            "--seed",
            str(seed),
            "--limit",
            "30",
            "--system-prompt-file",
            str(prompt),
        ]
        result = CliRunner().invoke(
            app, ["data", "gsm8k-demos", "--in", str(sample), "--out", str(out), *args]
        )
        assert result.exit_code == 0, result.output
        return out.read_bytes()

    first, again, other = run("a.jsonl", 4), run("b.jsonl", 4), run("c.jsonl", 5)
    assert first == again and first != other
    rows = [json.loads(line) for line in first.splitlines()]
    assert len(rows) == 30 and sum(row["kind"] != "perfect" for row in rows) == 15
    assert {row["prompt"][0]["content"] for row in rows} == {"Use <python> for arithmetic."}


def tool_segments(demo: Demo) -> list[tuple[str | None, str]]:
    return [(s.call, s.text) for s in demo.segments if s.role == "tool"]


def test_each_flawed_kind_is_what_it_claims_and_scores_zero(sample) -> None:
    perfect = convert_gsm8k(sample)
    flawed: Conversion = convert_gsm8k(sample, flawed_share=1.0, seed=2)
    assert set(flawed.kinds) == set(FLAW_KINDS) and flawed.kinds["perfect"] == 0
    reward = make_reward_fn(GSM8K_REWARD)
    for good, bad in zip(perfect.demos, flawed.demos, strict=True):
        scored = reward(bad.reward_input())
        assert scored.format_ok and scored.correctness == 0.0, bad.response()
        calls, right = tool_segments(bad), tool_segments(good)
        answer = scored.answer
        if bad.kind == "no_tool":
            assert calls == [] and answer != good.task.ground_truths[0]
        elif bad.kind == "wrong_arithmetic":
            assert calls == right[:-1]
        elif bad.kind == "skip_last_step":
            assert calls == right[:-1] and float(answer) == float(calls[-1][1])
        else:
            assert bad.kind == "wrong_operand" and calls[:-1] == right[:-1]
            (code, printed), (true_code, _) = calls[-1], right[-1]
            assert (
                len(code) == len(true_code) and sum(a != b for a, b in zip(code, true_code, strict=True)) == 1
            )
            assert float(answer) == float(printed)


def test_unknown_flawed_kinds_and_too_few_applicable_rows_are_errors(tmp_path) -> None:
    path = write_rows(tmp_path / "one_step.jsonl", [{"question": "q", "answer": "<<1+1=2>>2\n#### 2"}] * 4)
    with pytest.raises(ValueError, match="unknown flawed kinds"):
        convert_gsm8k(path, flawed_kinds=["no_tool", "typo"])
    with pytest.raises(ValueError, match="admit a flaw"):
        convert_gsm8k(path, flawed_share=0.5, flawed_kinds=["skip_last_step"])  # needs two steps
