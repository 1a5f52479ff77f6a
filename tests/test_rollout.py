"""The tool loop and ARPO's branching, on tiny real models (random and tool-calling)."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import processors

from arpo.core.answer_format import extract_call
from arpo.core.tree import FinishReason, Origin, Role
from arpo.engines.hf import HFGenerator
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.rollout import ArpoRollout, RolloutConfig, TokenCodec
from arpo.tools import Calculator, Tool, ToolBox, ToolResult
from tests.conftest import TOOL_SCRIPT, train_tool_caller


def make_config(**branching) -> RolloutConfig:
    budget = branching.pop("budget", 40)
    calls = branching.pop("calls", 3)
    return RolloutConfig.model_validate(
        {
            "branching": {"entropy_window": 4, **branching},
            "max_response_tokens": budget,
            "max_tool_calls": calls,
        }
    )


def rollout(model, tokenizer, prompts, config, seed=0, tools=None):
    with ToolBox(tools or [Calculator()]) as box:
        return ArpoRollout(HFGenerator(model, tokenizer), tokenizer, box, config).run(prompts, seed=seed)


def counted_rollout(model, tokenizer, prompts, config):
    """``rollout`` and the number of forward passes the model ran in it."""
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        return rollout(model, tokenizer, prompts, config), len(forwards)
    finally:
        hook.remove()


def decisions(batch):
    return [n.decision for t in batch.trees for n in t.nodes if n.decision is not None]


def started(tree, origin):
    return sum(n.origin is origin for n in tree.nodes)


@pytest.mark.parametrize(
    ("m", "n", "z", "alpha", "beta", "rule", "seed"),
    [
        (1, 1, 1, 0.5, 0.2, "stochastic", 0),
        (4, 1, 1, 0.5, 0.2, "stochastic", 1),
        (4, 4, 1, 0.5, 0.2, "stochastic", 2),
        (8, 2, 2, 0.9, 0.2, "stochastic", 3),
        (8, 3, 3, 1.0, 0.0, "stochastic", 4),
        (6, 2, 1, 0.0, 5.0, "stochastic", 5),
        (8, 1, 4, 0.5, 1.0, "threshold", 6),
        (5, 2, 2, 0.6, 0.2, "threshold", 7),
        (16, 8, 1, 0.5, 0.2, "stochastic", 8),
    ],
)
def test_every_prompt_gets_exactly_m_leaves(
    model, tool_caller, tokenizer, prompts, m, n, z, alpha, beta, rule, seed
):
    config = make_config(
        rollouts_per_prompt=m, initial_rollouts=n, branch_width=z, alpha=alpha, beta=beta, rule=rule
    )
    for policy in (model, tool_caller):
        batch = rollout(policy, tokenizer, prompts[:3], config, seed=seed)
        for tree in batch.trees:
            leaves = tree.leaves()
            assert len(leaves) == m
            assert all(leaf.finish_reason is not None for leaf in leaves)
            assert started(tree, Origin.INITIAL) == n
            assert sum(n.origin is not None for n in tree.nodes) == m
        assert batch.stats["leaves_per_prompt_min"] == batch.stats["leaves_per_prompt_max"] == m


def test_alpha_beta_zero_never_branches(tool_caller, tokenizer, prompts):
    batch = rollout(
        tool_caller,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=6, initial_rollouts=2, alpha=0, beta=0),
    )
    assert decisions(batch), "the tool-calling model makes decisions at its tool results"
    assert all(not d.branch and d.copies == 0 for d in decisions(batch))
    for tree in batch.trees:
        assert started(tree, Origin.BRANCH) == 0
        assert started(tree, Origin.FILL) == 4


def test_alpha_one_fills_the_budget_by_branching(tool_caller, tokenizer, prompts):
    config = make_config(
        rollouts_per_prompt=8, initial_rollouts=2, branch_width=2, alpha=1.0, beta=0.0, budget=60
    )
    batch = rollout(tool_caller, tokenizer, prompts, config)
    for tree in batch.trees:
        assert started(tree, Origin.FILL) == 0
        assert started(tree, Origin.BRANCH) == 6
        made = [n.decision for n in tree.nodes if n.decision is not None]
        assert all(d.branch for d in made)
        assert sum(d.copies for d in made) == 6
        assert max(d.copies for d in made) == 2


def test_threshold_mode_obeys_tau(tool_caller, tokenizer, prompts):
    """τ is set to the median score of a first rollout (this model's ΔH depends on the CPU the
    fixture was trained on), so the second rollout's decisions fall on both sides of it."""
    settings = dict(rollouts_per_prompt=64, initial_rollouts=4, alpha=0.5, beta=20.0, rule="threshold")
    first = rollout(tool_caller, tokenizer, prompts, make_config(**settings, threshold=0.0))
    scores = sorted(d.score for d in decisions(first))
    tau = scores[len(scores) // 2]
    batch = rollout(tool_caller, tokenizer, prompts, make_config(**settings, threshold=tau))
    assert {d.branch for d in decisions(batch)} == {True, False}, "τ splits this model's ΔH"
    for tree in batch.trees:
        full = sum(n.origin is not None for n in tree.nodes) == 64
        for d in (n.decision for n in tree.nodes if n.decision is not None):
            assert d.score == pytest.approx(0.5 + 20.0 * (d.h_after - d.h_init))
            assert d.branch == (d.score > tau)
            assert d.copies == (1 if d.branch else 0) or (d.branch and d.copies == 0 and full)


def test_decision_uses_entropy_of_first_k_tokens_after_this_result(tool_caller, tokenizer, prompts):
    k = 4
    batch = rollout(
        tool_caller,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=8, initial_rollouts=2, entropy_window=k),
    )
    for tree in batch.trees:
        log_v = math.log(tree.vocab_size)
        for tool in (n for n in tree.nodes if n.decision is not None):
            continuation = next(c for c in tool.children if c.origin is None)
            first = next(n for n in tool.path() if n.role is Role.MODEL)
            assert tool.decision.h_after == pytest.approx(
                sum(continuation.entropies[:k]) / len(continuation.entropies[:k]) / log_v
            )
            assert tool.decision.h_init == pytest.approx(
                sum(first.entropies[:k]) / len(first.entropies[:k]) / log_v
            )


