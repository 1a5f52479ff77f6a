"""Batch statistics of rollout trees: exact counts on hand-built trees."""

from __future__ import annotations

import json

import pytest

from arpo.core.tree import BranchDecision, FinishReason, Origin, RolloutTree, ToolCall
from arpo.core.tree_stats import outcome_agreement, summarize_trees


def shared_call_tree() -> RolloutTree:
    """prompt [1,2] → a:[10,11] → search:[50] → c:[12] → limit:[51] → e:[13] (leaf)
                                            └→ d:[14,15] (branch leaf)

    Both leaves share the executed search call; c's second call was refused by the tool-call limit.
    """
    tree = RolloutTree([1, 2], vocab_size=64)
    a = tree.add_model(tree.root, Origin.INITIAL)
    a.append([10, 11], [0.0, 0.0], [1.0, 1.0])
    search = tree.add_tool(a, [50], [ToolCall("search", "q", "ok")])
    c = tree.add_model(search)
    c.append([12], [0.0], [1.0])
    refused = tree.add_tool(c, [51], [ToolCall("search", "q2", "limit", executed=False)])
    e = tree.add_model(refused)
    e.append([13], [0.0], [1.0])
    e.finish_reason = FinishReason.ANSWER
    d = tree.add_model(search, Origin.BRANCH)
    d.append([14, 15], [0.0, 0.0], [1.0, 1.0])
    d.finish_reason = FinishReason.ANSWER
    return tree


def test_a_shared_call_is_executed_once_and_counted_per_trajectory():
    stats = summarize_trees([shared_call_tree()], entropy_window=2)
    assert stats["tool_calls_executed"] == 1  # the shared search; the refused call never ran
    assert stats["tool_calls_flat"] == 2 + 1  # leaf e: search + refused; leaf d: search
    assert stats["tool_calls_per_trajectory"] == 1.5
    assert stats["tool_status"] == {"ok": 1, "limit": 1}
    assert stats["tokens_unique"] == 2 + 2 + 1 + 1 + 1 + 1 + 2
    assert stats["tokens_flat"] == len([1, 2, 10, 11, 50, 12, 51, 13]) + len([1, 2, 10, 11, 50, 14, 15])


def test_counts_add_up_over_trees():
    stats = summarize_trees([shared_call_tree(), shared_call_tree()], entropy_window=2)
    assert (stats["tool_calls_executed"], stats["tool_calls_flat"]) == (2, 6)


def test_executed_survives_serialisation():
    tree = RolloutTree.from_dict(json.loads(shared_call_tree().to_json()))
    assert [n.tool_calls[0].executed for n in tree.nodes if n.tool_calls] == [True, False]
    assert summarize_trees([tree], entropy_window=2)["tool_calls_executed"] == 1


def branched_tree(events_per_sample: list[int], fill: bool = False) -> RolloutTree:
    """One initial sample per entry. A sample with e > 0 branches e times in a chain: its tool
    result forks one copy, whose own tool result forks the next, and so on (e events, e branches);
    a sample with e = 0 calls a tool once and decides not to branch. ``fill`` adds a fresh sample
    that decides too (with no budget left: 0 copies)."""
    tree = RolloutTree([1], vocab_size=64)

    def call(parent, copies: int):
        tool = tree.add_tool(parent, [50], [ToolCall("search", "q", "ok")])
        tool.decision = BranchDecision(0.1, 0.2, 0.52, copies > 0, copies)
        return tool

    for events in events_per_sample:
        sample = tree.add_model(tree.root, Origin.INITIAL)
        sample.append([10], [0.0], [1.0])
        tool = call(sample, min(events, 1))
        for left in range(events, 0, -1):
            branch = tree.add_model(tool, Origin.BRANCH)
            branch.append([11], [0.0], [1.0])
            if left > 1:
                tool = call(branch, 1)
    if fill:
        call(tree.add_model(tree.root, Origin.FILL), 0)
    return tree


