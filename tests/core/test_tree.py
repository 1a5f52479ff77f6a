import json

import pytest

from arpo.core.tree import BranchDecision, FinishReason, Origin, Role, RolloutTree, ToolCall


def build_tree() -> RolloutTree:
    """prompt [1,2,3] → a:[10,11] → tool:[50,51] → c:[12] (leaf) and d:[13,14] (branch leaf); b:[20] (leaf)."""
    tree = RolloutTree([1, 2, 3], vocab_size=64, meta={"index": 7})
    a = tree.add_model(tree.root, Origin.INITIAL)
    a.append([10, 11], [-0.1, -0.2], [1.0, 2.0])
    tool = tree.add_tool(a, [50, 51], [ToolCall("calc", "1+2", "ok", 0.01)])
    tool.decision = BranchDecision(h_init=0.2, h_after=0.5, score=0.56, branch=True, copies=1)
    c = tree.add_model(tool)
    c.append([12], [-0.3], [0.5])
    c.finish_reason = FinishReason.ANSWER
    d = tree.add_model(tool, Origin.BRANCH)
    d.append([13, 14], [-0.4, -0.5], [0.1, 0.2])
    d.finish_reason = FinishReason.EOS
    b = tree.add_model(tree.root, Origin.INITIAL)
    b.append([20], [-0.6], [3.0])
    b.finish_reason = FinishReason.LENGTH
    return tree


def test_trajectory_ids_are_the_concatenation_of_segments_and_mask_is_model_only():
    tree = build_tree()
    trajs = {tuple(t.token_ids): t for t in tree.trajectories()}
    assert set(trajs) == {(1, 2, 3, 10, 11, 50, 51, 12), (1, 2, 3, 10, 11, 50, 51, 13, 14), (1, 2, 3, 20)}
    t = trajs[(1, 2, 3, 10, 11, 50, 51, 13, 14)]
    assert t.loss_mask == [0, 0, 0, 1, 1, 0, 0, 1, 1]
    assert t.sampled_logprobs == [0, 0, 0, -0.1, -0.2, 0, 0, -0.4, -0.5]
    assert t.prompt_length == 3 and t.response_length == 6
    assert [c.tag for c in t.tool_calls] == ["calc"]
    assert t.finish_reason is FinishReason.EOS
    assert trajs[(1, 2, 3, 20)].loss_mask == [0, 0, 0, 1]


def test_a_trajectory_has_the_origin_of_its_deepest_started_node():
    """A branch's path runs through the initial sample it forked from: its origin is the branch's."""
    origins = {tuple(t.token_ids)[-1]: t.origin for t in build_tree().trajectories()}
    assert origins == {12: Origin.INITIAL, 14: Origin.BRANCH, 20: Origin.INITIAL}


def test_leaf_counts_say_how_many_trajectories_share_each_node():
    tree = build_tree()
    counts = tree.leaf_counts()
    by_tokens = {tuple(n.token_ids): counts[n.id] for n in tree.nodes}
    assert by_tokens == {(1, 2, 3): 3, (10, 11): 2, (50, 51): 2, (12,): 1, (13, 14): 1, (20,): 1}


def test_walk_is_depth_first_in_creation_order():
    tree = build_tree()
    assert [n.token_ids[0] for n in tree.walk()] == [1, 10, 50, 12, 13, 20]


def test_json_round_trip_preserves_everything():
    tree = build_tree()
    data = json.loads(tree.to_json(decode=lambda ids: ",".join(map(str, ids))))
    assert data["nodes"][2]["text"] == "50,51"
    again = RolloutTree.from_dict(data)
    assert again.to_dict() == tree.to_dict()
    assert again.nodes[2].decision.delta == pytest.approx(0.3)


def test_trees_written_with_one_call_per_tool_node_still_load():
    tree = build_tree()
    data = json.loads(tree.to_json())
    for item in data["nodes"]:
        if "tool_calls" in item:
            (item["tool_call"],) = item.pop("tool_calls")
    assert RolloutTree.from_dict(data).to_dict() == tree.to_dict()


def test_structural_rules_are_enforced():
    tree = RolloutTree([1], vocab_size=8)
    a = tree.add_model(tree.root)
    with pytest.raises(ValueError, match="follows"):
        tree.add_model(a)
    with pytest.raises(ValueError, match="follows a model segment"):
        tree.add_tool(tree.root, [1], [ToolCall("calc", "", "ok")])
    tool = tree.add_tool(a, [5], [ToolCall("calc", "", "ok")])
    with pytest.raises(ValueError, match="only model nodes grow"):
        tool.append([1], [0.0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        a.append([1, 2], [0.0], [0.0])
    with pytest.raises(ValueError, match="non-empty prompt"):
        RolloutTree([], vocab_size=8)
    assert tree.nodes[1].role is Role.MODEL


def test_adopt_moves_a_segment_and_its_descendants_with_the_next_ids():
    tree, own = RolloutTree([1, 2], vocab_size=10), RolloutTree([1, 2], vocab_size=10)
    first = tree.add_model(tree.root, Origin.INITIAL)
    first.append([3], [-0.1], [0.5])
    fill = own.add_model(own.root, Origin.FILL)
    fill.append([4, 5], [-0.2, -0.3], [0.4, 0.3])
    tool = own.add_tool(fill, [6], [ToolCall("calc", "1+1", "ok")])
    after = own.add_model(tool)
    after.append([7], [-0.4], [0.2])
    tree.adopt(own, fill)
    assert [n.id for n in tree.nodes] == [0, 1, 2, 3, 4]
    assert tree.nodes[2:] == [fill, tool, after] and fill.parent is tree.root
    assert tree.root.children == [first, fill] and own.nodes == [own.root] and own.root.children == []
    assert [t.token_ids for t in tree.trajectories()] == [[1, 2, 3], [1, 2, 4, 5, 6, 7]]
    tree.add_tool(after, [8], [ToolCall("calc", "2+2", "ok")])  # the adopted path goes on here
    assert tree.nodes[-1].id == 5 and tree.nodes[-1].parent is after
    with pytest.raises(ValueError, match="directly under the other tree's root"):
        tree.adopt(own, after)
    with pytest.raises(ValueError, match="same prompt"):
        other = RolloutTree([9], vocab_size=10)
        tree.adopt(other, other.add_model(other.root))