def test_trajectories_are_token_in_token_out_and_masks_exact(model64, tokenizer, prompts):
    """Recorded log-probs equal a full recompute on each trajectory's ids: nothing was re-encoded."""
    config = make_config(rollouts_per_prompt=6, initial_rollouts=2, alpha=0.8, budget=48)
    batch = rollout(model64, tokenizer, prompts[:2], config, seed=3)
    assert sum(len(t.tool_calls) for tree in batch.trees for t in tree.trajectories()) > 0
    for tree in batch.trees:
        for traj in tree.trajectories():
            ids = traj.token_ids
            assert ids == [t for node in traj.nodes for t in node.token_ids]
            expected_mask = [int(node.role is Role.MODEL) for node in traj.nodes for _ in node.token_ids]
            assert traj.loss_mask == expected_mask and len(ids) == len(traj.loss_mask)
            assert traj.loss_mask[: traj.prompt_length] == [0] * traj.prompt_length
            with torch.no_grad():
                log_probs = torch.log_softmax(model64(torch.tensor([ids])).logits[0], dim=-1)
            for pos, (m, lp) in enumerate(zip(traj.loss_mask, traj.sampled_logprobs, strict=True)):
                if m:
                    assert lp == pytest.approx(log_probs[pos - 1, ids[pos]].item(), abs=1e-5)


def test_each_shared_token_is_computed_once(model, tool_caller, tokenizer, prompts):
    config = make_config(rollouts_per_prompt=8, initial_rollouts=2, alpha=0.7)
    for policy in (model, tool_caller):
        batch = rollout(policy, tokenizer, prompts, config)
        nodes = [n for t in batch.trees for n in t.nodes]
        # prompts and tool results that were continued (with the call's last token) are prefilled once
        prefill = sum(len(n.token_ids) for n in nodes if n.role is Role.PROMPT) + sum(
            len(n.token_ids) + 1 for n in nodes if n.role is Role.TOOL and n.children
        )
        decode = sum(len(n.token_ids) - 1 for n in nodes if n.role is Role.MODEL and n.token_ids)
        assert batch.stats["prefill_tokens"] == prefill
        assert batch.stats["decode_tokens"] == decode
        unique = sum(len(n.token_ids) for n in nodes)
        flat = sum(len(t.token_ids) for tree in batch.trees for t in tree.trajectories())
        assert prefill + decode < unique < flat


