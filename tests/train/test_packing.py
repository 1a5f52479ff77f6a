"""Tree packing reproduces the flat computation exactly: log-probs, losses and gradients."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from arpo.core.advantage import AdvantageConfig, attribute, group_advantages
from arpo.core.logits import RAW, PolicyView
from arpo.core.loss import PolicyLossConfig, policy_loss
from arpo.engines.hf import HFGenerator
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tools import Calculator, ToolBox
from arpo.train.batching import LearnerRow
from arpo.train.layout import (
    AUTO_CANDIDATES,
    build_minibatch,
    choose_layout,
    layout_costs,
    model_tokens,
    one_path_tree,
)
from arpo.train.layout_cost import LayoutCost
from arpo.train.packing import PackedBatch, ancestor_mask, pack_trees
from arpo.train.prefix_rows import PrefixBatch


def sample_trees(model, tokenizer, prompts, m, n, seed=0, temperature=1.0):
    config = RolloutConfig.model_validate(
        {
            "branching": {"rollouts_per_prompt": m, "initial_rollouts": n, "entropy_window": 4, "alpha": 0.9},
            "max_response_tokens": 40,
            "temperature": temperature,
        }
    )
    with ToolBox([Calculator()]) as tools:
        return (
            ArpoRollout(HFGenerator(model, tokenizer), tokenizer, tools, config).run(prompts, seed=seed).trees
        )


def rows_for(trees, attribution, seed=0):
    rng = random.Random(seed)
    groups = [[rng.choice([0.0, 0.5, 1.0]) for _ in tree.trajectories()] for tree in trees]
    rows = []
    for tree, adv in zip(trees, group_advantages(groups, AdvantageConfig()), strict=True):
        for traj, tokens in zip(tree.trajectories(), attribute(tree, adv, attribution), strict=True):
            rows.append(LearnerRow(traj.token_ids, tokens.weights, tokens.advantages))
    return rows


def layout(
    trees,
    rows,
    packing,
    aggregation="token-mean",
    pack_tokens=10_000,
    view=RAW,
    cost=None,
    candidates=AUTO_CANDIDATES,
):
    return build_minibatch(
        trees,
        rows,
        aggregation=aggregation,
        packing=packing,
        micro_batch_size=4,
        pack_tokens=pack_tokens,
        pad_id=0,
        dtype=torch.float64,
        device="cpu",
        view=view,
        cost=cost,
        candidates=candidates,
    )


def copy_logprobs(model, batch):
    out = torch.zeros(batch.num_copies, dtype=torch.float64)
    for unit in batch.units:
        out[unit.copies] = unit.logprobs(model)[0]
    return out


@pytest.fixture(scope="module")
def shared_trees(model64, tokenizer, prompts):
    trees = sample_trees(model64, tokenizer, prompts[:3], m=6, n=2)
    assert sum(t.leaf_counts()[t.root.id] for t in trees) == 18
    assert any(n.origin is not None and n.origin.value == "branch" for t in trees for n in t.nodes)
    return trees


def test_packed_rows_compute_each_unique_token_once(shared_trees):
    rows = rows_for(shared_trees, "soft")
    flat, tree = layout(shared_trees, rows, "flat"), layout(shared_trees, rows, "tree")
    assert tree.tokens_forwarded == sum(len(n.token_ids) for t in shared_trees for n in t.nodes)
    assert flat.tokens_forwarded == sum(len(r.token_ids) for r in rows) > tree.tokens_forwarded


def test_ancestor_mask_matches_tree_paths(shared_trees):
    (row,) = pack_trees(shared_trees[:1], 10_000).rows
    allowed = ancestor_mask(row, len(row))
    columns = pack_trees(shared_trees[:1], 10_000).columns[0]
    for cols in columns:  # along a trajectory, token t sees exactly the trajectory's tokens ≤ t
        flat_cols = [c for _, c in cols]
        for t, c in enumerate(flat_cols):
            assert set(torch.nonzero(allowed[c]).flatten().tolist()) == set(flat_cols[: t + 1])
        assert [row.position_ids[c] for c in flat_cols] == list(range(len(flat_cols)))


@pytest.mark.parametrize("packing", ["tree", "prefix"])
def test_packed_logprobs_equal_flat(model64, shared_trees, packing):
    rows = rows_for(shared_trees, "soft")
    with torch.no_grad():
        flat = copy_logprobs(model64, layout(shared_trees, rows, "flat"))
        packed = copy_logprobs(model64, layout(shared_trees, rows, packing, pack_tokens=60))
    assert torch.allclose(flat, packed, atol=1e-5, rtol=0)


def loss_and_grads(model, batch, old, config):
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for unit in batch.units:
        logprobs, entropies = unit.logprobs(model, with_entropy=True)
        parts = policy_loss(
            logprobs,
            old[unit.copies],
            batch.advantages[unit.copies].double(),
            batch.scale[unit.copies].double(),
            config,
            ref_logprobs=old[unit.copies] - 0.1,
            entropies=entropies,
        )
        parts.loss.backward()
        total = total + parts.loss.detach()
    return total.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("packing", ["tree", "prefix"])
@pytest.mark.parametrize("attribution", ["soft", "hard"])
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_packed_loss_and_gradients_equal_flat(model64, shared_trees, attribution, aggregation, packing):
    rows = rows_for(shared_trees, attribution)
    flat, tree = (
        layout(shared_trees, rows, "flat", aggregation),
        layout(shared_trees, rows, packing, aggregation),
    )
    assert torch.equal(flat.copy_rows, tree.copy_rows) and torch.equal(flat.scale, tree.scale)
    with torch.no_grad():
        current = copy_logprobs(model64, flat)
    old = current + torch.linspace(
        -0.4, 0.4, current.shape[0], dtype=torch.float64
    )  # ratios off 1, clips hit
    config = PolicyLossConfig(aggregation=aggregation, kl_coef=0.05, entropy_coef=0.01)
    loss_flat, grads_flat = loss_and_grads(model64, flat, old, config)
    loss_tree, grads_tree = loss_and_grads(model64, tree, old, config)
    assert loss_tree == pytest.approx(loss_flat, abs=1e-5)
    for name, grad in grads_flat.items():
        assert torch.allclose(grads_tree[name], grad, atol=1e-5, rtol=0), name


def test_a_tree_without_sharing_gives_the_flat_result(model64, tokenizer, prompts):
    trees = sample_trees(model64, tokenizer, prompts[:3], m=1, n=1)
    rows = rows_for(trees, "soft")
    flat, tree = layout(trees, rows, "flat"), layout(trees, rows, "tree")
    assert flat.tokens_forwarded == tree.tokens_forwarded
    with torch.no_grad():
        assert torch.allclose(copy_logprobs(model64, flat), copy_logprobs(model64, tree), atol=1e-12)


def test_trees_are_never_split_across_rows(shared_trees):
    packing = pack_trees(shared_trees, max_tokens=1)
    assert len(packing.rows) == len(shared_trees)
    assert [len({r for cols in tree_cols for r, _ in cols}) for tree_cols in packing.columns] == [1, 1, 1]


@pytest.mark.parametrize("packing", ["flat", "tree", "prefix"])
def test_learner_logprobs_equal_the_sampled_ones_at_the_rollout_temperature(
    model64, tokenizer, prompts, packing
):
    """At T = 0.5 the learner scores softmax(z/T), the distribution the rollout drew from (with
    T = 1 it scored another policy: ~1 nat apart on this model)."""
    trees = sample_trees(model64, tokenizer, prompts[:2], m=4, n=2, temperature=0.5)
    rows = rows_for(trees, "soft")
    sampled = torch.tensor(
        [
            lp
            for t in trees
            for traj in t.trajectories()
            for lp, w in zip(traj.sampled_logprobs, traj.loss_mask, strict=True)
            if w
        ],
        dtype=torch.float64,
    )
    view = PolicyView(0.5, len(tokenizer))
    with torch.no_grad():
        learner = copy_logprobs(model64, layout(trees, rows, packing, view=view))
        untempered = copy_logprobs(model64, layout(trees, rows, packing))
    assert torch.allclose(learner, sampled, atol=1e-9, rtol=0)
    assert (untempered - sampled).abs().mean() > 0.2


def test_flat_micro_batches_are_padded_to_their_own_longest_row(model64, shared_trees):
    rows = rows_for(shared_trees, "soft")
    batch = layout(shared_trees, rows, "flat")
    lengths = sorted(len(r.token_ids) for r in rows)
    widths = [unit.inputs.input_ids.shape[1] for unit in batch.units]
    assert widths == [lengths[min(i + 3, len(lengths) - 1)] for i in range(0, len(lengths), 4)]
    assert widths[0] < max(lengths)
    with torch.no_grad():
        flat = copy_logprobs(model64, batch)
        packed = copy_logprobs(model64, layout(shared_trees, rows, "tree"))
    assert torch.allclose(flat, packed, atol=1e-9, rtol=0)


def test_layout_cost_of_a_tiny_llama_by_hand(model64):
    # hidden 64, 2 layers, 4 heads of 16, vocabulary 62, tied output layer: 78,016 parameters
    assert sum(p.numel() for p in model64.parameters()) == 78_016
    cost = LayoutCost.of(model64)
    assert cost.token == 2 * (78_016 - 62 * 64) and cost.output == 2 * 64 * 62
    assert cost.pair == 4 * (4 * 16) * 2
    assert cost.forward(3, 10) == 3 * 10 * cost.token + 3 * 10 * 10 * cost.pair
    # rows of 5, 7, 9 tokens two per forward: (5, 7) padded to 7, then (9), which has no padding
    # and runs the causal kernel over half its pairs unless a custom mask is given
    assert cost.forward(1, 9, causal=True) == 9 * cost.token + 81 * cost.pair / 2
    assert cost.layout([5, 7, 9], 2) == cost.forward(2, 7) + cost.forward(1, 9, causal=True)
    assert cost.layout([5, 7, 9], 2, masked=True) == cost.forward(2, 7) + cost.forward(1, 9)
    # a 4-token prompt once, then 3 rows of 6 tokens attending to its 4 cached positions and causally to
    # their own: on CPU with sdpa split into two maskless calls (half their own pairs), else through a mask
    assert cost.split_prefix
    assert cost.prefixed(4, 3, 6) == cost.forward(1, 4, causal=True) + 3 * 6 * (cost.token + 7 * cost.pair)
    masked = dataclasses.replace(cost, split_prefix=False)
    assert masked.prefixed(4, 3, 6) == cost.forward(1, 4, causal=True) + 3 * 6 * (cost.token + 10 * cost.pair)


def kind(batch):
    """The layout of a mini-batch's forwards."""
    (found,) = {type(unit.inputs) for unit in batch.units}
    return {PackedBatch: "tree", PrefixBatch: "prefix"}.get(found, "flat")