def test_branch_spread_top3_share_and_streak_on_hand_built_trees():
    piled = summarize_trees([branched_tree([3, 0, 0, 0])], entropy_window=2)
    assert piled["branches"] == 3
    assert piled["branch_top3_share"] == 1.0
    assert piled["branch_spread"] == 1 / 3  # 3 events could reach 3 of the 4 deciding samples; they reach 1
    spread = summarize_trees([branched_tree([1, 1, 1, 0])], entropy_window=2)
    assert spread["branch_top3_share"] == 1.0, "top-3 share cannot tell 3 branches apart"
    assert spread["branch_spread"] == 1.0
    pooled = summarize_trees([branched_tree([3, 0, 0, 0]), branched_tree([2, 2, 1, 1])], entropy_window=2)
    assert pooled["branch_spread"] == (1 + 4) / (3 + 4)
    assert pooled["branch_top3_share"] == (3 + 5) / (3 + 6)
    fills_excluded = summarize_trees([branched_tree([3, 0], fill=True)], entropy_window=2)
    assert fills_excluded["branch_spread"] == 1 / 2, "a fill cannot branch: 2 deciding samples, not 3"
    assert summarize_trees([branched_tree([0, 0])], entropy_window=2)["branch_spread"] is None
    tree = branched_tree([1, 0])
    tool = next(n for n in tree.nodes if n.decision is not None)
    tool.decision.streak = 2
    assert summarize_trees([tree], entropy_window=2)["branch_streak_mean"] == (2 + 0) / 2


def test_a_decision_forking_z_copies_is_one_branching_event():
    tree = branched_tree([1, 1, 0])
    tool = next(n for n in tree.nodes if n.decision is not None)
    tree.add_model(tool, Origin.BRANCH).append([12], [0.0], [1.0])  # Z = 2 at the first sample's call
    tool.decision.copies = 2
    stats = summarize_trees([tree], entropy_window=2)
    assert (stats["branches"], stats["branch_spread"]) == (3, 1.0)


def agreement_tree() -> tuple[RolloutTree, dict[str, int]]:
    """Initial samples a, b, c. a calls a tool and goes on to leaf a1; branch x forks after a's
    result, calls a tool and goes on to leaf x1; branch y forks after x's result (leaf). b and c
    answer without tools. Returns the tree and each leaf's node id by name."""
    tree = RolloutTree([1], vocab_size=64)
    a = tree.add_model(tree.root, Origin.INITIAL)
    tool_a = tree.add_tool(a, [50], [ToolCall("python", "1", "ok")])
    a1 = tree.add_model(tool_a)
    b = tree.add_model(tree.root, Origin.INITIAL)
    c = tree.add_model(tree.root, Origin.INITIAL)
    x = tree.add_model(tool_a, Origin.BRANCH)
    tool_x = tree.add_tool(x, [51], [ToolCall("python", "2", "ok")])
    x1 = tree.add_model(tool_x)
    y = tree.add_model(tool_x, Origin.BRANCH)
    for node in (a, a1, b, c, x, x1, y):
        node.append([10], [0.0], [1.0])
    return tree, {"a1": a1.id, "b": b.id, "c": c.id, "x1": x1.id, "y": y.id}


@pytest.mark.parametrize(
    ("outcomes", "branches", "pairs"),
    [
        # x is compared with a's own leaf a1, y with x's own leaf x1 (not with a1 or with each other)
        ({"a1": 1, "x1": 1, "y": 0, "b": 0, "c": 0}, [True, False], [False, False, True]),
        ({"a1": 0, "x1": 1, "y": 1, "b": 0, "c": 1}, [False, True], [True, False, False]),
    ],
)
def test_outcome_agreement_compares_each_branch_with_the_path_it_forked_from(outcomes, branches, pairs):
    tree, leaf_ids = agreement_tree()
    by_id = {leaf_id: outcomes[name] for name, leaf_id in leaf_ids.items()}
    correctness = [float(by_id[t.leaf.id]) for t in tree.trajectories()]
    assert outcome_agreement(tree, correctness) == (branches, pairs)  # pairs: (a, b), (a, c), (b, c)


def test_outcome_agreement_skips_paths_that_end_in_branches_only():
    # sample 0 branches in a chain: each of its tool results has a branch below it and no
    # continuation, so neither the sample nor the first branch has a leaf of its own to compare
    tree = branched_tree([2, 0])
    assert outcome_agreement(tree, [1.0, 1.0]) == ([], [])
    with pytest.raises(ValueError, match="3 correctness values for a tree of 2 leaves"):
        outcome_agreement(tree, [1.0, 0.0, 1.0])