def test_executed_calls_are_the_tool_nodes_the_tool_box_ran(model, tool_caller, tokenizer, prompts):
    """A call shared by several leaves ran once: ``tool_calls_executed`` equals the trees' executed
    tool nodes and the tool box's own counter; calls over the limit (tool caller) and malformed
    ones (random model) are tool nodes that never ran; per trajectory, shared calls count again."""
    config = make_config(rollouts_per_prompt=6, initial_rollouts=2, alpha=1.0, calls=2, budget=80)
    for policy, refusal in ((tool_caller, "limit"), (model, "error")):
        with ToolBox([Calculator()]) as box:
            batch = ArpoRollout(HFGenerator(policy, tokenizer), tokenizer, box, config).run(prompts, seed=3)
            ran = box.metrics().get("calc/calls", 0)
        tools = [n for tree in batch.trees for n in tree.nodes if n.role is Role.TOOL]
        refused = [n for n in tools if not n.tool_calls[0].executed]
        assert refused and all(n.tool_calls[0].status == refusal for n in refused)
        assert batch.stats["tool_calls_executed"] == len(tools) - len(refused) == ran
        # the tool caller's calls run; the random model's are mostly malformed (a seed may draw a good one)
        assert ran > 0 or policy is model
        per_trajectory = sum(len(t.tool_calls) for tree in batch.trees for t in tree.trajectories())
        assert batch.stats["tool_calls_flat"] == per_trajectory > len(tools)
        assert batch.stats["engine_tokens"] == batch.stats["prefill_tokens"] + batch.stats["decode_tokens"]


def test_same_seed_same_trees(model, tokenizer, prompts):
    def sampled(seed):
        config = make_config(rollouts_per_prompt=8, initial_rollouts=3, alpha=0.6)
        trees = [t.to_dict() for t in rollout(model, tokenizer, prompts, config, seed=seed).trees]
        for node in (n for t in trees for n in t["nodes"] if "tool_calls" in n):
            del node["tool_calls"][0]["latency_s"]  # wall time, the one thing a seed cannot fix
        return trees

    assert sampled(11) == sampled(11)
    assert sampled(11) != sampled(12)


def test_tool_call_limit_refuses_later_calls(tool_caller, tokenizer, prompts):
    batch = rollout(
        tool_caller,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=2, initial_rollouts=2, calls=2, budget=120),
    )
    refused = 0
    for tree in batch.trees:
        for traj in tree.trajectories():
            statuses = [c.status for c in traj.tool_calls]
            assert statuses[:2] == ["ok", "ok"], "the first two calls run (1+2 → 3)"
            assert all(s == "limit" for s in statuses[2:])
            refused += len(statuses[2:])
            for node in traj.nodes:
                if node.tool_calls and node.tool_calls[0].status == "limit":
                    assert "limit (2) reached" in tokenizer.decode(
                        node.token_ids
                    ) or "<|unk|>" in tokenizer.decode(node.token_ids)
    assert refused > 0


class LongText(Tool):
    tag = "calc"
    description = "returns a long text"

    def run(self, call: str) -> ToolResult:
        return ToolResult("9" * 200)


def test_budget_cuts_the_tool_result_and_ends_the_path(tool_caller, tokenizer, prompts):
    budget = 50
    batch = rollout(
        tool_caller,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=3, initial_rollouts=3, budget=budget),
        tools=[LongText()],
    )
    for tree in batch.trees:
        for traj in tree.trajectories():
            assert traj.response_length == budget
            assert traj.leaf.role is Role.TOOL and traj.leaf.finish_reason is FinishReason.LENGTH
            assert traj.leaf.tool_calls[0].truncated


