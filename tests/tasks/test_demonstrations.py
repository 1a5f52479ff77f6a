"""Demonstration data sets in every layout, from real files written here: one conversation read
the same from each layout and storage format, and every bad row named by file, row and field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.demonstration_rows import (
    QUESTION,
    SEGMENTS,
    SYSTEM,
    TOOL_TAGS,
    demo_row,
    inline_row,
    messages_row,
    record_row,
    sharegpt_row,
)

from arpo.tasks import TaskLoadError
from arpo.tasks.demonstrations import (
    DemonstrationsConfig,
    Segment,
    detect_demonstration_layout,
    load_demonstrations,
)

LAYOUT_ROWS: dict[str, Callable[[], dict[str, Any]]] = {
    "messages": messages_row,
    "sharegpt": sharegpt_row,
    "sharegpt-inline": inline_row,
    "demos": demo_row,
    "records": record_row,
}


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def load(path: str, **config: Any) -> list:
    return load_demonstrations(DemonstrationsConfig(path=path, tool_tags=TOOL_TAGS, **config))


@pytest.mark.parametrize("name", LAYOUT_ROWS)
def test_every_layout_holds_the_same_conversation(tmp_path: Path, name: str) -> None:
    row = LAYOUT_ROWS[name]()
    path = write_jsonl(tmp_path / f"{name}.jsonl", [row, row])
    layout = name.split("-")[0]
    assert detect_demonstration_layout(path, row) == layout
    for given in ("auto", layout):
        conversations = load(path, layout=given)
        assert len(conversations) == 2
        assert [(m.role, m.content) for m in conversations[0].prompt] == [
            ("system", SYSTEM),
            ("user", QUESTION),
        ]
        assert conversations[0].segments == SEGMENTS


def test_parquet_and_hugging_face_files(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    row = messages_row()  # one type per Parquet column: arguments and contents as strings
    function = row["messages"][5]["tool_calls"][0]["function"]
    function["arguments"] = json.dumps(function["arguments"])
    row["messages"][6]["content"] = row["messages"][6]["content"][0]["text"]
    parquet.write_table(pyarrow.Table.from_pylist([row]), tmp_path / "m.parquet")
    (conversation,) = load(str(tmp_path / "m.parquet"))
    assert conversation.segments == SEGMENTS
    datasets.Dataset.from_list([sharegpt_row(), sharegpt_row()]).save_to_disk(str(tmp_path / "sharegpt"))
    assert [c.segments for c in load(str(tmp_path / "sharegpt"))] == [SEGMENTS, SEGMENTS]


def test_a_reply_without_the_answer_tag_and_several_calls_in_one_turn(tmp_path: Path) -> None:
    calls = [
        {"type": "function", "function": {"name": "calc", "arguments": {"expression": e}}}
        for e in ("1+1", "2*3")
    ]
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!\n"}]},
        {
            "messages": [
                {"role": "user", "content": "Add, then multiply"},
                {"role": "assistant", "content": "Both:", "tool_calls": calls},
                {"role": "tool", "content": "2"},
                {"role": "tool", "content": "6"},
                {"role": "assistant", "content": "Done: 2 and 6."},
            ]
        },
    ]
    hello, both = load(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert hello.segments == (Segment("model", "Hello!\n"),)  # kept as is; it gets an EOS when rendered
    assert both.segments == (
        Segment("model", "Both:<calc>1+1</calc>"),
        Segment("tool", "2", "calc", "1+1", "ok"),
        Segment("model", "<calc>2*3</calc>"),
        Segment("tool", "6", "calc", "2*3", "ok"),
        Segment("model", "Done: 2 and 6."),
    )


def _messages(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages)}


USER = {"role": "user", "content": "q"}
ANSWER = {"role": "assistant", "content": "<answer>1</answer>"}


def _call(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": name, "arguments": arguments}}],
    }


def _shared(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"conversations": [{"from": who, "value": value} for who, value in turns]}


def _demo(**changes: Any) -> dict[str, Any]:
    row = demo_row()
    row.update(changes)
    return row


def _record(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    row = copy.deepcopy(record_row())
    change(row)
    return row


BAD_ROWS = [
    # OpenAI messages
    (_messages(USER, {"role": "robot", "content": "x"}), "messages[1].role", "unknown role 'robot'"),
    (_messages({"role": "user", "content": 5}, ANSWER), "messages[0].content", "expected a string"),
    ({"messages": "hello"}, "messages", "expected a list"),
    (_messages({"role": "system", "content": "s"}, ANSWER), "messages", "no user message"),
    (_messages({"role": "system", "content": "s"}, USER), "messages", "nothing to learn"),
    (
        _messages(USER, _call("search", '{"query": "x"}'), {"role": "tool", "content": "r"}, ANSWER),
        "messages[1].tool_calls[0].function.name",
        "unknown tool 'search': .*tool_tags \\['calc', 'lookup'\\]",
    ),
    (
        _messages(USER, _call("calc", "{oops"), {"role": "tool", "content": "r"}, ANSWER),
        "messages[1].tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    (
        _messages(USER, {"role": "tool", "content": "36"}, ANSWER),
        "messages[1].content",
        "must follow a tool call",
    ),
    (_messages(USER, _call("calc", "{}")), "messages", "ends with a tool call \\(</calc>\\) and no result"),
    (
        _messages(USER, {"role": "assistant", "content": "<answer>1</answer> and more"}),
        "messages[1].content",
        "text after </answer>",
    ),
    (
        _messages(USER, _call("calc", "{}"), {"role": "assistant", "content": "no result?"}),
        "messages[2].content",
        "text after </calc>: .*the tool's result comes next",
    ),
    (
        _messages(USER, _call("calc", "{}"), {"role": "tool", "content": "1"}, USER, ANSWER),
        "messages[1].content",
        "before the last user message",
    ),
    # ShareGPT / LLaMA-Factory
    (_shared(("human", "q"), ("bot", "hi")), "conversations[1].from", "unknown role 'bot'"),
    (_shared(("human", "q"), ("function_call", "calc(1)")), "conversations[1].value", "expected JSON"),
    (_shared(("human", "q"), ("gpt", "<calc>1</calc><result>1")), "conversations[1].value", "is not closed"),
    (
        _shared(("human", "q"), ("gpt", "<search>q</search><result>r</result><answer>1</answer>")),
        "conversations[1].value",
        "must follow a tool call.*</search>",
    ),
    (
        _shared(("human", "q"), ("gpt", "x</calc><result>1</result>")),
        "conversations[1].value",
        "no <calc> before",
    ),
    (
        _shared(
            ("human", "q"), ("function_call", '{"name": "calc", "arguments": "1"}'), ("observation", "1")
        ),
        "conversations",
        "reply after it is missing",
    ),
    # demonstration rows
    (
        _demo(segments=[{"role": "model", "text": "a"}, {"role": "robot", "text": "b"}]),
        "segments[1].role",
        "role is one of",
    ),
    (_demo(segments=[{"role": "tool", "text": "36"}]), "segments[0].text", "must follow a tool call"),
    (_demo(prompt=[{"role": "boss", "content": "q"}]), "prompt[0].role", "unknown role 'boss'"),
    # arpo eval records
    (
        _record(lambda r: (r.pop("prompt_messages"), r.pop("segments"))),
        "prompt_messages",
        "written before arpo eval stored.*re-run arpo eval",
    ),
    (
        _record(lambda r: r["segments"][1].update(text="36")),
        "segments[1].text",
        "wrapped by result_template",
    ),
    (_record(lambda r: r["tool_calls"].pop()), "tool_calls", "one entry per tool segment \\(2\\)"),
]


@pytest.mark.parametrize(("row", "field", "problem"), BAD_ROWS)
def test_bad_rows_name_file_row_and_field(
    tmp_path: Path, row: dict[str, Any], field: str, problem: str
) -> None:
    good = LAYOUT_ROWS[detect_demonstration_layout("x", row)]()
    path = write_jsonl(tmp_path / "data.jsonl", [good, row])
    with pytest.raises(TaskLoadError, match=problem) as caught:
        load(path)
    error = caught.value
    assert (error.path, error.row, error.field) == (path, 2, field)
    assert str(error).startswith(f"{path}: row 2: field '{field}': ")


def test_skip_mode_leaves_bad_rows_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [messages_row(), "{oops", BAD_ROWS[0][0], messages_row()])
    assert len(load(path, on_invalid_row="skip")) == 2
    assert "skipped 2 invalid rows, loaded 2 demonstrations" in caplog.text


def test_records_filter(tmp_path: Path) -> None:
    rows = [
        record_row(),
        {**record_row(), "correct": False, "score": 0.5},
        {**record_row(), "finish_reason": "length"},  # cut off: never learned
        {
            **record_row(),
            "prompt_messages": None,
            "correct": False,
            "score": 0.0,
        },  # filtered before it is read
    ]
    path = write_jsonl(tmp_path / "records.jsonl", rows)
    assert len(load(path, correct_only=True)) == 1
    assert len(load(path, min_score=0.5)) == 2
    with pytest.raises(TaskLoadError, match="row 4: field 'prompt_messages'"):
        load(path)
    with pytest.raises(TaskLoadError, match="no valid rows \\(3 left out by the filter\\)"):
        load(write_jsonl(tmp_path / "bad.jsonl", rows[1:]), correct_only=True)


def test_file_level_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(TaskLoadError, match="unknown demonstration layout: .*\\['answer', 'question'\\]"):
        load(path)
    with pytest.raises(
        TaskLoadError, match="correct_only and min_score filter sample records; layout 'messages'"
    ):
        load(write_jsonl(tmp_path / "chat.jsonl", [messages_row()]), correct_only=True)
    with pytest.raises(TaskLoadError, match="no rows"):
        load(write_jsonl(tmp_path / "empty.jsonl", []))
