"""The scripted solver with the real tools solves toolworld; answering without tools does not; the
demonstrations pass the reward's format gate and are token-for-token what the rollout loop records."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from itertools import groupby

import pytest
from tests.replay import ReplayGenerator
from transformers import PreTrainedTokenizerFast

from arpo.core.rewards import HierarchicalReward
from arpo.core.tree import FinishReason
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.prompts import render_prompt
from arpo.tasks.toolworld import (
    Demo,
    ToolworldPaths,
    ToolworldTask,
    demo_example,
    load_demos,
    load_toolworld_records,
    make_toolbox,
    perfect,
    read_config,
    run_behaviours,
)
from arpo.tasks.toolworld.program import Calculate
from arpo.tasks.toolworld.solver import estimate


def scores(demos: list[Demo]) -> list[float]:
    reward = HierarchicalReward()
    return [reward(demo.reward_input()).correctness for demo in demos]


def test_scripted_solver_with_real_tools_solves_the_test_split(toolworld: ToolworldPaths, bm25_cache) -> None:
    records = load_toolworld_records(toolworld.test)
    with make_toolbox(read_config(toolworld.root), toolworld.corpus, bm25_cache) as tools:
        demos = run_behaviours([(record, perfect(record)) for record in records], tools)
    reward = HierarchicalReward()
    results = [reward(demo.reward_input()) for demo in demos]
    assert all(r.format_ok for r in results)
    assert statistics.mean(r.correctness for r in results) >= 0.99
    both_tools = [
        r for r, rec in zip(results, records, strict=True) if rec.family in ("lookup_compute", "compare")
    ]
    assert both_tools and all(r.bonus == pytest.approx(0.1) for r in both_tools)


def template(question: str) -> str:
    """The question with its names and numbers blanked: the kind of question it is."""
    return re.sub(r"\b(?!What\b)[A-Z][a-z]+\b|\d+", "_", question)


def prior_answer(record: ToolworldTask, train: list[ToolworldTask]) -> str:
    """The best guess without tools: for pure arithmetic, a head estimate right to 2 digits; else
    the most common train answer to questions of the same template (or of the same answer type)."""
    if record.family == "compute":
        return estimate(record.task.ground_truths[0])
    same = [r for r in train if template(r.task.question) == template(record.task.question)]
    same = same or [r for r in train if r.task.answer_type == record.task.answer_type]
    return Counter(r.task.ground_truths[0] for r in same).most_common(1)[0][0]


def test_answering_without_tools_scores_near_zero(toolworld: ToolworldPaths) -> None:
    train, test = (load_toolworld_records(getattr(toolworld, split)) for split in ("train", "test"))
    reward = HierarchicalReward()
    correctness = [
        reward(
            r.task.reward_input(f"<think>Plan: answer.</think><answer>{prior_answer(r, train)}</answer>", [])
        ).correctness
        for r in test
    ]
    assert statistics.mean(correctness) <= 0.02


def test_demonstrations_pass_the_format_gate_and_imperfect_ones_are_wrong(toolworld: ToolworldPaths) -> None:
    demos = load_demos(toolworld.demos)
    reward = HierarchicalReward()
    for demo in demos:
        result = reward(demo.reward_input())
        assert result.format_ok, (demo.task.id, result.format_error)
        assert result.correctness == (1.0 if demo.kind == "perfect" else 0.0), demo.task.id


def test_each_imperfect_kind_shows_its_flaw(toolworld: ToolworldPaths) -> None:
    records = {r.task.id: r for r in load_toolworld_records(toolworld.train)}
    demos = sorted(load_demos(toolworld.demos), key=lambda d: d.kind)
    for kind, group in groupby(demos, key=lambda d: d.kind):
        for demo in group:
            program = records[demo.task.id].program
            calls = demo.tool_calls
            wanted = ["python" if isinstance(step, Calculate) else "search" for step in program]
            if kind in ("perfect", "wrong_entity", "wrong_operand"):
                assert calls == wanted
            elif kind == "no_tool":
                assert calls == []
            elif kind == "stop_early":
                assert calls == wanted[:1] and len(wanted) > 1
            elif kind == "skip_python":
                assert calls == wanted[:-1] and wanted[-1] == "python"


def test_demonstration_ids_and_masks_equal_a_real_rollout_of_the_same_text(
    toolworld: ToolworldPaths, toolworld_tokenizer: PreTrainedTokenizerFast, bm25_cache
) -> None:
    tokenizer = toolworld_tokenizer
    demos = load_demos(toolworld.demos)
    picked = [
        next(d for d in demos if d.family == family and d.kind == "perfect")
        for family in sorted({d.family for d in demos})
    ]
    picked += [next(d for d in demos if d.kind == kind) for kind in ("wrong_operand", "no_tool")]
    config = RolloutConfig.model_validate({"branching": {"rollouts_per_prompt": 1, "initial_rollouts": 1}})
    with make_toolbox(read_config(toolworld.root), toolworld.corpus, bm25_cache) as tools:
        for demo in picked:
            segments = [
                tokenizer.encode(s.text, add_special_tokens=False) for s in demo.segments if s.role == "model"
            ]
            rollout = ArpoRollout(ReplayGenerator(segments, tokenizer), tokenizer, tools, config)
            tree = rollout.run([render_prompt(tokenizer, demo.task.chat())], seed=0).trees[0]
            (trajectory,) = tree.trajectories()
            assert trajectory.finish_reason is FinishReason.ANSWER
            assert (trajectory.token_ids, trajectory.loss_mask) == demo_example(demo, tokenizer), demo.task.id
            assert [(c.tag, c.call) for c in trajectory.tool_calls] == [
                (s.tag, s.call) for s in demo.segments if s.role == "tool"
            ]