def test_auto_takes_the_layout_the_cost_model_finds_cheapest(shared_trees):
    rows = rows_for(shared_trees, "soft")
    flat, tree, prefix = (layout(shared_trees, rows, name) for name in ("flat", "tree", "prefix"))
    # dense layers only: the layout with fewest tokens (each shared token once) wins
    by_tokens = layout(shared_trees, rows, "auto", cost=LayoutCost(token=1.0, pair=0.0))
    assert kind(by_tokens) == "tree" and by_tokens.tokens_forwarded == tree.tokens_forwarded
    assert tree.tokens_forwarded < prefix.tokens_forwarded < flat.tokens_forwarded
    # attention only: short rows, with or without the prompt's cache, win over the packed row (its
    # length squared); prefix against flat depends on the sampled lengths (these prompts are short)
    pairs_only = LayoutCost(token=0.0, pair=1.0)
    costs = layout_costs(shared_trees, [len(r.token_ids) for r in rows], 4, 10_000, pairs_only)
    assert max(costs["prefix"], costs["flat"]) < costs["tree"] / 5
    by_pairs = layout(shared_trees, rows, "auto", cost=pairs_only, candidates=("tree", "prefix"))
    assert kind(by_pairs) == "prefix" and by_pairs.tokens_forwarded == prefix.tokens_forwarded
    by_pairs = layout(
        shared_trees, rows, "auto", cost=LayoutCost(token=0.0, pair=1.0), candidates=("flat", "tree")
    )
    assert kind(by_pairs) == "flat" and by_pairs.tokens_forwarded == flat.tokens_forwarded
    assert torch.equal(by_pairs.scale, tree.scale) and torch.equal(by_tokens.copy_rows, flat.copy_rows)
    with pytest.raises(ValueError, match="needs the model's cost model"):
        layout(shared_trees, rows, "auto")


