"""Batch statistics of rollout trees, all derived from the trees themselves.

* ``tokens_unique``: tokens in the trees, each shared node once; ``tokens_flat``: tokens of all
  trajectories laid out one by one (what an engine without prefix sharing would process);
* ``tool_calls_executed``: tool nodes whose call reached the tool box (``ToolCall.executed``),
  each once however many leaves share it — the calls the tools actually ran; calls the rollout
  refused (over ``max_tool_calls``, malformed) are not executed. ``tool_calls_flat``: Σ over
  trajectories of their tool nodes, refusals included (a call shared by k leaves counts k times:
  what sampling each trajectory alone would have issued); ``tool_calls_per_trajectory`` is its
  mean per trajectory;
* ``branches``: model nodes that start a branch; ``fills``: fresh samples added to reach M;
  ``initial_per_prompt``: mean number of initial samples per tree (N, or AEPO's m per prompt);
* ``branch_depth_hist``: branches by the index of the tool result they forked after (1 = first);
* ``branch_top3_share``: per tree, branches are attributed to the full sample (initial or fill)
  whose subtree holds them; the share held by each tree's 3 most-branched samples, pooled over
  the batch (AEPO, arXiv 2510.14545, reports ARPO piling most branches onto 1–3 trajectories).
  With 3 or fewer branches per tree this share is 1 whatever their spread, so also
  ``branch_spread`` = Σ_trees D / Σ_trees min(E, S): E branching events (decisions that forked
  copies, Z copies counting once), D initial samples holding at least one, S initial samples that
  took at least one decision (those that could branch: fills start when the budget is nearly
  spent, AEPO's monitoring sample takes none) — 1 = every event on another sample, 1/min(E, S) =
  all on one;
* ``branch_streak_mean``: mean over branching decisions of l, the branchings just before the
  decision on its path (what AEPO's consecutive-branching penalty acts on);
* ``entropy_before_tool`` / ``entropy_after_tool``: mean normalised entropy H/ln|V| of the last k
  model tokens before each tool call and of the first k model tokens after each tool result
  (every node counted once, however many trajectories share it) — the signal ARPO branches on.

:func:`outcome_agreement` needs the trajectories' correctness, so the trainer computes it: whether
a branch reached the same outcome as the path it forked from, against the same rate for two
independent initial samples of the prompt. A branch is worth its compute only where it explores:
with p the tree's initial accuracy, two independent samples agree with probability p² + (1 − p)²;
a branch that merely replays its parent agrees with probability 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from arpo.core.tree import Node, Origin, Role, RolloutTree


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def _own_leaf(node: Node) -> Node | None:
    """The leaf a path started at ``node`` reaches: down its own continuations (children without an
    origin), never into a branch forked from it; None if the path ends at a node that only has
    branches below it (not a leaf)."""
    while node.children:
        next_node = next((child for child in node.children if child.origin is None), None)
        if next_node is None:
            return None
        node = next_node
    return node


def outcome_agreement(tree: RolloutTree, correctness: Sequence[float]) -> tuple[list[bool], list[bool]]:
    """(per branch: its leaf's correctness equals that of the path it forked from; per unordered
    pair of initial samples: their correctness is equal). ``correctness`` is per trajectory, in
    :meth:`RolloutTree.trajectories` order. The path a branch forked from is the tool result's
    own continuation (the child without an origin) followed to its own leaf, so a branch is
    compared with the path it copied, not with later branches of either."""
    leaves = tree.leaves()
    if len(correctness) != len(leaves):
        raise ValueError(f"{len(correctness)} correctness values for a tree of {len(leaves)} leaves")
    correct = {leaf.id: value for leaf, value in zip(leaves, correctness, strict=True)}

    def outcome(node: Node | None) -> float | None:
        leaf = None if node is None else _own_leaf(node)
        return None if leaf is None else correct[leaf.id]

    branches = []
    for node in tree.nodes:
        if node.origin is Origin.BRANCH:
            own, parent = outcome(node), outcome(node.parent)
            if own is not None and parent is not None:
                branches.append(own == parent)
    initial = [outcome(node) for node in tree.nodes if node.origin is Origin.INITIAL]
    initial = [value for value in initial if value is not None]
    pairs = [a == b for i, a in enumerate(initial) for b in initial[i + 1 :]]
    return branches, pairs


def summarize_trees(trees: Sequence[RolloutTree], entropy_window: int) -> dict[str, Any]:
    """Counts and means over a batch of trees (see the module docstring)."""
    leaves, tool_calls, lengths = [], [], []
    unique = flat = executed = 0
    finish: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    depth_hist: Counter[int] = Counter()
    branches = fills = initial = top3 = decisions = positive = reached = reachable = 0
    before, after, deltas, streaks = [], [], [], []
    for tree in trees:
        trajectories = tree.trajectories()
        leaves.append(len(trajectories))
        unique += sum(len(node.token_ids) for node in tree.nodes)
        for traj in trajectories:
            flat += len(traj.token_ids)
            tool_calls.append(len(traj.tool_calls))
            lengths.append(traj.response_length)
            finish[traj.finish_reason.value if traj.finish_reason else "unfinished"] += 1
        per_sample: Counter[int] = Counter()
        events: Counter[int] = Counter()
        deciders: set[int] = set()
        log_v = math.log(tree.vocab_size)
        for node in tree.nodes:
            fills += node.origin is Origin.FILL
            initial += node.origin is Origin.INITIAL
            if node.origin is Origin.BRANCH:
                branches += 1
                path = node.path()
                depth_hist[sum(n.role is Role.TOOL for n in path)] += 1
                per_sample[path[1].id] += 1
            if node.role is Role.TOOL:
                statuses.update(call.status for call in node.tool_calls)
                executed += sum(call.executed for call in node.tool_calls)
                if node.parent is not None and node.parent.entropies:
                    before.append(fmean(node.parent.entropies[-entropy_window:]) / log_v)
            after_tool = node.parent is not None and node.parent.role is Role.TOOL
            if node.role is Role.MODEL and after_tool and node.entropies:
                after.append(fmean(node.entropies[:entropy_window]) / log_v)
            if node.decision is not None:
                sample = node.path()[1]
                if sample.origin is Origin.INITIAL:
                    deciders.add(sample.id)
                if node.decision.copies > 0:
                    events[sample.id] += 1
                decisions += 1
                positive += node.decision.branch
                deltas.append(node.decision.delta)
                streaks.append(node.decision.streak)
        top3 += sum(count for _, count in per_sample.most_common(3))
        reached += len(events)
        reachable += min(sum(events.values()), len(deciders))
    return {
        "prompts": len(trees),
        "trajectories": sum(leaves),
        "leaves_per_prompt_min": min(leaves, default=0),
        "leaves_per_prompt_max": max(leaves, default=0),
        "tokens_unique": unique,
        "tokens_flat": flat,
        "branches": branches,
        "branches_per_prompt": branches / len(trees) if trees else 0.0,
        "fills": fills,
        "initial_per_prompt": initial / len(trees) if trees else 0.0,
        "branch_depth_hist": dict(sorted(depth_hist.items())),
        "branch_top3_share": top3 / branches if branches else None,
        "branch_spread": reached / reachable if reachable else None,
        "branch_streak_mean": _mean(streaks),
        "decisions": decisions,
        "decisions_positive": positive,
        "mean_delta_entropy": _mean(deltas),
        "tool_calls_executed": executed,
        "tool_calls_flat": sum(tool_calls),
        "tool_calls_per_trajectory": _mean(tool_calls),
        "tool_status": dict(statuses),
        "finish_reasons": dict(finish),
        "response_length_mean": _mean(lengths),
        "entropy_before_tool": _mean(before),
        "entropy_after_tool": _mean(after),
    }