def test_an_answer_closed_on_the_last_allowed_token_is_an_answer(tokenizer, prompts):
    """`</answer>` as the budget's last token ends the path as an answer, not as `length` (which the
    format gate would score −1); a tool call closed there is still not run."""
    answerer = train_tool_caller(
        build_tiny_llama(tokenizer, seed=4), tokenizer, prompts, text="<answer>3</answer><|eos|>"
    )
    answer = tokenizer.encode("<answer>3</answer>", add_special_tokens=False)
    batch = rollout(
        answerer,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=2, initial_rollouts=2, budget=len(answer)),
    )
    for tree in batch.trees:
        for traj in tree.trajectories():
            assert traj.token_ids[traj.prompt_length :] == answer
            assert traj.finish_reason is FinishReason.ANSWER


def test_every_trajectory_respects_the_response_budget(model, tokenizer, prompts):
    batch = rollout(
        model,
        tokenizer,
        prompts,
        make_config(rollouts_per_prompt=8, initial_rollouts=2, alpha=0.8, budget=30),
    )
    lengths = [t.response_length for tree in batch.trees for t in tree.trajectories()]
    assert max(lengths) <= 30 and 30 in lengths


def test_malformed_calls_are_reported_not_run(model, tokenizer, prompts):
    assert extract_call("think<calc>1+2</calc>", "calc") == "1+2"
    assert extract_call("<calc>9</calc> <calc>1+2</calc>", "calc") == "9"
    assert extract_call("a <calc>x<calc>3*3</calc>", "calc") == "3*3"
    assert extract_call("no open tag</calc>", "calc") is None
    batch = rollout(model, tokenizer, prompts, make_config(rollouts_per_prompt=8, initial_rollouts=8))
    seen = 0
    for tree in batch.trees:
        for node in (n for n in tree.nodes if n.role is Role.TOOL):
            opened = "<calc>" in tokenizer.decode(node.parent.token_ids)
            assert (node.tool_calls[0].status == "error" and node.tool_calls[0].call == "") or opened
            seen += not opened
    assert seen > 0


def test_tool_results_are_encoded_alone_without_bos():
    tok = build_char_tokenizer()
    tok.bos_token = "<|pad|>"
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|pad|> $A", special_tokens=[("<|pad|>", tok.pad_token_id)]
    )
    assert tok.encode("12")[0] == tok.pad_token_id, "this tokenizer adds a BOS by default"
    ids = TokenCodec(tok).encode_tool_text("<result>12</result>")
    assert ids == [tok.convert_tokens_to_ids(t) for t in ["<result>", "1", "2", "</result>"]]


def test_rollout_config_rejects_bad_values():
    with pytest.raises(ValueError, match="result_template"):
        RolloutConfig(result_template="<result></result>")
    with pytest.raises(ValueError, match="top_p"):
        RolloutConfig(top_p=0)


@pytest.mark.parametrize(("m", "beta", "seed"), [(8, 0.5, 0), (8, 200.0, 1), (6, 60.0, 2), (4, 0.0, 3)])
def test_pre_monitor_splits_m_from_the_monitoring_sample(tool_caller, tokenizer, prompts, m, beta, seed):
    k = 4
    config = make_config(
        rollouts_per_prompt=m, initial_rollouts=1, entropy_window=k, pre_monitor={"beta": beta}, budget=60
    )
    batch = rollout(tool_caller, tokenizer, prompts, config, seed=seed)
    for tree in batch.trees:
        assert len(tree.leaves()) == m
        split = tree.meta["pre_monitor"]
        monitor = next(n for n in tree.nodes if n.origin is Origin.INITIAL)  # the first path started
        path_nodes = [n for n in tree.nodes if n.role is Role.MODEL and monitor in n.path()]
        log_v = math.log(tree.vocab_size)
        assert split["h_root"] == pytest.approx(
            sum(monitor.entropies[:k]) / len(monitor.entropies[:k]) / log_v
        )
        after = [n for n in path_nodes if n.parent.tool_calls and n.parent.tool_calls[0].executed]
        if after and split["h_tool"] is not None:
            means = [sum(n.entropies[:k]) / len(n.entropies[:k]) / log_v for n in after if n.entropies]
            assert split["h_tool"] == pytest.approx(sum(means) / len(means))
        difference = 0.0 if split["h_tool"] is None else split["h_root"] - split["h_tool"]
        expected = m / (1 + math.exp(-beta * difference))
        assert split["initial_rollouts"] == min(max(math.floor(expected + 0.5), 2), m)
        assert started(tree, Origin.INITIAL) == split["initial_rollouts"]
        monitor_tools = [n for n in tree.nodes if n.role is Role.TOOL and monitor in n.path()]
        assert all(t.decision is None for t in monitor_tools), "the monitoring sample never branches"
    assert any(t.meta["pre_monitor"]["h_tool"] is not None for t in batch.trees), "the monitor called tools"