def test_auto_follows_the_tiny_llamas_cost_model(model64, shared_trees):
    rows = rows_for(shared_trees, "soft")
    cost = LayoutCost.of(model64)
    lengths = [len(r.token_ids) for r in rows]
    costs = layout_costs(shared_trees, lengths, 4, 10_000, cost)
    # the output layer: at every trajectory's model tokens flat, once per shared token packed
    copies = sum(int((torch.tensor(r.weights) != 0).sum()) for r in rows)
    nodes = [n for t in shared_trees for n in t.nodes if n.role.value == "model"]
    unique = sum(len(n.token_ids) for n in nodes)
    assert model_tokens(shared_trees) == (copies, unique) and unique < copies
    assert costs["flat"] == cost.layout(sorted(lengths), 4) + copies * cost.output
    assert (
        costs["tree"]
        == cost.layout([len(row) for row in pack_trees(shared_trees, 10_000).rows], 4, masked=True)
        + unique * cost.output
    )
    prefix, first = copies * cost.output, 0
    for tree in shared_trees:  # each tree's 6 trajectories by length, 4 then 2 per forward
        prompt, n = len(tree.root.token_ids), len(tree.leaves())
        mine = sorted(lengths[first : first + n])
        first += n
        for chunk in (mine[:4], mine[4:]):  # and the prompt's last position, once per chunk
            prefix += cost.prefixed(prompt, len(chunk), max(chunk) - prompt) + cost.output
    assert costs["prefix"] == pytest.approx(prefix)
    assert kind(layout(shared_trees, rows, "auto", cost=cost)) == choose_layout(costs)
    # one trajectory per tree: nothing shared, the prefix layout is never picked
    single = [one_path_tree(r.token_ids, 5) for r in rows[:3]]
    assert layout_costs(single, lengths[:3], 4, 10_000, cost)["prefix"] == float("inf")


def test_auto_leaves_flat_only_for_a_clear_saving():
    assert choose_layout({"flat": 1.0, "tree": 0.95, "prefix": 0.92}) == "flat"  # within the model's error
    assert choose_layout({"flat": 1.0, "tree": 0.88, "prefix": 0.85}) == "tree"  # prefix needs ≤ 0.8
    assert choose_layout({"flat": 1.0, "tree": 0.88, "prefix": 0.75}) == "prefix"
    assert choose_layout({"flat": 1.0, "tree": 1.4, "prefix": 0.95}, ("tree", "prefix")) == "prefix"
