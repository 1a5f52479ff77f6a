"""Per-sample records and the summary table, on demonstrations run with the real tools."""

from __future__ import annotations

import dataclasses

import pytest

from arpo.core.rewards import make_reward_fn
from arpo.eval.records import SampleRecord, TokenCounts, make_record
from arpo.eval.summary import summarize, summary_row, summary_table
from arpo.tasks.toolworld import demo_tree, load_demos

RECORD_FIELDS = {
    "dataset",
    "task_id",
    "source",
    "family",
    "sample",
    "answer_type",
    "question",
    "ground_truths",
    "prompt",
    "response",
    "tool_calls",
    "finish_reason",
    "answer",
    "format_ok",
    "format_error",
    "score",
    "correct",
    "reward",
    "tokens",
    "judge",
    "prompt_messages",
    "segments",
}


def test_record_of_a_perfect_demonstration(toolworld, toolworld_tokenizer):
    demo = next(d for d in load_demos(toolworld.demos) if d.kind == "perfect" and len(d.tool_calls) >= 2)
    trajectory = demo_tree(demo, toolworld_tokenizer).trajectories()[0]
    record = make_record(
        "tw", demo.task, demo.family, 0, trajectory, toolworld_tokenizer, make_reward_fn(), 1.0
    )
    data = record.to_dict()
    assert set(data) == RECORD_FIELDS
    assert data["response"] == demo.response()
    assert data["prompt_messages"] == demo.task.chat()
    assert "".join(segment["text"] for segment in data["segments"]) == data["response"]
    assert [s["role"] for s in data["segments"]] == [s.role for s in demo.segments]
    assert data["prompt"].endswith("<|assistant|>") and demo.task.question in data["prompt"]
    assert data["answer"] == demo.task.ground_truths[0]
    assert data["score"] == 1.0 and data["correct"] and data["format_ok"] and data["format_error"] is None
    assert [c["tag"] for c in data["tool_calls"]] == demo.tool_calls
    assert all(c["status"] == "ok" for c in data["tool_calls"])
    assert data["finish_reason"] == "answer" and data["family"] == demo.family
    tokens = data["tokens"]
    assert tokens["prompt"] + tokens["response"] == len(trajectory.token_ids)
    assert tokens["model"] + tokens["tool"] == tokens["response"] and tokens["tool"] > 0


def test_record_of_a_flawed_demonstration_is_incorrect(toolworld, toolworld_tokenizer):
    demo = next(d for d in load_demos(toolworld.demos) if d.kind != "perfect")
    trajectory = demo_tree(demo, toolworld_tokenizer).trajectories()[0]
    record = make_record(
        "tw", demo.task, demo.family, 0, trajectory, toolworld_tokenizer, make_reward_fn(), 1.0
    )
    assert record.format_ok and record.answer is not None
    assert record.score == 0.0 and not record.correct and record.reward == 0.0


def fake(
    task: str,
    correct: bool,
    *,
    score: float | None = None,
    dataset: str = "d",
    family: str | None = None,
    tools: int = 1,
    format_ok: bool = True,
    judge: dict | None = None,
) -> SampleRecord:
    return SampleRecord(
        dataset=dataset,
        task_id=task,
        source="s",
        family=family,
        sample=0,
        answer_type="qa",
        question="q",
        ground_truths=["a"],
        prompt="p",
        response="r",
        tool_calls=[{"tag": "search"}] * tools,
        finish_reason="answer",
        answer="a" if format_ok else None,
        format_ok=format_ok,
        format_error=None if format_ok else "no <answer>",
        score=float(correct) if score is None else score,
        correct=correct,
        reward=0.0,
        tokens=TokenCounts(5, 10 + tools, 8, 2 + tools),
        judge=judge,
    )


def test_summary_row_by_hand():
    records = [
        fake("t1", True),
        fake("t1", False, score=0.5, tools=3),
        fake("t1", False, score=0.0, format_ok=False),
        fake("t2", False, score=0.0, tools=0),
        fake("t2", False, score=0.0),
        fake("t2", True),
    ]
    row = summary_row(records, [1, 2, 3], {"qa": "token_f1"})
    assert row["tasks"] == 2 and row["samples"] == 3 and row["metric"] == "token_f1"
    assert row["score"] == pytest.approx(2.5 / 6)  # mean F1 over the samples
    assert row["pass@1"] == pytest.approx(1 / 3)
    assert row["pass@2"] == pytest.approx(1 - 1 / 3)  # per task: 1 - C(2,2)/C(3,2)
    assert row["pass@3"] == pytest.approx(1.0)
    assert row["tool_calls"] == pytest.approx(7 / 6)
    assert row["format_errors"] == pytest.approx(1 / 6)
    assert row["response_tokens"] == pytest.approx(sum(10 + t for t in (1, 3, 1, 0, 1, 1)) / 6)
    assert "judge_accuracy" not in row


def test_summary_rows_per_dataset_and_family_and_judge_columns():
    records = [
        fake("a", True, family="lookup", judge={"correct": True, "error": None, "reply": "CORRECT"}),
        fake("b", False, family="compute", judge={"correct": None, "error": "timeout", "reply": None}),
        fake("c", False, dataset="other", judge={"correct": False, "error": None, "reply": "INCORRECT"}),
    ]
    summary = summarize(records, [1], {"qa": "token_f1"})
    assert [r["dataset"] for r in summary["datasets"]] == ["d", "other"]
    assert [(r["dataset"], r["family"]) for r in summary["families"]] == [("d", "compute"), ("d", "lookup")]
    first = summary["datasets"][0]
    assert first["judge_accuracy"] == 1.0 and first["judge_errors"] == 1
    table = summary_table(summary["families"], [1])
    assert table.header[:2] == ["dataset", "family"] and "judge accuracy" in table.header
    assert len(table.rows) == 2


def test_record_round_trips_through_json():
    record = fake("t", True)
    assert dataclasses.asdict(record) == record.to_dict()