def test_consecutive_penalty_records_the_streak_and_damps_the_score(tool_caller, tokenizer, prompts):
    config = make_config(
        rollouts_per_prompt=16, initial_rollouts=2, alpha=1.0, beta=0.0, consecutive_penalty=0.3, budget=80
    )
    batch = rollout(tool_caller, tokenizer, prompts, config)
    streaks = [d.streak for d in decisions(batch)]
    assert max(streaks) >= 1, "with α = 1 a path that branched meets another tool result"
    for tree in batch.trees:
        for tool in (n for n in tree.nodes if n.decision is not None):
            earlier = [n for n in tool.path()[:-1] if n.role is Role.TOOL]
            streak = 0
            for node in reversed(earlier):
                if node.decision is None or node.decision.copies == 0:
                    break
                streak += 1
            assert tool.decision.streak == streak
            assert tool.decision.score == pytest.approx(max(0.0, 1.0 - 0.3 * streak))


def test_continuous_scheduling_gives_the_same_greedy_trees_with_fewer_forwards(tokenizer, prompts):
    """Greedy trees do not depend on when a path's next segment starts, so both schedulings give
    the same trees; under ``continuous`` no path waits for a round's longest segment, so the
    model runs fewer forward passes. The policy calls the tool after every prompt and result,
    with a short thought for two prompts and a long one for the others."""
    short, long = TOOL_SCRIPT, "<think>" + "abc " * 8 + "</think>" + TOOL_SCRIPT
    policy = train_tool_caller(
        build_tiny_llama(tokenizer, seed=4),
        tokenizer,
        prompts,
        text=[short * 12, short * 12, long * 4, long * 4],
    )
    trees, forwards = {}, {}
    for scheduling in ("rounds", "continuous"):
        config = RolloutConfig.model_validate(
            {
                "branching": {"rollouts_per_prompt": 2, "initial_rollouts": 2, "entropy_window": 4},
                "max_response_tokens": 80,
                "max_tool_calls": 8,
                "temperature": 0.0,
                "scheduling": scheduling,
            }
        )
        batch, forwards[scheduling] = counted_rollout(policy, tokenizer, prompts, config)
        trees[scheduling] = [[leaf.token_ids for leaf in t.trajectories()] for t in batch.trees]
        assert batch.stats["tool_calls_executed"] >= 8 * len(prompts)
    assert trees["continuous"] == trees["rounds"]
    assert forwards["continuous"] < 0.9 * forwards["rounds"]


def test_early_decisions_start_branches_sooner_and_give_the_same_greedy_trees(tokenizer, prompts):
    """With ``early_decisions`` a decision is taken when the k tokens after its tool result are
    sampled (a peek), and its branch joins then instead of when the parent's segment (a long
    thought and a call) ends. Every decision branches and the budget never runs out, so greedy
    trees are the same either way; the branches' serial tail is shorter, so fewer forwards."""
    long = "<think>" + "abc " * 8 + "</think>" + TOOL_SCRIPT
    policy = train_tool_caller(build_tiny_llama(tokenizer, seed=4), tokenizer, prompts, text=[long * 4] * 4)
    trees, forwards = {}, {}
    for early in (False, True):
        config = make_config(
            rollouts_per_prompt=8, initial_rollouts=2, alpha=1.0, beta=0.0, budget=120, calls=2
        )
        config = RolloutConfig.model_validate(
            {**config.model_dump(), "early_decisions": early, "temperature": 0.0}
        )
        batch, forwards[early] = counted_rollout(policy, tokenizer, prompts, config)
        assert all(started(tree, Origin.BRANCH) == 6 for tree in batch.trees)
        trees[early] = [sorted(leaf.token_ids for leaf in t.trajectories()) for t in batch.trees]
    assert trees[True] == trees[False]
    assert forwards[True] < 0.8 * forwards[False]


