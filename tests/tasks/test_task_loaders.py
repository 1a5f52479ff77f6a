"""Loaders on small files written by the tests: layouts, field maps, formats and every promised error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from arpo.tasks import DatasetConfig, FieldMap, TaskLoadError, load_tasks


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def load(path: str, **config: Any) -> list:
    return load_tasks(DatasetConfig(path=path, **config))


def arpo_row(index: int, ability: str = "math", truth: Any = "4") -> dict[str, Any]:
    return {
        "data_source": "mix",
        "prompt": [{"role": "system", "content": "protocol"}, {"role": "user", "content": f"q{index}"}],
        "ability": ability,
        "reward_model": {"ground_truth": truth, "style": "rule"},
        "extra_info": {"index": index, "question": f"q{index}"},
    }


def test_qa_benchmark_layout_by_folder_name(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "hotpotqa" / "test.jsonl",
        [{"question": "Who?", "answer": ["A", "B"]}, "", {"question": "Q2", "answer": "C"}],
    )
    tasks = load(path)
    assert [(t.id, t.ground_truths, t.answer_type, t.source) for t in tasks] == [
        ("1", ("A", "B"), "qa", "hotpotqa"),
        ("3", ("C",), "qa", "hotpotqa"),  # ids are row (line) numbers; the blank line is skipped
    ]


def test_numbers_become_answer_text(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math500.jsonl",
        [{"question": "q", "answer": 18.0}, {"question": "r", "answer": [0.5, "1/2"]}],
    )
    assert [t.ground_truths for t in load(path)] == [("18",), ("0.5", "1/2")]


def test_field_map_from_config(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "custom.jsonl", [{"meta": {"q": "Capital?", "key": "x1"}, "gold": ["Paris"]}]
    )
    config = DatasetConfig.model_validate(
        {
            "path": path,
            "layout": {
                "question": "meta.q",
                "answer": "gold",
                "answer_type": "exact",
                "id": "meta.key",
                "source": "geo",
            },
        }
    )
    [task] = load_tasks(config)
    assert (task.question, task.ground_truths, task.answer_type, task.id, task.source) == (
        "Capital?",
        ("Paris",),
        "exact",
        "x1",
        "geo",
    )


def test_arpo_layout_detected_from_columns_in_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rl.parquet"
    parquet.write_table(pa.Table.from_pylist([arpo_row(0), arpo_row(1, "qa", "Paris")]), path)
    tasks = load(str(path))
    assert [(t.id, t.answer_type, t.ground_truths, t.source) for t in tasks] == [
        ("0", "math", ("4",), "mix"),
        ("1", "qa", ("Paris",), "mix"),
    ]
    assert tasks[1].chat()[1] == {"role": "user", "content": "q1"}


def test_limit_and_explicit_layout(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "anything.jsonl", [{"question": f"q{i}", "answer": "1"} for i in range(5)])
    tasks = load(path, layout="math500", limit=2)
    assert [t.question for t in tasks] == ["q0", "q1"] and tasks[0].answer_type == "math"


@pytest.mark.parametrize(
    ("rows", "row", "field", "problem"),
    [
        ([{"question": "q", "answer": "1"}, '{"question": "q", "answer": '], 2, None, "invalid JSON"),
        ([[1, 2]], 1, None, "expected a JSON object, got list"),
        ([{"question": "q"}], 1, "answer", "missing or null"),
        ([{"question": "q", "answer": None}], 1, "answer", "missing or null"),
        ([{"answer": "1"}], 1, "question", "missing or null"),
        ([{"question": 5, "answer": "1"}], 1, "question", "expected a string, got int"),
        (
            [{"question": "q", "answer": {"x": 1}}],
            1,
            "answer",
            "expected a string, a number or a list of them, got dict",
        ),
        ([{"question": "q", "answer": ["a", True]}], 1, "answer[1]", "got bool"),
        ([{"question": "q", "answer": []}], 1, "answer", "no answer given"),
        ([{"question": "q", "answer": ["a", ""]}], 1, "answer", "answer 1 is ''"),
        ([{"question": " ", "answer": "a"}], 1, "question", "needs a non-empty user message"),
    ],
)
def test_bad_rows_name_file_row_and_field(
    tmp_path: Path, rows: list[Any], row: int, field: str | None, problem: str
) -> None:
    path = write_jsonl(tmp_path / "simpleqa" / "test.jsonl", rows)
    with pytest.raises(TaskLoadError, match=problem) as caught:
        load(path)
    error = caught.value
    assert (error.path, error.row, error.field) == (path, row, field)
    assert str(error).startswith(f"{path}: row {row}: ")


def test_gsm8k_answer_without_marker(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [{"question": "q", "answer": "so 18", "idx": 0}])
    with pytest.raises(TaskLoadError, match="no '####' marker") as caught:
        load(path)
    assert (caught.value.row, caught.value.field) == (1, "answer")


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        (arpo_row(0, ability="code"), "ability", "unknown value 'code'; expected one of \\['math', 'qa'\\]"),
        (
            {**arpo_row(0), "prompt": [{"role": "user"}]},
            "prompt[0]",
            "expected \\{role: string, content: string\\}",
        ),
        ({**arpo_row(0), "prompt": "text"}, "prompt", "expected a list"),
        ({**arpo_row(0), "reward_model": {"style": "rule"}}, "reward_model.ground_truth", "missing or null"),
        (
            {**arpo_row(0), "extra_info": {"index": [1]}},
            "extra_info.index",
            "expected a string or an integer",
        ),
    ],
)
def test_bad_arpo_rows(tmp_path: Path, row: dict[str, Any], field: str, problem: str) -> None:
    path = write_jsonl(tmp_path / "rl.jsonl", [arpo_row(5), row])
    with pytest.raises(TaskLoadError, match=problem) as caught:
        load(path)
    assert (caught.value.row, caught.value.field) == (2, field)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rl.jsonl", [arpo_row(3), arpo_row(3)])
    with pytest.raises(TaskLoadError, match="duplicate id '3' \\(first at row 1\\)") as caught:
        load(path)
    assert (caught.value.row, caught.value.field) == (2, "extra_info.index")


def test_skip_mode_leaves_bad_rows_out_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{"question": "a", "answer": "1"}, "{oops", {"question": "b"}, {"question": "c", "answer": "3"}]
    path = write_jsonl(tmp_path / "bamboogle" / "test.jsonl", rows)
    tasks = load(path, on_invalid_row="skip")
    assert [t.question for t in tasks] == ["a", "c"]
    assert f"{path}: row 2: invalid JSON" in caplog.text
    assert f"{path}: row 3: field 'answer': missing or null" in caplog.text
    assert "skipped 2 invalid rows, loaded 2 tasks" in caplog.text


def test_unknown_layout(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mystery.jsonl", [{"q": "x", "a": "y"}])
    with pytest.raises(
        TaskLoadError, match=r"unknown layout: data set 'mystery' with fields \['a', 'q'\]"
    ) as caught:
        load(path)
    assert caught.value.row is None


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.jsonl", "\n\n", "no rows"),
        ("data.csv", "question,answer\n", "unknown file type '.csv'"),
        ("broken.parquet", "not parquet at all", "not a readable Parquet file"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, problem: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TaskLoadError, match=problem):
        load(str(path), layout="qa")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskLoadError, match="no such file"):
        load(str(tmp_path / "absent.jsonl"))


def test_missing_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"")
    with pytest.raises(ImportError, match=r"pip install 'arpo\[data\]'"):
        load(str(path), layout="qa")


def test_hugging_face_dataset_from_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "q1", "answer": ["a"]}, {"question": "q2", "answer": ["b", "c"]}]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "my_qa"))
    tasks = load(str(tmp_path / "my_qa"), layout="qa", split="test")
    assert [t.ground_truths for t in tasks] == [("a",), ("b", "c")] and tasks[0].source == "my_qa"
    with pytest.raises(TaskLoadError, match=r"no split 'train'; available: \['test'\]"):
        load(str(tmp_path / "my_qa"), layout="qa")


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="unknown layout 'gsm9k'"):
        DatasetConfig(path="x.jsonl", layout="gsm9k")
    with pytest.raises(ValidationError, match="exactly one of question"):
        FieldMap(question="q", prompt="p", answer_type="qa")
    with pytest.raises(ValidationError, match="exactly one of answer_type"):
        FieldMap(question="q")
    with pytest.raises(ValidationError, match="answer_type_values"):
        FieldMap(question="q", answer_type_field="kind")
    with pytest.raises(ValidationError, match="extra"):
        DatasetConfig.model_validate({"path": "x", "shuffle": True})
