"""Every shared benchmark file and ARPO parquet file loads into tasks (skipped without shared/data)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from arpo.core.rewards import HierarchicalReward
from arpo.tasks import DatasetConfig, TaskLoadError, load_tasks

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

BENCHMARKS = {  # name: (rows, answer type, first ground truths)
    "gsm8k": (1319, "number", ("18",)),
    "math500": (500, "math", ("\\left( 3, \\frac{\\pi}{2} \\right)",)),
    "aime24": (30, "number", ("204",)),
    "hotpotqa": (200, "qa", ("Frank Lowy",)),
    "2wiki": (
        200,
        "qa",
        (
            "the five boroughs",
            "City of New York",
            "New York",
            "NY City",
            "New York City",
            "NYC",
            "Big Apple",
            "New York, New York",
        ),
    ),
    "bamboogle": (125, "qa", ("james madison",)),
    "simpleqa": (500, "qa", ("Michio Sugeno",)),
}


def test_every_benchmark_file_has_an_expectation() -> None:
    files = {path.parent.name for path in (DATA / "benchmarks").glob("*/*.jsonl")}
    assert files == set(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_loads(name: str) -> None:
    rows, answer_type, first_truths = BENCHMARKS[name]
    tasks = load_tasks(DatasetConfig(path=str(DATA / "benchmarks" / name / "test.jsonl")))
    assert len(tasks) == rows
    assert {task.answer_type for task in tasks} == {answer_type}
    assert {task.source for task in tasks} == {name}
    assert tasks[0].ground_truths == first_truths
    assert len({task.id for task in tasks}) == rows
    assert all(task.question.strip() and [m.role for m in task.prompt] == ["user"] for task in tasks)


def test_gsm8k_solutions_are_cut_to_the_final_number() -> None:
    tasks = load_tasks(DatasetConfig(path=str(DATA / "benchmarks" / "gsm8k" / "test.jsonl")))
    assert all("####" not in t.ground_truths[0] and "\n" not in t.ground_truths[0] for t in tasks)
    assert tasks[0].id == "0"
    # the reward accepts the number however it is written
    reward = HierarchicalReward()
    comma = next(task for task in tasks if "," in task.ground_truths[0])
    plain = comma.ground_truths[0].replace(",", "")
    assert reward(comma.reward_input(f"<think>t</think><answer>\\boxed{{{plain}}}</answer>", [])).total == 1.0


def test_aime_uses_the_problem_and_its_id() -> None:
    tasks = load_tasks(DatasetConfig(path=str(DATA / "benchmarks" / "aime24" / "test.jsonl")))
    assert tasks[0].id == "60" and tasks[0].question.startswith("Every morning Aya")


def test_arpo_valid_parquet() -> None:
    pytest.importorskip("pyarrow")
    tasks = load_tasks(DatasetConfig(path=str(DATA / "arpo" / "valid.parquet")))
    assert len(tasks) == 180
    assert Counter(task.answer_type for task in tasks) == {"math": 100, "qa": 80}
    assert [m.role for m in tasks[0].prompt] == ["system", "user"]
    assert tasks[0].ground_truths == ("Eleanor Of Lancaster",) and tasks[0].source == "DR_grpo_mix"


def test_arpo_system_prompt_is_replaced_when_given() -> None:
    pytest.importorskip("pyarrow")
    tasks = load_tasks(
        DatasetConfig(path=str(DATA / "arpo" / "valid.parquet"), limit=3), system_prompt="ours"
    )
    assert len(tasks) == 3
    assert all([(m.role, m.content) for m in t.prompt][0] == ("system", "ours") for t in tasks)
    assert all(len(t.prompt) == 2 for t in tasks)


def test_arpo_train_parquet_has_one_blank_ground_truth(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("pyarrow")
    path = str(DATA / "arpo" / "train_10k.parquet")
    with pytest.raises(TaskLoadError) as caught:
        load_tasks(DatasetConfig(path=path))
    assert (caught.value.row, caught.value.field) == (5275, "reward_model.ground_truth")
    assert "on_invalid_row='skip'" in str(caught.value)
    tasks = load_tasks(DatasetConfig(path=path, on_invalid_row="skip"))
    assert len(tasks) == 9999
    assert Counter(task.answer_type for task in tasks) == {"math": 4999, "qa": 5000}
    assert "row 5275" in caplog.text