def _speculative(config: RolloutConfig) -> RolloutConfig:
    return RolloutConfig.model_validate({**config.model_dump(), "speculative_fills": True})


@pytest.mark.parametrize(
    ("m", "n", "z", "rule", "seed"),
    [
        (8, 2, 2, "stochastic", 3),
        (4, 1, 1, "stochastic", 1),
        (6, 2, 1, "threshold", 7),
        (16, 8, 1, "stochastic", 8),
    ],
)
def test_speculative_fills_give_way_to_branches_and_keep_m_leaves(
    model, tool_caller, tokenizer, prompts, m, n, z, rule, seed
):
    """Fills start with the initial samples; each branch cancels the newest fill still held, so a
    tree ends with N initial samples, its branches and M − N − branches fills, numbered in order."""
    config = _speculative(
        make_config(rollouts_per_prompt=m, initial_rollouts=n, branch_width=z, alpha=0.8, rule=rule)
    )
    for policy in (model, tool_caller):
        batch = rollout(policy, tokenizer, prompts[:3], config, seed=seed)
        branches = 0
        for tree in batch.trees:
            assert len(tree.leaves()) == m and all(leaf.finish_reason is not None for leaf in tree.leaves())
            assert started(tree, Origin.INITIAL) == n
            assert started(tree, Origin.BRANCH) + started(tree, Origin.FILL) == m - n
            assert [node.id for node in tree.nodes] == list(range(len(tree.nodes)))
            assert all(any(c is node for c in node.parent.children) for node in tree.nodes[1:])
            for fill in (node for node in tree.nodes if node.origin is Origin.FILL):
                below = [x for x in tree.nodes if any(a is fill for a in x.path())]
                assert all(x.decision is None or x.decision.copies == 0 for x in below)  # fills never branch
            branches += started(tree, Origin.BRANCH)
        assert batch.stats["fills_cancelled"] == branches
        assert branches > 0 or policy is model


def test_speculative_fills_run_beside_the_initial_samples(tokenizer, prompts):
    """Without branches every fill is kept: greedy trees equal those of fills started after the
    last path, in fewer forwards (the fills no longer wait)."""
    policy = train_tool_caller(build_tiny_llama(tokenizer, seed=4), tokenizer, prompts)
    config = make_config(rollouts_per_prompt=4, initial_rollouts=1, alpha=0.0, beta=0.0, budget=60)
    config = RolloutConfig.model_validate({**config.model_dump(), "temperature": 0.0})
    trees, forwards = {}, {}
    for speculative in (False, True):
        arm = _speculative(config) if speculative else config
        batch, forwards[speculative] = counted_rollout(policy, tokenizer, prompts, arm)
        trees[speculative] = [[leaf.token_ids for leaf in t.trajectories()] for t in batch.trees]
        assert batch.stats["fills_cancelled"] == 0 and batch.stats["tool_calls_executed"] >= 4 * len(prompts)
    assert trees[True] == trees[False]
    assert forwards[True] < 0.7 * forwards[False]


def test_speculative_fills_need_continuous_scheduling_and_no_pre_monitor():
    with pytest.raises(ValueError, match="speculative_fills needs scheduling: continuous"):
        RolloutConfig.model_validate({"speculative_fills": True, "scheduling": "rounds"})
    with pytest.raises(ValueError, match="speculative_fills cannot be used with branching.pre_monitor"):
        RolloutConfig.model_validate({"speculative_fills": True, "branching": {"pre_monitor": {}}})


@pytest.mark.parametrize("settings", [{"scheduling": "rounds"}, {"engine": "vllm"}])
def test_early_decisions_need_continuous_scheduling_on_the_hf_engine(settings):
    with pytest.raises(ValueError, match="early_decisions needs scheduling: continuous and engine: hf"):
        RolloutConfig.model_validate({"early_decisions": True, **settings})
