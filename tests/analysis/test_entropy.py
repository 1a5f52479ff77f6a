"""The entropy profile around tool results: exact values on a hand-built tree, and the command on a
tiny model that calls a tool after every prompt and every result."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from arpo.analysis.entropy import entropy_profile
from arpo.cli import app
from arpo.core.tree import Origin, RolloutTree, ToolCall

runner = CliRunner()
V = 16


def model_node(tree, parent, entropies, origin=None):
    node = tree.add_model(parent, origin)
    node.append(list(range(len(entropies))), [0.0] * len(entropies), entropies)
    return node


def test_profile_by_offset_on_a_hand_built_tree():
    tree = RolloutTree([1, 2], V)
    first = model_node(tree, tree.root, [0.1, 0.2, 0.3, 0.4], Origin.INITIAL)
    search = tree.add_tool(first, [5, 5], [ToolCall("search", "q", "ok")])
    second = model_node(tree, search, [1.0, 0.8, 0.6])
    branch = model_node(tree, search, [2.0], Origin.BRANCH)  # two continuations of one result
    python = tree.add_tool(second, [6], [ToolCall("python", "1+1", "ok")])
    model_node(tree, python, [0.5, 0.7])
    assert branch.parent is search

    profile = entropy_profile([tree], window=3)
    ln_v = math.log(V)
    every = profile["curves"]["all"]
    assert every["tool_results"] == 2
    assert every["offsets"] == [-3, -2, -1, 1, 2, 3]
    expected = {
        -3: [0.2, 1.0],
        -2: [0.3, 0.8],
        -1: [0.4, 0.6],  # last 3 before each result
        1: [1.0, 2.0, 0.5],
        2: [0.8, 0.7],
        3: [0.6],  # first 3 after (both continuations of the search)
    }
    for offset, mean, count in zip(every["offsets"], every["mean"], every["count"], strict=True):
        assert mean == pytest.approx(sum(expected[offset]) / len(expected[offset]) / ln_v)
        assert count == len(expected[offset])
    assert every["before"] == pytest.approx(sum([0.2, 0.3, 0.4, 1.0, 0.8, 0.6]) / 6 / ln_v)
    assert every["after"] == pytest.approx(sum([1.0, 0.8, 0.6, 2.0, 0.5, 0.7]) / 6 / ln_v)
    search_curve = profile["curves"]["search"]
    assert search_curve["tool_results"] == 1 and search_curve["offsets"] == [-3, -2, -1, 1, 2, 3]
    assert profile["curves"]["python"]["offsets"] == [-3, -2, -1, 1, 2]


def test_a_tree_without_tool_calls_gives_no_curve():
    tree = RolloutTree([1], V)
    model_node(tree, tree.root, [0.3, 0.2], Origin.INITIAL)
    assert entropy_profile([tree], window=4)["curves"] == {}


@pytest.fixture
def calc_questions(tmp_path):
    path = tmp_path / "questions.jsonl"
    rows = [{"question": q, "answer": ["3"]} for q in ("what is 1+2?", "add one and two", "sum?")]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_analyze_entropy_command_writes_png_and_numbers(tool_caller, tokenizer, calc_questions, tmp_path):
    model_dir = tmp_path / "model"
    tool_caller.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "entropy"
    result = runner.invoke(
        app,
        [
            "analyze",
            "entropy",
            f"model.name={model_dir}",
            f"dataset={{dataset: {{path: {calc_questions}, layout: qa}}}}",
            "tools=[{name: calc}]",
            "sampling.samples=2",
            "sampling.max_response_tokens=40",
            "window=5",
            f"out_dir={out}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "before" in result.stdout and "after" in result.stdout
    assert (out / "entropy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads((out / "entropy.json").read_text())
    curve = numbers["curves"]["calc"]
    assert curve["tool_results"] >= 6 and numbers["window"] == 5
    assert set(curve["offsets"]) <= {-5, -4, -3, -2, -1, 1, 2, 3, 4, 5} and 0 < curve["after"] < 1


def test_analyze_entropy_without_a_dataset_exits_2():
    result = runner.invoke(app, ["analyze", "entropy"])
    assert result.exit_code == 2 and "no data set" in result.output
